/**
 * Starts capacity-node.js as a child process and sends it the benchmark requests
 * (../protocol.ts). The same steps as ../server-process.ts, which forks only its own two
 * server scripts. Every child is killed when the runner exits (killAllNodes).
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PendingAnswers } from '../../helpers/child-answers.js';
import type { BurstResult, PacedResult, Request, ServerStats, Target } from '../protocol.js';
import type { CapacityNodeOptions } from './capacity-node.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const live = new Set<ChildProcess>();

export function killAllNodes(): void {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  live.clear();
}

export class NodeProcess {
  private exited = false;
  private readonly answers: PendingAnswers;

  private constructor(
    readonly label: string,
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    this.answers = new PendingAnswers(label, child);
    child.on('exit', (code, signal) => {
      this.exited = true;
      live.delete(child);
      this.answers.failAll(new Error(`${label} exited (${signal ?? `code ${code}`}) with a request pending`));
    });
  }

  static start(options: CapacityNodeOptions, label: string, timeoutMs = 30000): Promise<NodeProcess> {
    const child = fork(path.join(here, 'capacity-node.js'), [JSON.stringify(options)], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, NODE_ENV: 'bench' },
    });
    live.add(child);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${label} did not start within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (message: { ready?: boolean; port?: number; error?: string }): void => {
        if (message.ready === undefined) return;
        child.off('message', onMessage);
        clearTimeout(timer);
        if (message.ready) resolve(new NodeProcess(label, child, message.port!));
        else {
          child.kill('SIGKILL');
          reject(new Error(`${label} failed to start: ${message.error}`));
        }
      };
      child.on('message', onMessage);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        live.delete(child);
        reject(new Error(`${label} exited during start (${signal ?? `code ${code}`})`));
      });
    });
  }

  request<T>(req: Request, timeoutMs = 120000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.label} is not running`));
    return this.answers.ask<T>((id) => this.child.send({ id, req }), {
      ms: timeoutMs,
      message: `${this.label} did not answer ${req.type} within ${timeoutMs} ms`,
    });
  }

  stats(): Promise<ServerStats> {
    return this.request<ServerStats>({ type: 'stats' });
  }

  gc(): Promise<ServerStats> {
    return this.request<ServerStats>({ type: 'gc' });
  }

  burst(target: Target, n: number, chunk = 1000, size = 64): Promise<BurstResult> {
    return this.request<BurstResult>({ type: 'burst', target, n, chunk, size });
  }

  paced(target: Target, rate: number, durationMs: number, size = 64): Promise<PacedResult> {
    return this.request<PacedResult>({ type: 'paced', target, rate, durationMs, size }, durationMs + 60000);
  }

  /** Graceful stop; killed if it takes over 10 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.request({ type: 'stop' }, 10000).catch(() => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }
}

/** CPU µs (user + system) between two stats of one process. */
export function cpuUs(before: ServerStats, after: ServerStats): number {
  return after.cpuUser - before.cpuUser + (after.cpuSystem - before.cpuSystem);
}

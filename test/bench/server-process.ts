/**
 * The runner's side of a benchmark server: forks the child (gatewire-server.js or
 * socketio-server.js), waits until it listens, sends it requests over IPC, and kills it. Every
 * child ever started is remembered, so the runner can kill all of them on any exit.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PendingAnswers } from '../helpers/child-answers.js';
import type { BurstResult, PacedResult, Request, ServerStats, StreamResult, Target } from './protocol.js';
import type { GatewireServerOptions } from './gatewire-server.js';
import type { SocketIoServerOptions } from './socketio-server.js';
import { benchNodeFlags } from './node-flags.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const live = new Set<ChildProcess>();

/** Kills every child still running (SIGKILL). Safe to call more than once. */
export function killAllServers(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  live.clear();
}

export interface LaunchOptions {
  /** shown in progress lines and errors */
  label: string;
  system: ServerSpec['system'];
  /** ms to wait for the child to listen */
  startTimeoutMs?: number;
}

export type ServerSpec =
  { system: 'gatewire'; options: GatewireServerOptions } | { system: 'socketio'; options: SocketIoServerOptions };

export class ServerProcess {
  private exited = false;
  private readonly answers: PendingAnswers;

  private constructor(
    readonly label: string,
    readonly system: ServerSpec['system'],
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

  static start(spec: ServerSpec, options: LaunchOptions): Promise<ServerProcess> {
    const script = path.join(here, spec.system === 'gatewire' ? 'gatewire-server.js' : 'socketio-server.js');
    // The same flags for both systems' servers (node-flags.ts): single-threaded GC on 2 cores, and
    // GATEWIRE_BENCH_NODE_FLAGS, e.g. "--trace-gc" to see pauses.
    const execArgv = ['--expose-gc', ...benchNodeFlags()];
    const child = fork(script, [JSON.stringify(spec.options)], {
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, NODE_ENV: 'bench' },
    });
    live.add(child);
    const timeoutMs = options.startTimeoutMs ?? 20000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${options.label} did not start within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (message: { ready?: boolean; port?: number; error?: string }): void => {
        if (message.ready === undefined) return;
        child.off('message', onMessage);
        clearTimeout(timer);
        if (message.ready) resolve(new ServerProcess(options.label, options.system, child, message.port!));
        else {
          child.kill('SIGKILL');
          reject(new Error(`${options.label} failed to start: ${message.error}`));
        }
      };
      child.on('message', onMessage);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        live.delete(child);
        reject(new Error(`${options.label} exited during start (${signal ?? `code ${code}`})`));
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

  streamStart(prefix: string, count: number, rate: number, size: number): Promise<void> {
    return this.request<void>({ type: 'streamStart', prefix, count, rate, size });
  }

  streamIssued(): Promise<StreamResult> {
    return this.request<StreamResult>({ type: 'streamIssued' });
  }

  streamStop(): Promise<StreamResult> {
    return this.request<StreamResult>({ type: 'streamStop' });
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

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/** CPU µs (user + system) between two stats of one process. */
export function cpuBetween(before: ServerStats, after: ServerStats): number {
  return after.cpuUser - before.cpuUser + (after.cpuSystem - before.cpuSystem);
}

/** A gatewire bench server (gatewire-server.ts) labelled `label`; 30 s to start by default. */
export function startGatewireServer(
  options: GatewireServerOptions,
  label: string,
  startTimeoutMs = 30000,
): Promise<ServerProcess> {
  return ServerProcess.start({ system: 'gatewire', options }, { label, system: 'gatewire', startTimeoutMs });
}

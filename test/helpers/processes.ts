/**
 * Runs the gatewire command line as child processes, for tests of the supervisor, the split
 * roles and the CLI. Every process started here is killed when the test ends (see stopAll).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const GATEWIRE_BIN = path.resolve('bin/gatewire.js');

export interface Cli {
  child: ChildProcess;
  output: () => string;
  /** resolves when the combined output contains `text` */
  waitForOutput: (text: string | RegExp, timeoutMs?: number) => Promise<void>;
  exited: Promise<number | null>;
}

const started = new Set<ChildProcess>();

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = process.cwd()): Cli {
  return runProcess(process.execPath, [GATEWIRE_BIN, ...args], env, cwd);
}

/** Runs a shell command line (bash -c) as a user types it, e.g. a README's; killed like runCli's. */
export function runShell(command: string, env: NodeJS.ProcessEnv = {}, cwd = process.cwd()): Cli {
  return runProcess('bash', ['-c', command], env, cwd);
}

function runProcess(file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Cli {
  const child = spawn(file, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so killAll also reaches the processes a supervisor forked.
    detached: true,
  });
  started.add(child);
  let output = '';
  const waiters = new Set<() => void>();
  const append = (chunk: Buffer): void => {
    output += chunk.toString();
    for (const w of waiters) w();
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      started.delete(child);
      for (const w of waiters) w();
      resolve(code);
    }),
  );
  return {
    child,
    output: () => output,
    exited,
    waitForOutput(text, timeoutMs = 20000) {
      const has = (): boolean => (typeof text === 'string' ? output.includes(text) : text.test(output));
      return new Promise<void>((resolve, reject) => {
        if (has()) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${String(text)} in output:\n${output.slice(-2000)}`));
        }, timeoutMs);
        const check = (): void => {
          if (has()) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          } else if (child.exitCode !== null) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(
              new Error(`process exited (${child.exitCode}) before printing ${String(text)}:\n${output.slice(-2000)}`),
            );
          }
        };
        waiters.add(check);
      });
    },
  };
}

/** Runs a short command to completion. */
export async function runCliToEnd(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  cwd?: string,
): Promise<{ code: number | null; output: string }> {
  const cli = runCli(args, env, cwd);
  const code = await cli.exited;
  return { code, output: cli.output() };
}

/** Kills every child still running, with the processes it forked (SIGKILL); for t.after. */
export function killAll(): void {
  for (const child of started) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }
  started.clear();
}

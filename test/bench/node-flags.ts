/**
 * The Node flags of the processes a benchmark starts (the servers of both systems, the gatewire
 * node of bench:login) and of the runner that holds the load clients.
 *
 * On a machine of 2 cores or fewer every one of them runs with `--single-threaded-gc`, the setting
 * docs/operations.md recommends there: V8's parallel scavenge makes the main thread wait for
 * helper threads that, on 2 cores shared by four busy processes, may not get a core, and event
 * loops stalled for 60-200 ms while using a third of that in CPU (docs/benchmarks.md, "Latency").
 * Both systems get it. GATEWIRE_BENCH_GC=parallel keeps V8's default (for A/B runs);
 * GATEWIRE_BENCH_NODE_FLAGS adds flags, e.g. "--trace-gc".
 */
import { spawn } from 'node:child_process';
import os from 'node:os';

/** Machines of this many cores or fewer get single-threaded GC. @default 2 */
export const SMALL_MACHINE_CORES = 2;

export function benchNodeFlags(env: NodeJS.ProcessEnv = process.env, cores = os.availableParallelism()): string[] {
  const gc = env.GATEWIRE_BENCH_GC ?? 'auto';
  if (gc !== 'auto' && gc !== 'parallel' && gc !== 'single')
    throw new Error(`GATEWIRE_BENCH_GC must be auto, parallel or single (got ${JSON.stringify(gc)})`);
  const single = gc === 'single' || (gc === 'auto' && cores <= SMALL_MACHINE_CORES);
  const extra = (env.GATEWIRE_BENCH_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
  return [...(single ? ['--single-threaded-gc'] : []), ...extra];
}

/** The bench flags this process was not started with (V8 takes GC flags only at start). */
export function missingFlags(execArgv: string[] = process.execArgv): string[] {
  return benchNodeFlags().filter((flag) => !execArgv.includes(flag));
}

/**
 * Runs this script again with the missing flags, forwarding SIGINT and SIGTERM, and resolves
 * with its exit code. Call it before anything else, when missingFlags() is not empty.
 */
export function restartWithFlags(missing: string[]): Promise<number> {
  const child = spawn(process.execPath, [...missing, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`could not restart with ${missing.join(' ')}: ${err.message}\n`);
      resolve(2);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128 + os.constants.signals[signal])));
  });
}

/**
 * The last resort of a shutdown: a thread of its own that kills the process at the deadline.
 *
 * A timer on the main thread cannot be that: synchronous code that never yields (a write loop
 * retrying a full pipe, a handler stuck in a loop) keeps the event loop from ever running it. A
 * worker thread has its own event loop, so its timer fires whatever the main thread does. It
 * kills with SIGKILL because nothing gentler reaches a thread that does not yield: signal
 * handlers run on the main thread, and process.exit in a worker ends only the worker.
 */
import { Worker } from 'node:worker_threads';

/** The worker's whole program (CommonJS, evaluated): sleep until the deadline, then kill. */
const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
setTimeout(() => process.kill(workerData.pid, 'SIGKILL'), Math.max(0, workerData.deadline - Date.now()));
`;

/**
 * Starts the watchdog thread: the process is killed at `deadline` (a Date.now() value) unless it
 * has exited by then. Returns false when no thread could be started (the caller's own timer is
 * then the only bound).
 */
export function armShutdownWatchdog(deadline: number): boolean {
  try {
    const worker = new Worker(WATCHDOG_SOURCE, {
      eval: true,
      workerData: { pid: process.pid, deadline },
      // It prints nothing; its output must not wait on the main thread's streams.
      stdout: true,
      stderr: true,
    });
    // The watchdog never keeps a process alive that would otherwise end.
    worker.unref();
    worker.on('error', () => undefined);
    return true;
  } catch {
    return false;
  }
}

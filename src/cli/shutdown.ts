/**
 * How a `gatewire start` process ends after SIGTERM/SIGINT, always within node.shutdownTimeout
 * (T, default 25 s) counted from the signal:
 *   - the node drains (node.stop()), then the log lines still waiting for stdout get the time
 *     left, then the process exits 0 (1 if the drain failed);
 *   - at T minus a reserve (1 s, or T/5 when T is shorter than 5 s) a drain that has not finished
 *     is abandoned: an error line says so and the process exits 1;
 *   - at T the watchdog thread (shutdown-watchdog.ts) kills the process, for the case where the
 *     main thread is stuck in synchronous code and can run neither of the above.
 * Log output can never hold it: the logger does not block or spin (see logger.ts), and exit
 * makes one non-blocking attempt at what is left.
 */
import type { Logger } from 'pino';
import { stdoutDestination } from '../logger.js';
import { armShutdownWatchdog } from './shutdown-watchdog.js';

export interface ShutdownOptions {
  signal: string;
  /** node.shutdownTimeout, ms */
  timeoutMs: number;
  log: Logger;
  /** the drain; the process exits once it settles */
  stop: () => Promise<void>;
  /** runs after a successful drain, before the exit (e.g. removing the pid file) */
  afterStop?: () => void;
}

/** The part of T kept back for the exit itself after a drain that overran. */
export function reserveMs(timeoutMs: number): number {
  return Math.min(1000, Math.floor(timeoutMs / 5));
}

/** Runs the shutdown; never returns to the caller's flow (the process exits). */
export function shutDown(options: ShutdownOptions): void {
  const { log, timeoutMs } = options;
  const deadline = Date.now() + timeoutMs;
  const giveUpAt = deadline - reserveMs(timeoutMs);
  armShutdownWatchdog(deadline);
  const overrun = setTimeout(() => {
    log.error({ signal: options.signal, timeoutMs }, 'shutdown did not finish within node.shutdownTimeout; exiting');
    process.exit(1);
  }, giveUpAt - Date.now());
  const exitAfterLogs = (code: number): void => {
    clearTimeout(overrun);
    // The log lines of the drain get what is left of the time; a reader that takes none of it
    // loses them (the exit makes one more attempt).
    void stdoutDestination()
      .drained(giveUpAt - Date.now())
      .then(() => process.exit(code));
  };
  log.info({ signal: options.signal, timeoutMs }, 'shutting down');
  options.stop().then(
    () => {
      try {
        options.afterStop?.();
      } catch (err) {
        log.warn({ err }, 'cleanup after shutdown failed');
      }
      exitAfterLogs(0);
    },
    (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      exitAfterLogs(1);
    },
  );
}

import { pino, type Logger } from 'pino';

/** The process logger: JSON lines on stdout; never logs configuration secrets. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } });
}

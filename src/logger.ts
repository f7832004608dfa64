/**
 * The process logger: pino JSON lines on stdout; never logs configuration secrets.
 *
 * Lines go to file descriptor 1 through StdoutDestination below rather than pino's default
 * (sonic-boom), because a shutdown must end whatever stdout is: sonic-boom's flushSync, which
 * pino runs on process exit, retries a write that fails forever (EAGAIN on a pipe nobody reads,
 * EPIPE on a pipe the reader closed), so the process never exits. Here:
 *   - a line is written at once, with a non-blocking write: complete and in order while the
 *     reader keeps up (the normal case), nothing left to flush at exit;
 *   - EAGAIN (the reader is slow or stopped): the line waits in a bounded backlog, retried on a
 *     timer; nothing ever sleeps or loops on it; past the bound lines are dropped and counted,
 *     and a line says how many once the reader catches up;
 *   - EPIPE or any other write error (the reader is gone): logging stops for good;
 *   - at exit, one more non-blocking attempt at the backlog, no retry.
 */
import fs from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * Bytes of log lines kept while stdout does not take them.
 * @default 8 MiB: seconds of a busy node's logs, bounded memory when stdout is never read again
 */
const MAX_BACKLOG_BYTES = 8 * 1024 * 1024;
/** Most bytes handed to one write(2) while working off the backlog (64 KiB, a pipe's size). */
const MAX_WRITE_BYTES = 64 * 1024;
/** Milliseconds between attempts while stdout refuses writes (EAGAIN); @default 50 */
const RETRY_MS = 50;

/** Errors that say "not now": try again later. Any other write error means the reader is gone. */
const TRANSIENT = new Set(['EAGAIN', 'EWOULDBLOCK', 'EBUSY', 'EINTR']);

type FlushCallback = (err?: Error) => void;

/** A pino destination on one file descriptor that never blocks and never spins (see above). */
export class StdoutDestination implements DestinationStream {
  private backlog: Buffer[] = [];
  private backlogBytes = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private waiters: FlushCallback[] = [];
  private broken = false;
  /** lines dropped since the last report */
  private droppedSinceReport = 0;
  /**
   * Lines refused in all: the backlog was full, or the reader had gone (lines still in the
   * backlog when the reader goes are lost without being counted).
   */
  dropped = 0;

  constructor(private readonly fd: number) {}

  /** Bytes waiting to be written. */
  get pendingBytes(): number {
    return this.backlogBytes;
  }

  /** True once a write failed for good (EPIPE, EBADF, …): nothing is written any more. */
  get closed(): boolean {
    return this.broken;
  }

  write(line: string): void {
    if (this.broken) {
      this.dropped += 1;
      return;
    }
    if (this.backlogBytes > 0) {
      this.enqueue(Buffer.from(line));
      return;
    }
    let written: number;
    try {
      written = fs.writeSync(this.fd, line);
    } catch (err) {
      if (this.failed(err)) this.dropped += 1;
      else this.enqueue(Buffer.from(line));
      return;
    }
    // A pipe may take part of a line: the rest waits, so lines never interleave or tear.
    if (written < Buffer.byteLength(line)) this.enqueue(Buffer.from(line).subarray(written));
  }

  /** Calls back once the backlog is written (at once when there is none, or logging stopped). */
  flush(cb?: FlushCallback): void {
    if (cb === undefined) return;
    if (this.backlogBytes === 0 || this.broken) {
      process.nextTick(cb);
      return;
    }
    this.waiters.push(cb);
  }

  /** Resolves once the backlog is written, or after `timeoutMs`, whichever comes first. */
  drained(timeoutMs: number): Promise<void> {
    if (this.backlogBytes === 0 || this.broken) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  /**
   * One synchronous pass over the backlog (process exit): writes what the file descriptor takes
   * now and stops at the first refusal; never retries.
   */
  flushSync(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.writeBacklog();
  }

  private enqueue(bytes: Buffer): void {
    if (this.backlogBytes + bytes.length > MAX_BACKLOG_BYTES) {
      this.dropped += 1;
      this.droppedSinceReport += 1;
      return;
    }
    this.backlog.push(bytes);
    this.backlogBytes += bytes.length;
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.broken) return;
    this.retryTimer = setTimeout(this.retry, RETRY_MS);
    // A process that is otherwise done may end; the exit hook makes the last attempt.
    this.retryTimer.unref();
  }

  private readonly retry = (): void => {
    this.retryTimer = null;
    if (!this.writeBacklog()) this.scheduleRetry();
  };

  /** Writes backlog until it is empty (true), or the descriptor refuses more (false). */
  private writeBacklog(): boolean {
    while (this.backlogBytes > 0 && !this.broken) {
      const chunk = this.nextChunk();
      let written: number;
      try {
        written = fs.writeSync(this.fd, chunk);
      } catch (err) {
        this.failed(err);
        return this.broken;
      }
      this.consume(written);
      if (written < chunk.length) return false;
    }
    if (!this.broken && this.droppedSinceReport > 0) this.reportDrops();
    this.settle();
    return true;
  }

  /** The first backlog buffers, joined up to MAX_WRITE_BYTES. */
  private nextChunk(): Buffer {
    const first = this.backlog[0]!;
    if (this.backlog.length === 1 || first.length >= MAX_WRITE_BYTES) return first;
    const parts: Buffer[] = [];
    let size = 0;
    for (const part of this.backlog) {
      if (size + part.length > MAX_WRITE_BYTES) break;
      parts.push(part);
      size += part.length;
    }
    return Buffer.concat(parts, size);
  }

  private consume(written: number): void {
    let left = written;
    this.backlogBytes -= written;
    while (left > 0) {
      const first = this.backlog[0]!;
      if (first.length <= left) {
        left -= first.length;
        this.backlog.shift();
      } else {
        this.backlog[0] = first.subarray(left);
        left = 0;
      }
    }
  }

  /**
   * Sorts a write error: transient (false: keep the line for later) or fatal (true: the reader
   * is gone, drop everything and stop).
   */
  private failed(err: unknown): boolean {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (TRANSIENT.has(code)) return false;
    this.broken = true;
    this.backlog = [];
    this.backlogBytes = 0;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.settle();
    return true;
  }

  private reportDrops(): void {
    const count = this.droppedSinceReport;
    this.droppedSinceReport = 0;
    const line = `${JSON.stringify({ level: 40, time: Date.now(), pid: process.pid, dropped: count, msg: 'log lines dropped: stdout did not take them in time' })}\n`;
    this.write(line);
  }

  private settle(): void {
    if (this.backlogBytes > 0 && !this.broken) return;
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

let stdout: StdoutDestination | null = null;

/** The one destination on stdout, shared by every logger of the process. */
export function stdoutDestination(): StdoutDestination {
  if (stdout === null) {
    // Opening process.stdout makes libuv put a pipe or socket on fd 1 into non-blocking mode, so
    // a write to a full pipe fails with EAGAIN instead of blocking the whole process.
    void process.stdout;
    stdout = new StdoutDestination(process.stdout.fd ?? 1);
    const destination = stdout;
    process.once('exit', () => destination.flushSync());
  }
  return stdout;
}

/** Called with every line a logger writes (see tapLogLines). */
export type LineTap = (line: string) => void;

/**
 * One logger's way to stdout: the shared destination, and the taps of that logger and its
 * children (the admin dashboard's ring of recent warnings). A tap that throws is ignored.
 */
class TappedDestination implements DestinationStream {
  readonly taps = new Set<LineTap>();

  constructor(private readonly out: StdoutDestination) {}

  write(line: string): void {
    this.out.write(line);
    for (const tap of this.taps) {
      try {
        tap(line);
      } catch {
        // a tap never breaks logging
      }
    }
  }

  flush(cb?: FlushCallback): void {
    this.out.flush(cb);
  }

  flushSync(): void {
    this.out.flushSync();
  }
}

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } }, new TappedDestination(stdoutDestination()));
}

/**
 * Calls `tap` with every line `logger` (made by createLogger) or any logger of its family writes,
 * as written (a JSON line); returns the function that removes the tap. Lines below the logger's
 * level are never written, so never tapped. A logger made elsewhere has no taps: a no-op.
 */
export function tapLogLines(logger: Logger, tap: LineTap): () => void {
  const destination = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
  if (!(destination instanceof TappedDestination)) return () => undefined;
  destination.taps.add(tap);
  return () => destination.taps.delete(tap);
}

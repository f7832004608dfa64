/**
 * One reconnect loop for every RabbitMQ connection gatewire keeps (the bus's, the split-role event
 * producer's and consumer's): attempts with backoff and jitter (backoff.ts) until one succeeds, one
 * loop at a time, an attempt running the connection's whole ordered setup again (declare, bind,
 * consume, …), a wait cut short when the owner stops, and on a first start a refusal the broker
 * would repeat (credentials, vhost, an exchange of the other type) failing at once instead of
 * retrying for ever. A refused connect (nothing listens yet) is retried sooner (backoff.ts).
 */
import { isConnectRefused } from '../../errors.js';
import { Backoff, type BackoffOptions } from './backoff.js';

export interface ReconnectLoopOptions {
  backoff?: BackoffOptions;
  /** One attempt: connect and run the setup; throws when it failed. `reconnect`: not the first. */
  attempt: (reconnect: boolean) => Promise<void>;
  /** What the broker will refuse again: a first start fails with it at once. */
  isRefusal?: (err: unknown) => boolean;
  /** Each failure, with the attempt number and the delay before the next one. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** A reconnect (not the first connect) succeeded after `attempts` failures. */
  onReconnected?: (attempts: number) => void;
}

/**
 * Whether a failed attempt is worth a log line: the first 5 and every 10th after (refused
 * connects are retried every ≤ 500 ms, and a long outage would otherwise log twice a second).
 */
export function retryWorthLogging(attempt: number): boolean {
  return attempt <= 5 || attempt % 10 === 0;
}

/** Why a first start ended without a connection. */
export class ReconnectStopped extends Error {}

export class ReconnectLoop {
  private readonly backoff: Backoff;
  private running: Promise<void> | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;

  constructor(private readonly options: ReconnectLoopOptions) {
    this.backoff = new Backoff(options.backoff);
  }

  /** Failed attempts since the last success. */
  get attempts(): number {
    return this.backoff.attempts;
  }

  /**
   * The first connect: resolves once an attempt succeeded; rejects with the broker's refusal, or
   * with ReconnectStopped if stop() came first.
   */
  start(): Promise<void> {
    this.stopped = false;
    return this.run(false);
  }

  /** The connection was lost: attempts again in the background (one loop at a time). */
  lost(onError: (err: unknown) => void): void {
    if (this.stopped || this.running !== null) return;
    this.run(true).catch(onError);
  }

  /** No more attempts; a wait in progress ends at once. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  /** Resolves once the loop in progress (if any) has ended. */
  async settled(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  private run(reconnect: boolean): Promise<void> {
    const loop = (async () => {
      for (;;) {
        if (this.stopped) {
          if (!reconnect) throw new ReconnectStopped('stopped before it connected');
          return;
        }
        try {
          await this.options.attempt(reconnect);
          if (reconnect) this.options.onReconnected?.(this.backoff.attempts);
          this.backoff.reset();
          return;
        } catch (err) {
          if (this.stopped) continue;
          if (!reconnect && this.options.isRefusal?.(err)) throw err;
          const delay = this.backoff.next(isConnectRefused(err));
          this.options.onRetry?.(err, this.backoff.attempts, delay);
          await this.pause(delay);
        }
      }
    })();
    this.running = loop;
    const clear = (): void => {
      if (this.running === loop) this.running = null;
    };
    loop.then(clear, clear);
    return loop;
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }
}

/**
 * Reconnect delays: exponential backoff with jitter, so that a fleet of nodes that lost the
 * broker at the same moment does not come back at the same moment.
 *
 *   delay(n) = min(maxMs / (1 + jitter), initialMs * factor^(n-1)) * (1 ± jitter·random)
 *
 * The base is capped at maxMs / (1 + jitter) (as amqplib's recovery does) so that the largest
 * draw lands exactly on maxMs and the jitter keeps spreading the nodes once the cap is reached,
 * instead of collapsing every attempt onto maxMs.
 *
 * A connect refused at once (ECONNREFUSED: the host answered, nothing listens on the port, as
 * while a broker restarts) costs the broker nothing, so such a failure waits at most
 * refusedMaxMs: a restarted broker is reached within about that much of listening again, where
 * the full backoff could wait up to maxMs more (bench:login measured 1.0–1.9 s lost this way
 * after a 2.5 s restart). Failures past the TCP connect (handshake, setup) keep the full backoff.
 */
export interface BackoffOptions {
  /** first delay, ms. @default 100 */
  initialMs?: number;
  /** largest delay, ms. @default 5000 */
  maxMs?: number;
  /** growth per attempt. @default 2 */
  factor?: number;
  /** spread as a fraction of the delay, 0..1. @default 0.3 */
  jitter?: number;
  /** largest delay after a refused connect, ms. @default 500 */
  refusedMaxMs?: number;
}

export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private readonly refusedMaxMs: number;
  private attempt = 0;

  constructor(
    options: BackoffOptions = {},
    private readonly random: () => number = Math.random,
  ) {
    this.initialMs = Math.max(0, options.initialMs ?? 100);
    this.maxMs = Math.max(this.initialMs, options.maxMs ?? 5000);
    this.factor = Math.max(1, options.factor ?? 2);
    this.jitter = Math.min(1, Math.max(0, options.jitter ?? 0.3));
    this.refusedMaxMs = Math.min(this.maxMs, Math.max(this.initialMs, options.refusedMaxMs ?? 500));
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next attempt; `refused`: the last one's connect was refused at once. */
  next(refused = false): number {
    this.attempt += 1;
    const cap = (refused ? this.refusedMaxMs : this.maxMs) / (1 + this.jitter);
    const base = Math.min(cap, this.initialMs * this.factor ** (this.attempt - 1));
    const spread = base * this.jitter * (this.random() * 2 - 1);
    return Math.max(0, Math.round(base + spread));
  }

  /** After a success: the next failure starts again from initialMs. */
  reset(): void {
    this.attempt = 0;
  }
}

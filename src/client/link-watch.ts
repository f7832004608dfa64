/**
 * The dead-link watch of one connection. With a server heartbeat the link is dead when no frame
 * came for `timeoutMs` (default 2 × heartbeat + 5 s); without one the client pings every
 * `pingIntervalMs` and the link is dead when no frame came within `timeoutMs` (default 10 s) after
 * a ping.
 */
type Timer = ReturnType<typeof setTimeout> | null;

export class LinkWatch {
  private lastFrameAt = 0;
  private watchTimer: Timer = null;
  private pingTimer: Timer = null;

  constructor(
    private readonly dead: (why: string) => void,
    private readonly ping: () => void,
  ) {}

  /** A frame arrived. */
  heard(): void {
    this.lastFrameAt = Date.now();
  }

  start(heartbeatSeconds: number, timeoutMs: number | undefined, pingIntervalMs: number): void {
    this.stop();
    this.heard();
    if (heartbeatSeconds > 0) return this.check(timeoutMs ?? (2 * heartbeatSeconds + 5) * 1000);
    this.pingEvery(pingIntervalMs, timeoutMs ?? 10000);
  }

  stop(): void {
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    if (this.pingTimer !== null) clearTimeout(this.pingTimer);
    this.watchTimer = this.pingTimer = null;
  }

  private check(timeoutMs: number, waitMs = timeoutMs): void {
    this.watchTimer = setTimeout(() => {
      this.watchTimer = null;
      const idleMs = Date.now() - this.lastFrameAt;
      if (idleMs >= timeoutMs) this.dead(`no frame for ${idleMs} ms`);
      else this.check(timeoutMs, timeoutMs - idleMs);
    }, waitMs);
  }

  private pingEvery(intervalMs: number, timeoutMs: number): void {
    this.pingTimer = setTimeout(() => {
      this.pingTimer = null;
      const pingAt = Date.now();
      this.pingEvery(intervalMs, timeoutMs);
      // A watch still running covers an earlier ping: it stays (restarting it at each ping would
      // never fire when pings come more often than the timeout).
      if (this.watchTimer === null) {
        this.watchTimer = setTimeout(() => {
          this.watchTimer = null;
          if (this.lastFrameAt < pingAt) this.dead(`no frame within ${timeoutMs} ms after a ping`);
        }, timeoutMs);
      }
      this.ping();
    }, intervalMs);
  }
}

/**
 * Coalesces writes: a client that gets several messages within one turn of the event loop has
 * them written in one system call (writev via cork/uncork) when the turn ends.
 */
export interface Flushable {
  flush(): void;
}

export class WriteScheduler {
  private dirty = new Set<Flushable>();
  private scheduled = false;

  mark(client: Flushable): void {
    this.dirty.add(client);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  /** Writes everything queued now (before a close, or at shutdown). */
  flushAll(): void {
    this.run();
  }

  forget(client: Flushable): void {
    this.dirty.delete(client);
  }

  private readonly run = (): void => {
    this.scheduled = false;
    const dirty = this.dirty;
    this.dirty = new Set();
    for (const client of dirty) client.flush();
  };
}

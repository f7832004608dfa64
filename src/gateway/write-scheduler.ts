/**
 * Coalesces writes: a client that gets several messages within one turn of the event loop has
 * them written in one system call when the turn ends (see Client.flush).
 *
 * The clients to flush are kept in an array: a client marks itself once per turn (on its first
 * queued message), so no deduplication is needed, and a broadcast to N clients costs N array
 * stores instead of N set insertions.
 */
export interface Flushable {
  flush(): void;
}

export class WriteScheduler {
  private dirty: Flushable[] = [];
  /** clients forgotten since the last run (rare: a close or destroy in the same turn) */
  private readonly forgotten = new Set<Flushable>();
  private scheduled = false;

  mark(client: Flushable): void {
    // A client forgotten earlier in this turn and marked again has queued anew (a resumed session
    // that dropped its old socket and took a new one): skipping it would leave its queue unwritten
    // for good, since a client marks itself only when its queue goes from empty to one frame.
    if (this.forgotten.size > 0) this.forgotten.delete(client);
    this.dirty.push(client);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  /** Writes everything queued now (before a close, or at shutdown). */
  flushAll(): void {
    this.run();
  }

  /** The client is not flushed by the pending run (it is closing or gone), unless it is marked again. */
  forget(client: Flushable): void {
    if (this.dirty.length > 0) this.forgotten.add(client);
  }

  private readonly run = (): void => {
    this.scheduled = false;
    const dirty = this.dirty;
    if (dirty.length === 0) return;
    // Clients marked while flushing go to the next run.
    this.dirty = [];
    const forgotten = this.forgotten.size > 0 ? new Set(this.forgotten) : null;
    this.forgotten.clear();
    for (let i = 0; i < dirty.length; i++) {
      const client = dirty[i]!;
      if (forgotten === null || !forgotten.has(client)) client.flush();
    }
  };
}

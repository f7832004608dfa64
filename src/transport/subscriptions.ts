/**
 * The routing keys this node wants bound (direct mode), counted per local holder: the first
 * holder of a key binds it, the last one unbinds it, and every desired key is bound again after a
 * reconnect. Operations on one key run one after another, so a bind and an unbind of the same key
 * never race. The transport binds; this class decides when.
 */
export class Subscriptions {
  /** routing key -> number of local holders that want it */
  private readonly desired = new Map<string, number>();
  /** keys bound on the current connection */
  private readonly bound = new Set<string>();
  private readonly keyOps = new Map<string, Promise<void>>();

  constructor(
    private readonly bindKey: (key: string) => Promise<void>,
    private readonly unbindKey: (key: string) => Promise<void>,
  ) {}

  /** A key held for as long as the node runs (its node key, the broadcast key). */
  always(key: string): void {
    this.desired.set(key, 1);
  }

  /** One more local holder; the first one binds the key. */
  hold(key: string): Promise<void> {
    this.desired.set(key, (this.desired.get(key) ?? 0) + 1);
    return this.reconcile(key);
  }

  /** One holder fewer; the last one unbinds the key. */
  release(key: string): Promise<void> {
    const count = (this.desired.get(key) ?? 0) - 1;
    if (count > 0) {
      this.desired.set(key, count);
      return Promise.resolve();
    }
    this.desired.delete(key);
    return this.reconcile(key);
  }

  /** Resolves once the bind (or unbind) of the key now in flight is done. */
  settled(key: string): Promise<void> {
    return this.keyOps.get(key) ?? Promise.resolve();
  }

  wants(key: string): boolean {
    return this.desired.has(key);
  }

  keys(): string[] {
    return [...this.desired.keys()];
  }

  /** The connection is gone, and what was bound on it with it. */
  lost(): void {
    this.bound.clear();
  }

  /** After a reconnect: binds every desired key again on the new connection. */
  async replay(): Promise<void> {
    this.bound.clear();
    await Promise.all(this.keys().map((key) => this.reconcile(key)));
  }

  private reconcile(key: string): Promise<void> {
    const previous = this.keyOps.get(key) ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(async () => {
        const want = this.desired.has(key);
        const have = this.bound.has(key);
        if (want && !have) {
          await this.bindKey(key);
          this.bound.add(key);
        } else if (!want && have) {
          this.bound.delete(key);
          await this.unbindKey(key);
        }
      });
    this.keyOps.set(key, next);
    void next
      .finally(() => {
        if (this.keyOps.get(key) === next) this.keyOps.delete(key);
      })
      .catch(() => undefined);
    return next;
  }
}

/**
 * Which nodes hold which routing keys, as each node announced them (directory.ts keeps it): both
 * ways, so that a key's holders and a node's keys are each one lookup.
 */
export class DirectoryTable {
  /** routing key -> instances holding it */
  private readonly holders = new Map<string, Set<string>>();
  /** instance -> the keys it holds */
  private readonly byNode = new Map<string, Set<string>>();

  holdersOf(key: string): ReadonlySet<string> | undefined {
    return this.holders.get(key);
  }

  keysOf(instance: string): ReadonlySet<string> | undefined {
    return this.byNode.get(instance);
  }

  /** Every key held anywhere. */
  keys(): IterableIterator<string> {
    return this.holders.keys();
  }

  /** Distinct keys held anywhere that start with `prefix` (e.g. 'u.': the uids online). */
  countKeys(prefix: string): number {
    let n = 0;
    for (const key of this.holders.keys()) if (key.startsWith(prefix)) n += 1;
    return n;
  }

  add(instance: string, key: string): void {
    let keys = this.byNode.get(instance);
    if (keys === undefined) this.byNode.set(instance, (keys = new Set()));
    keys.add(key);
    let nodes = this.holders.get(key);
    if (nodes === undefined) this.holders.set(key, (nodes = new Set()));
    nodes.add(instance);
  }

  remove(instance: string, key: string): void {
    this.byNode.get(instance)?.delete(key);
    const nodes = this.holders.get(key);
    if (nodes === undefined) return;
    nodes.delete(instance);
    if (nodes.size === 0) this.holders.delete(key);
  }

  /** Forgets everything the node announced. */
  dropNode(instance: string): void {
    const keys = this.byNode.get(instance);
    if (keys === undefined) return;
    for (const key of keys) {
      const nodes = this.holders.get(key);
      nodes?.delete(instance);
      if (nodes?.size === 0) this.holders.delete(key);
    }
    this.byNode.delete(instance);
  }

  clear(): void {
    this.holders.clear();
    this.byNode.clear();
  }
}

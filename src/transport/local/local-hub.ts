/**
 * The in-process "broker" of the local bus: routing keys to the buses bound to them. One hub
 * per process by default, so several nodes in one process (tests, an embedded cluster) reach
 * each other exactly as they would through a broker in direct mode.
 */
import type { Command } from '../../protocol/commands.js';

export interface LocalSubscriber {
  accept(commands: Command[], sender: string, seq: number): void;
}

export class LocalHub {
  private readonly bindings = new Map<string, Set<LocalSubscriber>>();

  bind(key: string, subscriber: LocalSubscriber): void {
    let set = this.bindings.get(key);
    if (!set) this.bindings.set(key, (set = new Set()));
    set.add(subscriber);
  }

  unbind(key: string, subscriber: LocalSubscriber): void {
    const set = this.bindings.get(key);
    if (!set) return;
    set.delete(subscriber);
    if (set.size === 0) this.bindings.delete(key);
  }

  unbindAll(subscriber: LocalSubscriber): void {
    for (const key of [...this.bindings.keys()]) this.unbind(key, subscriber);
  }

  /** Each subscriber bound to any of the keys gets the commands once. */
  route(keys: readonly string[], commands: Command[], sender: string, seq: number): void {
    const targets = new Set<LocalSubscriber>();
    for (const key of keys) for (const s of this.bindings.get(key) ?? []) targets.add(s);
    for (const target of targets) target.accept(commands, sender, seq);
  }

  /** Number of bindings of a key (tests read it as they read the broker's bindings). */
  boundCount(key: string): number {
    return this.bindings.get(key)?.size ?? 0;
  }
}

export const defaultLocalHub = new LocalHub();

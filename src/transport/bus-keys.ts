/**
 * The bus's routing keys (direct mode): which keys this node holds (subscriptions.ts binds them
 * on the first holder and unbinds on the last), the keys a command is sent by, and the holder
 * directory's part in both (key-router.ts): it may route sends to node keys, and it is told of
 * every key this node takes on and lets go of. In fanout mode there are no keys.
 */
import type { Command } from '../protocol/commands.js';
import type { Route } from '../protocol/routes.js';
import { keyOfRoute, keyOfTarget, keysOfCommand, type KeyOptions } from '../protocol/routing-keys.js';
import type { BusMode } from '../protocol/routes.js';
import type { KeyAnnouncer, KeyRouter } from './key-router.js';
import { Subscriptions } from './subscriptions.js';

/** Fanout mode: commands have no routing keys (one shared, never modified, empty list). */
const NO_KEYS: string[] = [];

export class BusKeys {
  readonly subscriptions: Subscriptions;
  private router: KeyRouter | null = null;
  private announcer: KeyAnnouncer | null = null;

  constructor(
    private readonly options: KeyOptions & { mode: BusMode },
    bindKey: (key: string) => Promise<void>,
    unbindKey: (key: string) => Promise<void>,
  ) {
    this.subscriptions = new Subscriptions(bindKey, unbindKey);
  }

  /** Sends are routed by a holder directory now. */
  get nodeRouting(): boolean {
    return this.router !== null;
  }

  /** Routes sends through a holder directory (cluster/directory.ts), or by their own keys (null). */
  setRouter(router: KeyRouter | null): void {
    this.router = this.options.mode === 'direct' ? router : null;
  }

  /** Tells a holder directory of every key this node takes on and lets go of (null: none). */
  setAnnouncer(announcer: KeyAnnouncer | null): void {
    this.announcer = this.options.mode === 'direct' ? announcer : null;
  }

  /**
   * One more local holder of `route`; the first one binds its key. With a directory, resolves
   * once the bind is confirmed and every node routing by a directory knows.
   */
  hold(route: Route): Promise<void> {
    const key = this.keyOf(route);
    if (key === null) return Promise.resolve();
    const bound = this.subscriptions.hold(key);
    if (this.announcer === null) return bound;
    return Promise.all([bound, this.announcer.held(key)]).then(noop);
  }

  /** One local holder of `route` fewer; the last one unbinds its key. */
  release(route: Route): Promise<void> {
    const key = this.keyOf(route);
    if (key === null) return Promise.resolve();
    const unbound = this.subscriptions.release(key);
    if (this.announcer !== null && !this.subscriptions.wants(key)) this.announcer.released(key);
    return unbound;
  }

  /** Resolves once the bind (or unbind) of the route's key now in flight is done. */
  settled(route: Route): Promise<void> {
    const key = this.keyOf(route);
    return key === null ? Promise.resolve() : this.subscriptions.settled(key);
  }

  /** Whether a local holder wants `key` now. */
  holds(key: string): boolean {
    return this.subscriptions.wants(key);
  }

  /** The routing key of a route, or null in fanout mode (one binding for everything). */
  keyOf(route: Route): string | null {
    return this.options.mode === 'fanout' ? null : keyOfRoute(route, this.options);
  }

  /** A command's own keys (what the broker's bindings route). */
  keysOf(command: Command): string[] {
    return this.options.mode === 'fanout' ? NO_KEYS : keysOfCommand(command, this.options);
  }

  /** The keys a command is sent by: its holders' node keys where the directory knows them. */
  sendKeysOf(command: Command): string[] {
    if (this.options.mode === 'fanout') return NO_KEYS;
    const keys = keysOfCommand(command, this.options);
    return this.router?.route(keys) ?? keys;
  }

  /** The key of one target of a send ('' in fanout mode). */
  targetKey(op: number, target: string): string {
    return this.options.mode === 'fanout' ? '' : keyOfTarget(op, target, this.options);
  }
}

function noop(): void {}

/**
 * The bus: how processes reach each other. This abstract class holds everything that is the
 * same for every broker: batching of commands issued within one event-loop turn, the envelope
 * (encoding, signing, decoding, verification), routing keys, the reference-counted desired set
 * of subscriptions, the bounded buffer while disconnected, and counters.
 *
 * A broker implementation extends it and provides only:
 *   - connect():            connect, declare, subscribe the desired keys (via replaySubscriptions)
 *   - transmit(batch):      send one batch; resolve once the broker has it (confirm); while the
 *                           broker is unreachable, wait and send after the reconnect, in order
 *   - bindKey/unbindKey:    resolve once the broker confirmed; retry across reconnects
 *   - disconnect():         close everything
 * and calls receive(bytes, viaKey?) for every message it gets, and setConnected() on changes.
 * After every reconnect it calls replaySubscriptions(), which re-binds every desired key.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Op, type Command, type SendToClients, type SendToUids } from './commands.js';
import { decodeEnvelope, encodeEnvelope } from './envelope.js';
import { commandProblem } from './command-check.js';
import { routesOf, type Route } from './routes.js';
import { ownerOf } from '../cluster/identity.js';
import type { BusMode } from '../config/formats.js';
import { ErrorCodes, GatewireError, errorMessage } from '../errors.js';

export interface BusOptions {
  /** this process's instance tag */
  instance: string;
  mode: BusMode;
  /** '' leaves messages unsigned */
  secret: string;
  /** 0: one key per uid; N: uids hashed onto N keys */
  uidBuckets: number;
  groupBuckets: number;
  maxBufferedCommands: number;
  maxCommandsPerMessage: number;
}

/** One broker message on its way out. */
export interface OutgoingBatch {
  /** distinct routing keys of its commands (direct mode); empty in fanout mode */
  readonly keys: string[];
  readonly commands: Command[];
  /** the encoded envelope, made on first use */
  readonly body: Buffer;
}

export type CommandHandler = (commands: Command[], sender: string) => void;

export interface BusStats {
  messagesPublished: number;
  commandsPublished: number;
  messagesConsumed: number;
  commandsConsumed: number;
  /**
   * Targets of the commands consumed: a send to n uids, clients or groups counts n (merged sends
   * carry many), any other command 1. What direct mode saves shows here.
   */
  pushesConsumed: number;
  decodeErrors: number;
  signatureErrors: number;
  /** commands dropped alone for a field missing or of the wrong type */
  malformedCommands: number;
  reconnects: number;
  buffered: number;
}

interface Pending {
  command: Command;
  keys: string[];
  /** targets of a send merged from several calls (see merge), to refuse a repeated one */
  targets?: Set<string>;
}

/**
 * Most targets one merged send collects (fanout, or where a message carries many keys).
 * @default 1000 (about 20 KB of uids per command)
 */
const MERGE_LIMIT = 1000;

export abstract class Bus extends EventEmitter {
  readonly stats: BusStats = {
    messagesPublished: 0,
    commandsPublished: 0,
    messagesConsumed: 0,
    commandsConsumed: 0,
    pushesConsumed: 0,
    decodeErrors: 0,
    signatureErrors: 0,
    malformedCommands: 0,
    reconnects: 0,
    buffered: 0,
  };

  /**
   * How many distinct routing keys one broker message may carry. 1 for transports that publish
   * to one key at a time (a multi-key command is then sent once per key, and receivers apply it
   * once, see receive()); more where the broker copies a message to several keys (AMQP CC).
   */
  protected keysPerMessage = 1;

  private handler: CommandHandler | null = null;
  private pending: Pending[] = [];
  /**
   * The one promise of every command queued in this turn: they travel together and are
   * confirmed (or fail) together, so one promise serves them all (no promise per command).
   */
  private pendingDone: Deferred | null = null;
  private flushScheduled = false;
  private connected = false;
  private closed = false;
  /** commands published but not yet confirmed by the broker */
  private unconfirmed = 0;
  /** routing key -> number of local holders that want it */
  private readonly desired = new Map<string, number>();
  /** keys bound on the current connection */
  protected readonly bound = new Set<string>();
  private readonly keyOps = new Map<string, Promise<void>>();

  constructor(
    protected readonly options: BusOptions,
    protected readonly log: Logger,
  ) {
    super();
    // A bus error is reported, never thrown at the process.
    this.on('error', (err: Error) => this.log.error({ err }, 'bus error'));
  }

  get instance(): string {
    return this.options.instance;
  }

  get mode(): BusMode {
    return this.options.mode;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  onCommands(handler: CommandHandler): void {
    this.handler = handler;
  }

  /** Connects, and subscribes this node's own key and the broadcast key. */
  async start(): Promise<void> {
    // Fanout mode has no keys (keyOf is null): nothing to bind beyond the one fanout binding.
    const nodeKey = this.keyOf({ kind: 'node', node: this.instance });
    if (nodeKey !== null) this.desired.set(nodeKey, 1);
    const allKey = this.keyOf({ kind: 'all' });
    if (allKey !== null) this.desired.set(allKey, 1);
    await this.connect();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flushNow();
    this.closed = true;
    await this.disconnect();
    const err = new GatewireError(ErrorCodes.BUS_CLOSED, 'the bus was closed before the command was sent');
    this.pendingDone?.reject(err);
    this.pendingDone = null;
    this.pending = [];
  }

  /**
   * Queues a command; commands queued in the same event-loop turn travel together. Resolves once
   * the broker confirmed the message that carries it. Rejects at once with BUS_BUFFER_FULL
   * while disconnected with maxBufferedCommands commands waiting.
   */
  publish(command: Command): Promise<void> {
    if (this.closed) {
      return Promise.reject(new GatewireError(ErrorCodes.BUS_CLOSED, 'the bus is closed'));
    }
    if (!this.connected && this.unconfirmed + this.pending.length >= this.options.maxBufferedCommands) {
      return Promise.reject(
        new GatewireError(
          ErrorCodes.BUS_BUFFER_FULL,
          `the broker is unreachable and ${this.options.maxBufferedCommands} commands already wait (bus.maxBufferedCommands)`,
        ),
      );
    }
    const keys = this.keysOf(command);
    if (!this.merge(command, keys)) this.pending.push({ command, keys });
    this.stats.buffered = this.unconfirmed + this.pending.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.scheduledFlush);
    }
    this.pendingDone ??= deferred();
    return this.pendingDone.promise;
  }

  private readonly scheduledFlush = (): void => void this.flushNow();

  /** Holds `route` for one more local holder; the first holder binds its key (direct mode). */
  subscribe(route: Route): Promise<void> {
    const key = this.keyOf(route);
    if (key === null) return Promise.resolve();
    this.desired.set(key, (this.desired.get(key) ?? 0) + 1);
    return this.reconcile(key);
  }

  /** Releases `route` for one local holder; the last one unbinds its key. */
  unsubscribe(route: Route): Promise<void> {
    const key = this.keyOf(route);
    if (key === null) return Promise.resolve();
    const count = (this.desired.get(key) ?? 0) - 1;
    if (count > 0) {
      this.desired.set(key, count);
      return Promise.resolve();
    }
    this.desired.delete(key);
    return this.reconcile(key);
  }

  /** Resolves once the bind (or unbind) of the route's key now in flight is done. */
  subscribed(route: Route): Promise<void> {
    const key = this.keyOf(route);
    if (key === null) return Promise.resolve();
    return this.keyOps.get(key) ?? Promise.resolve();
  }

  /** The routing keys this node wants bound now. */
  desiredKeys(): string[] {
    return [...this.desired.keys()];
  }

  /**
   * The routing key of a route, or null in fanout mode (one binding for everything).
   * Keys: n.<instance>, all, u.<uid> or ub.<bucket>, g.<group> or gb.<bucket>.
   */
  keyOf(route: Route): string | null {
    if (this.options.mode === 'fanout') return null;
    switch (route.kind) {
      case 'node':
        return `n.${route.node}`;
      case 'all':
        return 'all';
      case 'uid':
        return this.uidKey(route.uid);
      case 'group':
        return this.options.groupBuckets > 0
          ? `gb.${bucketOf(route.group, this.options.groupBuckets)}`
          : `g.${route.group}`;
    }
  }

  private uidKey(uid: string): string {
    return this.options.uidBuckets > 0 ? `ub.${bucketOf(uid, this.options.uidBuckets)}` : `u.${uid}`;
  }

  // ---- for implementations -------------------------------------------------------------

  protected abstract connect(): Promise<void>;
  protected abstract disconnect(): Promise<void>;
  protected abstract transmit(batch: OutgoingBatch): Promise<void>;

  /**
   * Sends the batches of one turn, in order; resolves once all are confirmed. One promise per
   * batch by default; a transport that confirms many batches at once may override it.
   */
  protected transmitAll(batches: OutgoingBatch[]): Promise<unknown> {
    if (batches.length === 1) return this.transmit(batches[0]!);
    return Promise.all(batches.map((batch) => this.transmit(batch)));
  }
  protected abstract bindKey(key: string): Promise<void>;
  protected abstract unbindKey(key: string): Promise<void>;

  protected setConnected(connected: boolean): void {
    if (connected === this.connected) return;
    this.connected = connected;
    if (!connected) this.bound.clear();
    this.emit(connected ? 'connected' : 'disconnected');
  }

  /** After a reconnect: bind every desired key again on the new connection. */
  protected async replaySubscriptions(): Promise<void> {
    this.bound.clear();
    await Promise.all(this.desiredKeys().map((key) => this.reconcile(key)));
  }

  protected countReconnect(): void {
    this.stats.reconnects += 1;
  }

  /**
   * Handles one incoming broker message. `viaKey` is the key it arrived on, for transports
   * that publish a multi-key command once per key: the command is applied only for the first of
   * its keys this node holds, so a node holding several of them applies it once.
   */
  protected receive(data: Uint8Array, viaKey?: string): void {
    this.stats.messagesConsumed += 1;
    let decoded;
    try {
      decoded = decodeEnvelope(data, this.options.secret);
    } catch (err) {
      const code = (err as GatewireError).code;
      if (code === ErrorCodes.BUS_SIGNATURE) this.stats.signatureErrors += 1;
      else this.stats.decodeErrors += 1;
      this.log.warn({ code, err: errorMessage(err), bytes: data.length }, 'dropped an unreadable bus message');
      return;
    }
    let commands = decoded.commands;
    // A command with a field missing or of the wrong type is dropped alone (before anything,
    // the receive rule included, reads its fields); the rest of the message runs.
    if (commands.some((cmd) => commandProblem(cmd as unknown as Record<string, unknown>) !== null)) {
      commands = commands.filter((cmd) => {
        const problem = commandProblem(cmd as unknown as Record<string, unknown>);
        if (problem === null) return true;
        this.stats.malformedCommands += 1;
        this.log.warn({ op: cmd.op, problem, sender: decoded.sender }, 'dropped a malformed bus command');
        return false;
      });
    }
    // A command with one key arrived on that key; only one with several may arrive more than once.
    if (viaKey !== undefined && commands.some(hasSeveralKeys)) commands = commands.filter((cmd) => !hasSeveralKeys(cmd) || this.firstHeldKey(cmd) === viaKey);
    this.countConsumed(commands);
    if (commands.length > 0) this.deliver(commands, decoded.sender);
  }

  protected countConsumed(commands: Command[]): void {
    this.stats.commandsConsumed += commands.length;
    let pushes = 0;
    for (const cmd of commands) pushes += targetCount(cmd);
    this.stats.pushesConsumed += pushes;
  }

  /** Hands decoded commands to the node (also used by the in-process bus, which skips encoding). */
  protected deliver(commands: Command[], sender: string): void {
    try {
      this.handler?.(commands, sender);
    } catch (err) {
      this.log.error({ err }, 'command handler failed');
    }
  }

  // ---- internals -----------------------------------------------------------------------

  private keysOf(command: Command): string[] {
    if (this.options.mode === 'fanout') return NO_KEYS;
    // The common sends to one target, without building a route (a hot path in direct mode).
    if (command.op === Op.SEND_TO_UIDS && command.u.length === 1) return [this.uidKey(command.u[0]!)];
    if (command.op === Op.SEND_TO_CLIENTS && command.c.length === 1) return [`n.${ownerOf(command.c[0]!)}`];
    const routes = routesOf(command);
    if (routes.length === 1) return [this.keyOf(routes[0]!)!];
    const keys: string[] = [];
    for (const route of routes) {
      const key = this.keyOf(route)!;
      if (!keys.includes(key)) keys.push(key);
    }
    return keys;
  }

  /**
   * Folds a send into the send queued just before it when both carry the same data to the same
   * kind of target (uids, or client ids): an application that pushes one notification to many
   * users in a loop then costs one command, framed once on each gateway, instead of one per user.
   * Only adjacent sends are merged, so the order of everything a client receives is unchanged; a
   * target already in the merged send is not merged again (it must get the data twice); a client
   * has at most one uid, so no client gets a merged send twice. In direct mode the merged keys
   * must still fit in one broker message (keysPerMessage), so where each message carries one key
   * only sends to the same key merge.
   */
  private merge(command: Command, keys: string[]): boolean {
    if (command.op !== Op.SEND_TO_UIDS && command.op !== Op.SEND_TO_CLIENTS) return false;
    const last = this.pending[this.pending.length - 1];
    if (last === undefined || last.command.op !== command.op || last.command.d !== command.d) return false;
    const incoming = command.op === Op.SEND_TO_UIDS ? command.u : command.c;
    const prior = last.command as SendToUids | SendToClients;
    let list = prior.op === Op.SEND_TO_UIDS ? prior.u : prior.c;
    if (list.length + incoming.length > MERGE_LIMIT) return false;
    let added = 0;
    if (this.options.mode === 'direct') {
      for (const key of keys) if (!last.keys.includes(key)) added += 1;
      if (last.keys.length + added > this.keysPerMessage) return false;
    }
    let targets = last.targets;
    if (targets === undefined) {
      targets = new Set(list);
      // A private copy: the queued command may be the caller's object.
      list = [...list];
      last.command = prior.op === Op.SEND_TO_UIDS ? { op: Op.SEND_TO_UIDS, u: list, d: prior.d } : { op: Op.SEND_TO_CLIENTS, c: list, d: prior.d };
      last.keys = [...last.keys];
      last.targets = targets;
    }
    for (const target of incoming) if (targets.has(target)) return false;
    for (const target of incoming) {
      targets.add(target);
      list.push(target);
    }
    if (added > 0) for (const key of keys) if (!last.keys.includes(key)) last.keys.push(key);
    return true;
  }

  private firstHeldKey(command: Command): string | undefined {
    for (const key of this.keysOf(command)) if (this.desired.has(key)) return key;
    return undefined;
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

  private async flushNow(): Promise<void> {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const done = this.pendingDone;
    const count = this.pending.length;
    let batches: OutgoingBatch[] | null = this.toBatches(this.pending);
    this.pending = [];
    this.pendingDone = null;
    this.unconfirmed += count;
    const messages = batches.length;
    let commands = 0;
    for (const batch of batches) commands += batch.commands.length;
    try {
      const sent = this.transmitAll(batches);
      // Nothing here holds the commands while the broker confirms (many may be in flight).
      batches = null;
      await sent;
      this.stats.messagesPublished += messages;
      this.stats.commandsPublished += commands;
      done?.resolve();
    } catch (err) {
      const error =
        err instanceof GatewireError ? err : new GatewireError(ErrorCodes.BUS_BROKER, `publish failed: ${errorMessage(err)}`);
      done?.reject(error);
    } finally {
      this.unconfirmed -= count;
      this.stats.buffered = this.unconfirmed + this.pending.length;
    }
  }

  /**
   * Cuts the queued commands into broker messages, keeping their order: a message ends when it
   * holds maxCommandsPerMessage commands or its keys would pass keysPerMessage. A command with
   * more keys than one message may carry is sent once per key.
   */
  private toBatches(pending: Pending[]): OutgoingBatch[] {
    const batches: OutgoingBatch[] = [];
    const max = this.options.maxCommandsPerMessage;
    const keyLimit = this.keysPerMessage;
    let commands: Command[] = [];
    // The batch's distinct keys: a Set to look up (a batch may carry many), in order in `keys`.
    let keys: string[] = [];
    const keySet = new Set<string>();
    const close = (): void => {
      if (commands.length > 0) batches.push(this.makeBatch(keys, commands));
      commands = [];
      keys = [];
      keySet.clear();
    };
    for (const { command, keys: commandKeys } of pending) {
      if (commandKeys.length > keyLimit) {
        close();
        for (const key of commandKeys) batches.push(this.makeBatch([key], [command]));
        continue;
      }
      let added = 0;
      for (const key of commandKeys) if (!keySet.has(key)) added += 1;
      if (commands.length >= max || keySet.size + added > keyLimit) close();
      commands.push(command);
      for (const key of commandKeys) {
        if (keySet.has(key)) continue;
        keySet.add(key);
        keys.push(key);
      }
    }
    close();
    return batches;
  }

  private makeBatch(keys: string[], commands: Command[]): OutgoingBatch {
    return new Batch(keys, commands, this.options.instance, this.options.secret);
  }
}

/**
 * Whether a command may have several routing keys (sent once per key where a message carries one
 * key; see receive). Sends to clients have one key per owner node: several only if their ids
 * name more than one node.
 */
function hasSeveralKeys(cmd: Command): boolean {
  switch (cmd.op) {
    case Op.SEND_TO_UIDS:
      return cmd.u.length > 1;
    case Op.SEND_TO_GROUPS:
      return cmd.g.length > 1;
    case Op.SEND_TO_CLIENTS: {
      const c = cmd.c;
      if (c.length < 2) return false;
      const owner = ownerOf(c[0]!);
      for (let i = 1; i < c.length; i++) if (ownerOf(c[i]!) !== owner) return true;
      return false;
    }
    default:
      return false;
  }
}

function targetCount(cmd: Command): number {
  switch (cmd.op) {
    case Op.SEND_TO_UIDS:
      return cmd.u.length;
    case Op.SEND_TO_CLIENTS:
      return cmd.c.length;
    case Op.SEND_TO_GROUPS:
      return cmd.g.length;
    default:
      return 1;
  }
}

/** One broker message on its way out; the envelope is encoded on first use. */
class Batch implements OutgoingBatch {
  private encoded: Buffer | undefined;

  constructor(
    readonly keys: string[],
    readonly commands: Command[],
    private readonly sender: string,
    private readonly secret: string,
  ) {}

  get body(): Buffer {
    this.encoded ??= encodeEnvelope(this.sender, this.commands, this.secret);
    return this.encoded;
  }
}

/** Fanout mode: commands have no routing keys (one shared, never modified, empty list). */
const NO_KEYS: string[] = [];

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** FNV-1a over the UTF-8 bytes, modulo n: the bucket of a uid or group (docs/wire-format.md). */
export function bucketOf(value: string, n: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(value, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % n;
}

/**
 * The bus: how processes reach each other. This abstract class holds everything that is the
 * same for every broker: batching of commands issued within one event-loop turn, cutting them
 * into broker messages bounded in keys and bytes, the envelope (encoding, signing, decoding,
 * verification, at-most-once and order through replay-guard.ts), routing keys, the
 * reference-counted desired set of subscriptions, the bounded buffer while disconnected, and
 * counters.
 *
 * A broker implementation extends it and provides only:
 *   - connect():            connect, declare, subscribe the desired keys (via replaySubscriptions)
 *   - transmitAll(batches): send batches in order (batch.seal() gives the bytes to send, stamped
 *                           now, with the same sequence number every time); resolve once the
 *                           broker has them (confirm); while the broker is unreachable, wait and
 *                           send after the reconnect, in order
 *   - bindKey/unbindKey:    resolve once the broker confirmed; retry across reconnects
 *   - disconnect():         close everything
 * and calls receive(bytes, viaKey?) for every message it gets, and setConnected() on changes.
 * After every reconnect it calls replaySubscriptions(), which re-binds every desired key.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Op, type Command, type SendToClients, type SendToGroups, type SendToUids } from '../protocol/commands.js';
import { ENVELOPE_OVERHEAD, LEGACY_WIRE_VERSION, decodeEnvelope, legacyEnvelope, packCommands, sealEnvelope, type DecodedEnvelope } from '../protocol/envelope.js';
import { commandProblem } from '../protocol/command-check.js';
import { commandBytes, exactCommandBytes, listBytes } from '../protocol/command-size.js';
import { ReplayGuard, type Verdict } from './replay-guard.js';
import { routesOf, type BusMode, type Route } from '../protocol/routes.js';
import { ownerOf } from '../protocol/identity.js';
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
  /** this process's start (ms since 1970): the epoch of its messages. @default Date.now() */
  startedAt?: number;
  /** largest broker message in bytes; 0: the transport's default. @default 0 */
  maxMessageBytes?: number;
  /** clock difference tolerated between nodes (signed messages). @default 1000 */
  maxClockSkewMs?: number;
  /** oldest signed message accepted, ms. @default 300000 */
  maxMessageAgeMs?: number;
  /** senders whose sequence state is kept at once. @default 10000 */
  maxSenders?: number;
  /** with a secret, still read signed version-1 messages while 0.1 peers are live. @default false */
  acceptSignedV1?: boolean;
}

/** One broker message on its way out. */
export interface OutgoingBatch {
  /** distinct routing keys of its commands (direct mode); empty in fanout mode */
  readonly keys: string[];
  readonly commands: Command[];
  /**
   * The envelope to send now: stamped with the present time and, from the first call on, always
   * the same sequence number (so a retransmit is recognised by receivers).
   */
  seal(): Buffer;
  /**
   * seal() as a function that holds the packed commands only (not the command objects): for a
   * transport that keeps a message until the broker confirmed it.
   */
  sealer(): () => Buffer;
  /** upper bound of seal()'s length */
  readonly bytes: number;
}

export type CommandHandler = (commands: Command[], sender: string) => void;

/** What the broker says about a node's presence (its queue's consumer, its subscription). */
export type Presence = 'present' | 'absent' | 'unknown';

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
  /** messages dropped as repeats: seen already, or behind a later one of the same sender */
  duplicatesDropped: number;
  /** signed messages refused by their time or epoch: replays, captures from before this start */
  replaysRefused: number;
  /** version 1 messages refused (no 0.1 peer is live, or signed without bus.acceptSignedV1) */
  legacyRefused: number;
  /** messages the broker refused (too large for it): dropped, their callers told */
  messagesRefused: number;
  /** API calls refused because one command could not fit in a broker message */
  commandsTooLarge: number;
  reconnects: number;
  buffered: number;
}

interface Pending {
  command: Command;
  keys: string[];
  /** upper bound of the command's encoded size */
  bytes: number;
  /** targets of a send merged from several calls (see merge), to refuse a repeated one */
  targets?: Set<string>;
  /** a large command's own promise (it travels alone); null: the turn's shared promise */
  done: Deferred | null;
}

/**
 * Most targets one merged send collects (fanout, or where a message carries many keys).
 * @default 1000 (about 20 KB of uids per command)
 */
const MERGE_LIMIT = 1000;

/**
 * A command larger than this travels in a message of its own with a promise of its own, so that
 * a broker refusing it fails exactly its caller. @default 65536
 */
const SOLO_BYTES = 64 * 1024;

/** How often sender states that aged out are dropped (ms). */
const GUARD_SWEEP_MS = 30000;

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
    duplicatesDropped: 0,
    replaysRefused: 0,
    legacyRefused: 0,
    messagesRefused: 0,
    commandsTooLarge: 0,
    reconnects: 0,
    buffered: 0,
  };

  /**
   * How many distinct routing keys one broker message may carry. 1 for transports that publish
   * to one key at a time (a command for several keys is then split into one command per key);
   * more where the broker copies a message to several keys (AMQP CC).
   */
  protected keysPerMessage = 1;

  /** Largest broker message of this transport when bus.maxMessageBytes is 0. */
  protected defaultMaxMessageBytes = Number.POSITIVE_INFINITY;

  /** A lower limit the broker showed by refusing a message (0: none learned). */
  private brokerLimit = 0;

  /** The epoch of this process's messages and the sequence number of the last one sealed. */
  readonly epoch: number;
  private seq = 0;
  /** ids of calls split into several group sends (SendToGroups.k) */
  private splitCalls = 0;

  /** which incoming messages are new (replay-guard.ts) */
  readonly guard: ReplayGuard;
  private readonly guardSweep: NodeJS.Timeout;
  /** a 0.1 peer is live: version 1 is read and sent (when allowed, see legacyAllowed) */
  private legacyPeers = false;
  /** when refusals were last logged, so a flood of replays does not flood the log */
  private refusalLoggedAt = 0;

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
    this.epoch = options.startedAt ?? Date.now();
    this.guard = new ReplayGuard({
      signed: options.secret !== '',
      startedAt: this.epoch,
      maxClockSkewMs: options.maxClockSkewMs ?? 1000,
      maxAgeMs: options.maxMessageAgeMs ?? 300000,
      maxSenders: options.maxSenders ?? 10000,
    });
    this.guardSweep = setInterval(() => this.guard.sweep(), GUARD_SWEEP_MS);
    this.guardSweep.unref();
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

  /** Largest broker message now: the configured bound, the transport's default, or less if the broker showed less. */
  get maxMessageBytes(): number {
    const configured = this.options.maxMessageBytes || this.defaultMaxMessageBytes;
    return this.brokerLimit > 0 ? Math.min(configured, this.brokerLimit) : configured;
  }

  /** Bytes the commands of one broker message may take (the envelope around them excluded). */
  get maxCommandBytes(): number {
    return this.maxMessageBytes - this.envelopeOverhead;
  }

  /** Bytes of this process's envelope around the commands (an upper bound). */
  private get envelopeOverhead(): number {
    return ENVELOPE_OVERHEAD + 3 * this.instance.length + 5;
  }

  /**
   * Told by membership whether a peer on gatewire 0.1 (wire version 1) is live: during a rolling
   * upgrade this node then reads and sends version 1, where allowed (legacyAllowed).
   */
  setLegacyPeers(live: boolean): void {
    if (live === this.legacyPeers) return;
    this.legacyPeers = live;
    this.log.warn(
      { legacyPeers: live, allowed: this.legacyAllowed },
      live ? 'a gatewire 0.1 node is live: wire version 1 (no replay protection) in use while it is' : 'no gatewire 0.1 node is live any more: wire version 1 refused from now on',
    );
  }

  /** Version 1 messages may be read at all: unsigned clusters, or signed behind bus.acceptSignedV1. */
  get legacyAllowed(): boolean {
    return this.options.secret === '' || this.options.acceptSignedV1 === true;
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
    clearInterval(this.guardSweep);
    await this.disconnect();
    const err = new GatewireError(ErrorCodes.BUS_CLOSED, 'the bus was closed before the command was sent');
    this.pendingDone?.reject(err);
    for (const entry of this.pending) entry.done?.reject(err);
    this.pendingDone = null;
    this.pending = [];
  }

  /**
   * Queues a command; commands queued in the same event-loop turn travel together. Resolves once
   * the broker confirmed the messages that carry it. A send to many targets is cut into commands
   * that each reach only the targets of their own keys and fit one broker message. Rejects at
   * once with BUS_BUFFER_FULL while disconnected with maxBufferedCommands commands waiting, and
   * with MESSAGE_TOO_LARGE when a command cannot fit in one broker message.
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
    const budget = this.maxCommandBytes;
    let bytes = commandBytes(command);
    let done: Deferred | null = null;
    if (keys.length <= this.keysPerMessage && bytes <= budget) {
      // The hot path: one command that fits.
      if (bytes > SOLO_BYTES) {
        done = deferred();
        this.pending.push({ command, keys, bytes, done });
      } else if (!this.merge(command, keys, bytes, budget)) {
        this.pending.push({ command, keys, bytes, done: null });
      }
    } else {
      let parts: Pending[];
      try {
        parts = this.split(command, keys, bytes, budget);
      } catch (err) {
        if ((err as GatewireError).code === ErrorCodes.MESSAGE_TOO_LARGE) this.stats.commandsTooLarge += 1;
        return Promise.reject(err);
      }
      bytes = 0;
      for (const part of parts) bytes = Math.max(bytes, part.bytes);
      if (bytes > SOLO_BYTES) done = deferred();
      for (const part of parts) {
        part.done = done;
        if (done !== null || !this.merge(part.command, part.keys, part.bytes, budget)) this.pending.push(part);
      }
    }
    this.stats.buffered = this.unconfirmed + this.pending.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.scheduledFlush);
    }
    if (done !== null) return done.promise;
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
   * Whether another node still consumes from the broker (its queue has a consumer, its node
   * channel a subscriber): how a node that died without a word is told from a slow one before
   * membership times it out. 'unknown' where the transport cannot tell.
   */
  probe(_instance: string): Promise<Presence> {
    return Promise.resolve('unknown');
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
        return this.groupKey(route.group);
    }
  }

  private uidKey(uid: string): string {
    return this.options.uidBuckets > 0 ? `ub.${bucketOf(uid, this.options.uidBuckets)}` : `u.${uid}`;
  }

  private groupKey(group: string): string {
    return this.options.groupBuckets > 0 ? `gb.${bucketOf(group, this.options.groupBuckets)}` : `g.${group}`;
  }

  // ---- for implementations -------------------------------------------------------------

  protected abstract connect(): Promise<void>;
  protected abstract disconnect(): Promise<void>;

  /**
   * Sends the batches of one turn, in order; resolves once all are confirmed. A transport that
   * confirms many batches at once implements it with one promise for all.
   */
  protected abstract transmitAll(batches: OutgoingBatch[]): Promise<unknown>;
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
   * The broker refused a message for its size and said its limit: later messages are cut below
   * it (bus.maxMessageBytes stays the bound above).
   */
  protected learnBrokerLimit(bytes: number): void {
    if (bytes > 0 && (this.brokerLimit === 0 || bytes < this.brokerLimit)) {
      this.brokerLimit = bytes;
      this.log.warn({ brokerLimit: bytes, maxMessageBytes: this.maxMessageBytes }, 'the broker limits messages below bus.maxMessageBytes; cutting messages below its limit');
    }
  }

  /** A message the broker refused: counted (its callers are told by the transport's promise). */
  protected countRefused(bytes: number, reason: string): void {
    this.stats.messagesRefused += 1;
    this.log.error({ bytes, reason }, 'the broker refused a bus message; it is dropped and its callers are told');
  }

  /**
   * Handles one incoming broker message; true if it was new and applied. `viaKey` is the key it
   * arrived on, for transports that publish a multi-key command once per key: the command is
   * applied only for the first of its keys this node holds, so a node holding several of them
   * applies it once. A copy that this rule filters out entirely is not marked as seen.
   */
  protected receive(data: Uint8Array, viaKey?: string): boolean {
    this.stats.messagesConsumed += 1;
    let decoded: DecodedEnvelope;
    try {
      decoded = decodeEnvelope(data, this.options.secret);
    } catch (err) {
      const code = (err as GatewireError).code;
      if (code === ErrorCodes.BUS_SIGNATURE) this.stats.signatureErrors += 1;
      else this.stats.decodeErrors += 1;
      this.log.warn({ code, err: errorMessage(err), bytes: data.length }, 'dropped an unreadable bus message');
      return false;
    }
    if (decoded.version === LEGACY_WIRE_VERSION) {
      if (!this.acceptsLegacy(decoded.commands)) {
        this.stats.legacyRefused += 1;
        this.logRefusal('legacy', decoded);
        return false;
      }
    } else if (decoded.seq !== 0) {
      const verdict = this.guard.check(decoded);
      if (verdict !== 'new') {
        if (verdict === 'duplicate') this.stats.duplicatesDropped += 1;
        else this.stats.replaysRefused += 1;
        this.logRefusal(verdict, decoded);
        return false;
      }
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
    if (viaKey !== undefined && commands.some(hasSeveralKeys)) {
      const before = commands.length;
      commands = commands.filter((cmd) => !hasSeveralKeys(cmd) || this.firstHeldKey(cmd) === viaKey);
      // Every command was for another of this node's keys: its own copy is still to come.
      if (before > 0 && commands.length === 0) return false;
    }
    if (decoded.version !== LEGACY_WIRE_VERSION && decoded.seq !== 0) this.guard.accept(decoded);
    for (const cmd of commands) if (cmd.op === Op.LEAVE && cmd.i === decoded.sender) this.guard.left(decoded.sender);
    this.countConsumed(commands);
    if (commands.length > 0) this.deliver(commands, decoded.sender);
    return true;
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

  /** Version 1 is read while a 0.1 peer is live, and its announcements always (to learn of it). */
  private acceptsLegacy(commands: Command[]): boolean {
    if (!this.legacyAllowed) return false;
    return this.legacyPeers || commands.every((cmd) => cmd.op === Op.ANNOUNCE || cmd.op === Op.LEAVE);
  }

  /** Whether messages sealed now go out in version 1 (a 0.1 peer is live and it is allowed). */
  get sendsLegacy(): boolean {
    return this.legacyPeers && this.legacyAllowed;
  }

  /**
   * Seals packed commands for sending now: version 1 while a 0.1 peer is live (and the batch was
   * not sealed as version 2 before), else version 2 with the batch's sequence number, drawn from
   * this process's counter at its first seal, so sequence numbers follow the order of sending.
   */
  private readonly sealer: Sealer = (body, seq) => {
    const secret = this.options.secret;
    if (seq === 0 && this.sendsLegacy) return { envelope: legacyEnvelope(this.instance, body, secret), seq: 0 };
    if (seq === 0) {
      this.seq += 1;
      seq = this.seq;
    }
    return { envelope: sealEnvelope({ sender: this.instance, epoch: this.epoch, seq, time: Date.now() }, body, secret), seq };
  };

  private batch(keys: string[], commands: Command[], bytes: number, done: Deferred | null): Batch {
    return new Batch(keys, commands, bytes, done, this.sealer, this.envelopeOverhead);
  }

  /**
   * An envelope without commands and without a sequence number (a transport's own signals, such
   * as AMQP readiness): receivers verify it but never count it as a message of the sequence.
   */
  protected sealSignal(): Buffer {
    return sealEnvelope({ sender: this.instance, epoch: this.epoch, seq: 0, time: Date.now() }, EMPTY_COMMANDS, this.options.secret);
  }

  private logRefusal(verdict: Verdict | 'legacy', decoded: DecodedEnvelope): void {
    const now = Date.now();
    const fields = { verdict, sender: decoded.sender.slice(0, 64), epoch: decoded.epoch, seq: decoded.seq, time: decoded.time };
    // Repeats after a reconnect are normal (debug); anything else is worth a warning, at most
    // one a second (a flood of replays must not flood the log; the counters have them all).
    if (verdict === 'duplicate') {
      this.log.debug(fields, 'dropped a repeated bus message');
    } else if (now - this.refusalLoggedAt >= 1000) {
      this.refusalLoggedAt = now;
      this.log.warn(fields, 'refused a bus message (replayed, stale or from an unknown wire version)');
    }
  }

  private keysOf(command: Command): string[] {
    if (this.options.mode === 'fanout') return NO_KEYS;
    // The common sends to one target, without building a route (a hot path in direct mode).
    if (command.op === Op.SEND_TO_UIDS && command.u.length === 1) return [this.uidKey(command.u[0]!)];
    if (command.op === Op.SEND_TO_CLIENTS && command.c.length === 1) return [`n.${ownerOf(command.c[0]!)}`];
    const routes = routesOf(command);
    if (routes.length === 1) return [this.keyOf(routes[0]!)!];
    const keys: string[] = [];
    const seen = new Set<string>();
    for (const route of routes) {
      const key = this.keyOf(route)!;
      if (seen.has(key)) continue;
      seen.add(key);
      keys.push(key);
    }
    return keys;
  }

  /** The key of one target of a send (direct mode), or '' in fanout mode. */
  private targetKey(op: number, target: string): string {
    if (this.options.mode === 'fanout') return '';
    if (op === Op.SEND_TO_UIDS) return this.uidKey(target);
    if (op === Op.SEND_TO_GROUPS) return this.groupKey(target);
    return `n.${ownerOf(target)}`;
  }

  /**
   * Cuts a send to many targets into commands that each carry only the targets of their own keys,
   * at most keysPerMessage keys and `budget` bytes each, in the order of the targets' keys: bytes
   * on the bus grow with the number of targets, not with its square. Sends to groups that need
   * several commands carry the call's id (k), so a client in groups of two of them gets the
   * payload once. Any other command that does not fit is refused (MESSAGE_TOO_LARGE).
   */
  private split(command: Command, keys: string[], estimate: number, budget: number): Pending[] {
    let targets: string[];
    if (command.op === Op.SEND_TO_UIDS) targets = command.u;
    else if (command.op === Op.SEND_TO_GROUPS) targets = command.g;
    else if (command.op === Op.SEND_TO_CLIENTS) targets = command.c;
    else {
      const exact = estimate > budget ? exactCommandBytes(command) : estimate;
      if (exact > budget) throw this.tooLarge(command, exact);
      return [{ command, keys, bytes: exact, done: null }];
    }
    let base = estimate - listBytes(targets) + 5;
    if (base > budget) {
      // The bound says no; the exact size of the command without its targets decides.
      base = exactCommandBytes({ ...command, [command.op === Op.SEND_TO_UIDS ? 'u' : command.op === Op.SEND_TO_GROUPS ? 'g' : 'c']: [] } as Command);
      if (base > budget) throw this.tooLarge(command, base + listBytes(targets));
    }
    // Targets by key, keys in order of first appearance.
    const byKey = new Map<string, string[]>();
    for (const target of targets) {
      const key = this.targetKey(command.op, target);
      const list = byKey.get(key);
      if (list === undefined) byKey.set(key, [target]);
      else list.push(target);
    }
    const parts: Pending[] = [];
    let partKeys: string[] = [];
    let partTargets: string[] = [];
    let bytes = base;
    const close = (): void => {
      if (partTargets.length === 0) return;
      parts.push({ command: withTargets(command, partTargets), keys: partKeys, bytes, done: null });
      partKeys = [];
      partTargets = [];
      bytes = base;
    };
    const keyLimit = this.options.mode === 'fanout' ? Number.POSITIVE_INFINITY : this.keysPerMessage;
    for (const [key, list] of byKey) {
      if (partKeys.length >= keyLimit) close();
      if (key !== '') partKeys.push(key);
      for (const target of list) {
        const size = 3 * target.length + 5;
        if (partTargets.length > 0 && bytes + size > budget) {
          close();
          if (key !== '') partKeys.push(key);
        }
        partTargets.push(target);
        bytes += size;
      }
    }
    close();
    for (const part of parts) if (part.bytes > budget) throw this.tooLarge(command, part.bytes);
    if (command.op === Op.SEND_TO_GROUPS && parts.length > 1) {
      this.splitCalls += 1;
      for (const part of parts) (part.command as SendToGroups).k = this.splitCalls;
    }
    return parts;
  }

  private tooLarge(command: Command, bytes: number): GatewireError {
    return new GatewireError(
      ErrorCodes.MESSAGE_TOO_LARGE,
      `a bus command (op ${command.op}) of ${bytes} bytes cannot fit in one broker message of ${this.maxMessageBytes} bytes (bus.maxMessageBytes); send less data per call`,
    );
  }

  /**
   * Folds a send into the send queued just before it when both carry the same data to the same
   * kind of target (uids, or client ids): an application that pushes one notification to many
   * users in a loop then costs one command, framed once on each gateway, instead of one per user.
   * Only adjacent sends are merged, so the order of everything a client receives is unchanged; a
   * target already in the merged send is not merged again (it must get the data twice); a client
   * has at most one uid, so no client gets a merged send twice. In direct mode the merged keys
   * must still fit in one broker message (keysPerMessage), so where each message carries one key
   * only sends to the same key merge; the merged command must fit the byte budget too.
   */
  private merge(command: Command, keys: string[], bytes: number, budget: number): boolean {
    if (command.op !== Op.SEND_TO_UIDS && command.op !== Op.SEND_TO_CLIENTS) return false;
    const last = this.pending[this.pending.length - 1];
    if (last === undefined || last.done !== null || last.command.op !== command.op || last.command.d !== command.d) return false;
    const incoming = command.op === Op.SEND_TO_UIDS ? command.u : command.c;
    const prior = last.command as SendToUids | SendToClients;
    let list = prior.op === Op.SEND_TO_UIDS ? prior.u : prior.c;
    if (list.length + incoming.length > MERGE_LIMIT) return false;
    const added = listBytes(incoming) - 5;
    if (last.bytes + added > budget || bytes > budget) return false;
    let addedKeys = 0;
    if (this.options.mode === 'direct') {
      for (const key of keys) if (!last.keys.includes(key)) addedKeys += 1;
      if (last.keys.length + addedKeys > this.keysPerMessage) return false;
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
    last.bytes += added;
    if (addedKeys > 0) for (const key of keys) if (!last.keys.includes(key)) last.keys.push(key);
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
    const shared = this.pendingDone;
    const count = this.pending.length;
    let batches: Batch[] | null = this.toBatches(this.pending);
    this.pending = [];
    this.pendingDone = null;
    this.unconfirmed += count;
    // Runs of batches under one promise: the turn's shared one, or a large command's own.
    const sharedRuns: Promise<void>[] = [];
    const sent: Promise<void>[] = [];
    let start = 0;
    for (let i = 1; i <= batches.length; i++) {
      if (i < batches.length && batches[i]!.done === batches[start]!.done) continue;
      const own = batches[start]!.done;
      const outcome = this.transmitRun(start === 0 && i === batches.length ? batches : batches.slice(start, i));
      sent.push(outcome.then(noop, noop));
      if (own === null) sharedRuns.push(outcome);
      else outcome.then(() => own.resolve(), (err: Error) => own.reject(err));
      start = i;
    }
    // Nothing here holds the commands while the broker confirms (many may be in flight).
    batches = null;
    if (shared !== null) {
      if (sharedRuns.length === 1) sharedRuns[0]!.then(() => shared.resolve(), (err: Error) => shared.reject(err));
      else Promise.all(sharedRuns).then(() => shared.resolve(), (err: Error) => shared.reject(err));
    }
    try {
      await (sent.length === 1 ? sent[0] : Promise.all(sent));
    } finally {
      this.unconfirmed -= count;
      this.stats.buffered = this.unconfirmed + this.pending.length;
    }
  }

  /**
   * One transmitAll; counts what the broker confirmed; rejects with a GatewireError. Keeps only
   * counts, not the batches, while the broker confirms.
   */
  private transmitRun(batches: Batch[]): Promise<void> {
    let commands = 0;
    for (const batch of batches) commands += batch.commands.length;
    const messages = batches.length;
    let sending: Promise<unknown>;
    try {
      sending = this.transmitAll(batches);
    } catch (err) {
      return Promise.reject(asBusError(err));
    }
    return sending.then(
      () => {
        this.stats.messagesPublished += messages;
        this.stats.commandsPublished += commands;
      },
      (err: unknown) => {
        throw asBusError(err);
      },
    );
  }

  /**
   * Cuts the queued commands into broker messages, keeping their order: a message ends when it
   * holds maxCommandsPerMessage commands, when its keys would pass keysPerMessage or its bytes the
   * budget, and around a large command (which travels alone). A command with more keys than one
   * message may carry (keysPerMessage dropped between publish and flush) is sent once per key.
   */
  private toBatches(pending: Pending[]): Batch[] {
    const batches: Batch[] = [];
    const max = this.options.maxCommandsPerMessage;
    const keyLimit = this.keysPerMessage;
    const budget = this.maxCommandBytes;
    let commands: Command[] = [];
    let bytes = 0;
    // The batch's distinct keys: a Set to look up (a batch may carry many), in order in `keys`.
    let keys: string[] = [];
    const keySet = new Set<string>();
    const close = (): void => {
      if (commands.length > 0) batches.push(this.batch(keys, commands, bytes, null));
      commands = [];
      keys = [];
      bytes = 0;
      keySet.clear();
    };
    for (const entry of pending) {
      const { command, keys: commandKeys } = entry;
      if (entry.done !== null) {
        close();
        batches.push(this.batch(commandKeys, [command], entry.bytes, entry.done));
        continue;
      }
      if (commandKeys.length > keyLimit) {
        close();
        for (const key of commandKeys) batches.push(this.batch([key], [command], entry.bytes, null));
        continue;
      }
      let added = 0;
      for (const key of commandKeys) if (!keySet.has(key)) added += 1;
      if (commands.length >= max || keySet.size + added > keyLimit || (commands.length > 0 && bytes + entry.bytes > budget)) close();
      commands.push(command);
      bytes += entry.bytes;
      for (const key of commandKeys) {
        if (keySet.has(key)) continue;
        keySet.add(key);
        keys.push(key);
      }
    }
    close();
    return batches;
  }
}

function noop(): void {}

function asBusError(err: unknown): GatewireError {
  return err instanceof GatewireError ? err : new GatewireError(ErrorCodes.BUS_BROKER, `publish failed: ${errorMessage(err)}`);
}

/** The same send with other targets (a part of a split call). */
function withTargets(command: SendToUids | SendToGroups | SendToClients, targets: string[]): Command {
  switch (command.op) {
    case Op.SEND_TO_UIDS:
      return { op: Op.SEND_TO_UIDS, u: targets, d: command.d };
    case Op.SEND_TO_CLIENTS:
      return { op: Op.SEND_TO_CLIENTS, c: targets, d: command.d };
    case Op.SEND_TO_GROUPS:
      return command.x !== undefined ? { op: Op.SEND_TO_GROUPS, g: targets, d: command.d, x: command.x } : { op: Op.SEND_TO_GROUPS, g: targets, d: command.d };
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

/** Seals packed commands: (body, sequence number or 0 for a first seal) -> envelope and its sequence number. */
type Sealer = (body: Buffer, seq: number) => { envelope: Buffer; seq: number };

/**
 * One broker message on its way out. The commands are packed once, on first use; the envelope
 * around them is sealed at every (re)send, with the present time and the sequence number it got
 * the first time.
 */
class Batch implements OutgoingBatch {
  private body: Buffer | undefined;
  private seq = 0;

  constructor(
    readonly keys: string[],
    readonly commands: Command[],
    private readonly estimate: number,
    /** a large command's own promise, or null for the turn's */
    readonly done: Deferred | null,
    private readonly sealWith: Sealer,
    private readonly overhead: number,
  ) {}

  get bytes(): number {
    return (this.body?.length ?? this.estimate) + this.overhead;
  }

  seal(): Buffer {
    this.body ??= packCommands(this.commands);
    const { envelope, seq } = this.sealWith(this.body, this.seq);
    this.seq = seq;
    return envelope;
  }

  sealer(): () => Buffer {
    const body = (this.body ??= packCommands(this.commands));
    const sealWith = this.sealWith;
    let seq = this.seq;
    return () => {
      const sealed = sealWith(body, seq);
      seq = sealed.seq;
      return sealed.envelope;
    };
  }
}

/** The packed empty command list. */
const EMPTY_COMMANDS = packCommands([]);

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
  // A large command's own promise may be rejected before its caller awaits it.
  promise.catch(() => undefined);
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

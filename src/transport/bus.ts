/**
 * The bus: how processes reach each other (DESIGN §1, §5; docs/architecture.md). One class for
 * every broker, above a Transport (transport.ts) that only moves bytes:
 *   - publish: the commands of a turn, merged, split and cut into bounded broker messages
 *     (send-queue.ts), sealed with this process's epoch and sequence numbers (envelope.ts);
 *   - subscriptions: the routing keys this node holds, bound on the first holder and unbound on
 *     the last, all bound again after a reconnect (subscriptions.ts);
 *   - receive: decoded, verified, new messages only, in order per sender (inbound.ts,
 *     replay-guard.ts), handed to the node;
 *   - counters (BusStats), the rolling-upgrade state (wire version 1), and what the transport
 *     learned of the broker (a message limit, a node's presence).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Command } from '../protocol/commands.js';
import { ENVELOPE_OVERHEAD, legacyEnvelope, packCommands, sealEnvelope } from '../protocol/envelope.js';
import type { BusMode, Route } from '../protocol/routes.js';
import { BROADCAST_KEY, nodeKey } from '../protocol/routing-keys.js';
import { ErrorCodes, GatewireError, errorMessage } from '../errors.js';
import { ReplayGuard } from './replay-guard.js';
import { Batch, type Deferred, type Sealer } from './outgoing-batch.js';
import { SendQueue } from './send-queue.js';
import { BusKeys } from './bus-keys.js';
import { Inbound } from './inbound.js';
import type { Presence, Transport, TransportHooks } from './transport.js';

export type { OutgoingBatch, Presence, Transport, TransportHooks } from './transport.js';
export type { BusOptions, BusStats } from './bus-options.js';
import type { BusOptions, BusStats } from './bus-options.js';

/** `seq`: the bus message's sequence number from its sender (0: none, a version 1 message). */
export type CommandHandler = (commands: Command[], sender: string, seq: number) => void;

/** How often sender states that aged out are dropped (ms). */
const GUARD_SWEEP_MS = 30000;

/** The packed empty command list. */
const EMPTY_COMMANDS = packCommands([]);

export class Bus extends EventEmitter {
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

  /** The epoch of this process's messages. */
  readonly epoch: number;
  /** which incoming messages are new (replay-guard.ts) */
  readonly guard: ReplayGuard;
  private readonly guardSweep: NodeJS.Timeout;
  private seq = 0;
  /** A lower limit the broker showed by refusing a message (0: none learned). */
  private brokerLimit = 0;
  /** a 0.1 peer is live: version 1 is read and sent (when allowed, see legacyAllowed) */
  private legacy = false;
  private handler: CommandHandler | null = null;
  /** the sequence number of the last message applied from each sender (gateway/takeover.ts) */
  readonly lastApplied = new Map<string, number>();
  private connected = false;
  private closed = false;
  private readonly queue: SendQueue;
  /** the routing keys held, and what commands are sent by (direct mode) */
  readonly keys: BusKeys;
  private readonly inbound: Inbound;

  constructor(
    readonly options: BusOptions,
    readonly log: Logger,
    /** the broker adapter (transport.ts) */
    readonly transport: Transport,
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
    const bus = this;
    this.queue = new SendQueue({
      options,
      stats: this.stats,
      get isConnected() {
        return bus.connected;
      },
      get keysPerMessage() {
        return bus.keysPerMessage;
      },
      get maxMessageBytes() {
        return bus.maxMessageBytes;
      },
      get maxCommandBytes() {
        return bus.maxCommandBytes;
      },
      keysOf: (command) => this.keys.sendKeysOf(command),
      get nodeRouting() {
        return bus.keys.nodeRouting;
      },
      targetKey: (op, target) => this.keys.targetKey(op, target),
      batch: (keys, commands, bytes, done) => this.batch(keys, commands, bytes, done),
      transmitAll: (batches) => this.transport.transmitAll(batches),
    });
    this.keys = new BusKeys(
      options,
      (key) => this.transport.bindKey(key),
      (key) => this.transport.unbindKey(key),
    );
    this.inbound = new Inbound({
      options,
      stats: this.stats,
      log,
      guard: this.guard,
      get legacyAllowed() {
        return bus.legacyAllowed;
      },
      get legacyPeers() {
        return bus.legacy;
      },
      firstHeldKey: (command) => {
        for (const key of this.keys.keysOf(command)) if (this.keys.holds(key)) return key;
        return undefined;
      },
      deliver: (commands, sender, seq) => this.deliver(commands, sender, seq),
    });
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

  /** How many distinct routing keys one broker message may carry now (the transport's say). */
  get keysPerMessage(): number {
    return this.transport.keysPerMessage;
  }

  /** Largest broker message now: the configured bound, the transport's default, or less if the broker showed less. */
  get maxMessageBytes(): number {
    const configured = this.options.maxMessageBytes || this.transport.defaultMaxMessageBytes;
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

  // ---- rolling upgrade (wire version 1) --------------------------------------------------

  /**
   * Told by membership whether a peer on gatewire 0.1 (wire version 1) is live: during a rolling
   * upgrade this node then reads and sends version 1, where allowed (legacyAllowed).
   */
  setLegacyPeers(live: boolean): void {
    if (live === this.legacy) return;
    this.legacy = live;
    this.log.warn(
      { legacyPeers: live, allowed: this.legacyAllowed },
      live
        ? 'a gatewire 0.1 node is live: wire version 1 (no replay protection) in use while it is'
        : 'no gatewire 0.1 node is live any more: wire version 1 refused from now on',
    );
  }

  /** Version 1 messages may be read at all: unsigned clusters, or signed behind bus.acceptSignedV1. */
  get legacyAllowed(): boolean {
    return this.options.secret === '' || this.options.acceptSignedV1 === true;
  }

  /** Whether messages sealed now go out in version 1 (a 0.1 peer is live and it is allowed). */
  get sendsLegacy(): boolean {
    return this.legacy && this.legacyAllowed;
  }

  // ---- peers (membership tells the transport, which may need them) -----------------------

  peerAnnounced(instance: string, uids: number, groups: number): void {
    this.transport.peerAnnounced(instance, uids, groups);
  }

  peerLeft(instance: string): void {
    this.transport.peerLeft(instance);
  }

  // ---- life cycle ------------------------------------------------------------------------

  onCommands(handler: CommandHandler): void {
    this.handler = handler;
  }

  /** Connects, and subscribes this node's own key and the broadcast key. */
  async start(): Promise<void> {
    // Fanout mode has no keys: nothing to bind beyond the transport's one fanout binding.
    if (this.mode === 'direct') {
      this.keys.subscriptions.always(nodeKey(this.instance));
      this.keys.subscriptions.always(BROADCAST_KEY);
    }
    await this.transport.connect(this.hooks);
  }

  /**
   * Closes the bus: what the turn queued goes out first; while the broker is unreachable, what
   * waits is rejected with BUS_CLOSED at once (a shutdown must not wait for a broker that may
   * never come back), else the transport waits a bounded time for its confirms.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.transport.closing();
    await this.queue.close();
    clearInterval(this.guardSweep);
    await this.transport.disconnect();
    this.queue.failQueued(new GatewireError(ErrorCodes.BUS_CLOSED, 'the bus was closed before the command was sent'));
  }

  /**
   * Queues a command; commands queued in the same event-loop turn travel together. Resolves once
   * the broker confirmed the messages that carry it (send-queue.ts).
   */
  publish(command: Command): Promise<void> {
    return this.queue.publish(command);
  }

  // ---- subscriptions (bus-keys.ts) ---------------------------------------------------------

  subscribe(route: Route): Promise<void> {
    return this.keys.hold(route);
  }
  unsubscribe(route: Route): Promise<void> {
    return this.keys.release(route);
  }
  subscribed(route: Route): Promise<void> {
    return this.keys.settled(route);
  }
  /** The routing keys this node wants bound now. */
  desiredKeys(): string[] {
    return this.keys.subscriptions.keys();
  }
  keyOf(route: Route): string | null {
    return this.keys.keyOf(route);
  }

  /**
   * Whether another node still consumes from the broker (its queue has a consumer, its node
   * channel a subscriber): how a node that died without a word is told from a slow one before
   * membership times it out. 'unknown' where the transport cannot tell.
   */
  probe(instance: string): Promise<Presence> {
    return this.transport.probe(instance);
  }

  // ---- what the transport calls --------------------------------------------------------

  private readonly hooks: TransportHooks = (() => {
    const bus = this;
    return {
      get isConnected() {
        return bus.connected;
      },
      receive: (data, viaKey) => this.inbound.receive(data, viaKey),
      receiveDecoded: (commands, sender, seq) => {
        this.stats.messagesConsumed += 1;
        this.inbound.countConsumed(commands);
        this.deliver(commands, sender, seq);
      },
      setConnected: (connected) => this.setConnected(connected),
      replaySubscriptions: () => this.keys.subscriptions.replay(),
      desiredKeys: () => this.keys.subscriptions.keys(),
      countReconnect: () => {
        this.stats.reconnects += 1;
      },
      learnBrokerLimit: (bytes) => this.learnBrokerLimit(bytes),
      countRefused: (bytes, reason) => {
        this.stats.messagesRefused += 1;
        this.log.error({ bytes, reason }, 'the broker refused a bus message; it is dropped and its callers are told');
      },
      sealSignal: () => this.sealSignal(),
      error: (err) =>
        this.emit(
          'error',
          err instanceof Error ? err : new GatewireError(ErrorCodes.BUS_BROKER, errorMessage(err), { cause: err }),
        ),
    };
  })();

  private setConnected(connected: boolean): void {
    if (connected === this.connected) return;
    this.connected = connected;
    if (!connected) this.keys.subscriptions.lost();
    this.emit(connected ? 'connected' : 'disconnected');
  }

  /**
   * The broker refused a message for its size and said its limit: later messages are cut below
   * it (bus.maxMessageBytes stays the bound above).
   */
  private learnBrokerLimit(bytes: number): void {
    if (bytes > 0 && (this.brokerLimit === 0 || bytes < this.brokerLimit)) {
      this.brokerLimit = bytes;
      this.log.warn(
        { brokerLimit: bytes, maxMessageBytes: this.maxMessageBytes },
        'the broker limits messages below bus.maxMessageBytes; cutting messages below its limit',
      );
    }
  }

  /** Hands decoded commands to the node. */
  private deliver(commands: Command[], sender: string, seq: number): void {
    if (seq > 0) this.lastApplied.set(sender, seq);
    try {
      this.handler?.(commands, sender, seq);
    } catch (err) {
      this.log.error({ err }, 'command handler failed');
    }
  }

  // ---- sealing ---------------------------------------------------------------------------

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
    const header = { sender: this.instance, epoch: this.epoch, seq, time: Date.now() };
    return { envelope: sealEnvelope(header, body, secret), seq };
  };

  private batch(keys: string[], commands: Command[], bytes: number, done: Deferred | null): Batch {
    return new Batch(keys, commands, bytes, done, this.sealer, this.envelopeOverhead);
  }

  /**
   * An envelope without commands and without a sequence number (a transport's own signals, such
   * as AMQP readiness): receivers verify it but never count it as a message of the sequence.
   */
  private sealSignal(): Buffer {
    const header = { sender: this.instance, epoch: this.epoch, seq: 0, time: Date.now() };
    return sealEnvelope(header, EMPTY_COMMANDS, this.options.secret);
  }
}

export { bucketOf } from '../protocol/routing-keys.js';

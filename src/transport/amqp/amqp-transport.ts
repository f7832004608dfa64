/**
 * The RabbitMQ bus (AMQP 0-9-1, amqplib), in fanout or direct mode (DESIGN §1, §5;
 * docs/wire-format.md is the contract for other languages).
 *
 * One connection per process, named `gatewire-<instance>` (client property connection_name, as
 * rabbitmqctl list_connections and the management UI show it), with:
 *   - a consumer channel: declares the exchange and the process's queue, consumes with prefetch;
 *   - a confirm channel: publishes, in order, with publisher confirms (ConfirmOutbox);
 *   - BIND_CHANNELS binder channels: queue.bind/unbind of the desired keys (direct mode). A
 *     channel runs one RPC at a time, and RabbitMQ applies binds at about 2,000/s per channel
 *     and 4,700/s per broker, so a few channels in parallel let a login storm or the replay of
 *     every key after a reconnect go at the broker's pace. A key always uses the same channel.
 *
 * Recovery is this file's own loop rather than amqplib's opt-in `recovery` option: that option
 * re-opens the connection only, while here the loss of any one channel (a server-side channel
 * error, a consumer cancelled because the queue was deleted) must rebuild everything too, and
 * the steps after a reconnect must run in a fixed order. Any loss of the connection or one of
 * its channels closes the whole connection and starts one loop, with backoff and jitter
 * (backoff.ts), that on success runs:
 *   declare exchange + the process's queue (it usually survived the loss, see amqp-topology.ts)
 *   -> unbind keys released while down -> replaySubscriptions() (every desired key, the node key
 *   and `all` included; binding is idempotent) -> consume -> READY to the peers and wait for theirs (peer-barrier.ts)
 *   -> publish what waited (unconfirmed first, in order) -> connected.
 *
 * While disconnected, published commands wait in the ConfirmOutbox (bounded by the base class's
 * bus.maxBufferedCommands); bindKey waits for the next connection; a key released meanwhile is
 * unbound right after the reconnect. Messages other nodes publish to this node while it is away
 * wait in its queue; those it had received but not acknowledged are delivered again, and
 * dropped by the sequence check of the base class (replay-guard.ts) if they were applied.
 */
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { BusOptions } from '../bus.js';
import type { OutgoingBatch, Presence, Transport, TransportHooks } from '../transport.js';
import { bucketOf, nodeKey, BROADCAST_KEY } from '../../protocol/routing-keys.js';
import type { BackoffOptions } from './backoff.js';
import { ReconnectLoop, ReconnectStopped } from './reconnect-loop.js';
import {
  checkBindableKey,
  closeConnection,
  declareTopology,
  isRoutableKey,
  nodeQueueName,
  withHeartbeat,
} from './amqp-topology.js';
import { ConfirmOutbox, type OutboxMessage } from './confirm-outbox.js';
import { PeerBarrier } from './peer-barrier.js';
import { CcPolicy } from './cc-policy.js';
import { decodeEnvelope } from '../../protocol/envelope.js';
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';

export interface AmqpBusOptions {
  /** amqp://user:pass@host:port/vhost (query: heartbeat, frameMax, …). */
  url: string;
  /** exchange name prefix; the mode is appended. @default 'gatewire' */
  exchange: string;
  /** unacknowledged messages the broker may push to this node. @default 256 */
  prefetch: number;
  /** reconnect delays. @default { initialMs: 100, maxMs: 5000, factor: 2, jitter: 0.3 } */
  backoff?: BackoffOptions;
  /** ms close() waits for outstanding confirms while connected. @default 5000 */
  closeTimeoutMs?: number;
  /** ms a TCP connect + AMQP handshake may take. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * ms the broker keeps this process's queue without a consumer (x-expires): long enough to
   * outlast any reconnect, so nothing pushed meanwhile is lost. @default 60000
   */
  queueExpiresMs?: number;
  /**
   * ms a reconnected node waits for its peers' READY before flushing what waited
   * (peer-barrier.ts). @default 10000 (the DI module passes cluster.nodeTimeout + 5000)
   */
  peerWaitMs?: number;
  /**
   * bytes of messages this process's queue holds before the broker drops the oldest
   * (x-max-length-bytes). @default 268435456 (256 MiB; bus.amqp.maxQueueBytes)
   */
  queueMaxBytes?: number;
}

/** Counters specific to this bus (the common ones are in `stats`). */
export interface AmqpBusStats {
  /** messages node queues dropped for their byte bound, as counted here (docs/operations.md) */
  queueOverflowDropped: number;
}

/**
 * Largest message this bus sends when bus.maxMessageBytes is 0: below RabbitMQ 4's default
 * max_message_size (16 MiB; 3.x: 128 MiB). @default 8388608
 */
export const AMQP_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/** RabbitMQ's refusal of a message larger than max_message_size. */
const SIZE_REFUSAL = /message size (\d+) is larger than configured max size (\d+)/;

/** AMQP `type` of the readiness messages (no commands; docs/wire-format.md). */
export const READY_TYPE = 'gatewire.ready';
export const READY_ACK_TYPE = 'gatewire.ready-ack';

/** No CC header (shared, never modified). */
const NO_CC: string[] = [];

/** Parallel binder channels (see the header). */
const BIND_CHANNELS = 4;

/** One connection and what lives on it; replaced as a whole on every reconnect. */
interface Session {
  id: number;
  connection: ChannelModel;
  consumer: Channel | null;
  publisher: ConfirmChannel | null;
  binders: Channel[];
  /** checkQueue of other nodes' queues (probe); replaced when a check closes it (404) */
  prober: Channel | null;
  exchange: string;
  queue: string;
  alive: boolean;
  /** rejects when the session dies (used to stop waiting on it) */
  dead: Promise<never>;
  kill: (err: Error) => void;
  /** last delivery not yet acknowledged; acknowledged with `multiple` once per event-loop turn */
  unacked: ConsumeMessage | null;
  ackScheduled: boolean;
  /** the connection's close, once asked for */
  closed?: Promise<void>;
}

export class AmqpTransport implements Transport {
  readonly amqpStats: AmqpBusStats = { queueOverflowDropped: 0 };
  private readonly outbox: ConfirmOutbox;
  private readonly barrier: PeerBarrier;
  private readonly ccPolicy: CcPolicy;
  private readonly closeTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private session: Session | null = null;
  /** the session being set up by the connect loop (not yet current) */
  private opening: Session | null = null;
  private sessionWaiters: { resolve: (s: Session) => void; reject: (err: Error) => void }[] = [];
  private sessionCount = 0;
  private readonly reconnects: ReconnectLoop;
  /** the bus is closing: no new waiting, outstanding confirms only */
  private isClosing = false;
  /** disconnect() was called: nothing reconnects any more */
  private stopping = false;
  private lostAt = 0;
  private droppedLoggedAt = 0;
  /** keys bound on this process's queue at the broker as far as this process knows */
  private readonly brokerBound = new Set<string>();

  /** Keys one message may carry (routing key + CC); see cc-policy.ts. */
  keysPerMessage: number;
  readonly defaultMaxMessageBytes = AMQP_MAX_MESSAGE_BYTES;
  private hooks: TransportHooks | null = null;

  constructor(
    private readonly options: BusOptions,
    private readonly log: Logger,
    private readonly amqpOptions: AmqpBusOptions,
  ) {
    // Direct mode: how many keys (routing key + CC) one message may carry; see cc-policy.ts.
    this.ccPolicy = new CcPolicy(options.uidBuckets, options.groupBuckets, amqpOptions.peerWaitMs ?? 10000);
    this.keysPerMessage = this.ccPolicy.keysPerMessage();
    this.reconnects = new ReconnectLoop({
      backoff: amqpOptions.backoff,
      attempt: (reconnect) => this.openSession(reconnect),
      isRefusal,
      onRetry: (err, attempt, delayMs) =>
        this.log[attempt > 3 ? 'error' : 'warn'](
          { err: errorMessage(err), attempt, delayMs },
          'cannot reach the broker; retrying',
        ),
      onReconnected: (attempts) => {
        this.bus.countReconnect();
        this.log.info({ downMs: Date.now() - this.lostAt, attempts }, 'reconnected to the broker');
      },
    });
    this.closeTimeoutMs = amqpOptions.closeTimeoutMs ?? 5000;
    this.connectTimeoutMs = amqpOptions.connectTimeoutMs ?? 10000;
    this.barrier = new PeerBarrier(options.instance, amqpOptions.peerWaitMs ?? 10000);
    this.outbox = new ConfirmOutbox((err) => {
      const session = this.session;
      if (session !== null) this.lost(session, `publish failed: ${err.message}`);
    });
  }

  /** The name this process's connection has on the broker. */
  get connectionName(): string {
    return `gatewire-${this.instance}`;
  }

  /** The exchange this bus publishes to. */
  get exchange(): string {
    return `${this.amqpOptions.exchange}.${this.mode}`;
  }

  /** The queue of the current connection ('' while disconnected). */
  get queue(): string {
    return this.session?.alive ? this.session.queue : '';
  }

  private get instance(): string {
    return this.options.instance;
  }

  private get mode(): BusOptions['mode'] {
    return this.options.mode;
  }

  private get isConnected(): boolean {
    return this.hooks?.isConnected === true;
  }

  private get bus(): TransportHooks {
    if (this.hooks === null) throw new Error('the AMQP transport is not connected to a bus');
    return this.hooks;
  }

  /**
   * The bus is closing. While the broker is unreachable, commands still waiting are rejected with
   * BUS_CLOSED at once (a shutdown must not wait for a broker that may never come back); while
   * connected, they go out first and disconnect waits for their confirms (closeTimeoutMs at most).
   */
  closing(): void {
    this.isClosing = true;
    if (!this.isConnected) this.outbox.failAll(this.closedError('the broker was unreachable when the bus closed'));
  }

  // ---- Transport contract ----------------------------------------------------------------

  async connect(hooks: TransportHooks): Promise<void> {
    this.hooks = hooks;
    this.stopping = false;
    this.isClosing = false;
    try {
      await this.reconnects.start();
    } catch (err) {
      if (err instanceof ReconnectStopped) throw this.closedError('the bus was closed before it connected');
      throw new GatewireError(ErrorCodes.BUS_BROKER, `the broker refused the bus: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  async disconnect(): Promise<void> {
    if (this.isConnected && this.outbox.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.outbox.drained(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.closeTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.stopping = true;
    this.reconnects.stop();
    const closed = this.closedError('the bus was closed');
    for (const waiter of this.sessionWaiters.splice(0)) waiter.reject(closed);
    this.outbox.failAll(closed);
    // A connect attempt in flight stops at its next step and closes what it opened.
    if (this.opening !== null) this.lost(this.opening, 'the bus was closed');
    const last = this.session;
    if (last !== null) this.lost(last, 'the bus was closed');
    this.bus.setConnected(false);
    await this.reconnects.settled();
    if (last !== null) await this.shutSession(last);
  }

  /** The turn's messages go into the outbox under one promise (ConfirmOutbox.addAll). */
  transmitAll(batches: OutgoingBatch[]): Promise<void> {
    if (this.isClosing && !this.isConnected) {
      return Promise.reject(this.closedError('the bus is closing and the broker is unreachable'));
    }
    const messages: OutboxMessage[] = [];
    for (const batch of batches) {
      let routingKey = '';
      let cc: string[] = NO_CC;
      if (this.mode === 'direct') {
        // A key over 255 bytes can never be bound (bindKey refuses it), so no queue can want it.
        let keys = batch.keys;
        if (!keys.every(isRoutableKey)) {
          this.log.warn(
            { keys: keys.filter((k) => !isRoutableKey(k)).map((k) => k.slice(0, 40)) },
            'routing keys over 255 bytes reach no node',
          );
          keys = keys.filter(isRoutableKey);
        }
        if (keys.length === 0) continue;
        routingKey = keys[0]!;
        if (keys.length > 1) cc = keys.slice(1);
      }
      messages.push({ routingKey, cc, seal: batch.sealer() });
    }
    return this.outbox.addAll(messages);
  }

  async bindKey(key: string): Promise<void> {
    checkBindableKey(key);
    for (;;) {
      const session = await this.currentSession();
      try {
        await this.binderFor(session, key).bindQueue(session.queue, session.exchange, key);
        this.brokerBound.add(key);
      } catch (err) {
        if (session.alive)
          throw new GatewireError(ErrorCodes.BUS_BROKER, `bind of ${key} failed: ${errorMessage(err)}`, { cause: err });
        continue; // the connection died: bind on the next one
      }
      // bind-ok from a connection that died since: bind again (idempotent) on the next one.
      if (session.alive) return;
    }
  }

  async unbindKey(key: string): Promise<void> {
    const session = this.session;
    // No connection: the key stays in brokerBound and is unbound right after the reconnect.
    if (session === null || !session.alive) return;
    try {
      await this.binderFor(session, key).unbindQueue(session.queue, session.exchange, key);
      this.brokerBound.delete(key);
    } catch (err) {
      if (session.alive)
        throw new GatewireError(ErrorCodes.BUS_BROKER, `unbind of ${key} failed: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** After a reconnect: unbinds the keys released while the connection was down. */
  private async unbindReleased(session: Session): Promise<void> {
    const desired = new Set(this.bus.desiredKeys());
    const released = [...this.brokerBound].filter((key) => !desired.has(key));
    await Promise.all(
      released.map(async (key) => {
        await this.binderFor(session, key).unbindQueue(session.queue, session.exchange, key);
        this.brokerBound.delete(key);
      }),
    );
  }

  // ---- connection lifecycle --------------------------------------------------------------

  private async openSession(reconnect: boolean): Promise<void> {
    const connection = await amqp.connect(withHeartbeat(this.amqpOptions.url), {
      clientProperties: { connection_name: this.connectionName },
      // amqplib leaves Nagle's algorithm on: small publishes and acks would wait for the peer's
      // ACK (measured: p50 30 ms -> 2 ms cross-node at 20,000 pushes/s with it off).
      noDelay: true,
      timeout: this.connectTimeoutMs,
    });
    if (this.stopping) {
      await connection.close().catch(() => undefined);
      throw this.closedError('the bus was closed while connecting');
    }
    let kill!: (err: Error) => void;
    const dead = new Promise<never>((_resolve, reject) => {
      kill = reject;
    });
    dead.catch(() => undefined);
    this.sessionCount += 1;
    const session: Session = {
      id: this.sessionCount,
      connection,
      consumer: null,
      publisher: null,
      binders: [],
      prober: null,
      exchange: '',
      queue: '',
      alive: true,
      dead,
      kill,
      unacked: null,
      ackScheduled: false,
    };
    this.opening = session;
    connection.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker connection error'));
    connection.on('handler-error', (err: Error, event: string) =>
      this.log.error({ err, event }, 'bus listener failed'),
    );
    connection.on('close', (err?: Error) => this.lost(session, `connection closed${err ? `: ${err.message}` : ''}`));
    connection.on('blocked', (reason: string) =>
      this.log.warn({ reason }, 'the broker blocked publishing (resource alarm)'),
    );
    connection.on('unblocked', () => this.log.info('the broker unblocked publishing'));
    try {
      const consumer = this.watch(session, await connection.createChannel(), 'consumer');
      session.consumer = consumer;
      session.publisher = this.watch(session, await connection.createConfirmChannel(), 'publisher');
      if (this.mode === 'direct') {
        for (let i = 0; i < BIND_CHANNELS; i++)
          session.binders.push(this.watch(session, await connection.createChannel(), 'binder'));
      }
      const { exchange, queue, dropped } = await declareTopology(
        consumer,
        this.amqpOptions.exchange,
        this.mode,
        this.instance,
        {
          expiresMs: this.amqpOptions.queueExpiresMs ?? 60000,
          maxBytes: this.amqpOptions.queueMaxBytes ?? 256 * 1024 * 1024,
        },
      );
      session.exchange = exchange;
      session.queue = queue;
      // The queue outlived the old connection with its bindings: drop the keys released since.
      await this.unbindReleased(session);
      await consumer.prefetch(this.amqpOptions.prefetch);
      this.ensureUsable(session);

      // From here bindKey calls (the replay, and any waiting since the loss) use this session.
      this.session = session;
      for (const waiter of this.sessionWaiters.splice(0)) waiter.resolve(session);
      await Promise.race([
        this.bus
          .replaySubscriptions()
          .catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'a desired key could not be bound')),
        session.dead,
      ]);
      this.ensureUsable(session);

      this.barrier.reset();
      await consumer.consume(queue, (msg) => this.onDelivery(session, msg), { noAck: false });
      await consumer.consume(dropped, (msg) => this.onDropped(msg), { noAck: true });
      this.ensureUsable(session);

      if (reconnect) {
        this.sendReady(session, READY_TYPE, null);
        const { expected, missing } = await this.barrier.wait(this.lostAt, session.dead);
        this.ensureUsable(session);
        if (missing.length > 0)
          this.log.warn({ missing, expected }, 'peers not ready again within the wait; sending what waited anyway');
      }

      this.outbox.attach(session.publisher, exchange);
      this.opening = null;
      this.bus.setConnected(true);
      this.log.info(
        { exchange, queue, keys: this.bus.desiredKeys().length, connection: this.connectionName },
        'connected to the broker',
      );
    } catch (err) {
      if (this.opening === session) this.opening = null;
      if (session.alive) this.lost(session, `setup failed: ${errorMessage(err)}`);
      throw err;
    }
  }

  /** Throws if the session died meanwhile or the bus is closing (after every await of a setup). */
  private ensureUsable(session: Session): void {
    if (!session.alive) throw new Error('the connection was lost while setting up');
    if (this.stopping) throw this.closedError('the bus was closed while connecting');
  }

  private watch<C extends Channel>(session: Session, channel: C, role: string): C {
    channel.on('error', (err: Error) => {
      this.log.warn({ role, err: err.message }, 'broker channel error');
      if (role === 'publisher') this.onPublisherError(err);
    });
    channel.on('handler-error', (err: Error, event: string) =>
      this.log.error({ role, err, event }, 'bus listener failed'),
    );
    channel.on('close', () => this.lost(session, `${role} channel closed`));
    return channel;
  }

  /**
   * The connection or one of its channels is gone: drop the whole session (closing what is left
   * of it) and, unless the bus is closing, reconnect.
   */
  private lost(session: Session, reason: string): void {
    if (!session.alive) return;
    session.alive = false;
    session.kill(new Error(reason));
    if (this.session !== session) {
      // A session still being set up: its connect loop sees it dead and retries (or stops).
      void this.shutSession(session);
      return;
    }
    this.session = null;
    if (this.opening === session) this.opening = null;
    this.outbox.detach();
    this.lostAt = Date.now();
    this.bus.setConnected(false);
    void this.shutSession(session);
    if (this.stopping) return;
    if (this.isClosing) {
      this.outbox.failAll(this.closedError('the broker connection was lost while the bus was closing'));
      return;
    }
    this.log.warn({ reason, waiting: this.outbox.size }, 'lost the broker; reconnecting');
    this.reconnects.lost((err) => this.bus.error(err));
  }

  /** Closes a session's connection (bounded by closeTimeoutMs, see closeConnection). */
  private shutSession(session: Session): Promise<void> {
    session.alive = false;
    session.closed ??= closeConnection(session.connection, this.closeTimeoutMs);
    return session.closed;
  }

  private currentSession(): Promise<Session> {
    if (this.session !== null && this.session.alive) return Promise.resolve(this.session);
    if (this.stopping) return Promise.reject(this.closedError('the bus is closed'));
    return new Promise<Session>((resolve, reject) => this.sessionWaiters.push({ resolve, reject }));
  }

  private binderFor(session: Session, key: string): Channel {
    return session.binders[bucketOf(key, session.binders.length)]!;
  }

  // ---- consuming -------------------------------------------------------------------------

  /**
   * One broker message. Acknowledged after receive() handed its commands to the node (receive is
   * synchronous), so prefetch bounds how much a busy node holds. After a lost connection the
   * broker delivers unacknowledged messages again on the next one; receive() drops the ones
   * already applied (their sequence numbers).
   */
  private onDelivery(session: Session, msg: ConsumeMessage | null): void {
    if (msg === null) {
      this.lost(session, 'the broker cancelled the consumer (queue deleted?)');
      return;
    }
    if (msg.properties.type === READY_TYPE || msg.properties.type === READY_ACK_TYPE) {
      // Only what arrives on the live connection tells whether a peer is ready for it.
      if (session.alive) this.onReady(session, msg);
    } else {
      this.onMessage(msg);
    }
    session.unacked = msg;
    if (!session.ackScheduled) {
      session.ackScheduled = true;
      setImmediate(() => this.ackPending(session));
    }
  }

  private onMessage(msg: ConsumeMessage): void {
    // Without CC a message names one key; a command split into one message per key (more keys
    // than keysPerMessage) must then be applied once, for the first of its keys this node holds.
    // With CC the broker delivers one copy per queue however many of its keys match: no filter.
    const viaKey =
      this.mode === 'direct' && msg.properties.headers?.CC === undefined ? msg.fields.routingKey : undefined;
    this.bus.receive(msg.content, viaKey);
  }

  /**
   * Membership tells the barrier who the peers are (peer-barrier.ts), and the CC policy how many
   * bindings the exchange holds (cc-policy.ts).
   */
  peerAnnounced(instance: string, uids: number, groups: number): void {
    this.barrier.announced(instance);
    this.ccPolicy.announced(instance, uids, groups);
    this.keysPerMessage = this.ccPolicy.keysPerMessage();
  }

  peerLeft(instance: string): void {
    this.barrier.left(instance);
    this.ccPolicy.left(instance);
    this.keysPerMessage = this.ccPolicy.keysPerMessage();
  }

  // ---- readiness (peer-barrier.ts) -------------------------------------------------------

  /** A peer is bound on its current queue again (READY), or answers ours (READY-ACK). */
  private onReady(session: Session, msg: ConsumeMessage): void {
    let sender: string;
    try {
      sender = decodeEnvelope(msg.content, this.options.secret).sender;
    } catch {
      this.bus.receive(msg.content); // counted and logged as any unreadable message
      return;
    }
    if (sender === this.instance) return;
    this.barrier.heardFrom(sender);
    if (msg.properties.type === READY_TYPE) this.sendReady(session, READY_ACK_TYPE, sender);
  }

  /**
   * READY goes to everyone; READY-ACK to the asker's node key. Both bypass the outbox (they carry
   * no commands, so their order against commands does not matter, and a barrier holding them
   * could make two recovering nodes wait for each other).
   */
  private sendReady(session: Session, type: string, to: string | null): void {
    const publisher = session.publisher;
    if (!session.alive || publisher === null) return;
    const routingKey = this.mode === 'fanout' ? '' : to === null ? BROADCAST_KEY : nodeKey(to);
    try {
      publisher.publish(session.exchange, routingKey, this.bus.sealSignal(), {
        type,
        contentType: 'application/msgpack',
      });
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'readiness message not sent (channel closing)');
    }
  }

  /**
   * The broker closed the publishing channel with an error: a message it refused. One larger than
   * its max_message_size is dropped at once (and later messages are cut below that size); for any
   * other refusal the oldest unconfirmed message is dropped after three in a row. Either way its
   * callers are told (GW_ERR_BUS_REFUSED) and everything after it goes out on the next channel.
   */
  private onPublisherError(err: Error): void {
    const size = SIZE_REFUSAL.exec(err.message);
    if (size !== null) {
      const max = Number(size[2]);
      this.bus.learnBrokerLimit(max);
      const refused = this.outbox.refuseLarger(max, err.message);
      for (let i = 0; i < refused; i++) this.bus.countRefused(Number(size[1]), err.message);
      return;
    }
    const dropped = this.outbox.strikeOldest(err.message);
    if (dropped > 0) this.bus.countRefused(dropped, err.message);
  }

  /** A message some node's queue dropped for its byte bound (x-overflow drop-head). */
  private onDropped(msg: ConsumeMessage | null): void {
    if (msg === null) return;
    this.amqpStats.queueOverflowDropped += 1;
    const now = Date.now();
    if (now - this.droppedLoggedAt >= 5000) {
      this.droppedLoggedAt = now;
      const death = (msg.properties.headers?.['x-death'] as { queue?: string }[] | undefined)?.[0];
      this.log.warn(
        { queue: death?.queue, counted: this.amqpStats.queueOverflowDropped },
        'a node queue dropped its oldest messages (bus.amqp.maxQueueBytes): that node was frozen or dead',
      );
    }
  }

  /**
   * Whether another node's queue still has a consumer. A killed process's connection closes at
   * once, so its queue has none; a slow or frozen one keeps its consumer until the broker's
   * heartbeat gives up on it. 'absent' also when the queue is gone.
   */
  async probe(instance: string): Promise<Presence> {
    const session = this.session;
    if (session === null || !session.alive) return 'unknown';
    try {
      session.prober ??= await this.openProber(session);
      const { consumerCount } = await session.prober.checkQueue(
        nodeQueueName(this.amqpOptions.exchange, this.mode, instance),
      );
      return consumerCount > 0 ? 'present' : 'absent';
    } catch (err) {
      session.prober = null;
      // 404: the queue does not exist (the broker closed the channel saying so).
      if (/NOT_FOUND|404/.test(errorMessage(err))) return 'absent';
      return 'unknown';
    }
  }

  /** A channel for checkQueue only: its closing (a 404 answer closes it) never ends the session. */
  private async openProber(session: Session): Promise<Channel> {
    const channel = await session.connection.createChannel();
    channel.on('error', () => undefined);
    channel.on('close', () => {
      if (session.prober === channel) session.prober = null;
    });
    return channel;
  }

  private ackPending(session: Session): void {
    session.ackScheduled = false;
    const msg = session.unacked;
    session.unacked = null;
    if (msg === null || !session.alive || session.consumer === null) return;
    try {
      session.consumer.ack(msg, true);
    } catch (err) {
      // The channel closed meanwhile; its close event handles the rest.
      this.log.debug({ err: errorMessage(err) }, 'ack after channel close');
    }
  }

  private closedError(message: string): GatewireError {
    return new GatewireError(ErrorCodes.BUS_CLOSED, message);
  }
}

/** What the broker will refuse again on the next attempt: credentials, vhost, exchange type. */
function isRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 403 || code === 406 || code === 530) return true;
  return /ACCESS.REFUSED|NOT.ALLOWED|PRECONDITION.FAILED|Expected amqp/.test(errorMessage(err));
}

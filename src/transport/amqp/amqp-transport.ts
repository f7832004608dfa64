/**
 * The RabbitMQ bus (AMQP 0-9-1, amqplib), in fanout or direct mode (DESIGN §1, §5;
 * docs/wire-format.md is the contract for other languages).
 *
 * One connection per process, named `gatewire-<instance>` (client property connection_name, as
 * rabbitmqctl list_connections and the management UI show it), with:
 *   - a consumer channel: declares the exchange and the process's queue, consumes with prefetch;
 *   - a confirm channel: publishes, in order, with publisher confirms (ConfirmOutbox);
 *   - BIND_CHANNELS binder channels: queue.bind/unbind of the desired keys (direct mode). A
 *     channel runs one RPC at a time, so channels in parallel let a login storm or the replay of
 *     every key go at the broker's pace. 10,000 binds on 2 cores, RabbitMQ 3.10, amqplib alone:
 *     4 channels 6,200–6,800/s, 16 7,200–7,500/s, 64 about 7,000/s; `npm run bench:login` went
 *     from 2,700–2,900 logins/s with 4 to 3,400–4,150/s with 16. A key keeps its channel.
 *
 * Recovery is this file's own loop rather than amqplib's opt-in `recovery` option: that option
 * re-opens the connection only, while here the loss of any one channel (a server-side channel
 * error, a consumer cancelled because the queue was deleted) must rebuild everything too, and
 * the steps after a reconnect must run in a fixed order. Any loss of the connection or one of
 * its channels closes the whole connection and starts one loop, with backoff and jitter
 * (backoff.ts), each attempt to the next broker node of bus.amqp.url (amqp-urls.ts), that runs:
 *   check whether the process's queue survived the loss (amqp-probe.ts) -> declare exchange +
 *   queue -> unbind keys released while down -> replaySubscriptions() (every desired key, the
 *   node key and `all` included; on a queue that survived, only those not bound on it before:
 *   amqp-bindings.ts) -> [quorum: settle the queue, node-queue.ts] ->
 *   consume -> READY to the peers and wait for theirs (peer-barrier.ts)
 *   -> publish what waited (unconfirmed first, in order) -> connected.
 *
 * While disconnected, published commands wait in the ConfirmOutbox (bounded by the base class's
 * bus.maxBufferedCommands); bindKey waits for the next connection; a key released meanwhile is
 * unbound right after the reconnect. Messages other nodes publish to this node while it is away
 * wait in its queue; those it had received but not acknowledged are delivered again, and
 * dropped by the sequence check of the base class (replay-guard.ts) if they were applied.
 */
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { BusOptions } from '../bus.js';
import type { OutgoingBatch, Presence, Transport, TransportHooks } from '../transport.js';
import { BusLink } from '../bus-link.js';
import { AMQP_MAX_MESSAGE_BYTES, type AmqpBusOptions } from './amqp-options.js';
import { ReconnectLoop, ReconnectStopped, retryWorthLogging } from './reconnect-loop.js';
import { declareTopology, nodeQueueName, resolveQueueType } from './amqp-topology.js';
import { BrokerUrls, brokerHost } from './amqp-urls.js';
import { ConfirmOutbox } from './confirm-outbox.js';
import { PeerBarrier } from './peer-barrier.js';
import { CcPolicy } from './cc-policy.js';
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';
import {
  connectBroker,
  isRefusal,
  newSession,
  openChannels,
  shutSession,
  watchConnection,
  type Session,
} from './amqp-session.js';
import { KeyBindings } from './amqp-bindings.js';
import { NodeQueueConsumer, READY_TYPE, type AmqpBusStats } from './node-queue.js';
import { onPublisherError, outboxMessages } from './amqp-publishing.js';
import { ownQueueSurvived, probeQueue } from './amqp-probe.js';

export { READY_ACK_TYPE, READY_TYPE, type AmqpBusStats } from './node-queue.js';
export { AMQP_MAX_MESSAGE_BYTES, type AmqpBusOptions } from './amqp-options.js';

export class AmqpTransport implements Transport {
  readonly amqpStats: AmqpBusStats;
  /** binds confirmed, and binds found in place after a reconnect (amqp-bindings.ts) */
  readonly bindingStats: KeyBindings['stats'];
  private readonly link = new BusLink('AMQP');
  private readonly outbox: ConfirmOutbox;
  private readonly barrier: PeerBarrier;
  private readonly ccPolicy: CcPolicy;
  private readonly bindings: KeyBindings;
  private readonly consumer: NodeQueueConsumer;
  private readonly closeTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private session: Session | null = null;
  /** the session being set up by the connect loop (not yet current) */
  private opening: Session | null = null;
  private sessionWaiters: { resolve: (s: Session) => void; reject: (err: Error) => void }[] = [];
  private sessionCount = 0;
  private readonly reconnects: ReconnectLoop;
  private lostAt = 0;
  private readonly urls: BrokerUrls;
  /** the node queue's type, `auto` decided */
  readonly queueType: 'classic' | 'quorum';

  /** Keys one message may carry (routing key + CC); see cc-policy.ts. */
  keysPerMessage: number;
  readonly defaultMaxMessageBytes = AMQP_MAX_MESSAGE_BYTES;

  constructor(
    private readonly options: BusOptions,
    private readonly log: Logger,
    private readonly amqpOptions: AmqpBusOptions,
  ) {
    // Direct mode: how many keys (routing key + CC) one message may carry; see cc-policy.ts.
    this.ccPolicy = new CcPolicy(options.uidBuckets, options.groupBuckets, amqpOptions.peerWaitMs ?? 10000);
    this.keysPerMessage = this.ccPolicy.keysPerMessage();
    this.urls = new BrokerUrls(amqpOptions.url, options.instance);
    this.queueType = resolveQueueType(amqpOptions.queueType, this.urls.clustered);
    this.reconnects = new ReconnectLoop({
      backoff: amqpOptions.backoff,
      attempt: (reconnect) => this.openSession(reconnect),
      isRefusal,
      onRetry: (err, attempt, delayMs) =>
        retryWorthLogging(attempt) &&
        this.log[attempt > 3 ? 'error' : 'warn'](
          { err: errorMessage(err), attempt, delayMs },
          'cannot reach the broker; retrying',
        ),
      onReconnected: (attempts) => {
        this.link.bus.countReconnect();
        this.log.info({ downMs: Date.now() - this.lostAt, attempts }, 'reconnected to the broker');
      },
    });
    this.closeTimeoutMs = amqpOptions.closeTimeoutMs ?? 5000;
    this.connectTimeoutMs = amqpOptions.connectTimeoutMs ?? 10000;
    this.barrier = new PeerBarrier(options.instance, amqpOptions.peerWaitMs ?? 10000, amqpOptions.peerLearnMs);
    // Quorum queues nack while they elect a leader: up to 10 nacks of a message are retried.
    const broken = (err: Error): void =>
      void (this.session && this.lost(this.session, `publish failed: ${err.message}`));
    this.outbox = new ConfirmOutbox(broken, this.queueType === 'quorum' ? 10 : 0);
    this.bindings = new KeyBindings({ live: () => this.session, currentSession: () => this.currentSession() });
    this.bindingStats = this.bindings.stats;
    this.consumer = new NodeQueueConsumer({
      instance: options.instance,
      mode: options.mode,
      secret: options.secret,
      log,
      barrier: this.barrier,
      link: this.link,
      lost: (session, reason) => this.lost(session, reason),
    });
    this.amqpStats = this.consumer.stats;
  }

  /** The name this process's connection has on the broker. */
  get connectionName(): string {
    return `gatewire-${this.options.instance}`;
  }

  /** The exchange this bus publishes to. */
  get exchange(): string {
    return `${this.amqpOptions.exchange}.${this.options.mode}`;
  }

  /** The queue of the current connection ('' while disconnected). */
  get queue(): string {
    return this.session?.alive ? this.session.queue : '';
  }

  /** The bus is closing (BusLink.closing): what waits for an unreachable broker fails at once. */
  closing(): void {
    this.link.closing((err) => this.outbox.failAll(err));
  }

  // ---- Transport contract ----------------------------------------------------------------

  async connect(hooks: TransportHooks): Promise<void> {
    this.link.attach(hooks);
    try {
      await this.reconnects.start();
    } catch (err) {
      if (err instanceof ReconnectStopped) throw this.link.closedError('the bus was closed before it connected');
      throw new GatewireError(ErrorCodes.BUS_BROKER, `the broker refused the bus: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  async disconnect(): Promise<void> {
    if (this.link.isConnected && this.outbox.size > 0) await this.outbox.drained(this.closeTimeoutMs);
    this.link.stopping = true;
    this.reconnects.stop();
    const closed = this.link.closedError('the bus was closed');
    for (const waiter of this.sessionWaiters.splice(0)) waiter.reject(closed);
    this.outbox.failAll(closed);
    // A connect attempt in flight stops at its next step and closes what it opened.
    if (this.opening !== null) this.lost(this.opening, 'the bus was closed');
    const last = this.session;
    if (last !== null) this.lost(last, 'the bus was closed');
    this.link.bus.setConnected(false);
    await this.reconnects.settled();
    if (last !== null) await shutSession(last, this.closeTimeoutMs);
  }

  /** The turn's messages go into the outbox under one promise (ConfirmOutbox.addAll). */
  transmitAll(batches: OutgoingBatch[]): Promise<void> {
    if (this.link.isClosing && !this.link.isConnected) {
      return Promise.reject(this.link.closedError('the bus is closing and the broker is unreachable'));
    }
    return this.outbox.addAll(outboxMessages(batches, this.options.mode, this.log));
  }

  /** Binds a key on this process's queue (amqp-bindings.ts). */
  bindKey(key: string): Promise<void> {
    return this.bindings.bind(key);
  }

  unbindKey(key: string): Promise<void> {
    return this.bindings.unbind(key);
  }

  /** Whether another node's queue still has a consumer (amqp-probe.ts). */
  probe(instance: string): Promise<Presence> {
    return probeQueue(this.session, nodeQueueName(this.amqpOptions.exchange, this.options.mode, instance));
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

  // ---- connection lifecycle --------------------------------------------------------------

  private async openSession(reconnect: boolean): Promise<void> {
    // An unreachable broker node: the next attempt tries the next one (the catch below).
    const connection = await connectBroker(this.urls.current, this.connectionName, this.connectTimeoutMs).catch(
      (err: unknown) => {
        this.urls.advance();
        throw err;
      },
    );
    if (this.link.stopping) {
      await connection.close().catch(() => undefined);
      throw this.link.closedError('the bus was closed while connecting');
    }
    this.sessionCount += 1;
    const session = newSession(this.sessionCount, connection);
    this.opening = session;
    const lost = (reason: string): void => this.lost(session, reason);
    watchConnection(connection, this.log, lost);
    try {
      const consumer = await openChannels(session, this.options.mode === 'direct', this.log, lost, (err) =>
        onPublisherError(err, this.outbox, this.link.bus),
      );
      session.publisher!.on('return', (msg: ConsumeMessage) => this.consumer.countReturned(msg));
      const survived = await ownQueueSurvived(session, {
        reconnect: reconnect && this.options.mode === 'direct',
        lostAt: this.lostAt,
        expiresMs: this.amqpOptions.queueExpiresMs ?? 60000,
        queue: nodeQueueName(this.amqpOptions.exchange, this.options.mode, this.options.instance),
      });
      const { exchange, queue, dropped } = await declareTopology(
        consumer,
        this.amqpOptions.exchange,
        this.options.mode,
        this.options.instance,
        {
          type: this.queueType,
          expiresMs: this.amqpOptions.queueExpiresMs ?? 60000,
          maxBytes: this.amqpOptions.queueMaxBytes ?? 256 * 1024 * 1024,
        },
      );
      session.exchange = exchange;
      session.queue = queue;
      // The queue outlived the old connection with its bindings: drop the keys released since
      // (the replay below binds only those taken on since). A new queue has none.
      if (!survived) this.bindings.queueIsNew();
      await this.bindings.unbindReleased(session, this.link.bus.desiredKeys());
      await consumer.prefetch(this.amqpOptions.prefetch);
      this.ensureUsable(session);

      // From here bindKey calls (the replay, and any waiting since the loss) use this session.
      this.session = session;
      for (const waiter of this.sessionWaiters.splice(0)) waiter.resolve(session);
      await Promise.race([
        this.link.bus
          .replaySubscriptions()
          .catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'a desired key could not be bound')),
        session.dead,
      ]);
      this.ensureUsable(session);

      this.barrier.reset();
      await this.consumer.consume(session, queue, dropped, reconnect && this.queueType === 'quorum');
      this.ensureUsable(session);

      if (reconnect) {
        this.consumer.sendReady(session, READY_TYPE, null);
        const { expected, missing } = await this.barrier.wait(this.lostAt, session.dead);
        this.ensureUsable(session);
        if (missing.length > 0)
          this.log.warn({ missing, expected }, 'peers not ready again within the wait; sending what waited anyway');
      }

      this.outbox.attach(session.publisher!, exchange);
      this.opening = null;
      this.barrier.connected();
      this.link.bus.setConnected(true);
      this.log.info(
        {
          exchange,
          queue,
          queueType: this.queueType,
          broker: brokerHost(this.urls.current),
          keys: this.link.bus.desiredKeys().length,
          connection: this.connectionName,
        },
        'connected to the broker',
      );
    } catch (err) {
      if (this.opening === session) this.opening = null;
      // Whatever failed (a broker node going down under the setup, a queue still being cleaned
      // up after its node died), the next attempt goes to the next node.
      this.urls.advance();
      if (session.alive) this.lost(session, `setup failed: ${errorMessage(err)}`);
      throw err;
    }
  }

  /** Throws if the session died meanwhile or the bus is closing (after every await of a setup). */
  private ensureUsable(session: Session): void {
    if (!session.alive) throw new GatewireError(ErrorCodes.BUS_BROKER, 'the connection was lost while setting up');
    if (this.link.stopping) throw this.link.closedError('the bus was closed while connecting');
  }

  /**
   * The connection or one of its channels is gone: drop the whole session (closing what is left
   * of it) and, unless the bus is closing, reconnect.
   */
  private lost(session: Session, reason: string): void {
    if (!session.alive) return;
    session.alive = false;
    session.kill(this.link.stopping ? this.link.closedError(reason) : new GatewireError(ErrorCodes.BUS_BROKER, reason));
    if (this.session !== session) {
      // A session still being set up: its connect loop sees it dead and retries (or stops).
      void shutSession(session, this.closeTimeoutMs);
      return;
    }
    this.session = null;
    if (this.opening === session) this.opening = null;
    this.outbox.detach();
    this.lostAt = Date.now();
    // The broker node may be dead: reconnect to the next one (with one URL, the same).
    this.urls.advance();
    this.link.bus.setConnected(false);
    void shutSession(session, this.closeTimeoutMs);
    if (this.link.stopping) return;
    if (this.link.isClosing) {
      this.outbox.failAll(this.link.closedError('the broker connection was lost while the bus was closing'));
      return;
    }
    this.log.warn({ reason, waiting: this.outbox.size }, 'lost the broker; reconnecting');
    this.reconnects.lost((err) => this.link.bus.error(err));
  }

  private currentSession(): Promise<Session> {
    if (this.session !== null && this.session.alive) return Promise.resolve(this.session);
    if (this.link.stopping) return Promise.reject(this.link.closedError('the bus is closed'));
    return new Promise<Session>((resolve, reject) => this.sessionWaiters.push({ resolve, reject }));
  }
}

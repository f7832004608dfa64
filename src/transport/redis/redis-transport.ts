/**
 * The Redis bus (pub/sub, ioredis), in fanout or direct mode (DESIGN §1, §5;
 * docs/wire-format.md, "Redis" is the contract for other languages, channels.ts names everything).
 *
 * Two connections per process, named `gatewire:<instance>:pub` and `gatewire:<instance>:sub`
 * (CLIENT SETNAME, so an operator or a test can CLIENT KILL exactly one node's connections):
 *   - sub: SUBSCRIBE only; messages arrive as Buffers ('messageBuffer'), never as strings;
 *   - pub: publishing, and reading the replay log after a reconnect.
 * In fanout mode every node subscribes the one channel <prefix>:fanout and every command is
 * published there. In direct mode a node subscribes <prefix>:<key> for its node key, `all`, and
 * each uid and group key it holds, on the first local holder, and unsubscribes on the last (the
 * base class's desired set drives bindKey/unbindKey).
 *
 * Plain SUBSCRIBE, not sharded pub/sub: SSUBSCRIBE/SPUBLISH exist so that a Redis Cluster sends a
 * message only within the shard that owns the channel's slot instead of over the whole cluster
 * bus. A single Redis 7.0 (or a primary with replicas/Sentinel) has no cluster bus, so sharded
 * channels would cost the same and only hide our channels from PUBSUB CHANNELS. The publish
 * script also writes one log key and publishes to many channels in one call, which a cluster
 * would refuse across slots. Redis Cluster is not supported.
 *
 * Reconnects are ours, not ioredis's: autoResubscribe is off and enableOfflineQueue is off. On
 * every (re)connect of either connection the bus is not connected until, in this order:
 *   drop subscriptions that stopped being desired while the pub connection was down
 *   -> subscribe the fanout channel (fanout) -> replaySubscriptions() (every desired key)
 *   -> if the sub connection had dropped: replay the gap from the replay log (below)
 *   -> connected: commands that waited go out, in order.
 * So the channels subscribed on the current sub connection are exactly the desired set. ioredis
 * still reconnects the sockets (retryStrategy: backoff with jitter) and resends a command whose
 * reply a dropped connection swallowed (autoResendUnfulfilledCommands; with it off, ioredis drops
 * such a command's promise without settling it); a resent publish call is recognised by its call
 * id and does nothing (scripts.ts).
 *
 * The replay log (bus.redis.replayWindow ms, default 10 s; scripts.ts says why): every message is
 * also appended to the stream <prefix>:log, and subscribers receive it wrapped with its stream id.
 * The node remembers the last id it applied; when its sub connection drops, it buffers what
 * arrives live after resubscribing, reads the log from that id on (XRANGE, exclusive), applies
 * the entries for the keys it holds, then the buffered live ones it had not seen, all in id order,
 * so nothing that was published meanwhile, or was on its way over the dropped connection, is lost
 * or applied twice. A gap older than the window is logged and counted (redisStats.gaps).
 *
 * Publishing: commands from the base class's batches queue here in order and go out in one
 * script call (or a pipeline of plain PUBLISH when replayWindow is 0), one call in flight at a
 * time; what arrives meanwhile rides in the next call. While disconnected they wait, bounded by
 * bus.maxBufferedCommands (the base class). Publishing never waits for other nodes.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { BusOptions } from '../bus.js';
import type { OutgoingBatch, Presence, Transport, TransportHooks } from '../transport.js';
import { nodeKey } from '../../protocol/routing-keys.js';
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';
import { Gate } from './gate.js';
import { ackKey, channelOf, fanoutChannel, logKey, parseStreamId, unwrap } from './channels.js';
import { PUBLISH_SCRIPT } from './scripts.js';
import { TurnBatch, isRefusal, isReplyError, shut, withTimeout } from './redis-util.js';
import { RedisPublisher, type ScriptedRedis } from './redis-publisher.js';
import { ReplayCursor, type RedisBusStats } from './redis-replay.js';

export type { RedisBusStats };

export interface RedisBusOptions {
  /** redis://[user:password@]host:port[/db], rediss:// for TLS */
  url: string;
  /** channel and key prefix. @default 'gatewire' */
  prefix: string;
  /** ms of messages kept in the replay log; 0: no log, plain PUBLISH. @default 10000 */
  replayWindowMs?: number;
  /** ms close() waits for messages still going out. @default 5000 */
  closeTimeoutMs?: number;
  /** reconnect delays: initialMs doubling up to maxMs, ±30% jitter. @default { initialMs: 50, maxMs: 2000 } */
  reconnect?: { initialMs?: number; maxMs?: number };
}

/**
 * Largest message this bus sends when bus.maxMessageBytes is 0: far below the default pub/sub
 * output buffer limit of a subscriber (client-output-buffer-limit pubsub 32mb 8mb 60), past which
 * Redis disconnects it. @default 1048576
 */
export const REDIS_MAX_MESSAGE_BYTES = 1024 * 1024;

type Role = 'pub' | 'sub';

export class RedisTransport implements Transport {
  readonly redisStats: RedisBusStats = {
    calls: 0,
    recoveries: 0,
    replayed: 0,
    duplicatesSkipped: 0,
    gaps: 0,
    idsAheadOfClock: 0,
  };

  private readonly prefix: string;
  private readonly replayWindowMs: number;
  private readonly closeTimeoutMs: number;
  private readonly reconnectInitialMs: number;
  private readonly reconnectMaxMs: number;

  private pub: ScriptedRedis | null = null;
  private sub: Redis | null = null;
  private readonly pubReady = new Gate();
  private readonly subReady = new Gate();
  /** open while connected: both connections ready and the setup after them done */
  private readonly busReady = new Gate();
  /** bumped whenever either connection closes: a setup that started before is stale */
  private connEpoch = 0;
  /** bumped whenever the sub connection closes */
  private subEpoch = 0;
  /** keys subscribed and confirmed on the current sub connection */
  private readonly subscribedOnSub = new Set<string>();
  private fanoutSubscribed = false;

  private stopping = false;
  private isClosing = false;
  private everConnected = false;
  private startWaiter: { resolve: () => void; reject: (err: Error) => void } | null = null;
  /** when the bus lost its connection (0: connected) */
  private lostAt = 0;
  /** first client error of an outage is a warning, the repeats are debug */
  private errorReported = false;

  private readonly replay: ReplayCursor;
  private readonly publisher: RedisPublisher;

  // Subscriptions asked for in one event-loop turn go out together in the next, as one SUBSCRIBE
  // with many channels: a login storm or the replay of 100,000 keys costs a few commands.
  private readonly subscribes = new TurnBatch<string>((channels) => this.onSub((sub) => sub.subscribe(...channels)));
  private readonly unsubscribes = new TurnBatch<string>((channels) => this.unsubscribeAll(channels));

  /** Redis publishes per channel: a send to several keys is split into one command per key. */
  readonly keysPerMessage = 1;
  readonly defaultMaxMessageBytes = REDIS_MAX_MESSAGE_BYTES;
  private hooks: TransportHooks | null = null;

  constructor(
    private readonly options: BusOptions,
    private readonly log: Logger,
    private readonly redisOptions: RedisBusOptions,
  ) {
    this.prefix = redisOptions.prefix;
    this.replayWindowMs = redisOptions.replayWindowMs ?? 10000;
    this.closeTimeoutMs = redisOptions.closeTimeoutMs ?? 5000;
    this.reconnectInitialMs = redisOptions.reconnect?.initialMs ?? 50;
    this.reconnectMaxMs = redisOptions.reconnect?.maxMs ?? 2000;
    const transport = this;
    this.replay = new ReplayCursor({
      prefix: this.prefix,
      replayWindowMs: this.replayWindowMs,
      mode: options.mode,
      stats: this.redisStats,
      log,
      get connEpoch() {
        return transport.connEpoch;
      },
      desiredKeys: () => this.bus.desiredKeys(),
      apply: (envelope, key) => this.apply(envelope, key),
    });
    this.publisher = new RedisPublisher({
      get pub() {
        return transport.pub;
      },
      busReady: this.busReady,
      get stopping() {
        return transport.stopping;
      },
      get isClosing() {
        return transport.isClosing;
      },
      get isConnected() {
        return transport.isConnected;
      },
      get logging() {
        return transport.logging;
      },
      mode: options.mode,
      prefix: this.prefix,
      instance: options.instance,
      replayWindowMs: this.replayWindowMs,
      stats: this.redisStats,
      log,
      channel: (key) => this.channel(key),
      afterFailure: (role) => this.afterFailure(role),
      closedError: (message) => this.closedError(message),
      brokerError: (what, err) => this.brokerError(what, err),
    });
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
    if (this.hooks === null) throw new Error('the Redis transport is not connected to a bus');
    return this.hooks;
  }

  /** Membership's view of the peers: not needed on Redis. */
  peerAnnounced(): void {}

  peerLeft(): void {}

  /** CLIENT SETNAME of this bus's connections. */
  connectionName(role: Role): string {
    return `gatewire:${this.instance}:${role}`;
  }

  /** The Redis channel of a routing key (direct mode), or the fanout channel. */
  channel(key: string | null): string {
    return key === null || this.mode === 'fanout' ? fanoutChannel(this.prefix) : channelOf(this.prefix, key);
  }

  private get logging(): boolean {
    return this.replayWindowMs > 0;
  }

  /**
   * Closes the bus. While Redis is unreachable, commands still waiting are rejected with
   * BUS_CLOSED at once (a shutdown must not wait for a server that may never come back); while
   * connected, they go out first (closeTimeoutMs at most).
   */
  closing(): void {
    this.isClosing = true;
    if (!this.isConnected) this.publisher.failAll(this.closedError('Redis was unreachable when the bus closed'));
  }

  // ---- Transport contract ----------------------------------------------------------------

  async connect(hooks: TransportHooks): Promise<void> {
    this.hooks = hooks;
    this.stopping = false;
    this.isClosing = false;
    for (const gate of [this.pubReady, this.subReady, this.busReady]) gate.reset();
    const started = new Promise<void>((resolve, reject) => {
      this.startWaiter = { resolve, reject };
    });
    const pub = this.createClient('pub') as ScriptedRedis;
    pub.defineCommand('gwPublish', { numberOfKeys: 2, lua: PUBLISH_SCRIPT });
    const sub = this.createClient('sub');
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel, message));
    this.pub = pub;
    this.sub = sub;
    // A failed first attempt rejects connect(), but ioredis goes on retrying: the 'ready'
    // handlers take it from there. Failures are reported by the 'error' listeners.
    pub.connect().catch(() => undefined);
    sub.connect().catch(() => undefined);
    await started;
  }

  async disconnect(): Promise<void> {
    if (this.isConnected) await this.publisher.idle(this.closeTimeoutMs);
    this.stopping = true;
    const closed = this.closedError('the bus was closed');
    this.startWaiter?.reject(closed);
    this.startWaiter = null;
    this.publisher.failAll(closed);
    const pub = this.pub;
    const sub = this.sub;
    if (pub !== null && pub.status === 'ready' && this.logging) {
      await withTimeout(pub.del(ackKey(this.prefix, this.instance)), 1000).catch(() => undefined);
    }
    for (const gate of [this.pubReady, this.subReady, this.busReady]) gate.fail(closed);
    this.bus.setConnected(false);
    await Promise.all([shut(pub), shut(sub)]);
    this.pub = null;
    this.sub = null;
  }

  /** Queues a turn's batches (redis-publisher.ts). */
  transmitAll(batches: OutgoingBatch[]): Promise<void> {
    return this.publisher.enqueue(batches);
  }

  async bindKey(key: string): Promise<void> {
    // Fanout mode has no per-key channels (the base class may still hold its node and broadcast
    // routes, whose keys are null there): the one fanout channel is subscribed by setup().
    if (this.mode === 'fanout') return;
    const channel = this.channel(key);
    for (;;) {
      await this.subReady.wait();
      const subEpoch = this.subEpoch;
      await this.subscribes.add(channel);
      // Confirmed on a connection that has closed since: that subscription is gone with it.
      if (subEpoch === this.subEpoch) {
        this.subscribedOnSub.add(key);
        return;
      }
    }
  }

  async unbindKey(key: string): Promise<void> {
    if (this.mode === 'fanout') return;
    if (this.subscribedOnSub.delete(key) && this.subReady.open) await this.unsubscribes.add(this.channel(key));
  }

  /**
   * Whether another node still has its subscriber connection (PUBSUB NUMSUB of its node channel,
   * which every node subscribes in both modes). A killed process's connections close at once; a
   * slow or frozen one keeps them.
   */
  async probe(instance: string): Promise<Presence> {
    const pub = this.pub;
    if (pub === null || pub.status !== 'ready') return 'unknown';
    try {
      const reply = (await withTimeout(
        pub.call('PUBSUB', 'NUMSUB', channelOf(this.prefix, nodeKey(instance))),
        1000,
      )) as [string, number];
      return Number(reply[1]) > 0 ? 'present' : 'absent';
    } catch {
      return 'unknown';
    }
  }

  // ---- connections ---------------------------------------------------------------------

  private createClient(role: Role): Redis {
    const client = new Redis(this.redisOptions.url, {
      lazyConnect: true,
      connectionName: this.connectionName(role),
      // We wait for the connection ourselves (bounded by the base class) and resubscribe
      // ourselves; see the header.
      enableOfflineQueue: false,
      autoResubscribe: false,
      autoResendUnfulfilledCommands: true,
      maxRetriesPerRequest: null,
      // After disconnect(), a socket that already died must not keep a timer alive.
      disconnectTimeout: 0,
      retryStrategy: (attempt: number) => this.reconnectDelay(attempt),
    });
    client.on('error', (err: Error) => this.onClientError(role, err));
    client.on('ready', () => this.onReady(role));
    client.on('close', () => this.onClose(role));
    return client;
  }

  private reconnectDelay(attempt: number): number | null {
    if (this.stopping) return null;
    const base = Math.min(this.reconnectMaxMs, this.reconnectInitialMs * 2 ** Math.min(attempt - 1, 20));
    return Math.round(base * (0.7 + 0.6 * Math.random()));
  }

  private onClientError(role: Role, err: Error): void {
    if (this.stopping) return;
    if (!this.everConnected && isRefusal(err)) {
      // Credentials or ACLs: the next attempt would be refused again.
      this.failStart(new GatewireError(ErrorCodes.BUS_BROKER, `Redis refused the bus: ${err.message}`, { cause: err }));
      return;
    }
    const level = this.errorReported ? 'debug' : 'warn';
    this.errorReported = true;
    this.log[level]({ role, connection: this.connectionName(role), err: err.message }, 'Redis connection error');
  }

  private failStart(err: GatewireError): void {
    this.log.error({ err: err.message }, 'Redis refused the bus');
    this.startWaiter?.reject(err);
    this.startWaiter = null;
    void this.disconnect();
  }

  private onReady(role: Role): void {
    const client = role === 'pub' ? this.pub : this.sub;
    if (this.stopping || client === null || client.status !== 'ready') return;
    (role === 'pub' ? this.pubReady : this.subReady).set(true);
    if (this.pubReady.open && this.subReady.open) void this.setup();
  }

  private onClose(role: Role): void {
    this.connEpoch += 1;
    if (role === 'pub') {
      this.pubReady.set(false);
    } else {
      this.subReady.set(false);
      this.subEpoch += 1;
      this.subscribedOnSub.clear();
      this.fanoutSubscribed = false;
      // Whatever arrives before the gap is replayed waits; what had arrived meanwhile on an
      // earlier attempt is in the log too.
      if (this.logging) this.replay.subscriberLost();
    }
    if (this.stopping) return;
    if (this.isConnected) {
      this.lostAt = Date.now();
      this.errorReported = false;
      this.log.warn(
        { role, connection: this.connectionName(role), waiting: this.publisher.waiting },
        'lost a Redis connection; reconnecting',
      );
    }
    this.busReady.set(false);
    this.bus.setConnected(false);
  }

  /** Both connections are ready: bring the bus back to its desired state (see the header). */
  private async setup(): Promise<void> {
    const epoch = this.connEpoch;
    const pub = this.pub!;
    const sub = this.sub!;
    try {
      if (this.logging && this.replay.lastId === null) {
        // First connect: check that Redis lets us run the script (an empty call), and take the
        // log's present end as the point a later replay starts from.
        await pub.gwPublish(logKey(this.prefix), ackKey(this.prefix, this.instance), 0, this.replayWindowMs, 0);
        const [seconds, micros] = (await pub.time()) as unknown as [string | number, string | number];
        const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
        this.replay.baseline(redisNow);
      }
      if (epoch !== this.connEpoch) return;
      this.dropStale(sub);
      if (this.mode === 'fanout' && !this.fanoutSubscribed) {
        // Its own node channel too, though nothing is published there in fanout mode: other
        // nodes see through PUBSUB NUMSUB whether this node still listens (probe).
        await sub.subscribe(fanoutChannel(this.prefix), channelOf(this.prefix, nodeKey(this.instance)));
        if (epoch !== this.connEpoch) return;
        this.fanoutSubscribed = true;
      }
      await this.bus
        .replaySubscriptions()
        .catch((err: unknown) =>
          this.log.error({ err: errorMessage(err) }, 'a desired channel could not be subscribed'),
        );
      if (epoch !== this.connEpoch) return;
      if (this.replay.recovering && !(await this.replay.replayGap(pub, epoch))) return;
    } catch (err) {
      if (this.stopping) return;
      if (!isReplyError(err)) {
        // A connection dropped meanwhile: its next 'ready' runs the setup again.
        this.log.debug({ err: errorMessage(err) }, 'Redis setup interrupted');
        return;
      }
      const error = this.brokerError('the bus setup', err);
      this.log.error({ err: errorMessage(err) }, 'Redis refused the bus setup');
      // Refused before the first connect (an ACL without EVAL or SUBSCRIBE): start fails.
      if (!this.everConnected) this.failStart(error);
      return;
    }
    if (epoch !== this.connEpoch || this.stopping || this.isConnected) return;
    const downMs = this.lostAt === 0 ? 0 : Date.now() - this.lostAt;
    this.lostAt = 0;
    this.errorReported = false;
    this.bus.setConnected(true);
    this.busReady.set(true);
    const channels = this.subscribedOnSub.size + (this.fanoutSubscribed ? 1 : 0);
    if (!this.everConnected) {
      this.everConnected = true;
      this.log.info(
        { prefix: this.prefix, mode: this.mode, channels, replayWindowMs: this.replayWindowMs },
        'connected to Redis',
      );
      this.startWaiter?.resolve();
      this.startWaiter = null;
    } else {
      this.bus.countReconnect();
      this.log.info(
        { downMs, channels, waiting: this.publisher.waiting },
        'reconnected to Redis; every channel subscribed again',
      );
    }
    void this.publisher.drain();
  }

  /**
   * Drops subscriptions still on a sub connection that survived while the pub connection was
   * down, for keys that stopped being desired meanwhile. Sends synchronously, so a bind of the
   * same key that comes after goes out after it on the same connection.
   */
  private dropStale(sub: Redis): void {
    if (this.subscribedOnSub.size === 0) return;
    const desired = new Set(this.bus.desiredKeys());
    for (const key of [...this.subscribedOnSub]) {
      if (desired.has(key)) continue;
      this.subscribedOnSub.delete(key);
      sub.unsubscribe(this.channel(key)).catch(() => undefined);
    }
  }

  /** Runs a (un)subscribe on the sub connection, waiting for it and retrying across reconnects. */
  private async onSub<T>(run: (sub: Redis) => Promise<T>): Promise<T> {
    for (;;) {
      await this.subReady.wait();
      try {
        return await run(this.sub!);
      } catch (err) {
        if (this.stopping) throw this.closedError('the bus was closed');
        if (isReplyError(err)) throw this.brokerError('a subscription', err);
        await this.afterFailure('sub');
      }
    }
  }

  /** UNSUBSCRIBE, not retried: a connection that dropped took its subscriptions with it. */
  private async unsubscribeAll(channels: string[]): Promise<void> {
    const sub = this.sub;
    if (sub === null || sub.status !== 'ready') return;
    try {
      await sub.unsubscribe(...channels);
    } catch (err) {
      if (isReplyError(err)) throw this.brokerError('UNSUBSCRIBE', err);
    }
  }

  /**
   * After a command failed without a reply from Redis (the connection dropped). ioredis reports
   * the new status at once but emits 'close' only on the next tick, so the gate may still look
   * open: close it here when the client is down, or else pause briefly, so that a retry loop
   * never spins without giving the event loop a turn.
   */
  private async afterFailure(role: Role): Promise<void> {
    const client = role === 'pub' ? this.pub : this.sub;
    const gate = role === 'pub' ? this.pubReady : this.subReady;
    if (client === null || client.status !== 'ready') {
      gate.set(false);
      if (role === 'pub') this.busReady.set(false);
    } else {
      await new Promise<void>((resolve) => setTimeout(resolve, 5));
    }
    await gate.wait();
  }

  // ---- receiving -------------------------------------------------------------------------

  private onMessage(channel: Buffer, message: Buffer): void {
    // ioredis rethrows a listener's exception as an uncaught exception: nothing may escape.
    try {
      const name = channel.toString('utf8');
      if (!name.startsWith(`${this.prefix}:`)) return;
      const key = name.slice(this.prefix.length + 1);
      const wrapped = unwrap(message);
      if (wrapped === null) {
        // A plain envelope from another program (not in the log), or garbage: receive() counts it.
        this.apply(message, key);
        return;
      }
      this.replay.onWrapped(parseStreamId(wrapped.id), wrapped.envelope, key);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'a bus message could not be handled');
    }
  }

  /** Hands a message to the base class; true if it verified and was new (and was applied). */
  private apply(envelope: Buffer, key: string): boolean {
    return this.mode === 'fanout' ? this.bus.receive(envelope) : this.bus.receive(envelope, key);
  }

  private closedError(message: string): GatewireError {
    return new GatewireError(ErrorCodes.BUS_CLOSED, message);
  }

  private brokerError(what: string, err: unknown): GatewireError {
    return new GatewireError(ErrorCodes.BUS_BROKER, `Redis refused ${what}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * The Redis transport's two connections (pub and sub) and what its parts share: the bus link
 * (bus-link.ts), the gates that open when a connection is ready, the epochs that tell a setup or a
 * replay it went stale, the settings and the counters. The publisher (redis-publisher.ts), the
 * replay cursor (redis-replay.ts) and the channel subscriptions (redis-subscriptions.ts) take it as
 * their host, so each reads the same state rather than a copy of it.
 *
 * ioredis reconnects the sockets (retryStrategy below: backoff with ±30% jitter); what the bus
 * does after a reconnect is the transport's setup, run when both connections are ready.
 */
import type { EventEmitter } from 'node:events';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { ErrorCodes, GatewireError, errorMessage, isConnectRefused } from '../../errors.js';
import type { BusMode } from '../../protocol/routes.js';
import { BusLink } from '../bus-link.js';
import type { BusOptions } from '../bus-options.js';
import { Gate } from './gate.js';
import { FANOUT_KEY, channelOf, clusterLanes, laneOf, type Lane } from './channels.js';
import { PUBLISH_SCRIPT, SHARDED_PUBLISH_SCRIPT, SHARDNUMSUB_SCRIPT, TIME_SCRIPT } from './scripts.js';
import { ShardedSubscriber } from './redis-shards.js';
import { isRefusal } from './redis-util.js';
import type { PublisherHost, ScriptedRedis } from './redis-publisher.js';
import type { RedisBusStats, ReplayHost } from './redis-replay.js';

export type Role = 'pub' | 'sub';

/** The sub connection: one Redis, or on a cluster one per master that owns a lane (redis-shards.ts). */
export type SubClient = Redis | ShardedSubscriber;

/**
 * ms a command that failed without a reply waits for its connection's 'close' before it is
 * retried anyway (the connection did not drop after all). @default 5
 */
const CLOSE_WAIT_MS = 5;

/**
 * Longest wait between two attempts to rebuild the subscriber on a cluster: while a failed
 * master's replica is being promoted, each attempt costs one CLUSTER SLOTS and a refused connect,
 * and a shorter wait brings the node back sooner after the promotion. @default 500
 */
const SHARD_RETRY_MAX_MS = 500;

/** ms between retries of a publish call that a cluster's failed master did not answer. @default 100 */
const CLUSTER_RETRY_MS = 100;

/** What the link tells its transport. */
export interface RedisLinkEvents {
  /** both connections are ready: bring the bus back to its desired state */
  bothReady(): void;
  /** the sub connection closed: its subscriptions are gone with it */
  subLost(): void;
  /** Redis refused the bus before it ever connected (credentials, ACLs) */
  refused(err: GatewireError): void;
  /** a message arrived on the sub connection */
  message(channel: Buffer, message: Buffer): void;
  /** hands a message to the bus; true if it verified and was new */
  apply(envelope: Buffer, key: string): boolean;
  /** messages waiting to go out (for the logs) */
  waiting(): number;
}

/** The settings the link takes from RedisBusOptions. */
export interface RedisLinkSettings {
  /** one URL, or on a cluster the seed nodes */
  urls: string[];
  /** bus.redis.cluster: Redis Cluster, sharded pub/sub on lanes (channels.ts) */
  cluster: boolean;
  prefix: string;
  /** replicas WAIT waits for after every publish call (0: no WAIT) */
  waitReplicas: number;
  waitTimeoutMs: number;
  replayWindowMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

/** Largest reconnect delay after a refused connect, ms (reconnectDelayOf). @default 500 */
const REFUSED_MAX_MS = 500;

/**
 * The delay before reconnect attempt `attempt`: doubling from reconnectInitialMs up to
 * reconnectMaxMs, ±30 %; at most 500 ms after a refused connect (`refused`: nothing listens on the
 * port, as while Redis restarts; a refusal costs the server nothing), as on RabbitMQ (backoff.ts).
 */
export function reconnectDelayOf(
  attempt: number,
  settings: Pick<RedisLinkSettings, 'reconnectInitialMs' | 'reconnectMaxMs'>,
  refused: boolean,
  random: () => number = Math.random,
): number {
  const { reconnectInitialMs, reconnectMaxMs } = settings;
  const cap = refused ? Math.min(reconnectMaxMs, REFUSED_MAX_MS / 1.3) : reconnectMaxMs;
  const base = Math.min(cap, reconnectInitialMs * 2 ** Math.min(attempt - 1, 20));
  return Math.round(base * (0.7 + 0.6 * random()));
}

export class RedisLink extends BusLink implements PublisherHost, ReplayHost {
  pub: ScriptedRedis | null = null;
  sub: SubClient | null = null;
  readonly pubReady = new Gate();
  readonly subReady = new Gate();
  /** open while connected: both connections ready and the setup after them done */
  readonly busReady = new Gate();
  /** bumped whenever either connection closes: a setup that started before is stale */
  connEpoch = 0;
  /** bumped whenever the sub connection closes */
  subEpoch = 0;
  everConnected = false;
  /** the last connection error was a refused connect (reconnectDelay) */
  private lastErrorRefused = false;
  /** when the bus lost its connection (0: connected) */
  lostAt = 0;
  /** first client error of an outage is a warning, the repeats are debug */
  errorReported = false;

  readonly mode: BusMode;
  readonly instance: string;
  readonly prefix: string;
  readonly replayWindowMs: number;
  /** bus.redis.cluster */
  readonly cluster: boolean;
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  /**
   * The lanes channels and logs live on: on a cluster CLUSTER_LANES hash tags (channels.ts); on
   * one Redis a single lane whose prefix is bus.redis.prefix itself (the names of before lanes).
   */
  readonly lanes: Lane[];
  /** the lane this process publishes on */
  readonly pubLane: Lane;
  private readonly laneByPrefix: Map<string, Lane>;

  constructor(
    options: BusOptions,
    readonly log: Logger,
    private readonly settings: RedisLinkSettings,
    readonly stats: RedisBusStats,
    private readonly events: RedisLinkEvents,
  ) {
    super('Redis');
    this.mode = options.mode;
    this.instance = options.instance;
    this.prefix = settings.prefix;
    this.replayWindowMs = settings.replayWindowMs;
    this.cluster = settings.cluster;
    this.waitReplicas = settings.waitReplicas;
    this.waitTimeoutMs = settings.waitTimeoutMs;
    this.lanes = settings.cluster ? clusterLanes(settings.prefix) : [{ index: 0, prefix: settings.prefix, slot: -1 }];
    this.pubLane = this.lanes[settings.cluster ? laneOf(options.instance, this.lanes.length) : 0]!;
    this.laneByPrefix = new Map(this.lanes.map((lane) => [lane.prefix, lane]));
  }

  /** The lane and routing key of a channel name, or null if it is not one of ours. */
  parseChannel(name: string): { lane: Lane; key: string } | null {
    if (!this.cluster) {
      const prefix = this.prefix;
      return name.startsWith(`${prefix}:`) ? { lane: this.lanes[0]!, key: name.slice(prefix.length + 1) } : null;
    }
    const end = name.indexOf('}:');
    const lane = end < 0 ? undefined : this.laneByPrefix.get(name.slice(0, end + 1));
    return lane === undefined ? null : { lane, key: name.slice(end + 2) };
  }

  /** Every channel of a routing key (null: the fanout key), one per lane. */
  channelsOf(key: string | null): string[] {
    const name = key === null || this.mode === 'fanout' ? FANOUT_KEY : key;
    return this.lanes.map((lane) => channelOf(lane.prefix, name));
  }

  /** Redis's clock (ms) as seen by the shard of a lane (TIME; on a cluster through a keyed script). */
  async redisNow(lane: Lane): Promise<number> {
    const pub = this.pub!;
    const [seconds, micros] = (this.cluster
      ? await pub.gwTime(channelOf(lane.prefix, 'log'))
      : await pub.time()) as unknown as [string | number, string | number];
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  /** Whether messages go through the replay log (scripts.ts). */
  get logging(): boolean {
    return this.replayWindowMs > 0;
  }

  /** CLIENT SETNAME of this bus's connections. */
  connectionName(role: Role): string {
    return `gatewire:${this.instance}:${role}`;
  }

  /** The Redis channel of a routing key (direct mode), or the fanout channel. */
  channel(key: string | null): string {
    return this.channelOn(this.pubLane, key);
  }

  /** The channel of a routing key (null: fanout) on a lane. */
  channelOn(lane: Lane, key: string | null): string {
    return channelOf(lane.prefix, key === null || this.mode === 'fanout' ? FANOUT_KEY : key);
  }

  desiredKeys(): string[] {
    return this.bus.desiredKeys();
  }

  apply(envelope: Buffer, key: string): boolean {
    return this.events.apply(envelope, key);
  }

  brokerError(what: string, err: unknown): GatewireError {
    return new GatewireError(ErrorCodes.BUS_BROKER, `Redis refused ${what}: ${errorMessage(err)}`, { cause: err });
  }

  /** Creates both connections and starts connecting them (ioredis retries until disconnect). */
  open(): void {
    for (const gate of [this.pubReady, this.subReady, this.busReady]) gate.reset();
    const pub = (this.cluster ? this.createCluster() : this.createClient('pub')) as ScriptedRedis;
    pub.defineCommand('gwPublish', { numberOfKeys: 2, lua: this.cluster ? SHARDED_PUBLISH_SCRIPT : PUBLISH_SCRIPT });
    pub.defineCommand('gwTime', { numberOfKeys: 1, lua: TIME_SCRIPT });
    pub.defineCommand('gwShardNumsub', { numberOfKeys: 1, lua: SHARDNUMSUB_SCRIPT });
    const sub = this.cluster ? this.createShardedSubscriber(pub as unknown as Cluster) : this.createClient('sub');
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.events.message(channel, message));
    this.pub = pub;
    this.sub = sub;
    // A failed first attempt rejects connect(), but ioredis goes on retrying: the 'ready'
    // handlers take it from there. Failures are reported by the 'error' listeners.
    pub.connect().catch(() => undefined);
    sub.connect().catch(() => undefined);
  }

  /** Closed for good: every wait for a connection rejects with `err`. */
  failGates(err: Error): void {
    for (const gate of [this.pubReady, this.subReady, this.busReady]) gate.fail(err);
  }

  /**
   * After a command failed without a reply from Redis (the connection dropped). ioredis reports
   * the new status at once but emits 'close' only on the next tick, so the gate may still look
   * open: close it here when the client is down, or else wait for its 'close' (CLOSE_WAIT_MS at
   * most), so that a retry loop never spins without giving the event loop a turn.
   */
  async afterFailure(role: Role): Promise<void> {
    const client = role === 'pub' ? this.pub : this.sub;
    const gate = role === 'pub' ? this.pubReady : this.subReady;
    if (client === null || client.status !== 'ready') {
      gate.set(false);
      if (role === 'pub') this.busReady.set(false);
    } else if (this.cluster && role === 'pub') {
      // One master failed while the cluster client stays up: its replica takes over within
      // cluster-node-timeout plus an election; retrying every CLUSTER_RETRY_MS meanwhile.
      await new Promise<void>((resolve) => setTimeout(resolve, CLUSTER_RETRY_MS));
    } else {
      await closeOf(client, CLOSE_WAIT_MS);
    }
    await gate.wait();
  }

  /** Options every connection shares: credentials and TLS from the (first) URL. */
  private connectionOptions(role: Role): RedisOptions {
    const url = new URL(this.settings.urls[0]!);
    const options: RedisOptions = { connectionName: this.connectionName(role) };
    if (url.username !== '') options.username = decodeURIComponent(url.username);
    if (url.password !== '') options.password = decodeURIComponent(url.password);
    if (url.protocol === 'rediss:') options.tls = {};
    return options;
  }

  /** The pub connection on a cluster: ioredis's Cluster routes each call to its slot's master. */
  private createCluster(): Cluster {
    const cluster = new Cluster(this.settings.urls, {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: (attempt: number) => this.reconnectDelay(attempt),
      // While a failed master's replica takes over, calls to its slots are retried by the
      // publisher (redis-publisher.ts), which knows a call id; ioredis's own retries are short.
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      maxRedirections: 4,
      slotsRefreshTimeout: 1000,
      redisOptions: {
        ...this.connectionOptions('pub'),
        autoResendUnfulfilledCommands: true,
        maxRetriesPerRequest: null,
        disconnectTimeout: 0,
      },
    });
    cluster.on('error', (err: Error) => this.onClientError('pub', err));
    cluster.on('ready', () => this.onReady('pub'));
    cluster.on('close', () => this.onClose('pub'));
    // A master that failed is left to the publisher's retries and the subscriber's rebuild.
    cluster.on('node error', (err: Error) => this.onClientError('pub', err));
    return cluster;
  }

  private createShardedSubscriber(cluster: Cluster): ShardedSubscriber {
    const sub = new ShardedSubscriber(cluster, {
      slots: this.lanes.map((lane) => lane.slot),
      redisOptions: this.connectionOptions('sub'),
      retryDelay: (attempt) => {
        const delay = this.reconnectDelay(attempt);
        return delay === null ? null : Math.min(delay, SHARD_RETRY_MAX_MS);
      },
    });
    sub.on('error', (err: Error) => this.onClientError('sub', err));
    sub.on('ready', () => this.onReady('sub'));
    sub.on('close', () => this.onClose('sub'));
    return sub;
  }

  private createClient(role: Role): Redis {
    const client = new Redis(this.settings.urls[0]!, {
      lazyConnect: true,
      connectionName: this.connectionName(role),
      // We wait for the connection ourselves (bounded by the bus) and resubscribe ourselves;
      // see redis-transport.ts's header.
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

  reconnectDelay(attempt: number): number | null {
    return this.stopping ? null : reconnectDelayOf(attempt, this.settings, this.lastErrorRefused);
  }

  private onClientError(role: Role, err: Error): void {
    this.lastErrorRefused = isConnectRefused(err);
    if (this.stopping) return;
    if (!this.everConnected && isRefusal(err)) {
      // Credentials or ACLs: the next attempt would be refused again.
      this.events.refused(
        new GatewireError(ErrorCodes.BUS_BROKER, `Redis refused the bus: ${err.message}`, { cause: err }),
      );
      return;
    }
    const level = this.errorReported ? 'debug' : 'warn';
    this.errorReported = true;
    this.log[level]({ role, connection: this.connectionName(role), err: err.message }, 'Redis connection error');
  }

  private onReady(role: Role): void {
    const client = role === 'pub' ? this.pub : this.sub;
    if (this.stopping || client === null || client.status !== 'ready') return;
    (role === 'pub' ? this.pubReady : this.subReady).set(true);
    if (this.pubReady.open && this.subReady.open) this.events.bothReady();
  }

  private onClose(role: Role): void {
    this.connEpoch += 1;
    if (role === 'pub') {
      this.pubReady.set(false);
    } else {
      this.subReady.set(false);
      this.subEpoch += 1;
      this.events.subLost();
    }
    if (this.stopping) return;
    if (this.isConnected) {
      this.lostAt = Date.now();
      this.errorReported = false;
      this.log.warn(
        { role, connection: this.connectionName(role), waiting: this.events.waiting() },
        'lost a Redis connection; reconnecting',
      );
    }
    this.busReady.set(false);
    this.bus.setConnected(false);
  }
}

/** Resolves at the client's next 'close', or after `ms` if it stays open. */
function closeOf(client: EventEmitter, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.once('close', done);
  });
}

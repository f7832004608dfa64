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
import {
  FANOUT_KEY,
  ackKey,
  channelOf,
  compareStreamIds,
  fanoutChannel,
  logKey,
  parseStreamId,
  unwrap,
  type StreamId,
} from './channels.js';
import { PUBLISH_SCRIPT } from './scripts.js';

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

/** Counters specific to this bus (the common ones are in `stats`). */
export interface RedisBusStats {
  /** publish script calls (or PUBLISH pipelines) sent */
  calls: number;
  /** times the sub connection came back and the gap was replayed from the log */
  recoveries: number;
  /** messages applied from the replay log (missed live) */
  replayed: number;
  /** live messages skipped because the log had already applied them */
  duplicatesSkipped: number;
  /** recoveries whose gap reached past the replay window: messages may have been lost */
  gaps: number;
  /** stream ids ahead of Redis's clock, so not made by this Redis: the replay cursor ignored them */
  idsAheadOfClock: number;
}

/**
 * Largest message this bus sends when bus.maxMessageBytes is 0: far below the default pub/sub
 * output buffer limit of a subscriber (client-output-buffer-limit pubsub 32mb 8mb 60), past which
 * Redis disconnects it. @default 1048576
 */
export const REDIS_MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * How far ahead of Redis's clock (TIME at setup, allowing for the round trip) a stream id may be
 * and still move the replay cursor; an id further ahead was not made by this Redis. @default 2000
 */
const STREAM_CLOCK_SLACK_MS = 2000;

/** Most messages and payload bytes in one script call, so one call never stalls Redis for long. */
const MAX_CALL_MESSAGES = 1024;
const MAX_CALL_BYTES = 4 * 1024 * 1024;

/** Most channels in one SUBSCRIBE; log entries read per XRANGE. */
const MAX_BATCH = 5000;
const REPLAY_PAGE = 1000;

/**
 * One batch's envelope (shared by its keys' messages). Sealed at once while connected; while
 * disconnected, when its first message is taken into a call, so that what waited through an
 * outage is stamped when it is sent. Sealed ones drop the batch: the queue may hold many, and
 * keeping their commands alive until sent costs the publisher garbage-collection time.
 */
interface Sealed {
  batch: OutgoingBatch | null;
  body: Buffer | null;
}

interface Outgoing {
  /** key after the prefix: a routing key, or FANOUT_KEY */
  key: string;
  sealed: Sealed;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Arrived {
  id: StreamId;
  key: string;
  envelope: Buffer;
}

type Role = 'pub' | 'sub';

/** The pub connection with the script defined on it. */
interface ScriptedRedis extends Redis {
  gwPublish(...args: (string | number | Buffer)[]): Promise<number>;
}

export class RedisTransport implements Transport {
  readonly redisStats: RedisBusStats = { calls: 0, recoveries: 0, replayed: 0, duplicatesSkipped: 0, gaps: 0, idsAheadOfClock: 0 };

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

  // ---- replay log, receiving side
  /** id of the last logged message applied (or the baseline taken at the first connect) */
  private lastId: StreamId | null = null;
  /** Redis's clock minus this process's (ms), measured at every setup: bounds the replay cursor */
  private clockOffset = 0;
  private aheadLoggedAt = 0;
  /** the sub connection dropped: live messages wait in `arrived` until the gap is replayed */
  private recovering = false;
  private arrived: Arrived[] = [];

  // ---- publishing
  /** messages to publish, from queueHead on (an index, so taking a call does not copy the rest) */
  private queue: Outgoing[] = [];
  private queueHead = 0;
  /** batches in the queue not sealed yet (see Sealed) */
  private unsealed = 0;
  private draining = false;
  private callSeq = 0;
  private idleWaiters: (() => void)[] = [];

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
    if (!this.isConnected) this.failAll(this.closedError('Redis was unreachable when the bus closed'));
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
    if (this.isConnected) await this.idle(this.closeTimeoutMs);
    this.stopping = true;
    const closed = this.closedError('the bus was closed');
    this.startWaiter?.reject(closed);
    this.startWaiter = null;
    this.failAll(closed);
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

  /**
   * Queues a turn's batches, one message per key (per channel), under one promise: only the last
   * entry resolves it, any entry may reject it. Calls go out in order, so the last entry confirmed
   * means all were.
   */
  transmitAll(batches: OutgoingBatch[]): Promise<void> {
    if (this.stopping || (this.isClosing && !this.isConnected)) {
      return Promise.reject(this.closedError('the bus is closing and Redis is unreachable'));
    }
    return new Promise<void>((resolve, reject) => {
      const before = this.queue.length;
      for (const batch of batches) {
        // Sequence numbers follow the queue's order: nothing is sealed ahead of an unsealed one.
        let sealed: Sealed;
        if (this.isConnected && this.unsealed === 0) {
          sealed = { batch: null, body: batch.seal() };
        } else {
          sealed = { batch, body: null };
          this.unsealed += 1;
        }
        if (this.mode === 'fanout') this.queue.push({ key: FANOUT_KEY, sealed, resolve: noop, reject });
        else for (const key of batch.keys) this.queue.push({ key, sealed, resolve: noop, reject });
      }
      if (this.queue.length === before) {
        resolve();
        return;
      }
      this.queue[this.queue.length - 1]!.resolve = resolve;
      if (!this.draining) void this.drain();
    });
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
      const reply = (await withTimeout(pub.call('PUBSUB', 'NUMSUB', channelOf(this.prefix, nodeKey(instance))), 1000)) as [string, number];
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
      if (this.logging && this.lastId !== null) {
        // Whatever arrives before the gap is replayed waits; what had arrived meanwhile on an
        // earlier attempt is in the log too.
        this.recovering = true;
        this.arrived = [];
      }
    }
    if (this.stopping) return;
    if (this.isConnected) {
      this.lostAt = Date.now();
      this.errorReported = false;
      this.log.warn({ role, connection: this.connectionName(role), waiting: this.waiting }, 'lost a Redis connection; reconnecting');
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
      if (this.logging && this.lastId === null) {
        // First connect: check that Redis lets us run the script (an empty call), and take the
        // log's present end as the point a later replay starts from.
        await pub.gwPublish(logKey(this.prefix), ackKey(this.prefix, this.instance), 0, this.replayWindowMs, 0);
        const [seconds, micros] = (await pub.time()) as unknown as [string | number, string | number];
        const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
        this.clockOffset = redisNow - Date.now();
        if (this.lastId === null) this.lastId = parseStreamId(`${redisNow}-0`);
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
      await this.bus.replaySubscriptions().catch((err: unknown) =>
        this.log.error({ err: errorMessage(err) }, 'a desired channel could not be subscribed'),
      );
      if (epoch !== this.connEpoch) return;
      if (this.recovering && !(await this.replayGap(pub, epoch))) return;
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
      this.log.info({ prefix: this.prefix, mode: this.mode, channels, replayWindowMs: this.replayWindowMs }, 'connected to Redis');
      this.startWaiter?.resolve();
      this.startWaiter = null;
    } else {
      this.bus.countReconnect();
      this.log.info({ downMs, channels, waiting: this.waiting }, 'reconnected to Redis; every channel subscribed again');
    }
    void this.drain();
  }

  /**
   * Applies, in order, what the node missed while its sub connection was down: the log entries
   * after the last id it applied, for the keys it holds, then the live messages that arrived
   * meanwhile and were not in that read. Runs after every desired channel is subscribed again, so
   * anything published after the read arrives live. False if a connection dropped meanwhile (the
   * next setup goes on from where this one got).
   */
  private async replayGap(pub: ScriptedRedis, epoch: number): Promise<boolean> {
    const log = logKey(this.prefix);
    const from = this.lastId!;
    const [head] = (await pub.xrange(log, '-', '+', 'COUNT', 1)) as [string, string[]][];
    const [seconds] = (await pub.time()) as unknown as [string | number];
    if (epoch !== this.connEpoch) return false;
    // Trimming removes the oldest entries first: nothing after `from` is missing as long as the
    // log still begins at or before it (or is empty and `from` is within the window).
    const lost = head !== undefined ? compareStreamIds(parseStreamId(head[0]), from) > 0 : Number(seconds) * 1000 - this.replayWindowMs > from.ms;
    if (lost) {
      this.redisStats.gaps += 1;
      this.log.warn(
        { lastApplied: from.text, logStart: head?.[0] ?? null, replayWindowMs: this.replayWindowMs },
        'the subscriber was away longer than bus.redis.replayWindow: messages for this node in the gap may be lost',
      );
    }
    const held = this.mode === 'fanout' ? null : new Set(this.bus.desiredKeys());
    let replayed = 0;
    let cursor = from.text;
    for (;;) {
      const page = (await pub.xrangeBuffer(log, `(${cursor}`, '+', 'COUNT', REPLAY_PAGE)) as [Buffer, Buffer[]][];
      if (epoch !== this.connEpoch) return false;
      for (const [idBytes, fields] of page) {
        const id = parseStreamId(idBytes.toString('latin1'));
        cursor = id.text;
        if (this.lastId !== null && compareStreamIds(id, this.lastId) <= 0) continue;
        const { key, envelope } = logFields(fields);
        if (key === null || envelope === null || (held !== null && !held.has(key))) continue;
        replayed += 1;
        if (this.apply(envelope, key)) this.advance(id);
      }
      if (page.length < REPLAY_PAGE) break;
    }
    // No await from here on: live messages that arrive later find recovering off.
    for (const live of this.arrived) {
      if (compareStreamIds(live.id, this.lastId!) <= 0) {
        this.redisStats.duplicatesSkipped += 1;
        continue;
      }
      if (this.apply(live.envelope, live.key)) this.advance(live.id);
    }
    this.arrived = [];
    this.recovering = false;
    this.redisStats.recoveries += 1;
    this.redisStats.replayed += replayed;
    this.log.info({ from: from.text, replayed }, 'replayed what the subscriber missed from the replay log');
    return true;
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
      const id = parseStreamId(wrapped.id);
      if (this.recovering) {
        this.arrived.push({ id, key, envelope: wrapped.envelope });
        return;
      }
      // The id is the broker's addition, not signed: it moves the replay cursor only once the
      // envelope it wraps verified and was new, and never past Redis's own clock (advance).
      if (this.apply(wrapped.envelope, key)) this.advance(id);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'a bus message could not be handled');
    }
  }

  /** Hands a message to the base class; true if it verified and was new (and was applied). */
  private apply(envelope: Buffer, key: string): boolean {
    return this.mode === 'fanout' ? this.bus.receive(envelope) : this.bus.receive(envelope, key);
  }

  /** Moves the replay cursor to `id`, unless it lies ahead of Redis's clock (forged). */
  private advance(id: StreamId): void {
    if (id.ms > Date.now() + this.clockOffset + STREAM_CLOCK_SLACK_MS) {
      this.redisStats.idsAheadOfClock += 1;
      const now = Date.now();
      if (now - this.aheadLoggedAt >= 1000) {
        this.aheadLoggedAt = now;
        this.log.warn({ id: id.text.slice(0, 40) }, 'a replay-log id ahead of Redis\'s clock: ignored for the replay cursor');
      }
      return;
    }
    if (this.lastId === null || compareStreamIds(id, this.lastId) > 0) this.lastId = id;
  }

  // ---- publishing ------------------------------------------------------------------------

  /** Sends queued messages, one call in flight at a time, while connected. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.stopping && this.waiting > 0) {
        try {
          await this.busReady.wait();
        } catch {
          break; // closed: disconnect() rejected everything
        }
        await this.send(this.takeCall());
      }
    } finally {
      this.draining = false;
      if (this.waiting === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  /** Messages queued and not yet taken into a call. */
  private get waiting(): number {
    return this.queue.length - this.queueHead;
  }

  private takeCall(): Outgoing[] {
    const queue = this.queue;
    const start = this.queueHead;
    let end = start;
    let bytes = 0;
    while (end < queue.length && end - start < MAX_CALL_MESSAGES && bytes < MAX_CALL_BYTES) {
      // Sealed now, in the order they go out: sequence numbers follow the order of publishing.
      const sealed = queue[end]!.sealed;
      if (sealed.body === null) {
        sealed.body = sealed.batch!.seal();
        sealed.batch = null;
        this.unsealed -= 1;
      }
      bytes += sealed.body.length;
      end += 1;
    }
    const call = queue.slice(start, end);
    if (end === queue.length) {
      this.queue = [];
      this.queueHead = 0;
    } else if (end > 4096 && end * 2 > queue.length) {
      // Drop what was taken once it is most of the array (amortised: a queue that never empties
      // under steady load must not keep every message it ever sent).
      this.queue = queue.slice(end);
      this.queueHead = 0;
    } else {
      this.queueHead = end;
    }
    return call;
  }

  private async send(call: Outgoing[]): Promise<void> {
    if (call.length === 0) return;
    this.callSeq += 1;
    const id = this.callSeq;
    this.redisStats.calls += 1;
    for (;;) {
      try {
        if (this.logging) await this.runScript(id, call);
        else await this.runPipeline(call);
      } catch (err) {
        if (this.stopping) {
          this.settle(call, this.closedError('the bus was closed'));
          return;
        }
        if (isReplyError(err)) {
          this.settle(call, this.brokerError('publish', err));
          return;
        }
        // The connection dropped before the reply: send the same call again once reconnected.
        // The script recognises a call id it already ran (scripts.ts), so nothing goes twice.
        try {
          await this.afterFailure('pub');
          await this.busReady.wait();
        } catch {
          this.settle(call, this.closedError('the bus was closed'));
          return;
        }
        continue;
      }
      for (const out of call) out.resolve();
      return;
    }
  }

  private runScript(id: number, call: Outgoing[]): Promise<number> {
    return this.pub!.gwPublish(logKey(this.prefix), ackKey(this.prefix, this.instance), id, this.replayWindowMs, 'packed', this.prefix, packCall(call));
  }

  private async runPipeline(call: Outgoing[]): Promise<void> {
    const pipeline = this.pub!.pipeline();
    for (const out of call) pipeline.publish(this.channel(out.key === FANOUT_KEY ? null : out.key), out.sealed.body!);
    const results = (await pipeline.exec()) ?? [];
    for (const [err] of results) if (err) throw err;
  }

  private settle(call: Outgoing[], err: Error): void {
    for (const out of call) out.reject(err);
  }

  private failAll(err: Error): void {
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    this.unsealed = 0;
    for (const out of queued) out.reject(err);
  }

  /** Resolves once nothing waits to go out, or after `timeoutMs`. */
  private idle(timeoutMs: number): Promise<void> {
    if (!this.draining && this.waiting === 0) return Promise.resolve();
    return withTimeout(new Promise<void>((resolve) => this.idleWaiters.push(resolve)), timeoutMs).catch(() => {
      this.log.warn({ waiting: this.waiting }, 'closing with messages not yet published');
    });
  }

  private closedError(message: string): GatewireError {
    return new GatewireError(ErrorCodes.BUS_CLOSED, message);
  }

  private brokerError(what: string, err: unknown): GatewireError {
    return new GatewireError(ErrorCodes.BUS_BROKER, `Redis refused ${what}: ${errorMessage(err)}`, { cause: err });
  }
}

/** The c (key) and m (envelope) fields of a log entry. */
function logFields(fields: Buffer[]): { key: string | null; envelope: Buffer | null } {
  let key: string | null = null;
  let envelope: Buffer | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString('latin1');
    if (name === 'c') key = fields[i + 1]!.toString('utf8');
    else if (name === 'm') envelope = fields[i + 1]!;
  }
  return { key, envelope };
}

/**
 * The messages of one call as the script's packed argument (scripts.ts): a MessagePack array32 of
 * str32 items, key then envelope for each message. str, not bin: Redis's Lua cmsgpack reads only
 * str as bytes.
 */
function packCall(call: Outgoing[]): Buffer {
  let size = 5;
  for (const out of call) size += 10 + Buffer.byteLength(out.key, 'utf8') + out.sealed.body!.length;
  const packed = Buffer.allocUnsafe(size);
  packed[0] = 0xdd;
  packed.writeUInt32BE(call.length * 2, 1);
  let at = 5;
  for (const out of call) {
    packed[at] = 0xdb;
    const keyLength = packed.write(out.key, at + 5, 'utf8');
    packed.writeUInt32BE(keyLength, at + 1);
    at += 5 + keyLength;
    const body = out.sealed.body!;
    packed[at] = 0xdb;
    packed.writeUInt32BE(body.length, at + 1);
    at += 5 + body.copy(packed, at + 5);
  }
  return packed;
}

function noop(): void {}

function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

/** What Redis will refuse again on the next attempt: credentials and ACLs. */
function isRefusal(err: Error): boolean {
  return /NOAUTH|WRONGPASS|NOPERM|invalid password|invalid username/i.test(err.message);
}

/** Closes a client for good: QUIT when it is up, then drop the socket and any reconnect timer. */
async function shut(client: Redis | null): Promise<void> {
  if (client === null) return;
  if (client.status === 'ready') await withTimeout(client.quit(), 1000).catch(() => undefined);
  client.disconnect();
  // disconnectTimeout 0 leaves ioredis one zero-delay timer after disconnect(): let it run.
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Values added within one event-loop turn, handed to `send` together on the next (setImmediate),
 * in chunks of at most MAX_BATCH. Each add() settles with its chunk.
 */
class TurnBatch<T> {
  private items: { value: T; resolve: () => void; reject: (err: Error) => void }[] = [];
  private scheduled = false;

  constructor(private readonly send: (values: T[]) => Promise<unknown>) {}

  add(value: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.items.push({ value, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.run());
      }
    });
  }

  private run(): void {
    this.scheduled = false;
    const items = this.items;
    this.items = [];
    for (let i = 0; i < items.length; i += MAX_BATCH) {
      const chunk = items.slice(i, i + MAX_BATCH);
      this.send(chunk.map((item) => item.value)).then(
        () => {
          for (const item of chunk) item.resolve();
        },
        (err: Error) => {
          for (const item of chunk) item.reject(err);
        },
      );
    }
  }
}

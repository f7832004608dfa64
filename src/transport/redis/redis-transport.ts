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
 * On one Redis: plain SUBSCRIBE, not sharded pub/sub. SSUBSCRIBE/SPUBLISH exist so that a Redis
 * Cluster sends a message only within the shard that owns the channel's slot instead of over the
 * whole cluster bus; a single Redis 7.0 has no cluster bus, so sharded channels would cost the
 * same and only hide our channels from PUBSUB CHANNELS.
 *
 * On a Redis Cluster (bus.redis.cluster, docs/cluster-redis.md): every channel and key carries a
 * lane's hash tag (channels.ts: CLUSTER_LANES lanes spread over the slot space); a process
 * publishes on its own lane with SPUBLISH, in a script that appends to that lane's log in the same
 * slot; a node subscribes each key on every lane (SSUBSCRIBE, one connection per master,
 * redis-shards.ts); the pub connection is ioredis's Cluster. With bus.redis.waitReplicas, every
 * publish call is followed by WAIT on the same master, and a call its replicas did not confirm
 * rejects (GW_ERR_BUS_NOT_REPLICATED).
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
import type { Logger } from 'pino';
import type { BusOptions } from '../bus.js';
import type { OutgoingBatch, Presence, Transport, TransportHooks } from '../transport.js';
import { nodeKey } from '../../protocol/routing-keys.js';
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';
import { ackKey, channelOf, logKey, parseStreamId, unwrap } from './channels.js';
import { SEVERAL_URLS, isReplyError, isTransientClusterError, redisUrls, shut, withTimeout } from './redis-util.js';
import { ShardedSubscriber } from './redis-shards.js';
import { RedisPublisher } from './redis-publisher.js';
import { ReplayCursor, type RedisBusStats } from './redis-replay.js';
import { RedisLink, type Role } from './redis-link.js';
import { ChannelSubscriptions } from './redis-subscriptions.js';

export type { RedisBusStats };

export interface RedisBusOptions {
  /**
   * redis://[user:password@]host:port[/db], rediss:// for TLS; on a cluster the seed nodes, as a
   * list or comma-separated (redisUrls)
   */
  url: string | string[];
  /** Redis Cluster: sharded pub/sub on lanes (channels.ts, redis-shards.ts). @default false */
  cluster?: boolean;
  /**
   * Replicas WAIT waits for after every publish call; -1: 1 on a cluster, 0 (no WAIT) on one
   * Redis. @default -1
   */
  waitReplicas?: number;
  /** ms WAIT waits before the call is refused (GW_ERR_BUS_NOT_REPLICATED). @default 1000 */
  waitTimeoutMs?: number;
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

/** ms before a cluster setup that failed while both connections stayed up runs again. @default 100 */
const CLUSTER_SETUP_RETRY_MS = 100;

export class RedisTransport implements Transport {
  readonly redisStats: RedisBusStats = {
    calls: 0,
    recoveries: 0,
    replayed: 0,
    duplicatesSkipped: 0,
    gaps: 0,
    idsAheadOfClock: 0,
    notReplicated: 0,
  };

  private readonly closeTimeoutMs: number;
  private readonly link: RedisLink;
  private readonly replay: ReplayCursor;
  private readonly publisher: RedisPublisher;
  private readonly subscriptions: ChannelSubscriptions;
  private startWaiter: { resolve: () => void; reject: (err: Error) => void } | null = null;

  /** Redis publishes per channel: a send to several keys is split into one command per key. */
  readonly keysPerMessage = 1;
  readonly defaultMaxMessageBytes = REDIS_MAX_MESSAGE_BYTES;

  constructor(
    options: BusOptions,
    private readonly log: Logger,
    redisOptions: RedisBusOptions,
  ) {
    this.closeTimeoutMs = redisOptions.closeTimeoutMs ?? 5000;
    const urls = redisUrls(redisOptions.url);
    const cluster = redisOptions.cluster ?? false;
    if (urls.length !== 1 && !cluster) throw new GatewireError(ErrorCodes.INVALID_CONFIG, SEVERAL_URLS);
    const waitReplicas = redisOptions.waitReplicas ?? -1;
    const settings = {
      urls,
      cluster,
      waitReplicas: waitReplicas < 0 ? (cluster ? 1 : 0) : waitReplicas,
      waitTimeoutMs: redisOptions.waitTimeoutMs ?? 1000,
      prefix: redisOptions.prefix,
      replayWindowMs: redisOptions.replayWindowMs ?? 10000,
      reconnectInitialMs: redisOptions.reconnect?.initialMs ?? 50,
      reconnectMaxMs: redisOptions.reconnect?.maxMs ?? 2000,
    };
    this.link = new RedisLink(options, log, settings, this.redisStats, {
      bothReady: () => void this.setup(),
      subLost: () => {
        this.subscriptions.lost();
        // Whatever arrives before the gap is replayed waits; what had arrived meanwhile on an
        // earlier attempt is in the log too.
        if (this.link.logging) this.replay.subscriberLost();
      },
      refused: (err) => this.failStart(err),
      message: (channel, message) => this.onMessage(channel, message),
      apply: (envelope, key) => this.apply(envelope, key),
      waiting: () => this.publisher.waiting,
    });
    this.replay = new ReplayCursor(this.link);
    this.publisher = new RedisPublisher(this.link);
    this.subscriptions = new ChannelSubscriptions(this.link);
  }

  /** Membership's view of the peers: not needed on Redis. */
  peerAnnounced(): void {}

  peerLeft(): void {}

  /** CLIENT SETNAME of this bus's connections. */
  connectionName(role: Role): string {
    return this.link.connectionName(role);
  }

  /** The Redis channel of a routing key (direct mode), or the fanout channel. */
  channel(key: string | null): string {
    return this.link.channel(key);
  }

  /** The bus is closing (BusLink.closing): what waits for an unreachable Redis fails at once. */
  closing(): void {
    this.link.closing((err) => this.publisher.failAll(err));
  }

  // ---- Transport contract ----------------------------------------------------------------

  async connect(hooks: TransportHooks): Promise<void> {
    this.link.attach(hooks);
    const started = new Promise<void>((resolve, reject) => {
      this.startWaiter = { resolve, reject };
    });
    this.link.open();
    await started;
  }

  async disconnect(): Promise<void> {
    const link = this.link;
    if (link.isConnected) await this.publisher.idle(this.closeTimeoutMs);
    link.stopping = true;
    const closed = link.closedError('the bus was closed');
    this.startWaiter?.reject(closed);
    this.startWaiter = null;
    this.publisher.failAll(closed);
    const { pub, sub } = link;
    if (pub !== null && pub.status === 'ready' && link.logging) {
      await withTimeout(pub.del(ackKey(link.pubLane.prefix, link.instance)), 1000).catch(() => undefined);
    }
    link.failGates(closed);
    link.bus.setConnected(false);
    await Promise.all([shut(pub), shut(sub)]);
    link.pub = null;
    link.sub = null;
  }

  /** Queues a turn's batches (redis-publisher.ts). */
  transmitAll(batches: OutgoingBatch[]): Promise<void> {
    return this.publisher.enqueue(batches);
  }

  /** Subscribes a key's channel (redis-subscriptions.ts). */
  bindKey(key: string): Promise<void> {
    return this.subscriptions.bind(key);
  }

  unbindKey(key: string): Promise<void> {
    return this.subscriptions.unbind(key);
  }

  /**
   * Whether another node still has its subscriber connection (PUBSUB NUMSUB of its node channel,
   * which every node subscribes in both modes). A killed process's connections close at once; a
   * slow or frozen one keeps them.
   */
  async probe(instance: string): Promise<Presence> {
    const link = this.link;
    const pub = link.pub;
    if (pub === null || pub.status !== 'ready') return 'unknown';
    try {
      // On a cluster: the node channel on lane 0, asked of the shard that owns it (a keyed script).
      const channel = channelOf(link.lanes[0]!.prefix, nodeKey(instance));
      const reply = (await withTimeout(
        link.cluster ? pub.gwShardNumsub(channel) : pub.call('PUBSUB', 'NUMSUB', channel),
        1000,
      )) as [string, number];
      return Number(reply[1]) > 0 ? 'present' : 'absent';
    } catch {
      return 'unknown';
    }
  }

  // ---- connections ---------------------------------------------------------------------

  private failStart(err: GatewireError): void {
    this.log.error({ err: err.message }, 'Redis refused the bus');
    this.startWaiter?.reject(err);
    this.startWaiter = null;
    void this.disconnect();
  }

  /** Both connections are ready: bring the bus back to its desired state (see the header). */
  private async setup(): Promise<void> {
    const link = this.link;
    const epoch = link.connEpoch;
    const pub = link.pub!;
    const sub = link.sub!;
    try {
      if (link.logging && !this.replay.started) {
        // First connect: check that Redis lets us run the script (an empty call), and take each
        // log's present end as the point a later replay starts from.
        const lane = link.pubLane.prefix;
        await pub.gwPublish(logKey(lane), ackKey(lane, link.instance), 0, link.replayWindowMs, 0);
        for (const each of link.lanes) this.replay.baseline(each, await link.redisNow(each));
      }
      if (epoch !== link.connEpoch) return;
      this.subscriptions.dropStale(sub);
      if (!(await this.subscriptions.subscribeFanout(sub, epoch))) return;
      await link.bus
        .replaySubscriptions()
        .catch((err: unknown) =>
          this.log.error({ err: errorMessage(err) }, 'a desired channel could not be subscribed'),
        );
      if (epoch !== link.connEpoch) return;
      if (this.replay.recovering && !(await this.replay.replayGap(pub, epoch))) return;
    } catch (err) {
      if (link.stopping) return;
      if (link.cluster && (!isReplyError(err) || isTransientClusterError(err))) {
        this.clusterSetupFailed(err, epoch);
        return;
      }
      if (!isReplyError(err)) {
        // A connection dropped meanwhile: its next 'ready' runs the setup again.
        this.log.debug({ err: errorMessage(err) }, 'Redis setup interrupted');
        return;
      }
      const error = link.brokerError('the bus setup', err);
      this.log.error({ err: errorMessage(err) }, 'Redis refused the bus setup');
      // Refused before the first connect (an ACL without EVAL or SUBSCRIBE): start fails.
      if (!link.everConnected) this.failStart(error);
      return;
    }
    if (epoch !== link.connEpoch || link.stopping || link.isConnected) return;
    const downMs = link.lostAt === 0 ? 0 : Date.now() - link.lostAt;
    link.lostAt = 0;
    link.errorReported = false;
    link.bus.setConnected(true);
    link.busReady.set(true);
    const channels = this.subscriptions.count;
    if (!link.everConnected) {
      link.everConnected = true;
      this.log.info(
        { prefix: link.prefix, mode: link.mode, channels, replayWindowMs: link.replayWindowMs },
        'connected to Redis',
      );
      this.startWaiter?.resolve();
      this.startWaiter = null;
    } else {
      link.bus.countReconnect();
      this.log.info(
        { downMs, channels, waiting: this.publisher.waiting },
        'reconnected to Redis; every channel subscribed again',
      );
    }
    void this.publisher.drain();
  }

  /**
   * On a cluster, a setup step can fail while both connections stay up (a shard failing over
   * answers CLUSTERDOWN, its old address refuses, the subscriber's slot moved), and no 'ready'
   * would ever run the setup again: a moved slot rebuilds the subscriber (whose 'ready' runs it),
   * anything else runs it again shortly. Every step of the setup may run twice.
   */
  private clusterSetupFailed(err: unknown, epoch: number): void {
    const link = this.link;
    this.log.debug({ err: errorMessage(err) }, 'Redis Cluster setup interrupted; trying again');
    if (link.sub instanceof ShardedSubscriber && isReplyError(err) && /^(MOVED|ASK)\b/.test(errorMessage(err))) {
      link.sub.moved();
      return;
    }
    setTimeout(() => {
      if (epoch === link.connEpoch && !link.stopping && !link.isConnected) void this.setup();
    }, CLUSTER_SETUP_RETRY_MS);
  }

  // ---- receiving -------------------------------------------------------------------------

  private onMessage(channel: Buffer, message: Buffer): void {
    // ioredis rethrows a listener's exception as an uncaught exception: nothing may escape.
    try {
      const parsed = this.link.parseChannel(channel.toString('utf8'));
      if (parsed === null) return;
      const wrapped = unwrap(message);
      if (wrapped === null) {
        // A plain envelope from another program (not in the log), or garbage: receive() counts it.
        this.apply(message, parsed.key);
        return;
      }
      this.replay.onWrapped(parsed.lane, parseStreamId(wrapped.id), wrapped.envelope, parsed.key);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'a bus message could not be handled');
    }
  }

  /** Hands a message to the bus; true if it verified and was new (and was applied). */
  private apply(envelope: Buffer, key: string): boolean {
    const bus = this.link.bus;
    return this.link.mode === 'fanout' ? bus.receive(envelope) : bus.receive(envelope, key);
  }
}

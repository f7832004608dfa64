/**
 * The Redis bus (pub/sub, ioredis), in fanout or direct mode (DESIGN §1, §5;
 * docs/redis-wire-format.md is the contract for other languages, channels.ts names everything).
 *
 * Two connections per process, named `gatewire:<instance>:pub` and `gatewire:<instance>:sub`
 * (CLIENT SETNAME, so an operator or a test can CLIENT KILL exactly one node's connections):
 *   - sub: SUBSCRIBE only; messages arrive as Buffers ('messageBuffer'), never as strings;
 *   - pub: publishing, the delivery-check bookkeeping (scripts.ts) and nothing that blocks.
 * In fanout mode every node subscribes the one channel <prefix>:fanout and every command is
 * published there. In direct mode a node subscribes <prefix>:<key> for its node key, `all`, and
 * each uid and group key it holds, on the first local holder, and unsubscribes on the last (the
 * base class's desired set drives bindKey/unbindKey).
 *
 * Plain SUBSCRIBE, not sharded pub/sub: SSUBSCRIBE/SPUBLISH exist so that a Redis Cluster sends a
 * message only within the shard that owns the channel's slot instead of over the whole cluster
 * bus. A single Redis 7.0 (or a primary with replicas/Sentinel) has no cluster bus, so sharded
 * channels would cost the same and only hide our channels from PUBSUB CHANNELS. The delivery
 * check's script also reads keys of many slots in one call, which a cluster would refuse.
 * Redis Cluster support would be a separate mode (hash-tagged keys per slot, SSUBSCRIBE per
 * shard); it is not built.
 *
 * Reconnects are ours, not ioredis's: autoResubscribe is off and enableOfflineQueue is off. On
 * every (re)connect of either connection the bus is not connected until, in this order:
 *   mark itself live (delivery check) -> drop stale subscriptions and registrations (keys that
 *   stopped being desired while a connection was down) -> subscribe the fanout channel (fanout)
 *   -> replaySubscriptions() (every desired key: SUBSCRIBE, and join its holder set)
 *   -> connected: commands that waited go out, in order.
 * So the channels subscribed on the current sub connection are exactly the desired set. ioredis
 * still reconnects the sockets (retryStrategy: backoff with jitter) and resends a command whose
 * reply a dropped connection swallowed (autoResendUnfulfilledCommands; with it off, ioredis drops
 * such a command's promise without settling it). A resent publish call is harmless: see the
 * call ids in scripts.ts.
 *
 * Publishing: commands from the base class's batches queue here in order and go out in one
 * script call (PUBLISH_SCRIPT, or a pipeline of PUBLISH when bus.redis.deliveryCheck is off),
 * one call in flight at a time; what arrives meanwhile rides in the next call. While
 * disconnected they wait, bounded by bus.maxBufferedCommands (the base class). A message the
 * script holds back (a holder of its channel is resubscribing) waits with every later message
 * of its channel, and is retried every 5 to 100 ms; after bus.redis.deliveryTimeout it is
 * published to whoever is subscribed, with a warning and a count (redisStats.forced). Only that
 * channel waits: holding every channel would stall all of a sender's pushes for up to
 * livenessTimeout whenever any node crashed, so order across channels is kept only while nothing
 * is held back (docs/redis-wire-format.md, "Order").
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Bus, type BusOptions, type OutgoingBatch } from '../bus.js';
import { Op } from '../commands.js';
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';
import { Gate } from './gate.js';
import {
  acksKey,
  channelOf,
  checkOf,
  fanoutChannel,
  holdersKey,
  isHolderKey,
  livenessKey,
  type Check,
} from './channels.js';
import { LIVENESS_SCRIPT, PUBLISH_SCRIPT, REGISTER_SCRIPT } from './scripts.js';

export interface RedisBusOptions {
  /** redis://[user:password@]host:port[/db], rediss:// for TLS */
  url: string;
  /** channel and key prefix. @default 'gatewire' */
  prefix: string;
  /** hold a message back while a live holder of its channel is not subscribed. @default true */
  deliveryCheck?: boolean;
  /** ms a bus counts as live after its last refresh (refreshed every quarter of it). @default 5000 */
  livenessTimeoutMs?: number;
  /** ms a message may be held back before it goes to whoever is subscribed. @default 30000 */
  deliveryTimeoutMs?: number;
  /** ms close() waits for messages still going out. @default 5000 */
  closeTimeoutMs?: number;
  /** reconnect delays: initialMs doubling up to maxMs, ±30% jitter. @default { initialMs: 50, maxMs: 2000 } */
  reconnect?: { initialMs?: number; maxMs?: number };
}

/** Counters specific to this bus (the common ones are in `stats`). */
export interface RedisBusStats {
  /** script calls (or PUBLISH pipelines) sent */
  calls: number;
  /** messages held back at least once because a holder of their channel was not subscribed */
  heldBack: number;
  /** messages published after deliveryTimeout although a live holder was still missing */
  forced: number;
  /** times this node's subscriber came back after more than livenessTimeout */
  longOutages: number;
}

/** Commands whose loss the cluster tolerates by design (each has its own timeout or repeats). */
const CONTROL_OPS: ReadonlySet<number> = new Set([Op.ANNOUNCE, Op.LEAVE, Op.QUERY, Op.REPLY]);

/** Most messages and payload bytes in one script call, so one call never stalls Redis for long. */
const MAX_CALL_MESSAGES = 1024;
const MAX_CALL_BYTES = 4 * 1024 * 1024;

/** Most channels in one SUBSCRIBE, or registrations in one pipeline. */
const MAX_BATCH = 5000;

/** Retry delays for held-back messages. */
const RETRY_MIN_MS = 5;
const RETRY_MAX_MS = 100;

interface Outgoing {
  channel: string;
  check: Check;
  arg: string;
  body: Buffer;
  /** ms since epoch when the script first held it back (0: never); deliveryTimeout counts from here */
  heldAt: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

type Role = 'pub' | 'sub';

/** The pub connection with the scripts defined on it. */
interface ScriptedRedis extends Redis {
  gwPublish(...args: (string | number | Buffer)[]): Promise<string>;
  gwAlive(...args: (string | number)[]): Promise<number>;
  /** numberOfKeys first: KEYS are the holder sets */
  gwRegister(...args: (string | number)[]): Promise<number>;
}

export class RedisBus extends Bus {
  readonly redisStats: RedisBusStats = { calls: 0, heldBack: 0, forced: 0, longOutages: 0 };

  private readonly prefix: string;
  private readonly deliveryCheck: boolean;
  private readonly livenessTimeoutMs: number;
  private readonly deliveryTimeoutMs: number;
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
  private epoch = 0;
  /** bumped whenever the sub connection closes */
  private subEpoch = 0;
  /** keys subscribed and confirmed on the current sub connection */
  private readonly subscribedOnSub = new Set<string>();
  private fanoutSubscribed = false;
  /** holder keys whose SADD may be in Redis and whose SREM is not confirmed */
  private readonly registered = new Set<string>();

  private stopping = false;
  private closing = false;
  private everConnected = false;
  private startWaiter: { resolve: () => void; reject: (err: Error) => void } | null = null;
  /** when the bus lost its connection (0: connected) */
  private lostAt = 0;
  /** when the sub connection went down (0: up) */
  private subDownSince = 0;
  /** first client error of an outage is a warning, the repeats are debug */
  private errorReported = false;
  private livenessTimer: NodeJS.Timeout | undefined;

  private queue: Outgoing[] = [];
  /** channel -> messages held back on it, oldest first */
  private readonly blocked = new Map<string, Outgoing[]>();
  private draining = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 0;
  private retryDue = false;
  private callSeq = 0;
  private idleWaiters: (() => void)[] = [];

  // Subscriptions and holder registrations asked for in one event-loop turn go out together in
  // the next: one SUBSCRIBE with many channels, one REGISTER_SCRIPT call per direction. A login storm or the
  // replay of 100,000 keys then costs a few writes instead of one per key.
  private readonly subscribes = new TurnBatch<string>((channels) => this.onSub((sub) => sub.subscribe(...channels)));
  private readonly unsubscribes = new TurnBatch<string>((channels) => this.unsubscribeAll(channels));
  private readonly registrations = new TurnBatch<{ add: boolean; key: string }>((ops) => this.registerAll(ops));

  constructor(
    options: BusOptions,
    log: Logger,
    private readonly redisOptions: RedisBusOptions,
  ) {
    super(options, log);
    this.prefix = redisOptions.prefix;
    this.deliveryCheck = redisOptions.deliveryCheck ?? true;
    this.livenessTimeoutMs = redisOptions.livenessTimeoutMs ?? 5000;
    this.deliveryTimeoutMs = redisOptions.deliveryTimeoutMs ?? 30000;
    this.closeTimeoutMs = redisOptions.closeTimeoutMs ?? 5000;
    this.reconnectInitialMs = redisOptions.reconnect?.initialMs ?? 50;
    this.reconnectMaxMs = redisOptions.reconnect?.maxMs ?? 2000;
    // Redis publishes per channel: a command for several keys is sent once per key, and the
    // receiver applies it for the first key it holds (Bus.receive), so keysPerMessage stays 1.
    this.keysPerMessage = 1;
  }

  /** CLIENT SETNAME of this bus's connections. */
  connectionName(role: Role): string {
    return `gatewire:${this.instance}:${role}`;
  }

  /** The Redis channel of a routing key (direct mode), or the fanout channel. */
  channel(key: string | null): string {
    return key === null || this.mode === 'fanout' ? fanoutChannel(this.prefix) : channelOf(this.prefix, key);
  }

  /**
   * Closes the bus. While Redis is unreachable, commands still waiting are rejected with
   * BUS_CLOSED at once (a shutdown must not wait for a server that may never come back); while
   * connected, they go out first (closeTimeoutMs at most).
   */
  override async close(): Promise<void> {
    this.closing = true;
    if (!this.isConnected) this.failAll(this.closedError('Redis was unreachable when the bus closed'));
    await super.close();
  }

  // ---- Bus contract --------------------------------------------------------------------

  protected async connect(): Promise<void> {
    this.stopping = false;
    this.closing = false;
    for (const gate of [this.pubReady, this.subReady, this.busReady]) gate.reset();
    const started = new Promise<void>((resolve, reject) => {
      this.startWaiter = { resolve, reject };
    });
    const pub = this.createClient('pub') as ScriptedRedis;
    pub.defineCommand('gwPublish', { numberOfKeys: 2, lua: PUBLISH_SCRIPT });
    pub.defineCommand('gwAlive', { numberOfKeys: 2, lua: LIVENESS_SCRIPT });
    pub.defineCommand('gwRegister', { lua: REGISTER_SCRIPT });
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

  protected async disconnect(): Promise<void> {
    if (this.isConnected) await this.idle(this.closeTimeoutMs);
    this.stopping = true;
    clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const closed = this.closedError('the bus was closed');
    this.startWaiter?.reject(closed);
    this.startWaiter = null;
    this.failAll(closed);
    const pub = this.pub;
    const sub = this.sub;
    // Leave the cluster's bookkeeping first, so nobody waits for this node's subscriptions.
    if (pub !== null && pub.status === 'ready' && this.deliveryCheck) {
      const leave = pub.pipeline();
      (leave as unknown as { gwAlive(...args: (string | number)[]): unknown }).gwAlive(
        livenessKey(this.prefix),
        acksKey(this.prefix),
        this.instance,
        0,
        0,
      );
      const keys = [...this.registered].map((key) => holdersKey(this.prefix, key));
      for (let i = 0; i < keys.length; i += MAX_BATCH) {
        const chunk = keys.slice(i, i + MAX_BATCH);
        (leave as unknown as { gwRegister(...args: (string | number)[]): unknown }).gwRegister(chunk.length, ...chunk, this.instance, 0);
      }
      await withTimeout(leave.exec(), this.closeTimeoutMs).catch((err: unknown) =>
        this.log.debug({ err: errorMessage(err) }, 'could not remove this node from Redis'),
      );
    }
    this.registered.clear();
    for (const gate of [this.pubReady, this.subReady, this.busReady]) gate.fail(closed);
    this.setConnected(false);
    await Promise.all([shut(pub), shut(sub)]);
    this.pub = null;
    this.sub = null;
  }

  protected transmit(batch: OutgoingBatch): Promise<void> {
    if (this.stopping || (this.closing && !this.isConnected)) {
      return Promise.reject(this.closedError('the bus is closing and Redis is unreachable'));
    }
    const control = batch.commands.every((command) => CONTROL_OPS.has(command.op));
    const keys: (string | null)[] = this.mode === 'fanout' ? [null] : batch.keys;
    const sent: Promise<void>[] = [];
    for (const key of keys) {
      const { check, arg } = checkOf(this.prefix, this.mode, key);
      sent.push(this.enqueue(this.channel(key), control || !this.deliveryCheck ? '-' : check, arg, batch.body));
    }
    if (sent.length === 0) return Promise.resolve();
    return sent.length === 1 ? sent[0]! : Promise.all(sent).then(() => undefined);
  }

  protected async bindKey(key: string): Promise<void> {
    // Fanout mode has no per-key channels (the base class may still hold its node and broadcast
    // routes, whose keys are null there): the one fanout channel is subscribed by setup().
    if (this.mode === 'fanout') return;
    const channel = this.channel(key);
    const register = this.deliveryCheck && isHolderKey(key);
    for (;;) {
      await this.subReady.wait();
      const subEpoch = this.subEpoch;
      try {
        await Promise.all([this.subscribes.add(channel), register ? this.register(key) : undefined]);
      } catch (err) {
        if (this.stopping) throw this.closedError('the bus was closed');
        if (isReplyError(err)) throw this.brokerError(`SUBSCRIBE ${channel}`, err);
        await this.afterFailure('sub'); // the connection dropped: subscribe on the next one
        continue;
      }
      // Confirmed on a connection that has closed since: that subscription is gone with it.
      if (subEpoch === this.subEpoch) {
        this.subscribedOnSub.add(key);
        return;
      }
    }
  }

  protected async unbindKey(key: string): Promise<void> {
    if (this.mode === 'fanout') return;
    const channel = this.channel(key);
    // Unsubscribe first, then leave the holder set: in between, a sender holds messages back
    // for a moment instead of publishing one this node would miss while it still counts.
    if (this.subscribedOnSub.delete(key) && this.subReady.open) await this.unsubscribes.add(channel);
    if (this.registered.has(key)) await this.unregister(key);
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
      const error = new GatewireError(ErrorCodes.BUS_BROKER, `Redis refused the bus: ${err.message}`, { cause: err });
      this.log.error({ role, err: err.message }, 'Redis refused the connection');
      this.startWaiter?.reject(error);
      this.startWaiter = null;
      void this.disconnect();
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
    if (this.pubReady.open && this.subReady.open) void this.setup();
  }

  private onClose(role: Role): void {
    this.epoch += 1;
    if (role === 'pub') {
      this.pubReady.set(false);
    } else {
      this.subReady.set(false);
      this.subEpoch += 1;
      this.subscribedOnSub.clear();
      this.fanoutSubscribed = false;
      if (this.subDownSince === 0) this.subDownSince = Date.now();
    }
    if (this.stopping) return;
    if (this.isConnected) {
      this.lostAt = Date.now();
      this.errorReported = false;
      this.log.warn({ role, connection: this.connectionName(role), waiting: this.queue.length }, 'lost a Redis connection; reconnecting');
    }
    this.busReady.set(false);
    this.setConnected(false);
  }

  /** Both connections are ready: bring the bus back to its desired state (see the header). */
  private async setup(): Promise<void> {
    const epoch = this.epoch;
    const pub = this.pub!;
    const sub = this.sub!;
    try {
      if (this.deliveryCheck) await this.refreshLiveness(pub);
      if (epoch !== this.epoch) return;
      this.dropStale(pub, sub);
      if (this.mode === 'fanout' && !this.fanoutSubscribed) {
        await sub.subscribe(fanoutChannel(this.prefix));
        if (epoch !== this.epoch) return;
        this.fanoutSubscribed = true;
      }
      await this.replaySubscriptions().catch((err: unknown) =>
        this.log.error({ err: errorMessage(err) }, 'a desired channel could not be subscribed'),
      );
    } catch (err) {
      if (this.stopping) return;
      if (!isReplyError(err)) {
        // A connection dropped meanwhile: its next 'ready' runs the setup again.
        this.log.debug({ err: errorMessage(err) }, 'Redis setup interrupted');
        return;
      }
      const error = this.brokerError('the bus setup', err);
      this.log.error({ err: errorMessage(err) }, 'Redis refused the bus setup');
      if (!this.everConnected) {
        // Refused before the first connect (an ACL without EVALSHA or SUBSCRIBE): start fails.
        this.startWaiter?.reject(error);
        this.startWaiter = null;
        void this.disconnect();
      }
      return;
    }
    if (epoch !== this.epoch || this.stopping || this.isConnected) return;
    const downMs = this.lostAt === 0 ? 0 : Date.now() - this.lostAt;
    const subDownMs = this.subDownSince === 0 ? 0 : Date.now() - this.subDownSince;
    this.subDownSince = 0;
    this.lostAt = 0;
    this.errorReported = false;
    this.setConnected(true);
    this.busReady.set(true);
    const channels = this.subscribedOnSub.size + (this.fanoutSubscribed ? 1 : 0);
    if (!this.everConnected) {
      this.everConnected = true;
      this.log.info({ prefix: this.prefix, mode: this.mode, channels, deliveryCheck: this.deliveryCheck }, 'connected to Redis');
      this.startWaiter?.resolve();
      this.startWaiter = null;
    } else {
      this.countReconnect();
      this.log.info({ downMs, channels, waiting: this.queue.length }, 'reconnected to Redis; every channel subscribed again');
      if (this.deliveryCheck && subDownMs > this.livenessTimeoutMs) {
        this.redisStats.longOutages += 1;
        this.log.warn(
          { subDownMs, livenessTimeoutMs: this.livenessTimeoutMs },
          'the subscriber was down past bus.redis.livenessTimeout: other nodes stopped holding messages for this node, so pushes to its clients in that time are lost',
        );
      }
    }
    this.startLiveness();
    void this.drain();
  }

  /**
   * Drops what stopped being desired while a connection was down: subscriptions still on a sub
   * connection that survived, and holder registrations. Sends synchronously, so a bind of the
   * same key that comes after goes out after it on the same connection.
   */
  private dropStale(pub: ScriptedRedis, sub: Redis): void {
    if (this.subscribedOnSub.size === 0 && this.registered.size === 0) return;
    const desired = new Set(this.desiredKeys());
    for (const key of [...this.subscribedOnSub]) {
      if (desired.has(key)) continue;
      this.subscribedOnSub.delete(key);
      sub.unsubscribe(this.channel(key)).catch(() => undefined);
    }
    const stale = [...this.registered].filter((key) => !desired.has(key));
    if (stale.length === 0) return;
    const leave = pub.pipeline();
    for (const key of stale) leave.srem(holdersKey(this.prefix, key), this.instance);
    leave.exec().then(
      (results) => {
        const now = new Set(this.desiredKeys());
        for (const [i, key] of stale.entries()) if (!results?.[i]?.[0] && !now.has(key)) this.registered.delete(key);
      },
      () => undefined, // still registered: the next setup tries again
    );
  }

  private async register(key: string): Promise<void> {
    this.registered.add(key);
    await this.registrations.add({ add: true, key });
  }

  private async unregister(key: string): Promise<void> {
    // Closing: disconnect() removes every registration in one go.
    if (this.stopping || this.closing) return;
    await this.registrations.add({ add: false, key });
    this.registered.delete(key);
  }

  /** Runs a command on the pub connection, waiting for it and retrying across reconnects. */
  private async onPub<T>(run: (pub: ScriptedRedis) => Promise<T>): Promise<T> {
    for (;;) {
      await this.pubReady.wait();
      try {
        return await run(this.pub!);
      } catch (err) {
        if (this.stopping) throw this.closedError('the bus was closed');
        if (isReplyError(err)) throw this.brokerError('a Redis command', err);
        await this.afterFailure('pub');
      }
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
   * Adds this node to (or removes it from) the holder sets of a batch of keys: one script call per
   * direction, retried as a whole (both are idempotent). Bind and unbind of one key are never in
   * flight together (the base class serialises them), so the two calls need no order.
   */
  private registerAll(ops: { add: boolean; key: string }[]): Promise<void> {
    const adds = ops.filter((op) => op.add).map((op) => holdersKey(this.prefix, op.key));
    const removes = ops.filter((op) => !op.add).map((op) => holdersKey(this.prefix, op.key));
    return this.onPub(async (pub) => {
      await Promise.all([
        adds.length > 0 ? pub.gwRegister(adds.length, ...adds, this.instance, 1) : undefined,
        removes.length > 0 ? pub.gwRegister(removes.length, ...removes, this.instance, 0) : undefined,
      ]);
    });
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
      await new Promise<void>((resolve) => setTimeout(resolve, RETRY_MIN_MS));
    }
    await gate.wait();
  }

  // ---- liveness (delivery check) ---------------------------------------------------------

  private refreshLiveness(pub: ScriptedRedis): Promise<number> {
    const grace = Math.max(60000, 10 * this.livenessTimeoutMs);
    return pub.gwAlive(livenessKey(this.prefix), acksKey(this.prefix), this.instance, this.livenessTimeoutMs, grace);
  }

  private startLiveness(): void {
    if (!this.deliveryCheck || this.livenessTimer !== undefined) return;
    this.livenessTimer = setInterval(() => {
      const pub = this.pub;
      if (this.stopping || pub === null || !this.pubReady.open) return;
      // A node that cannot resubscribe stops claiming to be live, so that senders stop holding
      // messages for it after livenessTimeout.
      if (this.subDownSince !== 0 && Date.now() - this.subDownSince > this.livenessTimeoutMs) return;
      this.refreshLiveness(pub).catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, 'liveness refresh failed'));
    }, Math.max(10, Math.floor(this.livenessTimeoutMs / 4)));
    this.livenessTimer.unref();
  }

  // ---- receiving -------------------------------------------------------------------------

  private onMessage(channel: Buffer, message: Buffer): void {
    // ioredis rethrows a listener's exception as an uncaught exception: nothing may escape.
    try {
      const name = channel.toString('utf8');
      if (!name.startsWith(`${this.prefix}:`)) return;
      if (this.mode === 'fanout') this.receive(message);
      else this.receive(message, name.slice(this.prefix.length + 1));
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'a bus message could not be handled');
    }
  }

  // ---- publishing ------------------------------------------------------------------------

  private enqueue(channel: string, check: Check, arg: string, body: Buffer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ channel, check, arg, body, heldAt: 0, resolve, reject });
      if (!this.draining) void this.drain();
    });
  }

  /** Sends queued messages, one call in flight at a time, while connected. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.stopping) {
        if (this.blocked.size === 0) this.retryDue = false;
        if (this.queue.length === 0 && !this.retryDue) break;
        try {
          await this.busReady.wait();
        } catch {
          break; // closed: disconnect() rejected everything
        }
        const call = this.takeCall(this.retryDue && this.blocked.size > 0);
        if (call.length > 0) await this.send(call);
      }
    } finally {
      this.draining = false;
      if (this.queue.length === 0 && this.blocked.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  /**
   * The next call's messages: on a retry, every held-back message first (each channel's in
   * order), then queued ones, except those for a channel with messages held back, which join
   * that channel's line without going out.
   */
  private takeCall(retry: boolean): Outgoing[] {
    const call: Outgoing[] = [];
    if (retry) {
      this.retryDue = false;
      const now = Date.now();
      for (const [channel, line] of this.blocked) {
        let forced = 0;
        for (const out of line) {
          if (now - out.heldAt <= this.deliveryTimeoutMs) break;
          out.check = '';
          forced += 1;
        }
        if (forced > 0) {
          this.redisStats.forced += forced;
          this.log.warn(
            { channel, messages: forced, deliveryTimeoutMs: this.deliveryTimeoutMs },
            'a holder of the channel did not resubscribe within bus.redis.deliveryTimeout; published to the subscribers present',
          );
        }
        call.push(...line);
      }
      this.blocked.clear();
    }
    let bytes = 0;
    let taken = 0;
    while (taken < this.queue.length && call.length < MAX_CALL_MESSAGES && bytes < MAX_CALL_BYTES) {
      const out = this.queue[taken++]!;
      const line = out.check === '-' ? undefined : this.blocked.get(out.channel);
      if (line !== undefined) {
        this.hold(out, line);
        continue;
      }
      call.push(out);
      bytes += out.body.length;
    }
    this.queue = taken === this.queue.length ? [] : this.queue.slice(taken);
    return call;
  }

  private async send(call: Outgoing[]): Promise<void> {
    this.callSeq += 1;
    const id = this.callSeq;
    this.redisStats.calls += 1;
    for (;;) {
      let result: string;
      try {
        result = this.deliveryCheck ? await this.runScript(id, call) : await this.runPipeline(call);
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
      this.applyResult(call, result);
      return;
    }
  }

  private runScript(id: number, call: Outgoing[]): Promise<string> {
    const args: (string | number | Buffer)[] = [livenessKey(this.prefix), acksKey(this.prefix), this.instance, id, call.length];
    for (const out of call) args.push(out.channel, out.check, out.arg, out.body);
    return this.pub!.gwPublish(...args);
  }

  private async runPipeline(call: Outgoing[]): Promise<string> {
    const pipeline = this.pub!.pipeline();
    for (const out of call) pipeline.publish(out.channel, out.body);
    const results = (await pipeline.exec()) ?? [];
    for (const [err] of results) if (err) throw err;
    return '1'.repeat(call.length);
  }

  private applyResult(call: Outgoing[], result: string): void {
    for (let i = 0; i < call.length; i++) {
      const out = call[i]!;
      if (result[i] === '1') {
        out.resolve();
        continue;
      }
      let line = this.blocked.get(out.channel);
      if (line === undefined) this.blocked.set(out.channel, (line = []));
      this.hold(out, line);
    }
    if (this.blocked.size === 0) {
      this.retryDelay = 0;
    } else if (this.retryTimer === undefined && !this.stopping) {
      this.retryDelay = Math.min(RETRY_MAX_MS, this.retryDelay === 0 ? RETRY_MIN_MS : this.retryDelay * 2);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.retryDue = true;
        void this.drain();
      }, this.retryDelay);
    }
  }

  /** Puts a message at the end of its channel's line of held-back messages. */
  private hold(out: Outgoing, line: Outgoing[]): void {
    if (out.heldAt === 0) {
      out.heldAt = Date.now();
      this.redisStats.heldBack += 1;
    }
    line.push(out);
  }

  private settle(call: Outgoing[], err: Error): void {
    for (const out of call) out.reject(err);
  }

  private failAll(err: Error): void {
    const queued = this.queue;
    this.queue = [];
    for (const out of queued) out.reject(err);
    for (const line of this.blocked.values()) for (const out of line) out.reject(err);
    this.blocked.clear();
  }

  /** Resolves once nothing waits to go out, or after `timeoutMs`. */
  private idle(timeoutMs: number): Promise<void> {
    if (!this.draining && this.queue.length === 0 && this.blocked.size === 0) return Promise.resolve();
    return withTimeout(new Promise<void>((resolve) => this.idleWaiters.push(resolve)), timeoutMs).catch(() => {
      this.log.warn({ waiting: this.queue.length, heldBack: this.blocked.size }, 'closing with messages not yet published');
    });
  }

  private closedError(message: string): GatewireError {
    return new GatewireError(ErrorCodes.BUS_CLOSED, message);
  }

  private brokerError(what: string, err: unknown): GatewireError {
    return new GatewireError(ErrorCodes.BUS_BROKER, `Redis refused ${what}: ${errorMessage(err)}`, { cause: err });
  }
}

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

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
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';
import type { BusMode } from '../../protocol/routes.js';
import { BusLink } from '../bus-link.js';
import type { BusOptions } from '../bus-options.js';
import { Gate } from './gate.js';
import { channelOf, fanoutChannel } from './channels.js';
import { PUBLISH_SCRIPT } from './scripts.js';
import { isRefusal } from './redis-util.js';
import type { PublisherHost, ScriptedRedis } from './redis-publisher.js';
import type { RedisBusStats, ReplayHost } from './redis-replay.js';

export type Role = 'pub' | 'sub';

/**
 * ms a command that failed without a reply waits for its connection's 'close' before it is
 * retried anyway (the connection did not drop after all). @default 5
 */
const CLOSE_WAIT_MS = 5;

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
  url: string;
  prefix: string;
  replayWindowMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

export class RedisLink extends BusLink implements PublisherHost, ReplayHost {
  pub: ScriptedRedis | null = null;
  sub: Redis | null = null;
  readonly pubReady = new Gate();
  readonly subReady = new Gate();
  /** open while connected: both connections ready and the setup after them done */
  readonly busReady = new Gate();
  /** bumped whenever either connection closes: a setup that started before is stale */
  connEpoch = 0;
  /** bumped whenever the sub connection closes */
  subEpoch = 0;
  everConnected = false;
  /** when the bus lost its connection (0: connected) */
  lostAt = 0;
  /** first client error of an outage is a warning, the repeats are debug */
  errorReported = false;

  readonly mode: BusMode;
  readonly instance: string;
  readonly prefix: string;
  readonly replayWindowMs: number;

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
    return key === null || this.mode === 'fanout' ? fanoutChannel(this.prefix) : channelOf(this.prefix, key);
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
    const pub = this.createClient('pub') as ScriptedRedis;
    pub.defineCommand('gwPublish', { numberOfKeys: 2, lua: PUBLISH_SCRIPT });
    const sub = this.createClient('sub');
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
    } else {
      await closeOf(client, CLOSE_WAIT_MS);
    }
    await gate.wait();
  }

  private createClient(role: Role): Redis {
    const client = new Redis(this.settings.url, {
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

  private reconnectDelay(attempt: number): number | null {
    if (this.stopping) return null;
    const { reconnectInitialMs, reconnectMaxMs } = this.settings;
    const base = Math.min(reconnectMaxMs, reconnectInitialMs * 2 ** Math.min(attempt - 1, 20));
    return Math.round(base * (0.7 + 0.6 * Math.random()));
  }

  private onClientError(role: Role, err: Error): void {
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
function closeOf(client: Redis, ms: number): Promise<void> {
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

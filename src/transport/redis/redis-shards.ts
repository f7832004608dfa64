/**
 * The sub connection of the Redis bus on a Redis Cluster (bus.redis.cluster): one plain connection
 * per master that owns a lane's slot (channels.ts, clusterLanes), SSUBSCRIBE only, shown to the
 * transport as one subscriber with the events and calls of an ioredis client ('ready', 'close',
 * 'error', 'messageBuffer'; subscribe, unsubscribe, connect, quit, disconnect). So the transport
 * keeps one state machine for both kinds of Redis (redis-transport.ts's header): the channels
 * subscribed are exactly the desired set, and after any loss the gap is replayed from the logs.
 *
 * Why not ioredis's own sharded subscribers (Cluster's shardedSubscribers option): they
 * resubscribe on their own after a shard fails over, without telling when a connection dropped.
 * The bus must know, to replay from the replay log what a dropped connection lost.
 *
 * All or nothing: when any shard connection closes (its master died, a network blip), a shard
 * answers a subscription with MOVED, or unsubscribes channels on its own (SUNSUBSCRIBE pushed when
 * their slot moved to another master), every shard connection is closed and the
 * group is built again after a backoff: slot owners read again (CLUSTER SLOTS through the pub
 * cluster client), one connection per owner, 'ready'. The transport then resubscribes every
 * desired channel and replays every lane from where it got. A failover costs every node a full
 * resubscription; it is rare, and the simple rule leaves no half-subscribed state to get wrong.
 */
import { EventEmitter } from 'node:events';
import { Redis, type Cluster, type RedisOptions } from 'ioredis';
import { keySlot } from './channels.js';

/** What the sharded subscriber needs besides its cluster client. */
export interface ShardedSubscriberOptions {
  /** the lanes' slots: the masters that own them are connected */
  slots: number[];
  /** options of each shard connection (credentials, TLS, connection name) */
  redisOptions: RedisOptions;
  /** ms before the next attempt, or null to stop (the bus's reconnect delay) */
  retryDelay(attempt: number): number | null;
}

type Status = 'wait' | 'connecting' | 'ready' | 'reconnecting' | 'end';

export class ShardedSubscriber extends EventEmitter {
  status: Status = 'wait';
  /** shard connections by "host:port" of their master */
  private conns = new Map<string, Redis>();
  /** the master ("host:port") of each lane slot, as read at the last attempt */
  private owners = new Map<number, string>();
  private generation = 0;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly cluster: Cluster,
    private readonly options: ShardedSubscriberOptions,
  ) {
    super();
  }

  /** Starts connecting; resolves at once (attempts go on until disconnect()). */
  connect(): Promise<void> {
    if (this.status === 'wait' || this.status === 'end') {
      this.status = 'connecting';
      void this.establish();
    }
    return Promise.resolve();
  }

  /** SSUBSCRIBE, one command per slot (Redis refuses one that spans slots). */
  async subscribe(...channels: string[]): Promise<void> {
    await Promise.all([...bySlot(channels)].map(([slot, group]) => this.shardFor(slot).ssubscribe(...group)));
  }

  /** SUNSUBSCRIBE, one command per slot. */
  async unsubscribe(...channels: string[]): Promise<void> {
    await Promise.all([...bySlot(channels)].map(([slot, group]) => this.shardFor(slot).sunsubscribe(...group)));
  }

  async quit(): Promise<void> {
    await Promise.all([...this.conns.values()].map((conn) => conn.quit().catch(() => undefined)));
  }

  /** Closed for good: no further attempts. */
  disconnect(): void {
    this.status = 'end';
    this.generation += 1;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.teardown();
  }

  /** The masters connected now ("host:port"), for tests and logs. */
  get masters(): string[] {
    return [...this.conns.keys()];
  }

  /** The ready connection that serves `slot`; throws a plain (retryable) error if there is none. */
  private shardFor(slot: number): Redis {
    const owner = this.owners.get(slot);
    const conn = owner === undefined ? undefined : this.conns.get(owner);
    if (this.status !== 'ready' || conn === undefined || conn.status !== 'ready') {
      throw new Error(`no subscriber connection for slot ${slot}`);
    }
    return conn;
  }

  private async establish(): Promise<void> {
    const generation = ++this.generation;
    try {
      const owners = await this.readOwners();
      if (generation !== this.generation) return;
      this.owners = owners;
      for (const node of new Set(owners.values())) {
        const [host, port] = splitNode(node);
        const conn = new Redis({
          ...this.options.redisOptions,
          host,
          port,
          lazyConnect: true,
          enableOfflineQueue: false,
          autoResubscribe: false,
          // The group reconnects as a whole (the header): a shard connection never does alone.
          retryStrategy: () => null,
          maxRetriesPerRequest: null,
          disconnectTimeout: 0,
        });
        conn.on('error', (err: Error) => this.emit('error', err));
        conn.on('smessageBuffer', (channel: Buffer, message: Buffer) => this.emit('messageBuffer', channel, message));
        conn.on('close', () => this.lost(generation));
        // ioredis's 'moved': the shard unsubscribed channels on its own (their slot moved away).
        conn.on('moved', () => this.lost(generation));
        this.conns.set(node, conn);
      }
      await Promise.all([...this.conns.values()].map((conn) => conn.connect()));
      if (generation !== this.generation) return;
      this.status = 'ready';
      this.attempt = 0;
      this.emit('ready');
    } catch (err) {
      if (generation !== this.generation) return;
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      this.lost(generation);
    }
  }

  /** A shard connection closed, or an attempt failed: start again from the slot owners. */
  private lost(generation: number): void {
    if (generation !== this.generation || this.status === 'end') return;
    this.generation += 1;
    this.teardown();
    this.status = 'reconnecting';
    this.emit('close');
    this.attempt += 1;
    const delay = this.options.retryDelay(this.attempt);
    if (delay === null) {
      this.status = 'end';
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.status === 'reconnecting') void this.establish();
    }, delay);
  }

  /** A shard answered MOVED (its slot moved): rebuild the group. */
  moved(): void {
    this.lost(this.generation);
  }

  private teardown(): void {
    const conns = [...this.conns.values()];
    this.conns.clear();
    for (const conn of conns) {
      conn.removeAllListeners('close');
      conn.removeAllListeners('moved');
      conn.removeAllListeners('smessageBuffer');
      // Errors of a connection being dropped are of no interest; it must still have a listener.
      conn.removeAllListeners('error');
      conn.on('error', () => undefined);
      conn.disconnect();
    }
  }

  /** CLUSTER SLOTS through the cluster client: the master of each lane slot. */
  private async readOwners(): Promise<Map<number, string>> {
    const reply = (await this.cluster.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const owners = new Map<number, string>();
    for (const slot of this.options.slots) {
      const range = reply.find(([start, end]) => slot >= Number(start) && slot <= Number(end));
      if (range === undefined) throw new Error(`no master owns slot ${slot} (cluster down?)`);
      const [host, port] = range[2];
      owners.set(slot, `${host}:${Number(port)}`);
    }
    return owners;
  }
}

function bySlot(channels: string[]): Map<number, string[]> {
  const groups = new Map<number, string[]>();
  for (const channel of channels) {
    const slot = keySlot(channel);
    const group = groups.get(slot);
    if (group === undefined) groups.set(slot, [channel]);
    else group.push(channel);
  }
  return groups;
}

function splitNode(node: string): [string, number] {
  const colon = node.lastIndexOf(':');
  return [node.slice(0, colon), Number(node.slice(colon + 1))];
}

/**
 * Publishing on Redis (redis-transport.ts): the messages of the bus's turns queue here in order and
 * go out in script calls (scripts.ts; a pipeline of plain PUBLISH without the replay log), one call
 * in flight at a time, what arrives meanwhile riding in the next call. A call whose reply a dropped
 * connection swallowed is sent again once reconnected; the script recognises its call id and does
 * nothing the second time. While disconnected, messages wait (bounded by the bus).
 */
import type { Logger } from 'pino';
import type { Cluster, Redis } from 'ioredis';
import { ErrorCodes, GatewireError } from '../../errors.js';
import type { BusMode } from '../../protocol/routes.js';
import type { OutgoingBatch } from '../transport.js';
import type { Gate } from './gate.js';
import { FANOUT_KEY, ackKey, logKey, type Lane } from './channels.js';
import { isReplyError, isTransientClusterError, noop, withTimeout } from './redis-util.js';

/** Most messages and payload bytes in one script call, so one call never stalls Redis for long. */
const MAX_CALL_MESSAGES = 1024;
const MAX_CALL_BYTES = 4 * 1024 * 1024;

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

/** The scripts defined on the pub connection (scripts.ts). */
interface Scripts {
  gwPublish(...args: (string | number | Buffer)[]): Promise<number>;
  gwTime(key: string): Promise<[string, string]>;
  gwShardNumsub(channel: string): Promise<[string, number]>;
}

/** The pub connection (one Redis, or ioredis's Cluster) with the scripts defined on it. */
export type ScriptedRedis = (Redis | Cluster) & Scripts;

/** What the publisher needs from its transport. */
export interface PublisherHost {
  readonly pub: ScriptedRedis | null;
  readonly busReady: Gate;
  readonly stopping: boolean;
  readonly isClosing: boolean;
  readonly isConnected: boolean;
  readonly logging: boolean;
  readonly mode: BusMode;
  readonly prefix: string;
  readonly instance: string;
  readonly replayWindowMs: number;
  readonly cluster: boolean;
  readonly pubLane: Lane;
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  readonly stats: { calls: number; notReplicated: number };
  readonly log: Logger;
  channel(key: string | null): string;
  afterFailure(role: 'pub'): Promise<void>;
  closedError(message: string): GatewireError;
  brokerError(what: string, err: unknown): GatewireError;
}

export class RedisPublisher {
  /** messages to publish, from queueHead on (an index, so taking a call does not copy the rest) */
  private queue: Outgoing[] = [];
  private queueHead = 0;
  /** batches in the queue not sealed yet (see Sealed) */
  private unsealed = 0;
  private draining = false;
  private callSeq = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly host: PublisherHost) {}

  /**
   * Queues a turn's batches, one message per key (per channel), under one promise: only the last
   * entry resolves it, any entry may reject it. Calls go out in order, so the last entry confirmed
   * means all were.
   */
  enqueue(batches: OutgoingBatch[]): Promise<void> {
    if (this.host.stopping || (this.host.isClosing && !this.host.isConnected)) {
      return Promise.reject(this.host.closedError('the bus is closing and Redis is unreachable'));
    }
    return new Promise<void>((resolve, reject) => {
      const before = this.queue.length;
      for (const batch of batches) {
        // Sequence numbers follow the queue's order: nothing is sealed ahead of an unsealed one.
        let sealed: Sealed;
        if (this.host.isConnected && this.unsealed === 0) {
          sealed = { batch: null, body: batch.seal() };
        } else {
          sealed = { batch, body: null };
          this.unsealed += 1;
        }
        if (this.host.mode === 'fanout') this.queue.push({ key: FANOUT_KEY, sealed, resolve: noop, reject });
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

  /** Sends queued messages, one call in flight at a time, while connected. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.host.stopping && this.waiting > 0) {
        try {
          await this.host.busReady.wait();
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
  get waiting(): number {
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
    this.host.stats.calls += 1;
    for (;;) {
      try {
        if (this.host.logging) await this.runScript(id, call);
        else await this.runPipeline(call);
      } catch (err) {
        if (this.host.stopping) {
          this.settle(call, this.host.closedError('the bus was closed'));
          return;
        }
        if (err instanceof GatewireError && err.code === ErrorCodes.BUS_NOT_REPLICATED) {
          this.host.stats.notReplicated += 1;
          this.host.log.warn({ err: err.message }, 'a publish call was not confirmed replicated');
          this.settle(call, err);
          return;
        }
        // On a cluster, a master failing over answers CLUSTERDOWN, TRYAGAIN or MOVED for a while:
        // retried as a dropped connection is (below).
        if (isReplyError(err) && !(this.host.cluster && isTransientClusterError(err))) {
          this.settle(call, this.host.brokerError('publish', err));
          return;
        }
        // The connection dropped before the reply: send the same call again once reconnected.
        // The script recognises a call id it already ran (scripts.ts), so nothing goes twice.
        try {
          await this.host.afterFailure('pub');
          await this.host.busReady.wait();
        } catch {
          this.settle(call, this.host.closedError('the bus was closed'));
          return;
        }
        continue;
      }
      for (const out of call) out.resolve();
      return;
    }
  }

  private async runScript(id: number, call: Outgoing[]): Promise<void> {
    const host = this.host;
    const lane = host.pubLane.prefix;
    const args = [logKey(lane), ackKey(lane, host.instance), id, host.replayWindowMs, 'packed', lane, packCall(call)];
    if (host.waitReplicas === 0) {
      await host.pub!.gwPublish(...args);
      return;
    }
    // WAIT on the connection that wrote (one pipeline: on a cluster, the lane's master).
    const pipeline = host.pub!.pipeline() as ReturnType<Redis['pipeline']> & Scripts;
    pipeline.gwPublish(...args);
    pipeline.call('WAIT', host.waitReplicas, host.waitTimeoutMs);
    await this.checkWait(await pipeline.exec());
  }

  private async runPipeline(call: Outgoing[]): Promise<void> {
    const host = this.host;
    const pipeline = host.pub!.pipeline();
    for (const out of call) {
      const channel = host.channel(out.key === FANOUT_KEY ? null : out.key);
      if (host.cluster) pipeline.spublish(channel, out.sealed.body!);
      else pipeline.publish(channel, out.sealed.body!);
    }
    if (host.waitReplicas > 0) pipeline.call('WAIT', host.waitReplicas, host.waitTimeoutMs);
    await this.checkWait(await pipeline.exec());
  }

  /** Throws a pipeline's first error, then GW_ERR_BUS_NOT_REPLICATED if WAIT fell short. */
  private async checkWait(results: [Error | null, unknown][] | null): Promise<void> {
    for (const [err] of results ?? []) if (err) throw err;
    if (this.host.waitReplicas === 0 || results === null) return;
    const acked = Number(results[results.length - 1]![1]);
    if (acked < this.host.waitReplicas) {
      throw new GatewireError(
        ErrorCodes.BUS_NOT_REPLICATED,
        `published, but ${acked} of bus.redis.waitReplicas=${this.host.waitReplicas} replicas confirmed it within ${this.host.waitTimeoutMs} ms: it may be lost if the master fails`,
      );
    }
  }

  private settle(call: Outgoing[], err: Error): void {
    for (const out of call) out.reject(err);
  }

  failAll(err: Error): void {
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    this.unsealed = 0;
    for (const out of queued) out.reject(err);
  }

  /** Resolves once nothing waits to go out, or after `timeoutMs`. */
  idle(timeoutMs: number): Promise<void> {
    if (!this.draining && this.waiting === 0) return Promise.resolve();
    return withTimeout(new Promise<void>((resolve) => this.idleWaiters.push(resolve)), timeoutMs).catch(() => {
      this.host.log.warn({ waiting: this.waiting }, 'closing with messages not yet published');
    });
  }
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

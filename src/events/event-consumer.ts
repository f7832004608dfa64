/**
 * The worker side of split roles (event-queues.ts): one channel per partition, events run in
 * arrival order per client, acknowledged once run, partitions handed over to their preferred
 * worker (rendezvous hashing over the live workers).
 */
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { ReconnectLoop } from '../transport/amqp/reconnect-loop.js';
import { Op, type ClientEventCommand } from '../protocol/commands.js';
import { decodeEnvelope } from '../protocol/envelope.js';
import type { ClientEvent, EventRunner } from '../protocol/client-event.js';
import { commandToEvent } from '../protocol/event-codec.js';
import type { PushApi } from '../protocol/push-api.js';
import type { Membership } from '../cluster/membership.js';
import { errorMessage } from '../errors.js';
import { SessionCache } from './session-cache.js';
import { bucketOf } from '../protocol/routing-keys.js';
import { closeModel, connect, eventQueueName, partitionOf, queueOptions } from './event-queues.js';
import type { EventQueueOptions } from './event-queues.js';

interface PartitionState {
  channel: Channel;
  /** false while leaving: no new event of the partition starts */
  open: boolean;
  /** events handed to the worker and not yet settled */
  inflight: number;
  /** deliveries since the channel opened: > 0 means this worker is the active consumer */
  deliveries: number;
}

export class AmqpEventConsumer {
  /** events that could not be decoded (dropped and acked) */
  malformed = 0;
  handoffs = 0;
  private model: ChannelModel | null = null;
  private readonly partitions = new Map<number, PartitionState>();
  private stopping = false;
  private readonly reconnects = new ReconnectLoop({
    attempt: () => this.connectOnce(),
    onRetry: (err) => this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed'),
  });
  private rebalanceTimer: NodeJS.Timeout | undefined;
  private handingOff = false;
  /** settled() waiters, checked whenever an event settles or partitions are dropped */
  private readonly settleWaiters = new Set<() => void>();
  readonly sessions: SessionCache;

  constructor(
    private readonly options: EventQueueOptions,
    private readonly worker: EventRunner,
    api: PushApi,
    private readonly membership: Membership,
    /** how often to look for partitions to hand over, ms */
    private readonly rebalanceEveryMs: number,
    private readonly log: Logger,
  ) {
    this.sessions = new SessionCache(api, (clientId) => partitionOf(clientId, options.partitions));
  }

  /** Partitions this worker is active on now (it got deliveries since it subscribed). */
  activePartitions(): number[] {
    return [...this.partitions].filter(([, s]) => s.deliveries > 0).map(([p]) => p);
  }

  async start(): Promise<void> {
    await this.connectOnce().catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, 'event queue: broker unreachable; retrying');
      this.reconnects.lost((err) => this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed'));
    });
    this.rebalanceTimer = setInterval(() => void this.rebalance(), this.rebalanceEveryMs);
    this.rebalanceTimer.unref();
  }

  /** Graceful: running events finish and are acked; events not started go back to the queue. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.reconnects.stop();
    clearInterval(this.rebalanceTimer);
    for (const state of this.partitions.values()) state.open = false;
    await this.settled(() => [...this.partitions.values()].every((s) => s.inflight === 0));
    const model = this.model;
    this.model = null;
    const channels = [...this.partitions.values()].map((state) => state.channel);
    this.partitions.clear();
    // Each channel closes behind its own acks: amqplib multiplexes the channels' frames, so a
    // connection close sent at once could reach the broker before them (and the events run
    // would be requeued and run again).
    await Promise.all(channels.map((channel) => closeChannel(channel, 5000)));
    await closeModel(model);
  }

  private async connectOnce(): Promise<void> {
    const model = await connect(this.options.url, `gatewire-worker-${this.options.instance}`);
    model.on('error', (err: Error) => this.log.warn({ err: err.message }, 'event queue connection error'));
    model.on('close', () => {
      if (this.model !== model) return;
      this.model = null;
      for (const p of this.partitions.keys()) this.sessions.forgetPartition(p);
      this.partitions.clear();
      this.changed();
      if (!this.stopping) {
        this.log.warn('event queue connection lost; reconnecting');
        this.reconnects.lost((err) => this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed'));
      }
    });
    this.model = model;
    // Spread the first subscriptions: each worker subscribes first to the partitions it is
    // preferred for, so workers that start together split the partitions between them.
    const order = [...Array(this.options.partitions).keys()].sort(
      (a, b) =>
        Number(this.preferred(b) === this.options.instance) - Number(this.preferred(a) === this.options.instance),
    );
    for (const p of order) await this.subscribe(model, p);
  }

  private async subscribe(model: ChannelModel, partition: number): Promise<void> {
    const channel = await model.createChannel();
    channel.on('error', (err: Error) => this.log.warn({ err: err.message, partition }, 'event channel error'));
    const queue = eventQueueName(this.options.prefix, this.options.partitions, partition);
    await channel.assertQueue(queue, queueOptions(this.options));
    await channel.prefetch(this.options.prefetch);
    const state: PartitionState = { channel, open: true, inflight: 0, deliveries: 0 };
    this.partitions.set(partition, state);
    channel.on('close', () => {
      if (this.partitions.get(partition) === state) {
        this.partitions.delete(partition);
        this.sessions.forgetPartition(partition);
        this.changed();
      }
    });
    await channel.consume(queue, (msg) => this.onDelivery(partition, state, msg), { noAck: false });
  }

  private onDelivery(partition: number, state: PartitionState, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted): subscribe again.
      state.open = false;
      void state.channel.close().catch(() => undefined);
      if (this.model && !this.stopping) void this.subscribe(this.model, partition).catch(() => undefined);
      return;
    }
    state.deliveries += 1;
    let events: ClientEvent[];
    try {
      const { commands } = decodeEnvelope(msg.content, this.options.secret);
      events = commands.filter((c) => c.op === Op.CLIENT_EVENT).map((c) => commandToEvent(c as ClientEventCommand));
    } catch (err) {
      this.malformed += 1;
      this.log.warn({ err: errorMessage(err), partition }, 'dropped an unreadable client event');
      state.channel.ack(msg);
      return;
    }
    state.inflight += 1;
    const guard = (): boolean => state.open && !this.stopping;
    Promise.all(events.map((event) => this.worker.handle(event, { guard, sessions: this.sessions }))).then(
      (handled) => {
        state.inflight -= 1;
        // Acked only when run; an event skipped because the partition is being left stays
        // unacked and is requeued when the channel closes.
        if (handled.every(Boolean) && this.partitions.get(partition) === state) state.channel.ack(msg);
        this.changed();
      },
      (err: unknown) => {
        state.inflight -= 1;
        this.changed();
        this.log.error({ err: errorMessage(err), partition }, 'event handling failed');
      },
    );
  }

  /** Rendezvous hashing: the live worker with the highest score for the partition. */
  private preferred(partition: number): string {
    const workers = this.membership
      .list()
      .filter((m) => m.roles.includes('worker'))
      .map((m) => m.instance);
    if (!workers.includes(this.options.instance)) workers.push(this.options.instance);
    let best = this.options.instance;
    let bestScore = -1;
    for (const w of workers) {
      const score = bucketOf(`${w}/${partition}`, 0x7fffffff);
      if (score > bestScore || (score === bestScore && w < best)) {
        best = w;
        bestScore = score;
      }
    }
    return best;
  }

  /** Hands over one partition this worker is active on but another live worker is preferred for. */
  private async rebalance(): Promise<void> {
    if (this.handingOff || this.stopping || this.model === null) return;
    for (const [partition, state] of this.partitions) {
      if (state.deliveries === 0 || !state.open) continue;
      const preferred = this.preferred(partition);
      if (preferred === this.options.instance) continue;
      this.handingOff = true;
      try {
        await this.handOff(partition, state);
      } catch (err) {
        this.log.warn({ err: errorMessage(err), partition }, 'partition hand-over failed');
      } finally {
        this.handingOff = false;
      }
      return;
    }
  }

  private async handOff(partition: number, state: PartitionState): Promise<void> {
    state.open = false;
    await this.settled(() => state.inflight === 0);
    const model = this.model;
    if (model === null || this.stopping) return;
    this.partitions.delete(partition);
    this.sessions.forgetPartition(partition);
    await state.channel.close().catch(() => undefined);
    this.handoffs += 1;
    this.log.debug({ partition }, 'handed the partition over; waiting behind the active worker');
    await this.subscribe(model, partition);
  }

  /** Resolves once `done()` holds; checked again whenever an event settles or partitions go. */
  private settled(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (!done()) return;
        this.settleWaiters.delete(check);
        resolve();
      };
      this.settleWaiters.add(check);
    });
  }

  private changed(): void {
    for (const check of [...this.settleWaiters]) check();
  }
}

/** Closes a channel, waiting at most `timeoutMs` for the broker (a dead connection never answers). */
function closeChannel(channel: Channel, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    channel
      .close()
      .catch(() => undefined) // closed already
      .finally(() => {
        clearTimeout(timer);
        resolve();
      });
  });
}

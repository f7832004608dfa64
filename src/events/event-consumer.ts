/**
 * The worker side of split roles (event-queues.ts): one channel per partition, events run in
 * arrival order per client, acknowledged once run, partitions handed over to their preferred
 * worker (rendezvous hashing over the live workers).
 *
 * On a RabbitMQ cluster (quorum partitions): after a lost connection the worker reconnects to the
 * next URL and consumes every partition again; a partition whose consumer the broker cancelled, or
 * whose channel closed, is subscribed to again (retried while the connection lives). A gateway
 * sends again what the broker had not confirmed when its connection died, and an ack sent just
 * before a broker node died may be lost: so an event is known by its producer's (instance, epoch,
 * seq) and one this worker handled (or is handling) already is acked and not run again (the last
 * RECENT_EVENTS keys). Order: x-single-active-consumer keeps a new consumer waiting while the
 * leader still counts the lost one, and the events that consumer held are returned to the head of
 * the queue before the next one is activated, so no marker is needed (unlike node queues).
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

/** Keys of events handled or running kept to recognise a repeat. @default 65536 (a few MB) */
const RECENT_EVENTS = 65536;

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
  /** events delivered again after this worker handled them (re-sent by a gateway, lost ack) */
  repeats = 0;
  /** partitions subscribed to again after a consumer cancel or a lost channel */
  resubscribed = 0;
  /** connections set up again after a lost one */
  reconnected = 0;
  private connections = 0;
  /** partitions a resubscribe() is running for (one at a time each) */
  private readonly resubscribing = new Set<number>();
  /** producer/epoch/seq of recent events -> resolves true once handled (false: left unhandled) */
  private readonly recent = new Map<string, Promise<boolean>>();
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
    this.connections += 1;
    if (this.connections > 1) this.reconnected += 1;
    // Spread the first subscriptions: each worker subscribes first to the partitions it is
    // preferred for, so workers that start together split the partitions between them.
    const order = [...Array(this.options.partitions).keys()].sort(
      (a, b) =>
        Number(this.preferred(b) === this.options.instance) - Number(this.preferred(a) === this.options.instance),
    );
    try {
      for (const p of order) await this.subscribe(model, p);
    } catch (err) {
      // A partition that cannot be consumed (e.g. a queue without a leader yet): this whole
      // attempt fails and the reconnect loop tries again, on a new connection.
      this.model = null;
      this.partitions.clear();
      await closeModel(model);
      throw err;
    }
  }

  /** Subscribes to `partition` again after its channel closed, retrying while `model` lives. */
  private resubscribe(model: ChannelModel, partition: number, delayMs = 200): void {
    const timer = setTimeout(() => {
      if (this.model !== model || this.stopping || this.partitions.has(partition)) return;
      if (this.resubscribing.has(partition)) return;
      this.resubscribing.add(partition);
      this.subscribe(model, partition).then(
        () => {
          this.resubscribing.delete(partition);
          this.resubscribed += 1;
        },
        (err: unknown) => {
          this.resubscribing.delete(partition);
          this.log.debug({ err: errorMessage(err), partition }, 'event partition subscribe failed; retrying');
          this.resubscribe(model, partition, Math.min(delayMs * 2, 5000));
        },
      );
    }, delayMs);
    timer.unref();
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
        // Not left on purpose (hand-over, stop): consume the partition again on this connection
        // (when the connection itself is gone, the reconnect does it).
        if (this.model === model && !this.stopping) this.resubscribe(model, partition);
      }
    });
    await channel.consume(queue, (msg) => this.onDelivery(partition, state, msg), { noAck: false });
  }

  private onDelivery(partition: number, state: PartitionState, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted, or its broker node lost): the channel's
      // close handler subscribes again.
      state.open = false;
      void state.channel.close().catch(() => undefined);
      return;
    }
    state.deliveries += 1;
    let events: ClientEvent[];
    let key: string | null = null;
    try {
      const { commands, sender, epoch, seq, version } = decodeEnvelope(msg.content, this.options.secret);
      events = commands.filter((c) => c.op === Op.CLIENT_EVENT).map((c) => commandToEvent(c as ClientEventCommand));
      if (version >= 2 && seq > 0) key = `${sender}/${epoch}/${seq}`;
    } catch (err) {
      this.malformed += 1;
      this.log.warn({ err: errorMessage(err), partition }, 'dropped an unreadable client event');
      state.channel.ack(msg);
      return;
    }
    const earlier = key === null ? undefined : this.recent.get(key);
    if (earlier === undefined) {
      this.run(partition, state, msg, events, key);
      return;
    }
    // Handled already (or running): ack this copy once that one is handled; run it if it was not.
    state.inflight += 1;
    void earlier.then((handled) => {
      state.inflight -= 1;
      if (!handled) return this.run(partition, state, msg, events, key);
      this.repeats += 1;
      if (this.partitions.get(partition) === state) state.channel.ack(msg);
      this.changed();
    });
  }

  private run(
    partition: number,
    state: PartitionState,
    msg: ConsumeMessage,
    events: ClientEvent[],
    key: string | null,
  ): void {
    state.inflight += 1;
    const guard = (): boolean => state.open && !this.stopping;
    const outcome = Promise.all(
      events.map((event) => this.worker.handle(event, { guard, sessions: this.sessions })),
    ).then(
      (handled) => {
        state.inflight -= 1;
        // Acked only when run; an event skipped because the partition is being left stays
        // unacked and is requeued when the channel closes.
        if (handled.every(Boolean) && this.partitions.get(partition) === state) state.channel.ack(msg);
        this.changed();
        return handled.every(Boolean);
      },
      (err: unknown) => {
        state.inflight -= 1;
        this.changed();
        this.log.error({ err: errorMessage(err), partition }, 'event handling failed');
        return false;
      },
    );
    if (key === null) return;
    this.recent.set(key, outcome);
    if (this.recent.size > RECENT_EVENTS) this.recent.delete(this.recent.keys().next().value!);
    // An event left unhandled is forgotten, so its redelivery runs.
    void outcome.then((handled) => {
      if (!handled && this.recent.get(key) === outcome) this.recent.delete(key);
    });
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

/**
 * Client events from gateways to workers when the roles run in separate processes
 * (docs/operations.md, "Split roles").
 *
 * Queues: `<prefix>.events.<P>.<p>` for p in 0..P-1 (P = worker.partitions), durable, with
 *   x-single-active-consumer  one worker at a time consumes a partition, so a client's events
 *                             (always the same partition: FNV-1a of the client id mod P) are
 *                             handled in arrival order, also with several workers;
 *   x-max-length + reject-publish  the bound while no worker runs (worker.maxPendingEvents / P).
 * The queues outlive every process: while no worker runs, events wait there and no client is
 * disconnected. When the active worker of a partition goes away (stop, reload, crash, lost
 * connection), RabbitMQ requeues its unacknowledged events in their places and makes the next
 * waiting worker active at once.
 *
 * Gateways publish with confirms on one channel (order kept). Workers open one channel per
 * partition and ack an event only after the handler ran and the session was written back. To
 * leave a partition (stop, reload, rebalance) a worker stops starting events of that partition,
 * waits for the running ones, acks them, then closes the channel: events not yet run are
 * requeued and handled by the next worker, so a graceful reload handles every event exactly
 * once and in order. A crash can repeat the event that was running (at-least-once).
 *
 * Balance: every worker consumes every partition (active or waiting). A worker that is active on
 * a partition whose preferred worker (rendezvous hashing over the live workers) is another
 * hands it over, one partition at a time, so load spreads again after reloads.
 */
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { Backoff } from '../transport/amqp/backoff.js';
import { closeConnection, withHeartbeat } from '../transport/amqp/amqp-topology.js';
import { bucketOf } from '../protocol/routing-keys.js';
import { Op, type ClientEventCommand } from '../protocol/commands.js';
import { decodeEnvelope, encodeEnvelope } from '../protocol/envelope.js';
import type { ClientEvent, EventSink } from '../protocol/client-event.js';
import { commandToEvent, eventToCommand } from '../protocol/event-codec.js';
import type { EventRunner } from '../protocol/client-event.js';
import { SessionCache } from './session-cache.js';
import type { PushApi } from '../protocol/push-api.js';
import type { Membership } from '../cluster/membership.js';
import { errorMessage } from '../errors.js';

export interface EventQueueOptions {
  url: string;
  /** bus.amqp.exchange: queue names start with it */
  prefix: string;
  partitions: number;
  maxPendingEvents: number;
  /** per partition and worker */
  prefetch: number;
  instance: string;
  secret: string;
}

export function partitionOf(clientId: string, partitions: number): number {
  return bucketOf(clientId, partitions);
}

export function eventQueueName(prefix: string, partitions: number, partition: number): string {
  return `${prefix}.events.${partitions}.${partition}`;
}

function queueOptions(options: EventQueueOptions) {
  return {
    durable: true,
    arguments: {
      'x-single-active-consumer': true,
      'x-max-length': Math.max(1, Math.ceil(options.maxPendingEvents / options.partitions)),
      'x-overflow': 'reject-publish',
    },
  };
}

/** Closes a connection, waiting at most 5 s for the broker. */
function closeModel(model: ChannelModel | null | undefined): Promise<void> {
  return model ? closeConnection(model, 5000) : Promise.resolve();
}

async function connect(url: string, name: string): Promise<ChannelModel> {
  return amqp.connect(withHeartbeat(url), { clientProperties: { connection_name: name }, noDelay: true });
}

// ---- gateway side ----------------------------------------------------------------------------

interface Outgoing {
  queue: string;
  body: Buffer;
}

/**
 * Publishes client events to the partition queues. While the broker is unreachable, events wait
 * here in order (at most maxPendingEvents) and go out after the reconnect.
 */
export class AmqpEventProducer implements EventSink {
  /** events dropped: the broker refused them (partition full) or the local wait list was full */
  dropped = 0;
  published = 0;
  private model: ChannelModel | null = null;
  private channel: ConfirmChannel | null = null;
  private waiting: Outgoing[] = [];
  /** sent, not yet confirmed: re-sent after a reconnect */
  private unconfirmed = new Set<Outgoing>();
  private closed = false;
  private readonly backoff = new Backoff();
  private timer: NodeJS.Timeout | undefined;
  private readonly epoch = Date.now();
  private seq = 0;

  constructor(
    private readonly options: EventQueueOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connectOnce().catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, 'event queue: broker unreachable; events wait and the connection is retried');
      this.scheduleReconnect();
    });
  }

  dispatch(event: ClientEvent): void {
    // Events have their own route (partition queues, exactly once by their own rules): the
    // sequence numbers here are the producer's, apart from the bus's.
    this.seq += 1;
    const body = encodeEnvelope({ sender: this.options.instance, epoch: this.epoch, seq: this.seq, time: Date.now() }, [eventToCommand(event)], this.options.secret);
    const item = { queue: eventQueueName(this.options.prefix, this.options.partitions, partitionOf(event.clientId, this.options.partitions)), body };
    if (this.channel === null) {
      if (this.waiting.length >= this.options.maxPendingEvents) {
        this.dropped += 1;
        this.log.warn({ clientId: event.clientId, type: event.type }, 'event dropped: broker unreachable and worker.maxPendingEvents events wait');
        return;
      }
      this.waiting.push(item);
      return;
    }
    this.send(this.channel, item);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const deadline = Date.now() + 5000;
    while ((this.unconfirmed.size > 0 || this.waiting.length > 0) && this.channel !== null && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (this.waiting.length + this.unconfirmed.size > 0) {
      this.log.warn({ events: this.waiting.length + this.unconfirmed.size }, 'event queue closed with events not confirmed');
    }
    await closeModel(this.model);
    this.model = null;
    this.channel = null;
  }

  private send(channel: ConfirmChannel, item: Outgoing): void {
    this.unconfirmed.add(item);
    channel.sendToQueue(item.queue, item.body, { persistent: false }, (err) => {
      if (channel !== this.channel) return; // the channel died: the item is re-sent after the reconnect
      this.unconfirmed.delete(item);
      if (err) {
        this.dropped += 1;
        this.log.warn({ queue: item.queue }, 'event refused by the broker (partition full: worker.maxPendingEvents); dropped');
      } else {
        this.published += 1;
      }
    });
  }

  private async connectOnce(): Promise<void> {
    const model = await connect(this.options.url, `gatewire-events-${this.options.instance}`);
    model.on('error', (err: Error) => this.log.warn({ err: err.message }, 'event queue connection error'));
    const channel = await model.createConfirmChannel();
    channel.on('error', (err: Error) => this.log.warn({ err: err.message }, 'event queue channel error'));
    for (let p = 0; p < this.options.partitions; p++) {
      await channel.assertQueue(eventQueueName(this.options.prefix, this.options.partitions, p), queueOptions(this.options));
    }
    const lost = (): void => {
      if (this.channel !== channel) return;
      this.channel = null;
      this.model = null;
      // In order: what was sent but not confirmed goes first, then what waited.
      this.waiting = [...this.unconfirmed, ...this.waiting];
      this.unconfirmed.clear();
      if (!this.closed) {
        this.log.warn('event queue connection lost; reconnecting');
        this.scheduleReconnect();
      }
    };
    model.on('close', lost);
    channel.on('close', () => {
      lost();
      void model.close().catch(() => undefined);
    });
    this.model = model;
    this.channel = channel;
    this.backoff.reset();
    const waiting = this.waiting;
    this.waiting = [];
    for (const item of waiting) this.send(channel, item);
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.connectOnce().catch((err: unknown) => {
        this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed');
        this.scheduleReconnect();
      });
    }, this.backoff.next());
  }
}

// ---- worker side ------------------------------------------------------------------------------

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
  private readonly backoff = new Backoff();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private rebalanceTimer: NodeJS.Timeout | undefined;
  private handingOff = false;
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
      this.scheduleReconnect();
    });
    this.rebalanceTimer = setInterval(() => void this.rebalance(), this.rebalanceEveryMs);
    this.rebalanceTimer.unref();
  }

  /** Graceful: running events finish and are acked; events not started go back to the queue. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.rebalanceTimer);
    for (const state of this.partitions.values()) state.open = false;
    await this.settled(() => [...this.partitions.values()].every((s) => s.inflight === 0));
    const model = this.model;
    this.model = null;
    this.partitions.clear();
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
      if (!this.stopping) {
        this.log.warn('event queue connection lost; reconnecting');
        this.scheduleReconnect();
      }
    });
    this.model = model;
    // Spread the first subscriptions: each worker subscribes first to the partitions it is
    // preferred for, so workers that start together split the partitions between them.
    const order = [...Array(this.options.partitions).keys()].sort(
      (a, b) => Number(this.preferred(b) === this.options.instance) - Number(this.preferred(a) === this.options.instance),
    );
    for (const p of order) await this.subscribe(model, p);
    this.backoff.reset();
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
      },
      (err: unknown) => {
        state.inflight -= 1;
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

  private async settled(done: () => boolean): Promise<void> {
    while (!done()) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  private scheduleReconnect(): void {
    if (this.stopping) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.connectOnce().catch((err: unknown) => {
        this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed');
        this.scheduleReconnect();
      });
    }, this.backoff.next());
  }
}

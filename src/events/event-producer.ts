/**
 * The gateway side of split roles (event-queues.ts): publishes client events to the partition
 * queues, with confirms, in order; while the broker is unreachable, events wait (bounded).
 *
 * On a RabbitMQ cluster (quorum partitions) a lost connection moves to the next URL and sends
 * what was not confirmed again, in order. A nack from a quorum queue is not taken as "full" at
 * once: measured on 3.10, a channel whose first publish to a quorum queue came while the queue
 * had no leader (its leader's node just died) is nacked by that queue for good. So a nack is
 * taken as the partition being full only when this channel had that queue confirm an event
 * before (a channel the queue serves), or when the queue holds its bound (checkQueue on a side
 * channel; its count is of ready events, which is what fills a partition while no worker runs).
 * Otherwise the connection is replaced and every unconfirmed event goes out again, in order, up
 * to EVENT_NACK_RETRIES nacks per event; past that the event is dropped and counted.
 */
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import { ReconnectLoop } from '../transport/amqp/reconnect-loop.js';
import { encodeEnvelope } from '../protocol/envelope.js';
import type { ClientEvent, EventSink } from '../protocol/client-event.js';
import { eventToCommand } from '../protocol/event-codec.js';
import { errorMessage } from '../errors.js';
import {
  EVENT_NACK_RETRIES,
  closeModel,
  connect,
  eventQueueName,
  partitionLength,
  partitionOf,
  queueOptions,
} from './event-queues.js';
import type { EventQueueOptions } from './event-queues.js';

interface Outgoing {
  queue: string;
  body: Buffer;
  /** nacks taken for a lost leader and retried so far */
  nacks: number;
}

/** amqplib's error for a nacked publish (a closing channel fails its callbacks otherwise). */
const NACKED = 'message nacked';

/**
 * Publishes client events to the partition queues. While the broker is unreachable, events wait
 * here in order (at most maxPendingEvents) and go out after the reconnect.
 */
export class AmqpEventProducer implements EventSink {
  /** events dropped: the broker refused them (partition full) or the local wait list was full */
  dropped = 0;
  published = 0;
  /** nacks retried on a fresh connection (quorum partitions, lost leader) */
  retried = 0;
  /** connections set up again after a lost connection or a retried nack */
  reconnected = 0;
  private model: ChannelModel | null = null;
  private channel: ConfirmChannel | null = null;
  /** the channel is being replaced (a retried nack): new events wait for the next one */
  private replacing = false;
  /** queues that confirmed an event on the current channel: they serve it */
  private served = new Set<string>();
  private connections = 0;
  private waiting: Outgoing[] = [];
  /** sent, not yet confirmed: re-sent after a reconnect */
  private unconfirmed = new Set<Outgoing>();
  private closed = false;
  /** close() waiting: checked when an event is confirmed or refused, or the channel is lost */
  private readonly settleWaiters = new Set<() => void>();
  private readonly reconnects = new ReconnectLoop({
    attempt: () => this.connectOnce(),
    onRetry: (err) => this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed'),
  });
  private readonly epoch = Date.now();
  private seq = 0;

  constructor(
    private readonly options: EventQueueOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connectOnce().catch((err: unknown) => {
      this.log.warn(
        { err: errorMessage(err) },
        'event queue: broker unreachable; events wait and the connection is retried',
      );
      this.reconnects.lost((err) => this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed'));
    });
  }

  dispatch(event: ClientEvent): void {
    // Events have their own route (partition queues, exactly once by their own rules): the
    // sequence numbers here are the producer's, apart from the bus's.
    this.seq += 1;
    const body = encodeEnvelope(
      { sender: this.options.instance, epoch: this.epoch, seq: this.seq, time: Date.now() },
      [eventToCommand(event)],
      this.options.secret,
    );
    const item = {
      queue: eventQueueName(
        this.options.prefix,
        this.options.partitions,
        // A resumed session's events stay in its first partition, so they keep one order.
        partitionOf(event.root ?? event.clientId, this.options.partitions),
      ),
      body,
      nacks: 0,
    };
    if (this.channel === null || this.replacing) {
      if (this.waiting.length >= this.options.maxPendingEvents) {
        this.dropped += 1;
        this.log.warn(
          { clientId: event.clientId, type: event.type },
          'event dropped: broker unreachable and worker.maxPendingEvents events wait',
        );
        return;
      }
      this.waiting.push(item);
      return;
    }
    this.send(this.channel, item);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.reconnects.stop();
    await this.settled(5000);
    if (this.waiting.length + this.unconfirmed.size > 0) {
      this.log.warn(
        { events: this.waiting.length + this.unconfirmed.size },
        'event queue closed with events not confirmed',
      );
    }
    await closeModel(this.model);
    this.model = null;
    this.channel = null;
  }

  /** Every event sent is confirmed (or refused), or there is no channel to wait on. */
  private get isSettled(): boolean {
    return this.channel === null || (this.unconfirmed.size === 0 && this.waiting.length === 0);
  }

  /** Resolves once isSettled, or after `timeoutMs`. */
  private settled(timeoutMs: number): Promise<void> {
    if (this.isSettled) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.settleWaiters.delete(check);
        resolve();
      };
      const check = (): void => {
        if (this.isSettled) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.settleWaiters.add(check);
    });
  }

  private changed(): void {
    for (const check of [...this.settleWaiters]) check();
  }

  private send(channel: ConfirmChannel, item: Outgoing): void {
    this.unconfirmed.add(item);
    channel.sendToQueue(item.queue, item.body, { persistent: false }, (err) => {
      if (channel !== this.channel) return; // the channel died: the item is re-sent after the reconnect
      // A closing channel fails its callbacks before its 'close' listeners run: the item stays
      // unconfirmed and is re-sent after the reconnect.
      if (err && (err as Error).message !== NACKED) return;
      if (!err) {
        this.served.add(item.queue);
        this.unconfirmed.delete(item);
        this.published += 1;
        this.changed();
      } else if (this.options.queueType === 'quorum' && !this.served.has(item.queue)) {
        void this.nackedByQuorum(channel, item);
      } else {
        this.refused(item);
      }
    });
  }

  private refused(item: Outgoing): void {
    this.unconfirmed.delete(item);
    this.dropped += 1;
    this.log.warn(
      { queue: item.queue },
      'event refused by the broker (partition full: worker.maxPendingEvents); dropped',
    );
    this.changed();
  }

  /** A quorum partition nacked an event on a channel it never served: full, or a lost leader? */
  private async nackedByQuorum(channel: ConfirmChannel, item: Outgoing): Promise<void> {
    const model = this.model;
    const full = model !== null && (await this.isFull(model, item.queue));
    // Meanwhile the channel died (the item is re-sent) or the queue served it (then it is full).
    if (channel !== this.channel || !this.unconfirmed.has(item)) return;
    if (full || this.served.has(item.queue) || item.nacks >= EVENT_NACK_RETRIES) {
      this.refused(item);
      return;
    }
    item.nacks += 1;
    this.retried += 1;
    if (this.replacing) return;
    // A fresh connection (to the same node or the next) gives a fresh channel, which the queue's
    // new leader serves; what is unconfirmed then, this item included, goes out again in order.
    this.replacing = true;
    this.log.debug({ queue: item.queue }, 'event nacked by a quorum partition (lost leader?): new connection');
    if (model !== null) void model.close().catch(() => undefined);
  }

  /** The partition holds its bound (x-max-length); false when that cannot be told within 2 s. */
  private async isFull(model: ChannelModel, queue: string): Promise<boolean> {
    let side: Awaited<ReturnType<ChannelModel['createChannel']>> | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      side = await model.createChannel();
      side.on('error', () => undefined); // a queue without a leader may fail the check: not full
      const check = side.checkQueue(queue);
      const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 2000)));
      const ok = await Promise.race([check, timeout]);
      return ok !== null && ok.messageCount >= partitionLength(this.options);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
      void side?.close().catch(() => undefined);
    }
  }

  private async connectOnce(): Promise<void> {
    const model = await connect(this.options.url, `gatewire-events-${this.options.instance}`);
    model.on('error', (err: Error) => this.log.warn({ err: err.message }, 'event queue connection error'));
    const channel = await model.createConfirmChannel();
    channel.on('error', (err: Error) => this.log.warn({ err: err.message }, 'event queue channel error'));
    for (let p = 0; p < this.options.partitions; p++) {
      await channel.assertQueue(
        eventQueueName(this.options.prefix, this.options.partitions, p),
        queueOptions(this.options),
      );
    }
    const lost = (): void => {
      if (this.channel !== channel) return;
      this.channel = null;
      this.model = null;
      this.replacing = false;
      // In order: what was sent but not confirmed goes first, then what waited.
      this.waiting = [...this.unconfirmed, ...this.waiting];
      this.unconfirmed.clear();
      this.changed();
      if (!this.closed) {
        this.log.warn('event queue connection lost; reconnecting');
        this.reconnects.lost((err) => this.log.debug({ err: errorMessage(err) }, 'event queue reconnect failed'));
      }
    };
    model.on('close', lost);
    channel.on('close', () => {
      lost();
      void model.close().catch(() => undefined);
    });
    this.model = model;
    this.channel = channel;
    this.served = new Set();
    this.connections += 1;
    if (this.connections > 1) this.reconnected += 1;
    const waiting = this.waiting;
    this.waiting = [];
    for (const item of waiting) this.send(channel, item);
  }
}

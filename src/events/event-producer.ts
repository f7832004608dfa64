/**
 * The gateway side of split roles (event-queues.ts): publishes client events to the partition
 * queues, with confirms, in order; while the broker is unreachable, events wait (bounded).
 */
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import { ReconnectLoop } from '../transport/amqp/reconnect-loop.js';
import { encodeEnvelope } from '../protocol/envelope.js';
import type { ClientEvent, EventSink } from '../protocol/client-event.js';
import { eventToCommand } from '../protocol/event-codec.js';
import { errorMessage } from '../errors.js';
import { closeModel, connect, eventQueueName, partitionOf, queueOptions } from './event-queues.js';
import type { EventQueueOptions } from './event-queues.js';

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
    };
    if (this.channel === null) {
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
      this.unconfirmed.delete(item);
      if (err) {
        this.dropped += 1;
        this.log.warn(
          { queue: item.queue },
          'event refused by the broker (partition full: worker.maxPendingEvents); dropped',
        );
      } else {
        this.published += 1;
      }
      this.changed();
    });
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
    const waiting = this.waiting;
    this.waiting = [];
    for (const item of waiting) this.send(channel, item);
  }
}

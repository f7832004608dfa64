/**
 * Outgoing broker messages, in order, until the broker confirmed each of them.
 *
 * Every message stays here from addAll() until its publisher confirm (basic.ack). While a confirm
 * channel is attached, messages are published in the order they were added; when the channel
 * dies, every message not yet confirmed, sent or not, waits for the next channel and is
 * published again on it, still in the original order, before anything added later. A message
 * the broker routed but whose ack was lost with the channel goes out twice; receivers drop the
 * second copy by its sequence number, so per publisher they apply every command once, in order.
 *
 * Each message is sealed (its envelope stamped with the present time, with the sequence number
 * it got at its first send) when it is written to a channel, so a retransmit is recognised by the
 * receivers' sequence check and is never refused as old for having waited through an outage.
 *
 * A nack from a living channel (RabbitMQ sends one for a classic queue only on an internal
 * error) rejects the message's promise with GW_ERR_BUS_BROKER: the caller hears about it, nothing
 * is dropped silently. With `retryNacks` (quorum queues) a nack first counts as a broken channel,
 * up to that many times per message: measured on RabbitMQ 3.10, a quorum queue whose leader's
 * node died nacks publishes until its new leader is in place, and goes on nacking for good on a
 * channel whose first publish to it was nacked so; the message and all after it go out again,
 * in order, on the next channel (receivers drop the copies some queues already got). A message the broker refuses by closing the channel (larger than its
 * max_message_size, or refused for another reason three times in a row) is dropped and its
 * promise rejected with GW_ERR_BUS_REFUSED, so it can never jam what comes after it.
 */
import type { ConfirmChannel, Options } from 'amqplib';
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';

export interface OutboxMessage {
  routingKey: string;
  /** further routing keys (the CC header); empty for none */
  cc: string[];
  /** published mandatory: the broker returns it if no queue takes it (amqp-publishing.ts) */
  mandatory?: boolean;
  /** the envelope to write now (bus.ts OutgoingBatch.seal) */
  seal: () => Buffer;
}

interface Entry extends OutboxMessage {
  resolve: () => void;
  reject: (err: Error) => void;
  settled: boolean;
  /** bytes of the last write; 0 while never written */
  size: number;
  /** channel errors suffered while this entry was the oldest one written and unconfirmed */
  strikes: number;
  /** nacks retried (retryNacks) */
  nacks: number;
}

/** Channel errors while a message is the oldest unconfirmed one before it counts as refused. */
const MAX_STRIKES = 3;

export class ConfirmOutbox {
  /** unconfirmed messages in the order added (a Set keeps insertion order) */
  private readonly entries = new Set<Entry>();
  /** what still has to be published on the current channel, from `cursor` on */
  private queue: Entry[] = [];
  private cursor = 0;
  private channel: ConfirmChannel | null = null;
  private exchange = '';
  /** changes on every attach and detach; confirms of an older channel are told apart by it */
  private generation = 0;
  private waitingForDrain = false;
  private drainWaiters: (() => void)[] = [];

  /**
   * `broken` is told when publish throws: the channel is unusable (its close event follows); and
   * when a nack is retried (`retryNacks` > 0): the owner replaces the channel. @default retryNacks 0
   */
  constructor(
    private readonly broken: (err: Error) => void,
    private readonly retryNacks = 0,
  ) {}

  /** Messages not yet confirmed. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Adds several messages under one promise: it resolves once the last of them is confirmed
   * (confirms come in publish order, and a nack of any earlier one has rejected it by then).
   */
  addAll(messages: OutboxMessage[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const last = messages.length - 1;
      for (let i = 0; i <= last; i++) {
        const entry: Entry = {
          ...messages[i]!,
          resolve: i === last ? resolve : noop,
          reject,
          settled: false,
          size: 0,
          strikes: 0,
          nacks: 0,
        };
        this.entries.add(entry);
        this.queue.push(entry);
      }
      this.pump();
    });
  }

  /** Starts publishing on `channel`: first everything unconfirmed, in order, then new messages. */
  attach(channel: ConfirmChannel, exchange: string): void {
    this.generation += 1;
    const generation = this.generation;
    this.channel = channel;
    this.exchange = exchange;
    this.queue = [...this.entries];
    this.cursor = 0;
    this.waitingForDrain = false;
    // amqplib fails the confirm callbacks of a closing channel from its own first 'close'
    // listener; detaching before it runs makes those failures "resend later", not nacks.
    channel.prependListener('close', () => {
      if (this.generation === generation) this.detach();
    });
    channel.on('drain', () => {
      if (this.generation !== generation) return;
      this.waitingForDrain = false;
      this.pump();
    });
    this.pump();
  }

  /** The channel is gone: unconfirmed messages wait for the next attach(). */
  detach(): void {
    this.generation += 1;
    this.channel = null;
    this.waitingForDrain = false;
  }

  /** Rejects every message not yet confirmed (the bus is closing). */
  failAll(err: Error): void {
    for (const entry of this.entries) this.settle(entry, err);
    this.entries.clear();
    this.queue = [];
    this.cursor = 0;
    this.wakeDrainWaiters();
  }

  /**
   * The broker closed the channel refusing a message larger than `maxBytes`: every unconfirmed
   * message written larger than that is dropped, its promise rejected. Returns how many.
   */
  refuseLarger(maxBytes: number, reason: string): number {
    let refused = 0;
    for (const entry of this.entries) {
      if (entry.size > maxBytes) {
        this.entries.delete(entry);
        this.settle(
          entry,
          new GatewireError(ErrorCodes.BUS_REFUSED, `the broker refused a message of ${entry.size} bytes: ${reason}`),
        );
        refused += 1;
      }
    }
    if (refused > 0 && this.entries.size === 0) this.wakeDrainWaiters();
    return refused;
  }

  /**
   * The broker closed the channel with an error about a message: the oldest unconfirmed one
   * written is the suspect (confirms come in order, so everything before it was accepted). After
   * MAX_STRIKES such errors in a row it is dropped and its promise rejected. Returns its size if
   * it was dropped, else 0.
   */
  strikeOldest(reason: string): number {
    for (const entry of this.entries) {
      if (entry.size === 0) return 0;
      entry.strikes += 1;
      if (entry.strikes < MAX_STRIKES) return 0;
      this.entries.delete(entry);
      this.settle(
        entry,
        new GatewireError(ErrorCodes.BUS_REFUSED, `the broker refused a message ${MAX_STRIKES} times: ${reason}`),
      );
      if (this.entries.size === 0) this.wakeDrainWaiters();
      return entry.size;
    }
    return 0;
  }

  /** Resolves once every message added so far is confirmed or failed. */
  drained(timeoutMs?: number): Promise<void> {
    if (this.entries.size === 0) return Promise.resolve();
    const drained = new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    if (timeoutMs === undefined) return drained;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    return Promise.race([drained, timeout]).finally(() => clearTimeout(timer));
  }

  private pump(): void {
    const channel = this.channel;
    if (channel === null || this.waitingForDrain) return;
    const generation = this.generation;
    while (this.cursor < this.queue.length) {
      const entry = this.queue[this.cursor]!;
      if (entry.settled) {
        this.cursor += 1;
        continue;
      }
      const options: Options.Publish = { contentType: 'application/msgpack' };
      if (entry.cc.length > 0) options.CC = entry.cc;
      if (entry.mandatory === true) options.mandatory = true;
      let written: boolean;
      try {
        const body = entry.seal();
        entry.size = body.length;
        written = channel.publish(this.exchange, entry.routingKey, body, options, (err: unknown) =>
          this.confirmed(entry, generation, err),
        );
      } catch (err) {
        // The channel is closed or closing; the entry stays and goes out on the next channel.
        this.detach();
        this.broken(
          err instanceof Error ? err : new GatewireError(ErrorCodes.BUS_BROKER, errorMessage(err), { cause: err }),
        );
        return;
      }
      this.cursor += 1;
      if (!written) {
        // The socket buffer is past its high-water mark: wait for 'drain' so memory stays bounded.
        this.waitingForDrain = true;
        break;
      }
    }
    if (this.cursor >= this.queue.length) {
      this.queue = [];
      this.cursor = 0;
    }
  }

  private confirmed(entry: Entry, generation: number, err: unknown): void {
    if (entry.settled) return;
    if (err === null || err === undefined) {
      this.entries.delete(entry);
      this.settle(entry, null);
    } else if (generation === this.generation && entry.nacks < this.retryNacks) {
      // A nack to retry on a new channel: everything unconfirmed waits for it, in order.
      entry.nacks += 1;
      this.detach();
      this.broken(new GatewireError(ErrorCodes.BUS_BROKER, `the broker nacked a message: ${errorMessage(err)}`));
      return;
    } else if (generation === this.generation) {
      this.entries.delete(entry);
      this.settle(
        entry,
        new GatewireError(ErrorCodes.BUS_BROKER, `the broker refused a message (nack): ${errorMessage(err)}`),
      );
    } else {
      // The channel closed before the confirm: the entry is re-sent on the next channel.
      return;
    }
    if (this.entries.size === 0) this.wakeDrainWaiters();
  }

  private settle(entry: Entry, err: Error | null): void {
    if (entry.settled) return;
    entry.settled = true;
    if (err === null) entry.resolve();
    else entry.reject(err);
  }

  private wakeDrainWaiters(): void {
    for (const wake of this.drainWaiters.splice(0)) wake();
  }
}

function noop(): void {}

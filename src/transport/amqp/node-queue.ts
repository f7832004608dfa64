/**
 * What arrives on this process's queue and on the queue of dropped messages: commands for the bus,
 * the readiness messages of the peers (peer-barrier.ts), acknowledgements (one `multiple` ack per
 * event-loop turn, so prefetch bounds what a busy node holds) and the count of what node queues
 * dropped for their byte bound. The transport owns the session; this owns what is consumed on it.
 */
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { decodeEnvelope } from '../../protocol/envelope.js';
import { BROADCAST_KEY, nodeKey } from '../../protocol/routing-keys.js';
import type { BusMode } from '../../protocol/routes.js';
import { errorMessage } from '../../errors.js';
import type { BusLink } from '../bus-link.js';
import type { PeerBarrier } from './peer-barrier.js';
import type { Session } from './amqp-session.js';
import { declareDroppedQueue } from './amqp-topology.js';
import { unroutableKind, type UnroutableKind } from './amqp-publishing.js';

/** AMQP `type` of the readiness messages (no commands; docs/wire-format.md). */
export const READY_TYPE = 'gatewire.ready';
export const READY_ACK_TYPE = 'gatewire.ready-ack';

/** Counters specific to this bus (the common ones are in `stats`). */
export interface AmqpBusStats {
  /** messages node queues dropped for their byte bound, as counted here (docs/operations.md) */
  queueOverflowDropped: number;
  /**
   * mandatory messages the broker returned because no queue took them, by kind of key
   * (gatewire_bus_unroutable_total; amqp-publishing.ts says which messages are mandatory)
   */
  unroutable: Record<UnroutableKind, number>;
}

/** What the consumer needs from its transport. */
export interface NodeQueueHost {
  readonly instance: string;
  readonly mode: BusMode;
  readonly secret: string;
  readonly log: Logger;
  readonly barrier: PeerBarrier;
  readonly link: BusLink;
  /** the session is gone (the broker cancelled the consumer) */
  lost(session: Session, reason: string): void;
}

export class NodeQueueConsumer {
  readonly stats: AmqpBusStats = { queueOverflowDropped: 0, unroutable: { node: 0, broadcast: 0, fanout: 0 } };
  private droppedLoggedAt = 0;
  private returnedLoggedAt = 0;

  constructor(private readonly host: NodeQueueHost) {}

  /**
   * Starts consuming the process's queue and the queue of dropped messages on the session.
   *
   * `settle` (a quorum queue, after a reconnect): first a marker goes through the queue itself
   * and its confirm is awaited, so that the queue's (possibly new) leader has taken in that the
   * consumer of the lost connection is gone before the new consumer comes. Measured on 3.10 with
   * the leader's node killed: the new leader goes on handing messages to the dead consumer (up to
   * its prefetch) until it processes that consumer's node going down, then returns them to the
   * head of the queue. A new consumer registered before that gets newer messages first, and the
   * returned ones after them are dropped by the sequence check (replay-guard.ts) as behind a
   * later message: lost. The confirm comes once the leader applied the marker, after the down
   * it learnt of when it took over; the returned messages are then delivered first, in order.
   */
  async consume(session: Session, queue: string, dropped: string, settle = false, settleMs = 10000): Promise<void> {
    const consumer = session.consumer!;
    if (settle) await this.settleQueue(session, queue, settleMs);
    await consumer.consume(queue, (msg) => this.onDelivery(session, msg), { noAck: false });
    await this.consumeDropped(session, dropped);
  }

  /** The queue of dropped messages; again when the broker cancels it (its broker node died). */
  private async consumeDropped(session: Session, dropped: string): Promise<void> {
    await session.consumer!.consume(
      dropped,
      (msg) => {
        if (msg !== null) this.onDropped(msg);
        else if (session.alive) void this.redeclareDropped(session, dropped);
      },
      { noAck: true },
    );
  }

  /**
   * A READY of this node's own (ignored on delivery) through its own queue until one is confirmed,
   * bounded by `waitMs`. Each attempt on a confirm channel of its own, closed after: measured on
   * 3.10, a queue without a leader yet nacks at once, and a channel whose first publish to a
   * quorum queue was nacked so goes on being nacked by that queue for good (a fresh channel is
   * served as soon as the new leader is in place, about 0.3 to 2 s after the kill).
   */
  private async settleQueue(session: Session, queue: string, waitMs: number): Promise<void> {
    const started = Date.now();
    let attempts = 0;
    while (Date.now() - started < waitMs && session.alive) {
      attempts += 1;
      const channel = await session.connection.createConfirmChannel();
      channel.on('error', () => undefined); // its closing never ends the session
      let timer: NodeJS.Timeout | undefined;
      const ok = await Promise.race([
        new Promise<boolean>((resolve) =>
          channel.publish('', queue, this.host.link.bus.sealSignal(), { type: READY_TYPE }, (err: unknown) =>
            resolve(err === null || err === undefined),
          ),
        ),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs - (Date.now() - started)))),
        session.dead,
      ]).finally(() => {
        clearTimeout(timer);
        channel.close().catch(() => undefined);
      });
      if (ok) {
        if (attempts > 1) this.host.log.info({ queue, attempts, waitedMs: Date.now() - started }, 'queue settled');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.host.log.warn({ queue, attempts, waitedMs: Date.now() - started }, 'queue not settled after the reconnect');
  }

  /**
   * One broker message. Acknowledged after receive() handed its commands to the node (receive is
   * synchronous), so prefetch bounds how much a busy node holds. After a lost connection the
   * broker delivers unacknowledged messages again on the next one; receive() drops the ones
   * already applied (their sequence numbers).
   */
  private onDelivery(session: Session, msg: ConsumeMessage | null): void {
    if (msg === null) {
      this.host.lost(session, 'the broker cancelled the consumer (queue deleted?)');
      return;
    }
    if (msg.properties.type === READY_TYPE || msg.properties.type === READY_ACK_TYPE) {
      // Only what arrives on the live connection tells whether a peer is ready for it.
      if (session.alive) this.onReady(session, msg);
    } else {
      this.onMessage(msg);
    }
    session.unacked = msg;
    if (!session.ackScheduled) {
      session.ackScheduled = true;
      setImmediate(() => this.ackPending(session));
    }
  }

  private onMessage(msg: ConsumeMessage): void {
    // Without CC a message names one key; a command split into one message per key (more keys
    // than keysPerMessage) must then be applied once, for the first of its keys this node holds.
    // With CC the broker delivers one copy per queue however many of its keys match: no filter.
    const viaKey =
      this.host.mode === 'direct' && msg.properties.headers?.CC === undefined ? msg.fields.routingKey : undefined;
    this.host.link.bus.receive(msg.content, viaKey);
  }

  /** A peer is bound on its current queue again (READY), or answers ours (READY-ACK). */
  private onReady(session: Session, msg: ConsumeMessage): void {
    let sender: string;
    try {
      sender = decodeEnvelope(msg.content, this.host.secret).sender;
    } catch {
      this.host.link.bus.receive(msg.content); // counted and logged as any unreadable message
      return;
    }
    if (sender === this.host.instance) return;
    this.host.barrier.heardFrom(sender);
    if (msg.properties.type === READY_TYPE) this.sendReady(session, READY_ACK_TYPE, sender);
  }

  /**
   * READY goes to everyone; READY-ACK to the asker's node key. Both bypass the outbox (they carry
   * no commands, so their order against commands does not matter, and a barrier holding them
   * could make two recovering nodes wait for each other).
   */
  sendReady(session: Session, type: string, to: string | null): void {
    const publisher = session.publisher;
    if (!session.alive || publisher === null) return;
    const routingKey = this.host.mode === 'fanout' ? '' : to === null ? BROADCAST_KEY : nodeKey(to);
    try {
      publisher.publish(session.exchange, routingKey, this.host.link.bus.sealSignal(), {
        type,
        contentType: 'application/msgpack',
        mandatory: true,
      });
    } catch (err) {
      this.host.log.debug({ err: errorMessage(err) }, 'readiness message not sent (channel closing)');
    }
  }

  /**
   * The broker returned a mandatory message: no queue took it. Counted and logged (at most every
   * 5 s), not sent again: a node key with no queue means a node that is gone (its queue expired)
   * or, with classic queues on a cluster, one whose queue died with its broker node and is being
   * declared again; a later retry would arrive after what followed it and be dropped by the
   * receivers' order check anyway (docs/cluster-rabbitmq.md).
   */
  countReturned(msg: ConsumeMessage): void {
    const kind = unroutableKind(msg);
    this.stats.unroutable[kind] += 1;
    const now = Date.now();
    if (now - this.returnedLoggedAt >= 5000) {
      this.returnedLoggedAt = now;
      this.host.log.warn(
        { kind, routingKey: msg.fields.routingKey, counted: this.stats.unroutable },
        'the broker returned a message no queue took (a node queue missing)',
      );
    }
  }

  /** Declares the dropped queue on a channel of its own (a failure must not end the session). */
  private async redeclareDropped(session: Session, dropped: string): Promise<void> {
    try {
      const channel = await session.connection.createChannel();
      channel.on('error', () => undefined);
      await declareDroppedQueue(channel, dropped).finally(() => channel.close().catch(() => undefined));
      if (session.alive) await this.consumeDropped(session, dropped);
    } catch (err) {
      this.host.log.warn({ err: errorMessage(err) }, 'the queue of dropped messages could not be declared again');
    }
  }

  /** A message some node's queue dropped for its byte bound (x-overflow drop-head). */
  private onDropped(msg: ConsumeMessage): void {
    this.stats.queueOverflowDropped += 1;
    const now = Date.now();
    if (now - this.droppedLoggedAt >= 5000) {
      this.droppedLoggedAt = now;
      const death = (msg.properties.headers?.['x-death'] as { queue?: string }[] | undefined)?.[0];
      this.host.log.warn(
        { queue: death?.queue, counted: this.stats.queueOverflowDropped },
        'a node queue dropped its oldest messages (bus.amqp.maxQueueBytes): that node was frozen or dead',
      );
    }
  }

  private ackPending(session: Session): void {
    session.ackScheduled = false;
    const msg = session.unacked;
    session.unacked = null;
    if (msg === null || !session.alive || session.consumer === null) return;
    try {
      session.consumer.ack(msg, true);
    } catch (err) {
      // The channel closed meanwhile; its close event handles the rest.
      this.host.log.debug({ err: errorMessage(err) }, 'ack after channel close');
    }
  }
}

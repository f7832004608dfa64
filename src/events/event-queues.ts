/**
 * Client events from gateways to workers when the roles run in separate processes
 * (docs/operations.md, "Split roles").
 *
 * Queues: `<prefix>.events.<P>.<p>` for p in 0..P-1 (P = worker.partitions), durable, with
 *   x-single-active-consumer  one worker at a time consumes a partition, so a client's events
 *                             (always the same partition: FNV-1a of the client id mod P) are
 *                             handled in arrival order, also with several workers;
 *   x-max-length + reject-publish  the bound while no worker runs (worker.maxPendingEvents / P);
 *   x-queue-type quorum       only when the bus's queue type resolves to quorum (several URLs in
 *                             bus.amqp.url, or bus.amqp.queueType=quorum): the queue then outlives
 *                             the death of any minority of the broker nodes. RabbitMQ 3.10 quorum
 *                             queues take the three arguments above (checked by declaring them).
 *                             With one URL the queues stay classic with the very same arguments,
 *                             so queues declared by earlier versions are declared again as they are.
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
 *
 * Folder events/ (layer 2, beside cluster: imports protocol, transport, cluster): split roles. Flow: gateway
 * -> EventSink = event-producer.ts -> partition queues -> event-consumer.ts -> EventRunner (the
 * worker, bound from above), with session-cache.ts for the sessions the events carry.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { closeConnection, withHeartbeat } from '../transport/amqp/amqp-topology.js';
import { connectFirst } from '../transport/amqp/amqp-urls.js';
import { bucketOf } from '../protocol/routing-keys.js';

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
  /** resolveQueueType(bus.amqp.queueType, several URLs). @default 'classic' */
  queueType?: 'classic' | 'quorum';
}

/** Nacks of one event a gateway retries on a fresh connection (quorum queues only). */
export const EVENT_NACK_RETRIES = 10;

/** The partition bound, per queue (x-max-length). */
export function partitionLength(options: EventQueueOptions): number {
  return Math.max(1, Math.ceil(options.maxPendingEvents / options.partitions));
}

export function partitionOf(clientId: string, partitions: number): number {
  return bucketOf(clientId, partitions);
}

export function eventQueueName(prefix: string, partitions: number, partition: number): string {
  return `${prefix}.events.${partitions}.${partition}`;
}

export function queueOptions(options: EventQueueOptions) {
  return {
    durable: true,
    arguments: {
      'x-single-active-consumer': true,
      'x-max-length': partitionLength(options),
      'x-overflow': 'reject-publish',
      ...(options.queueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {}),
    },
  };
}

/** Closes a connection, waiting at most 5 s for the broker. */
export function closeModel(model: ChannelModel | null | undefined): Promise<void> {
  return model ? closeConnection(model, 5000) : Promise.resolve();
}

/** `url`: bus.amqp.url, one URL or a cluster's, comma-separated (the first that answers). */
export async function connect(url: string, name: string): Promise<ChannelModel> {
  return connectFirst(url, name, (one) =>
    amqp.connect(withHeartbeat(one), { clientProperties: { connection_name: name }, noDelay: true }),
  );
}

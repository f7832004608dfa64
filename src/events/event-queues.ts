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
      'x-max-length': Math.max(1, Math.ceil(options.maxPendingEvents / options.partitions)),
      'x-overflow': 'reject-publish',
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

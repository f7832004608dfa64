/**
 * What the AMQP bus declares on the broker (docs/wire-format.md, "RabbitMQ"):
 *
 *   exchange  <prefix>.fanout (type fanout) or <prefix>.direct (type direct), durable, not
 *             auto-delete, internal false, no arguments: it outlives every node once declared,
 *             and publishers in other languages declare it with exactly these arguments (before
 *             any node ran it does not exist: 404 NOT_FOUND). The mode in its name means
 *             switching bus.mode never meets an exchange of the other type (PRECONDITION_FAILED).
 *   queue     one per process: <exchange>.node.<instance> (the instance tag is new at every
 *             process start, so no two processes share it), not exclusive, not auto-delete,
 *             with x-expires; classic and not durable, or quorum (bus.amqp.queueType; quorum
 *             queues must be durable, and RabbitMQ 3.10 refuses exclusive and auto-delete for
 *             them but takes every argument below, measured). A classic queue lives on one
 *             broker node and, being transient, vanishes with its bindings when that node dies:
 *             the process declares it again under the same name on the node it moves to. A
 *             quorum queue lives on every node of the cluster and keeps its bindings and
 *             messages while a minority of them dies. It outlives a lost connection, so what other nodes
 *             push to this node while it reconnects waits in its queue instead of being routed
 *             nowhere; a process that is gone for good leaves a queue that the broker deletes
 *             after x-expires without a consumer (default 60 s), bindings included.
 *             It is bounded in bytes (x-max-length-bytes, x-overflow drop-head): a node that is
 *             frozen or dead cannot make the broker hold an unbounded backlog for it; the oldest
 *             messages go first, and are dead-lettered to the shared <exchange>.dropped queue,
 *             where live nodes count them (then they are gone).
 *   bindings  fanout: one, with the empty key. direct: exactly the node's desired keys
 *             (n.<instance>, all, u.<uid>|ub.<bucket>, g.<group>|gb.<bucket>).
 *   dropped   <exchange>.dropped: not durable, x-expires 60 s, at most DROPPED_QUEUE_LENGTH
 *             messages; consumed (no ack) by every node to count what node queues dropped.
 */
import type { Channel, ChannelModel } from 'amqplib';
import type { BusMode } from '../../protocol/routes.js';
import { ErrorCodes, GatewireError } from '../../errors.js';

/** AMQP 0-9-1 routing and binding keys are short strings: at most 255 bytes. */
export const MAX_KEY_BYTES = 255;

export interface Topology {
  exchange: string;
  queue: string;
  /** the shared queue of what node queues dropped */
  dropped: string;
}

export function exchangeName(prefix: string, mode: BusMode): string {
  return `${prefix}.${mode}`;
}

export function isRoutableKey(key: string): boolean {
  return Buffer.byteLength(key, 'utf8') <= MAX_KEY_BYTES;
}

/** Throws BUS_BROKER for a key no broker could bind (checked here so the channel stays up). */
export function checkBindableKey(key: string): void {
  if (!isRoutableKey(key)) {
    throw new GatewireError(
      ErrorCodes.BUS_BROKER,
      `routing key ${JSON.stringify(key.slice(0, 40))}… is ${Buffer.byteLength(key, 'utf8')} bytes; AMQP allows ${MAX_KEY_BYTES}`,
    );
  }
}

export function nodeQueueName(prefix: string, mode: BusMode, instance: string): string {
  return `${exchangeName(prefix, mode)}.node.${instance}`;
}

export function droppedQueueName(prefix: string, mode: BusMode): string {
  return `${exchangeName(prefix, mode)}.dropped`;
}

/** Messages the dropped queue keeps while nobody consumes it (only counts matter). */
export const DROPPED_QUEUE_LENGTH = 10000;

/** bus.amqp.queueType once `auto` is decided (amqp-transport.ts). */
export type AmqpQueueType = 'auto' | 'classic' | 'quorum';

/**
 * `auto`: quorum when the bus was given several broker nodes (a cluster: the queue must outlive
 * the one it is led by), classic with one (nothing to replicate to; quorum would only cost
 * fsyncs). @default 'auto'
 */
export function resolveQueueType(type: AmqpQueueType | undefined, clustered: boolean): 'classic' | 'quorum' {
  if (type === 'classic' || type === 'quorum') return type;
  return clustered ? 'quorum' : 'classic';
}

/**
 * Declares the shared queue of dropped messages. Classic and transient (only counts matter): on a
 * cluster it vanishes with its broker node, and every node consuming it declares it again when
 * the broker cancels its consumer (node-queue.ts).
 */
export async function declareDroppedQueue(channel: Channel, name: string): Promise<void> {
  await channel.assertQueue(name, {
    exclusive: false,
    autoDelete: false,
    durable: false,
    arguments: { 'x-expires': 60000, 'x-max-length': DROPPED_QUEUE_LENGTH },
  });
}

export interface QueueLimits {
  /** the node queue's type. @default 'classic' */
  type?: 'classic' | 'quorum';
  /** ms without a consumer before the broker deletes the queue (x-expires) */
  expiresMs: number;
  /** bytes of message bodies the queue holds before dropping its oldest (x-max-length-bytes) */
  maxBytes: number;
}

/**
 * Declares the exchange and this process's queue (and, in fanout mode, its one binding). On a
 * reconnect the queue is usually still there, with its bindings and what waited in it.
 */
export async function declareTopology(
  channel: Channel,
  prefix: string,
  mode: BusMode,
  instance: string,
  limits: QueueLimits,
): Promise<Topology> {
  const exchange = exchangeName(prefix, mode);
  await channel.assertExchange(exchange, mode, { durable: true, autoDelete: false });
  const dropped = droppedQueueName(prefix, mode);
  await declareDroppedQueue(channel, dropped);
  const quorum = limits.type === 'quorum';
  const { queue } = await channel.assertQueue(nodeQueueName(prefix, mode, instance), {
    exclusive: false,
    autoDelete: false,
    durable: quorum,
    arguments: {
      ...(quorum ? { 'x-queue-type': 'quorum' } : {}),
      'x-expires': limits.expiresMs,
      'x-max-length-bytes': limits.maxBytes,
      'x-overflow': 'drop-head',
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': dropped,
    },
  });
  if (mode === 'fanout') await channel.bindQueue(queue, exchange, '');
  return { exchange, queue, dropped };
}

/**
 * The broker URL with a heartbeat unless it sets one (`?heartbeat=N`): 5 s, so a silently dead
 * network path (no FIN, no RST) is noticed within about 10 s instead of the minutes TCP takes.
 */
export function withHeartbeat(url: string, seconds = 5): string {
  try {
    const parsed = new URL(url);
    if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(seconds));
    return parsed.toString();
  } catch {
    return url; // amqplib reports a malformed URL itself
  }
}

/**
 * Closes a connection. amqplib's close() waits for the broker's close-ok and never settles if the
 * socket dies during that handshake, so the wait is bounded and the socket destroyed after it:
 * a shutdown always ends.
 */
export function closeConnection(model: ChannelModel, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      (model as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      resolve();
    }, timeoutMs);
    model
      .close()
      .catch(() => undefined) // may be closed already
      .finally(() => {
        clearTimeout(timer);
        resolve();
      });
  });
}

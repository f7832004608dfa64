/**
 * What the AMQP bus declares on the broker (docs/wire-format.md, "RabbitMQ"):
 *
 *   exchange  <prefix>.fanout (type fanout) or <prefix>.direct (type direct), durable, not
 *             auto-delete: it outlives every node, so publishers in any language can always
 *             publish to it, and the mode in its name means switching bus.mode never meets an
 *             exchange of the other type (PRECONDITION_FAILED).
 *   queue     one per process and per connection: server-named, exclusive, auto-delete, not
 *             durable. It dies with its connection, so a crashed node leaves no queue and no
 *             binding behind; every reconnect therefore gets a new queue and replays its keys.
 *   bindings  fanout: one, with the empty key. direct: exactly the node's desired keys
 *             (n.<instance>, all, u.<uid>|ub.<bucket>, g.<group>|gb.<bucket>).
 */
import type { Channel } from 'amqplib';
import type { BusMode } from '../../config/formats.js';
import { ErrorCodes, GatewireError } from '../../errors.js';

/** AMQP 0-9-1 routing and binding keys are short strings: at most 255 bytes. */
export const MAX_KEY_BYTES = 255;

export interface Topology {
  exchange: string;
  queue: string;
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

/** Declares the exchange and a fresh queue (and, in fanout mode, its one binding). */
export async function declareTopology(channel: Channel, prefix: string, mode: BusMode): Promise<Topology> {
  const exchange = exchangeName(prefix, mode);
  await channel.assertExchange(exchange, mode, { durable: true, autoDelete: false });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
  if (mode === 'fanout') await channel.bindQueue(queue, exchange, '');
  return { exchange, queue };
}

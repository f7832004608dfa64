/**
 * The publishing path's AMQP half: a turn's batches as outbox messages (routing key + CC, keys no
 * queue can bind left out) and the broker's refusals of what the outbox published. The order,
 * confirms and retransmits are the outbox's (confirm-outbox.ts).
 */
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { BusMode } from '../../protocol/routes.js';
import { BROADCAST_KEY } from '../../protocol/routing-keys.js';
import type { OutgoingBatch, TransportHooks } from '../transport.js';
import { isRoutableKey } from './amqp-topology.js';
import type { ConfirmOutbox, OutboxMessage } from './confirm-outbox.js';

/** RabbitMQ's refusal of a message larger than max_message_size. */
const SIZE_REFUSAL = /message size (\d+) is larger than configured max size (\d+)/;

/** No CC header (shared, never modified). */
const NO_CC: string[] = [];

/** The batches as outbox messages: in direct mode, the first key routes and the others are CC. */
export function outboxMessages(batches: OutgoingBatch[], mode: BusMode, log: Logger): OutboxMessage[] {
  const messages: OutboxMessage[] = [];
  for (const batch of batches) {
    let routingKey = '';
    let cc: string[] = NO_CC;
    if (mode === 'direct') {
      // A key over 255 bytes can never be bound (bindKey refuses it), so no queue can want it.
      let keys = batch.keys;
      if (!keys.every(isRoutableKey)) {
        log.warn(
          { keys: keys.filter((k) => !isRoutableKey(k)).map((k) => k.slice(0, 40)) },
          'routing keys over 255 bytes reach no node',
        );
        keys = keys.filter(isRoutableKey);
      }
      if (keys.length === 0) continue;
      routingKey = keys[0]!;
      if (keys.length > 1) cc = keys.slice(1);
    }
    messages.push({ routingKey, cc, mandatory: isMandatory(mode, routingKey, cc), seal: batch.sealer() });
  }
  return messages;
}

/**
 * The broker closed the publishing channel with an error: a message it refused. One larger than
 * its max_message_size is dropped at once (and later messages are cut below that size); for any
 * other refusal the oldest unconfirmed message is dropped after three in a row. Either way its
 * callers are told (GW_ERR_BUS_REFUSED) and everything after it goes out on the next channel.
 */
export function onPublisherError(err: Error, outbox: ConfirmOutbox, bus: TransportHooks): void {
  const size = SIZE_REFUSAL.exec(err.message);
  if (size !== null) {
    const max = Number(size[2]);
    bus.learnBrokerLimit(max);
    const refused = outbox.refuseLarger(max, err.message);
    for (let i = 0; i < refused; i++) bus.countRefused(Number(size[1]), err.message);
    return;
  }
  const dropped = outbox.strikeOldest(err.message);
  if (dropped > 0) bus.countRefused(dropped, err.message);
}

/**
 * Kinds of key a returned (unroutable) message is counted under: a node key (n.<instance>), the
 * broadcast key (all), or, in fanout mode, the one empty key.
 */
export type UnroutableKind = 'node' | 'broadcast' | 'fanout';

/**
 * Whether a message is published `mandatory` (the broker returns it when no queue takes it):
 * every message in fanout mode, and in direct mode those for a node key or the broadcast key,
 * which some live node always has bound, so a return means a node's queue is missing. A message
 * only for uid or group keys is not: nobody holding the uid is no error (DESIGN §2).
 */
export function isMandatory(mode: BusMode, routingKey: string, cc: readonly string[]): boolean {
  if (mode === 'fanout') return true;
  return isWatchedKey(routingKey) || (cc.length > 0 && cc.some(isWatchedKey));
}

function isWatchedKey(key: string): boolean {
  return key === BROADCAST_KEY || key.startsWith('n.');
}

/** The kind of a returned message, from its routing key and CC header. */
export function unroutableKind(msg: Pick<ConsumeMessage, 'fields' | 'properties'>): UnroutableKind {
  const cc = msg.properties.headers?.CC as unknown;
  const keys = [msg.fields.routingKey, ...(Array.isArray(cc) ? cc.map(String) : [])];
  if (keys.some((key) => key.startsWith('n.'))) return 'node';
  if (keys.includes(BROADCAST_KEY)) return 'broadcast';
  return 'fanout';
}

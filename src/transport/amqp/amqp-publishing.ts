/**
 * The publishing path's AMQP half: a turn's batches as outbox messages (routing key + CC, keys no
 * queue can bind left out) and the broker's refusals of what the outbox published. The order,
 * confirms and retransmits are the outbox's (confirm-outbox.ts).
 */
import type { Logger } from 'pino';
import type { BusMode } from '../../protocol/routes.js';
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
    messages.push({ routingKey, cc, seal: batch.sealer() });
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

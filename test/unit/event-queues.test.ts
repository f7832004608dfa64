/**
 * The event partition queues' arguments: classic (one URL, the default) exactly as before, so
 * durable queues declared by earlier versions are declared again without PRECONDITION_FAILED;
 * quorum (a cluster) adds only x-queue-type.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { queueOptions, type EventQueueOptions } from '../../src/events/event-queues.js';

const base: EventQueueOptions = {
  url: 'amqp://localhost',
  prefix: 'gw',
  partitions: 8,
  maxPendingEvents: 100000,
  prefetch: 16,
  instance: 'i',
  secret: '',
};

test('classic partitions keep their arguments (queueType unset or classic)', () => {
  const expected = {
    durable: true,
    arguments: { 'x-single-active-consumer': true, 'x-max-length': 12500, 'x-overflow': 'reject-publish' },
  };
  assert.deepEqual(queueOptions(base), expected);
  assert.deepEqual(queueOptions({ ...base, queueType: 'classic' }), expected);
});

test('quorum partitions: the same arguments and x-queue-type quorum', () => {
  assert.deepEqual(queueOptions({ ...base, queueType: 'quorum' }), {
    durable: true,
    arguments: {
      'x-single-active-consumer': true,
      'x-max-length': 12500,
      'x-overflow': 'reject-publish',
      'x-queue-type': 'quorum',
    },
  });
});

/**
 * The conformance suite (suite.ts) against the RabbitMQ bus: fanout, direct with one key per uid
 * and group, and direct with bucket keys. Each run has its own exchange prefix.
 */
import { conformanceSuite } from './suite.js';
import { AMQP_URL, uniqueName } from '../helpers/nodes.js';

conformanceSuite('amqp fanout', () => ({
  bus: { kind: 'amqp', mode: 'fanout', amqp: { url: AMQP_URL, exchange: uniqueName('gwconf') } },
}));
conformanceSuite('amqp direct', () => ({
  bus: { kind: 'amqp', mode: 'direct', amqp: { url: AMQP_URL, exchange: uniqueName('gwconf') } },
}));
conformanceSuite('amqp direct, bucket keys', () => ({
  bus: {
    kind: 'amqp',
    mode: 'direct',
    uidBuckets: 64,
    groupBuckets: 16,
    amqp: { url: AMQP_URL, exchange: uniqueName('gwconf') },
  },
}));

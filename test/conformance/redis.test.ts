/**
 * The conformance suite (test/conformance/suite.ts) against the Redis bus, in both modes, each
 * run on its own channel prefix.
 */
import { conformanceSuite } from './suite.js';
import { REDIS_URL, uniqueName } from '../helpers/nodes.js';

conformanceSuite('redis fanout', () => ({
  bus: { kind: 'redis', mode: 'fanout', redis: { url: REDIS_URL, prefix: uniqueName('gwconf') } },
}));
conformanceSuite('redis direct', () => ({
  bus: { kind: 'redis', mode: 'direct', redis: { url: REDIS_URL, prefix: uniqueName('gwconf') } },
}));

/**
 * Deleting what a test created on the shared brokers, also when the test failed: call these from
 * t.after (or a suite's after) once the test's nodes and processes are stopped. The names come
 * from uniqueName, so nothing of another test or another program is touched.
 *
 *   RabbitMQ: cleanupAmqp (helpers/amqp.ts): the prefix's exchanges and every queue under it.
 *   Redis:    cleanupRedis: every key under the prefix (<prefix>:log, <prefix>:ack:<instance>);
 *             channels leave nothing behind.
 *   cleanupBus: either, from a test's configuration values.
 */
import { Redis } from 'ioredis';
import type { ConfigInput } from '../../src/config/load.js';
import { cleanupAmqp } from './amqp.js';
import { REDIS_URL } from './nodes.js';

export { cleanupAmqp };

/** `text` with Redis glob characters escaped, for SCAN MATCH. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Deletes every key named <prefix>:… on the shared Redis (or on `url`). */
export async function cleanupRedis(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { connectionName: 'gwtest-cleanup', lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${globEscape(prefix)}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Cleans up after a test whose bus configuration is `values` (amqp or redis; others: nothing). */
export async function cleanupBus(values: ConfigInput): Promise<void> {
  const bus = values.bus;
  if (bus?.kind === 'amqp') {
    if (bus.amqp?.exchange === undefined)
      throw new Error('cleanupBus: the test set no bus.amqp.exchange (use uniqueName)');
    await cleanupAmqp(bus.amqp.exchange);
  } else if (bus?.kind === 'redis') {
    if (bus.redis?.prefix === undefined)
      throw new Error('cleanupBus: the test set no bus.redis.prefix (use uniqueName)');
    await cleanupRedis(bus.redis.prefix);
  }
}

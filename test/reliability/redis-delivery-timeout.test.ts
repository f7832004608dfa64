/**
 * bus.redis.deliveryTimeout: a holder that keeps counting as live but never subscribes (here a
 * "zombie" entered into the delivery check's bookkeeping by hand, as a process that refreshes its
 * liveness but whose subscriber is broken would look) holds a channel's messages back for at most
 * deliveryTimeout; then they go to the subscribers present, in order, counted in
 * redisStats.forced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RedisBus } from '../../src/bus/redis/redis-bus.js';
import { startNode, uniqueName, waitForMembership } from '../helpers/nodes.js';
import { Opened, connectWs, idHandler } from '../e2e/support.js';
import { redisAdmin, redisValues } from './redis-support.js';

const DELIVERY_TIMEOUT_MS = 300;

test('redis direct: a live holder that never subscribes holds messages back for bus.redis.deliveryTimeout at most', async (t) => {
  const opened = new Opened();
  const admin = redisAdmin();
  const prefix = uniqueName('gwzombie');
  t.after(async () => {
    await admin.hdel(`${prefix}:live`, 'zombie');
    await admin.srem(`${prefix}:holders:u.zed`, 'zombie');
    await opened.closeAll();
    admin.disconnect();
  });
  const values = redisValues('direct', prefix, { bus: { redis: { deliveryTimeout: DELIVERY_TIMEOUT_MS } } });
  const holder = opened.node(await startNode(values, { handler: idHandler() }));
  const sender = opened.node(await startNode(values, { handler: idHandler() }));
  await waitForMembership([holder, sender], 2);
  const client = await connectWs(opened, holder);
  await holder.api.bindUid(client.id, 'zed');

  const [seconds] = (await admin.time()) as unknown as [string, string];
  await admin.hset(`${prefix}:live`, 'zombie', (Number(seconds) + 3600) * 1000);
  await admin.sadd(`${prefix}:holders:u.zed`, 'zombie');

  const bus = sender.bus as RedisBus;
  const startedAt = Date.now();
  await Promise.all([sender.api.sendToUid('zed', 'one'), sender.api.sendToUid('zed', 'two')]);
  const waitedMs = Date.now() - startedAt;
  await sender.api.sendToUid('zed', 'three');
  await client.client.until(() => client.client.texts().length === 4, 5000, 'three pushes');
  assert.deepEqual(client.client.texts().slice(1), ['one', 'two', 'three']);
  // 'one' and 'two', issued in one turn, travel in one Redis message; 'three' in another.
  assert.equal(bus.redisStats.forced, 2, 'each message waited for the zombie, then went to the subscriber present');

  // Without the zombie, nothing is held back.
  await admin.srem(`${prefix}:holders:u.zed`, 'zombie');
  await sender.api.sendToUid('zed', 'four');
  await client.client.waitForText('four');
  assert.equal(bus.redisStats.forced, 2);
  console.log(`redis deliveryTimeout: two pushes held ${waitedMs} ms for a live holder that never subscribed (deliveryTimeout ${DELIVERY_TIMEOUT_MS} ms)`);
});

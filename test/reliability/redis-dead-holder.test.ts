/**
 * The delivery check waits for a holder that is resubscribing, but not for one that is gone: a
 * node cut off from Redis for good stops refreshing its liveness, and after
 * bus.redis.livenessTimeout the other nodes publish without it. Nothing else the sender pushed
 * meanwhile is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RedisBus } from '../../src/bus/redis/redis-bus.js';
import { startNode, uniqueName, waitFor, waitForMembership } from '../helpers/nodes.js';
import { Opened, connectWs, idHandler } from '../e2e/support.js';
import { RedisRelay, redisAdmin, redisValues } from './redis-support.js';

const LIVENESS_MS = 1000;

test('redis direct: a holder cut off from Redis is waited for at most bus.redis.livenessTimeout', async (t) => {
  const opened = new Opened();
  const relay = new RedisRelay();
  const admin = redisAdmin();
  await relay.start();
  const prefix = uniqueName('gwdead');
  t.after(async () => {
    await relay.stop();
    await opened.closeAll();
    // The doomed node could not remove its own liveness entry (the others would after a minute).
    await admin.del(`${prefix}:live`, `${prefix}:acks`);
    admin.disconnect();
  });
  const extra = { bus: { redis: { livenessTimeout: LIVENESS_MS } } };
  const doomed = opened.node(
    await startNode(redisValues('direct', prefix, { bus: { redis: { url: relay.url, livenessTimeout: LIVENESS_MS } } }), { handler: idHandler() }),
  );
  const survivor = opened.node(await startNode(redisValues('direct', prefix, extra), { handler: idHandler() }));
  await waitForMembership([doomed, survivor], 2);
  const gone = await connectWs(opened, doomed);
  const here = await connectWs(opened, survivor);
  await survivor.api.bindUid(gone.id, 'gone');
  await survivor.api.bindUid(here.id, 'here');
  await survivor.api.joinGroup(gone.id, 'both');
  await survivor.api.joinGroup(here.id, 'both');
  assert.deepEqual(await admin.smembers(`${prefix}:holders:u.gone`), [doomed.bus.instance]);

  // The doomed node loses Redis and never gets it back (its process lives on, its sockets are cut).
  await relay.stop();
  await waitFor(() => !doomed.bus.isConnected, 5000, 'the doomed node to lose Redis');
  const bus = survivor.bus as RedisBus;
  const heldBefore = bus.redisStats.heldBack;
  const startedAt = Date.now();
  // Held back: the doomed node is still live and holds u.gone and g.both.
  const toGone = survivor.api.sendToUid('gone', 'never delivered');
  const toBoth = survivor.api.sendToGroup('both', 'to both');
  const toHere = survivor.api.sendToUid('here', 'to here');
  await Promise.all([toGone, toBoth, toHere]);
  const waitedMs = Date.now() - startedAt;
  await here.client.waitForText('to here');
  await here.client.waitForText('to both');
  // Order is kept per channel; a channel held back does not hold back the others (so 'to here'
  // may overtake 'to both' here: docs/redis-wire-format.md, "Order").
  assert.deepEqual(here.client.texts().slice(1).sort(), ['to both', 'to here']);
  assert.ok(bus.redisStats.heldBack > heldBefore, 'the pushes were held back while the doomed node counted as live');
  assert.equal(bus.redisStats.forced, 0, 'released by liveness, not by bus.redis.deliveryTimeout');
  // The survivor's publish script forgot the dead holder.
  assert.deepEqual(await admin.smembers(`${prefix}:holders:u.gone`), []);
  console.log(`redis dead holder: pushes waited ${waitedMs} ms for a holder cut off from Redis (livenessTimeout ${LIVENESS_MS} ms)`);
});

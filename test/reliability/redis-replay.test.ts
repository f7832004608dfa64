/**
 * The replay log (bus.redis.replayWindow): a node cut off from Redis (a TCP relay in front of the
 * real server, taken down and brought back) does not slow the others down, and when it comes
 * back within the window its clients get everything that was pushed to them meanwhile, in order
 * and once. Cut off for longer than the window, it logs and counts the gap and goes on serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisOf } from '../helpers/transports.js';
import { startNode, waitFor, waitForMembership } from '../helpers/nodes.js';
import { connectWs, idHandler } from '../e2e/support.js';
import { redisValues } from './redis-support.js';
import { RedisScope, loggedNode, type LogLine } from '../helpers/faults.js';

test('redis: a node cut off from Redis gets what it missed once it is back, in order; nobody waited for it', async (t) => {
  const scope = new RedisScope(t, 'gwreplay');
  const { relay, relayed: away, direct: sender, onRelayed: remote, onDirect: local } = await scope.relayedPair();
  await sender.api.bindUid(remote.id, 'away');
  await sender.api.joinGroup(remote.id, 'room');
  await sender.api.joinGroup(local.id, 'room');

  await relay.stop();
  await waitFor(() => !away.bus.isConnected, 5000, 'the node to lose Redis');
  // Pushes to the node that is away are accepted at once: publishing never waits for subscribers.
  const expected: string[] = [];
  for (let i = 0; i < 20; i++) {
    await sender.api.sendToUid('away', `u${i}`);
    await sender.api.sendToClient(remote.id, `c${i}`);
    await sender.api.sendToGroup('room', `g${i}`);
    expected.push(`u${i}`, `c${i}`, `g${i}`);
  }
  await local.client.waitForText('g19');
  assert.equal(remote.client.texts().length, 1, 'nothing reached the node while it was away');

  await relay.start();
  await remote.client.until(() => remote.client.texts().length === expected.length + 1, 10000, 'the missed pushes');
  assert.deepEqual(remote.client.texts().slice(1), expected);
  const bus = away.bus;
  const redis = redisOf(bus);
  assert.equal(redis.redisStats.recoveries, 1);
  assert.ok(redis.redisStats.replayed >= expected.length, `replayed ${redis.redisStats.replayed}`);
  assert.equal(redis.redisStats.gaps, 0);

  // Live again, and nothing is applied twice.
  await sender.api.sendToUid('away', 'after');
  await remote.client.waitForText('after');
  assert.deepEqual(remote.client.texts().slice(1), [...expected, 'after']);
});

test('redis: a node away longer than bus.redis.replayWindow logs and counts the gap, then serves again', async (t) => {
  const scope = new RedisScope(t, 'gwreplay');
  const { opened, prefix, admin } = scope;
  const relay = await scope.startRelay();
  const windowMs = 300;
  const lines: LogLine[] = [];
  const away = await loggedNode(
    opened,
    redisValues('direct', prefix, { bus: { redis: { url: relay.url, replayWindow: windowMs } } }),
    lines,
  );
  const sender = opened.node(
    await startNode(redisValues('direct', prefix, { bus: { redis: { replayWindow: windowMs } } }), {
      handler: idHandler(),
    }),
  );
  await waitForMembership([away, sender], 2);
  const remote = await connectWs(opened, away);
  await sender.api.bindUid(remote.id, 'away');

  await relay.stop();
  await waitFor(() => !away.bus.isConnected, 5000, 'the node to lose Redis');
  await sender.api.sendToUid('away', 'too old');
  // Wait until the log no longer holds that push (trimmed on every publish, announcements included).
  await waitFor(
    async () =>
      ((await admin.xrangeBuffer(`${prefix}:log`, '-', '+')) as [Buffer, Buffer[]][]).every(
        ([, f]) => !f[3]!.includes('too old'),
      ),
    10000,
    'the push to leave the replay window',
  );
  await relay.start();
  await waitFor(() => away.bus.isConnected, 10000, 'the node to reconnect');
  const bus = away.bus;
  const redis = redisOf(bus);
  assert.equal(redis.redisStats.gaps, 1);
  assert.equal(
    lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('longer than bus.redis.replayWindow')).length,
    1,
  );

  await sender.api.sendToUid('away', 'fresh');
  await remote.client.waitForText('fresh');
  assert.ok(!remote.client.texts().includes('too old'));
});

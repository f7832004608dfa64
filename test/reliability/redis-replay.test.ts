/**
 * The replay log (bus.redis.replayWindow): a node cut off from Redis (a TCP relay in front of the
 * real server, taken down and brought back) does not slow the others down, and when it comes
 * back within the window its clients get everything that was pushed to them meanwhile, in order
 * and once. Cut off for longer than the window, it logs and counts the gap and goes on serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createNode, type GatewireNode } from '../../src/node.js';
import { TOKENS } from '../../src/di/tokens.js';
import { redisBus, redisOf } from '../helpers/transports.js';
import type { ConfigInput } from '../../src/config/load.js';
import { startNode, testConfig, uniqueName, waitFor, waitForMembership } from '../helpers/nodes.js';
import { Opened, connectWs, idHandler } from '../e2e/support.js';
import { RedisRelay, redisAdmin, redisValues } from './redis-support.js';
import { cleanupRedis } from '../helpers/cleanup.js';

type LogLine = Record<string, unknown>;

async function loggedNode(opened: Opened, values: ConfigInput, lines: LogLine[]): Promise<GatewireNode> {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const node = opened.node(
    await createNode({
      config: testConfig(values),
      handler: idHandler(),
      configure: (container) => container.rebind(TOKENS.Logger).toConstantValue(pino({ level: 'warn' }, sink)),
    }),
  );
  await node.start();
  return node;
}

test('redis: a node cut off from Redis gets what it missed once it is back, in order; nobody waited for it', async (t) => {
  const opened = new Opened();
  const relay = new RedisRelay();
  await relay.start();
  const prefix = uniqueName('gwreplay');
  t.after(async () => {
    await opened.closeAll();
    await relay.stop();
    await cleanupRedis(prefix);
  });
  const away = opened.node(
    await startNode(redisValues('direct', prefix, { bus: { redis: { url: relay.url } } }), { handler: idHandler() }),
  );
  const sender = opened.node(await startNode(redisValues('direct', prefix), { handler: idHandler() }));
  await waitForMembership([away, sender], 2);
  const remote = await connectWs(opened, away);
  const local = await connectWs(opened, sender);
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
  const opened = new Opened();
  const relay = new RedisRelay();
  const admin = redisAdmin();
  await relay.start();
  const prefix = uniqueName('gwreplay');
  t.after(async () => {
    await opened.closeAll();
    await relay.stop();
    admin.disconnect();
    await cleanupRedis(prefix);
  });
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

/**
 * Hostile or broken messages published straight to a node's Redis channel (as any program with
 * a Redis client can): garbage, a MessagePack value of the wrong shape, and with bus.secret set an
 * unsigned and a wrongly signed envelope. Each is logged, counted in bus.stats and dropped; the
 * node goes on serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Packr } from 'msgpackr';
import { createNode, type GatewireNode } from '../../src/node.js';
import { TOKENS } from '../../src/di/tokens.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import { envelopeFrom } from '../helpers/envelopes.js';
import type { BusMode } from '../../src/config/formats.js';
import type { ConfigInput } from '../../src/config/load.js';
import { startNode, testConfig, uniqueName, waitFor, waitForMembership } from '../helpers/nodes.js';
import { cleanupRedis } from '../helpers/cleanup.js';
import { Opened, connectWs, idHandler } from '../e2e/support.js';
import { redisAdmin, redisValues } from './redis-support.js';

type LogLine = Record<string, unknown>;

/** A node whose log lines are collected in `lines`. */
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

const dropped = (lines: LogLine[], code: string): number =>
  lines.filter((l) => l.msg === 'dropped an unreadable bus message' && l.code === code).length;

for (const mode of ['direct', 'fanout'] as BusMode[]) {
  test(`redis ${mode}: undecodable messages are logged, counted and dropped; the node keeps serving`, async (t) => {
    const opened = new Opened();
    const admin = redisAdmin();
    const prefix = uniqueName('gwredis');
    t.after(async () => {
      await opened.closeAll();
      admin.disconnect();
      await cleanupRedis(prefix);
    });
    const values = redisValues(mode, prefix);
    const lines: LogLine[] = [];
    const target = await loggedNode(opened, values, lines);
    const other = opened.node(await startNode(values, { handler: idHandler() }));
    await waitForMembership([target, other], 2);
    const client = await connectWs(opened, target);
    const channel = mode === 'direct' ? `${prefix}:n.${target.bus.instance}` : `${prefix}:fanout`;

    // Not MessagePack at all, then MessagePack of the wrong shape, then a wrong version.
    const packr = new Packr({ useRecords: false });
    assert.ok((await admin.publish(channel, Buffer.from([0xc1, 0xff, 0x00, 0x13]))) >= 1);
    assert.ok((await admin.publish(channel, packr.pack({ hello: 'world' }))) >= 1);
    assert.ok((await admin.publish(channel, packr.pack([99, 'x', Buffer.alloc(1), null]))) >= 1);
    await waitFor(() => target.bus.stats.decodeErrors === 3, 5000, 'three decode errors');
    assert.equal(dropped(lines, 'GW_ERR_BUS_DECODE'), 3);
    assert.equal(target.bus.stats.signatureErrors, 0);

    // The node still serves: a push from the other node reaches its client, and it answers queries.
    await other.api.sendToClient(client.id, 'still here');
    await client.client.waitForText('still here');
    assert.equal(await other.api.isOnline(client.id), true);
  });
}

test('redis direct with bus.secret: unsigned and wrongly signed messages are logged, counted and dropped', async (t) => {
  const opened = new Opened();
  const admin = redisAdmin();
  const prefix = uniqueName('gwredis');
  t.after(async () => {
    await opened.closeAll();
    admin.disconnect();
    await cleanupRedis(prefix);
  });
  const values = redisValues('direct', prefix, { bus: { secret: 'the-shared-secret' } });
  const lines: LogLine[] = [];
  const target = await loggedNode(opened, values, lines);
  const other = opened.node(await startNode(values, { handler: idHandler() }));
  await waitForMembership([target, other], 2);
  const client = await connectWs(opened, target);
  const channel = `${prefix}:n.${target.bus.instance}`;
  const evil: Command[] = [{ op: Op.SEND_TO_CLIENTS, c: [client.id], d: 'evil' }];

  assert.equal(await admin.publish(channel, envelopeFrom('intruder', evil, '')), 1);
  assert.equal(await admin.publish(channel, envelopeFrom('intruder', evil, 'a-guessed-secret')), 1);
  await waitFor(() => target.bus.stats.signatureErrors === 2, 5000, 'two signature errors');
  assert.equal(dropped(lines, 'GW_ERR_BUS_SIGNATURE'), 2);
  assert.equal(target.bus.stats.decodeErrors, 0);

  // A correctly signed push still goes through; the forged one never arrived.
  await other.api.sendToClient(client.id, 'signed');
  await client.client.waitForText('signed');
  assert.ok(!client.client.texts().includes('evil'));
  // And a program that knows the secret may push (docs/wire-format.md, "Redis").
  assert.equal(
    await admin.publish(
      channel,
      envelopeFrom('cron-job', [{ op: Op.SEND_TO_CLIENTS, c: [client.id], d: 'from outside' }], 'the-shared-secret'),
    ),
    1,
  );
  await client.client.waitForText('from outside');
});

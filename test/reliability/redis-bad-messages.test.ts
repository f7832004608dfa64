/**
 * Hostile or broken messages published straight to a node's Redis channel (as any program with
 * a Redis client can): garbage, a MessagePack value of the wrong shape, and with bus.secret set an
 * unsigned and a wrongly signed envelope. Each is logged, counted in bus.stats and dropped; the
 * node goes on serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { Op, type Command } from '../../src/protocol/commands.js';
import { envelopeFrom } from '../helpers/envelopes.js';
import type { BusMode } from '../../src/config/formats.js';
import type { ConfigInput } from '../../src/config/load.js';
import { startNode, waitFor, waitForMembership } from '../helpers/nodes.js';
import { connectWs, idHandler } from '../e2e/support.js';
import { RedisScope, loggedNode, type LogLine } from '../helpers/faults.js';
import { redisValues } from './redis-support.js';

/**
 * A scope on a fresh prefix, a node `target` on it whose log lines are in `lines`, another node
 * that sees it, and a client of `target`.
 */
async function targetAndOther(
  t: { after: (fn: () => Promise<void>) => void },
  values: (prefix: string) => ConfigInput,
) {
  const scope = new RedisScope(t);
  const lines: LogLine[] = [];
  const target = await loggedNode(scope.opened, values(scope.prefix), lines);
  const other = scope.node(await startNode(values(scope.prefix), { handler: idHandler() }));
  await waitForMembership([target, other], 2);
  const client = await connectWs(scope.opened, target);
  return { admin: scope.admin, prefix: scope.prefix, lines, target, other, client };
}

const dropped = (lines: LogLine[], code: string): number =>
  lines.filter((l) => l.msg === 'dropped an unreadable bus message' && l.code === code).length;

for (const mode of ['direct', 'fanout'] as BusMode[]) {
  test(`redis ${mode}: undecodable messages are logged, counted and dropped; the node keeps serving`, async (t) => {
    const { admin, prefix, lines, target, other, client } = await targetAndOther(t, (p) => redisValues(mode, p));
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
  const { admin, prefix, lines, target, other, client } = await targetAndOther(t, (p) =>
    redisValues('direct', p, { bus: { secret: 'the-shared-secret' } }),
  );
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

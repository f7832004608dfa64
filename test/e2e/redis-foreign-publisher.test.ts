/**
 * docs/wire-format.md, "Redis", followed by a program that is not gatewire: it builds envelopes
 * itself (plain MessagePack, its own HMAC) and publishes them with a bare Redis client, to a uid,
 * a group, everyone and one client, in both modes; a command for several uids is published once
 * per uid channel and a node holding two of them applies it once; and the publish script (replay
 * log) can be called directly with call id 0.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import type { BusMode } from '../../src/config/formats.js';
import { PUBLISH_SCRIPT } from '../../src/transport/redis/scripts.js';
import { connectEach, redisFixture, startRedisNodes } from '../helpers/fixtures.js';
import { foreignEnvelope } from '../helpers/envelopes.js';

const SECRET = 'shared-secret';
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** What the docs tell another language to do: [2, sender, epoch, seq, time, bin(commands), bin(hmac)]. */
function envelope(sender: string, commands: unknown[]): Buffer {
  return foreignEnvelope(sender, commands, SECRET);
}

for (const mode of ['direct', 'fanout'] as BusMode[]) {
  describe(`redis ${mode}: a foreign program pushes with a plain Redis client`, () => {
    test('to a uid, a group, everyone and one client; a multi-uid command arrives once', async (t) => {
      const { opened, admin, prefix } = redisFixture(t);
      const [a, b] = await startRedisNodes(opened, 2, mode, prefix, { bus: { secret: SECRET } });
      const [alice, bob] = await connectEach(opened, a!, ['ws', 'ws']);
      const [carol] = await connectEach(opened, b!, ['ws']);
      await a!.api.bindUid(alice.id, 'alice');
      await a!.api.bindUid(bob.id, 'bob');
      await a!.api.bindUid(carol.id, 'carol');
      await a!.api.joinGroup(bob.id, 'room');
      await a!.api.joinGroup(carol.id, 'room');

      const channel = (key: string): string => (mode === 'direct' ? `${prefix}:${key}` : `${prefix}:fanout`);
      const publish = (key: string, commands: unknown[]): Promise<number> =>
        admin.publish(channel(key), envelope('cron-job-1', commands));

      await publish('u.alice', [{ op: 14, u: ['alice'], d: 'to alice' }]);
      await publish('g.room', [{ op: 22, g: ['room'], d: Buffer.from([1, 2, 3]) }]);
      await publish('all', [{ op: 6, d: 'to everyone' }]);
      await publish(`n.${carol.id.slice(0, 12)}`, [{ op: 5, c: [carol.id], d: 'to carol' }]);
      // One command for three uids on two nodes: one message per uid channel in direct mode (node
      // a holds alice and bob and still applies it once), one message in fanout mode.
      const multi = [{ op: 14, u: ['alice', 'bob', 'carol'], d: 'to three' }];
      if (mode === 'direct') for (const uid of ['alice', 'bob', 'carol']) await publish(`u.${uid}`, multi);
      else await publish('all', multi);

      await alice.client.waitForText('to three');
      await bob.client.waitForText('to three');
      await carol.client.waitForText('to three');
      // Commands from one publisher arrive in order, so everything before 'to three' is in.
      assert.deepEqual(alice.client.texts().slice(1), ['to alice', 'to everyone', 'to three']);
      assert.deepEqual(
        bob.client.received.slice(1).map((r) => [r.binary, Buffer.from(r.data).toString('hex')]),
        [
          [true, '010203'],
          [false, Buffer.from('to everyone').toString('hex')],
          [false, Buffer.from('to three').toString('hex')],
        ],
      );
      assert.deepEqual(carol.client.texts().slice(1), ['\u0001\u0002\u0003', 'to everyone', 'to carol', 'to three']);
      assert.equal(carol.client.received[1]!.binary, true);
    });

    test('through the publish script, into the replay log (call id 0)', async (t) => {
      const { opened, admin, prefix } = redisFixture(t);
      const [a] = await startRedisNodes(opened, 1, mode, prefix, { bus: { secret: SECRET } });
      const [alice] = await connectEach(opened, a!, ['ws']);
      await a!.api.bindUid(alice.id, 'alice');
      const key = mode === 'direct' ? 'u.alice' : 'fanout';
      const body = envelope('cron-job-1', [{ op: 14, u: ['alice'], d: 'logged' }]);
      const result = await admin.eval(
        PUBLISH_SCRIPT,
        2,
        `${prefix}:log`,
        `${prefix}:ack:cron-job-1`,
        0,
        10000,
        1,
        key,
        `${prefix}:${key}`,
        body,
      );
      assert.equal(result, 1);
      await alice.client.waitForText('logged');
      // In the log (so a node that was resubscribing gets it too); call id 0 stores no ack.
      const entries = (await admin.xrangeBuffer(`${prefix}:log`, '-', '+')) as [Buffer, Buffer[]][];
      assert.ok(entries.some(([, f]) => f[1]!.toString() === key && f[3]!.equals(body)));
      assert.equal(await admin.exists(`${prefix}:ack:cron-job-1`), 0);
    });
  });
}

/**
 * Redis: the replay-log id that wraps a message is the broker's addition, not signed, and is never
 * trusted on its own. One PUBLISH of ["99999999999999-0", <garbage>] on <prefix>:all by a client
 * without bus.secret used to make every node skip every later message as a repeat (0 of 5 signed
 * pushes delivered, nodes dropping each other from membership within 7 s, getAllClientCount 0).
 * Now the id moves a node's replay cursor only once the envelope it wraps verified and was new,
 * and never past Redis's own clock: after the forgery every push arrives, membership holds, and a
 * subscriber that drops right after still gets what it missed from the log.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep, waitFor } from '../helpers/nodes.js';
import { connectWs } from '../e2e/support.js';
import { connectionsOf, killConnections, redisValues } from './redis-support.js';
import { RedisScope, startNodes } from '../helpers/faults.js';
import { envelopeFrom } from '../helpers/envelopes.js';
import { redisBus, redisOf } from '../helpers/transports.js';
import { Op } from '../../src/protocol/commands.js';

/** The wrapped form subscribers receive: [id as str8, envelope as bin32]. */
function wrapped(id: string, envelope: Buffer): Buffer {
  const head = Buffer.from([0x92, 0xd9, id.length]);
  const bin = Buffer.alloc(5);
  bin[0] = 0xc6;
  bin.writeUInt32BE(envelope.length, 1);
  return Buffer.concat([head, Buffer.from(id, 'latin1'), bin, envelope]);
}

for (const signed of [true, false]) {
  describe(`redis ${signed ? 'signed' : 'unsigned'} cluster: a forged replay-log id`, () => {
    test('does not stop delivery, membership or the replay after a dropped subscriber', async (t) => {
      const { opened, prefix, admin } = new RedisScope(t);
      const values = redisValues('direct', prefix, signed ? { bus: { secret: 'forged-id-secret' } } : {});
      const [a, b] = await startNodes(opened, values, 2);
      const client = await connectWs(opened, a);
      await b.api.bindUid(client.id, 'target');

      // The forgery, as a client with broker access and no secret sends it.
      const garbage = Buffer.from('not an envelope at all');
      assert.equal(await admin.publish(`${prefix}:all`, wrapped('99999999999999-0', garbage)), 2);
      // In an unsigned cluster anyone can also forge a valid message: it is applied (nothing can
      // tell it from a real one), but its id, far ahead of Redis's clock, does not move the cursor.
      if (!signed) {
        const forged = envelopeFrom('forger', [{ op: Op.SEND_TO_UIDS, u: ['target'], d: 'forged but valid' }]);
        assert.equal(await admin.publish(`${prefix}:u.target`, wrapped('99999999999998-0', forged)), 1);
        await client.client.waitForText('forged but valid');
        await waitFor(() => redisOf(a.bus).redisStats.idsAheadOfClock === 1, 5000, 'the id ahead of the clock noticed');
      }
      await waitFor(
        () => a.bus.stats.decodeErrors + b.bus.stats.decodeErrors === 2,
        5000,
        'the garbage counted by both nodes',
      );

      for (let i = 0; i < 5; i++) await b.api.sendToUid('target', `signed push ${i}`);
      await client.client.waitForText('signed push 4');
      assert.deepEqual(
        client.client.texts().filter((x) => x.startsWith('signed push')),
        [0, 1, 2, 3, 4].map((i) => `signed push ${i}`),
      );

      // Membership holds past the 7 s in which it used to fall apart (nodeTimeout 1.5 s here): a
      // bounded wait in which nothing may happen, twice the node timeout.
      await sleep(3000);
      assert.ok(
        a.membership.isLive(b.bus.instance) && b.membership.isLive(a.bus.instance),
        'both nodes still see each other',
      );
      assert.equal(await b.api.getAllClientCount({ strict: true }), 1);

      // The replay still works: node A's subscriber drops; what is published meanwhile arrives.
      const subs = await connectionsOf(admin, [a.bus.instance], 'sub');
      assert.equal(await killConnections(admin, subs), 1);
      for (let i = 0; i < 5; i++) await b.api.sendToUid('target', `during the gap ${i}`);
      await client.client.waitForText('during the gap 4', 10_000);
      assert.deepEqual(
        client.client.texts().filter((x) => x.startsWith('during the gap')),
        [0, 1, 2, 3, 4].map((i) => `during the gap ${i}`),
      );
      console.log(
        `[redis forged id, ${signed ? 'signed' : 'unsigned'}] PUBLISH ${prefix}:all ["99999999999999-0", garbage]: ` +
          `5 of 5 signed pushes delivered, membership held 3 s past it, count 1 of 1; after a CLIENT KILL of A's subscriber 5 of 5 pushes from the gap delivered ` +
          `(ids ahead of Redis's clock ignored: ${redisOf(a.bus).redisStats.idsAheadOfClock})`,
      );
    });
  });
}

/**
 * A sender in Python, written from docs/wire-format.md alone (test/fixtures/publisher.py: the
 * standard library only, with its own MessagePack encoder and Redis client), pushes to a uid, a
 * group (bytes), everyone and one client of a gatewire cluster on Redis, signed and unsigned.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { REDIS_URL } from '../helpers/nodes.js';
import { connectEach, openFor, startPair } from '../helpers/fixtures.js';
import { redisValues } from '../reliability/redis-support.js';
import { cleanupBus } from '../helpers/cleanup.js';

const SCRIPT = path.resolve('test/fixtures/publisher.py');

function runPython(args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('python3', [SCRIPT, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    child.stdin!.end(input);
  });
}

describe('a Python publisher written from docs/wire-format.md', () => {
  for (const secret of ['', 'py-secret']) {
    test(`pushes ${secret === '' ? 'unsigned' : 'signed'} on Redis: a uid, a group (bytes), everyone, one client`, async (t) => {
      const values = redisValues('direct', undefined, secret === '' ? {} : { bus: { secret } });
      const opened = openFor(t, () => cleanupBus(values));
      const prefix = values.bus!.redis!.prefix!;
      const [a, b] = await startPair(opened, values);
      const [alice] = await connectEach(opened, a, ['ws']);
      const [member] = await connectEach(opened, b, ['ws']);
      await a.api.bindUid(alice.id, 'alice');
      await b.api.joinGroup(member.id, 'room');

      const redis = new URL(REDIS_URL);
      const commands = [
        ['u.alice', { op: 14, u: ['alice'], d: 'hello from python' }],
        ['g.room', { op: 22, g: ['room'], d: { bytes: '0102ff' } }],
        ['all', { op: 6, d: 'to everyone from python' }],
        [`n.${member.id.slice(0, 12)}`, { op: 5, c: [member.id], d: 'to one from python' }],
      ];
      const out = await runPython(
        [redis.hostname, redis.port || '6379', prefix, secret, 'python-cron'],
        JSON.stringify(commands),
      );
      assert.deepEqual(out.trim().split('\n').map(Number), [1, 1, 2, 1], 'receivers of each PUBLISH');

      await alice.client.waitForText('hello from python');
      await alice.client.waitForText('to everyone from python');
      await member.client.waitForText('to one from python');
      await member.client.waitForText('to everyone from python');
      const bytes = member.client.received.find((r) => r.binary);
      assert.deepEqual(bytes?.data, Buffer.from([1, 2, 0xff]));
      assert.equal(
        a.bus.stats.signatureErrors + b.bus.stats.signatureErrors + a.bus.stats.decodeErrors + b.bus.stats.decodeErrors,
        0,
      );

      // The same program run again is a new epoch: accepted. A program with the wrong secret is not.
      await runPython(
        [redis.hostname, redis.port || '6379', prefix, secret, 'python-cron'],
        JSON.stringify([commands[0]]),
      );
      await alice.client.until(
        () => alice.client.texts().filter((x) => x === 'hello from python').length === 2,
        5000,
        'the second run',
      );
      if (secret !== '') {
        await runPython(
          [redis.hostname, redis.port || '6379', prefix, 'not-the-secret', 'python-cron'],
          JSON.stringify([['u.alice', { op: 14, u: ['alice'], d: 'forged' }]]),
        );
        await a.api.sendToUid('alice', 'marker');
        await alice.client.waitForText('marker');
        assert.ok(!alice.client.texts().includes('forged'));
        assert.equal(a.bus.stats.signatureErrors, 1);
      }
    });
  }
});

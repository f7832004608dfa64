/**
 * Messages too large for the broker never jam a node. On a private RabbitMQ with
 * max_message_size = 1 MiB (RabbitMQ 4 defaults to 16 MiB, 3.10 to 128 MiB), while the node's own
 * bound (bus.maxMessageBytes) is the default 8 MiB:
 *   - three 400 KB pushes in one turn travel as three messages (a large command goes alone) and
 *     arrive;
 *   - a single 1.2 MB push (direct mode), or a turn of 30 pushes of 50 KB batched into one 1.5 MB
 *     message (fanout mode), is refused by the broker: dropped, its callers rejected with
 *     GW_ERR_BUS_REFUSED, counted; the node reconnects once, learns the broker's limit, and
 *     everything after flows (20 pushes), with announcements going on (the other node keeps it
 *     live);
 *   - the next 1.2 MB push is refused at the API (GW_ERR_MESSAGE_TOO_LARGE), without a reconnect,
 *     and a turn of 30 × 50 KB now goes out in messages below the broker's limit.
 * On Redis (shared, default 1 MiB bound) a command over the bound is refused at the API and the
 * rest flows.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PrivateRabbit } from '../helpers/private-broker.js';
import { uniqueName, waitFor } from '../helpers/nodes.js';
import { Opened, connectWs } from '../e2e/support.js';
import { RedisScope, startNodes } from '../helpers/faults.js';
import { redisValues } from './redis-support.js';
import type { BusMode } from '../../src/config/formats.js';
import type { ConfigInput } from '../../src/config/load.js';

const KB = 1024;
const code = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'resolved',
    (err: { code?: string }) => String(err.code),
  );

describe('RabbitMQ with max_message_size = 1 MiB', () => {
  let broker: PrivateRabbit;
  before(async () => {
    broker = await PrivateRabbit.start({ config: ['max_message_size = 1048576'] });
  });
  after(async () => {
    await broker?.stop();
  });

  for (const mode of ['direct', 'fanout'] as BusMode[]) {
    test(`${mode}: a message the broker refuses is dropped, its callers told; the node learns the limit and everything after flows`, async (t) => {
      const opened = new Opened();
      t.after(() => opened.closeAll());
      // The client reads megabytes in a burst: its send buffer must hold them (default 1 MiB).
      const values: ConfigInput = {
        gateway: { sendBufferSize: 16 * 1024 * KB },
        bus: { kind: 'amqp', mode, amqp: { url: broker.url, exchange: uniqueName('gw-big') } },
      };
      const [holder, pusher] = await startNodes(opened, values, 2);
      const client = await connectWs(opened, holder);
      await pusher.api.bindUid(client.id, 'big');
      const received = (): string[] =>
        client.client
          .texts()
          .slice(1)
          .map((text) => (text.length > 64 ? `${text[0]}×${text.length}` : text));

      // Three pushes of 400 KB in one turn: three messages, each below the broker's limit.
      const four = Array.from({ length: 3 }, (_, i) => String(i).repeat(400 * KB));
      assert.deepEqual(await Promise.all(four.map((d) => code(pusher.api.sendToUid('big', d)))), [
        'resolved',
        'resolved',
        'resolved',
      ]);
      await waitFor(() => received().length === 3, 10_000, 'the three 400 KB pushes');

      // Refused by the broker: a 1.2 MB push (direct), or a turn of 30 × 50 KB batched into one
      // 1.5 MB message (fanout; 30 callers under one message). Whichever comes first teaches the
      // node the broker's limit, and what comes after is cut below it or refused at the API.
      const reconnects = pusher.bus.stats.reconnects;
      const big = (): Promise<string> => code(pusher.api.sendToUid('big', 'x'.repeat(1200 * KB)));
      // (bytes: their size is known exactly, so they batch as small commands)
      const turn = (fill: (i: number) => string): Promise<string[]> =>
        Promise.all(
          Array.from({ length: 30 }, (_, i) => code(pusher.api.sendToUid('big', Buffer.alloc(50 * KB, fill(i))))),
        );
      let first: string;
      if (mode === 'direct') {
        first = `a 1.2 MB push -> ${await big()}`;
        assert.match(first, /GW_ERR_BUS_REFUSED$/);
      } else {
        const outcomes = await turn(() => 'b');
        assert.ok(
          outcomes.every((c) => c === 'GW_ERR_BUS_REFUSED'),
          `the 30 callers of the refused message are told: ${outcomes.join(',')}`,
        );
        first = `a turn of 30 × 50 KB (one 1.5 MB message) -> 30 × GW_ERR_BUS_REFUSED`;
      }
      assert.equal(pusher.bus.stats.messagesRefused, 1);
      // Everything after flows.
      for (let i = 0; i < 20; i++) await pusher.api.sendToUid('big', `after ${i}`);
      await waitFor(() => received().includes('after 19'), 10_000, '20 pushes after the refusal');
      const reconnected = pusher.bus.stats.reconnects - reconnects;
      assert.ok(reconnected <= 1, `${reconnected} reconnects`);

      // The limit is learned: an oversized push is refused at the API, no reconnect; a turn of
      // 30 × 50 KB goes out in messages below the limit.
      assert.equal(pusher.bus.maxMessageBytes, 1048576);
      assert.equal(await big(), 'GW_ERR_MESSAGE_TOO_LARGE');
      const again = await turn((i) => String(i % 10));
      assert.ok(
        again.every((c) => c === 'resolved'),
        'a turn of 30 × 50 KB now goes out below the limit',
      );
      await waitFor(
        () => received().filter((r) => r.endsWith(`×${50 * KB}`) && !r.startsWith('b')).length === 30,
        10_000,
        'the 30 pushes of 50 KB',
      );
      assert.equal(pusher.bus.stats.reconnects - reconnects, reconnected, 'no reconnect since the limit was learned');

      // The node never fell out of the cluster (the holder hears a new announcement of it), and
      // nothing refused arrived.
      const announcedFrom = Date.now();
      await waitFor(
        () => holder.membership.list().some((m) => m.instance === pusher.bus.instance && m.lastSeen > announcedFrom),
        5000,
        'an announcement of the pusher',
      );
      assert.ok(holder.membership.isLive(pusher.bus.instance), 'the pusher still announces itself');
      const texts = received();
      assert.equal(
        texts.filter((r) => r.startsWith('b×') || r.startsWith('x×')).length,
        0,
        'no refused push was delivered',
      );
      assert.equal(texts.filter((r) => r.endsWith(`×${400 * KB}`)).length, 3);
      assert.equal(texts.filter((r) => r.startsWith('after')).length, 20);
      console.log(
        `[oversized amqp ${mode}] broker max_message_size 1 MiB, node bound ${8 * 1024} KB: 3 × 400 KB in one turn delivered; ` +
          `${first} (dropped, counted), ${reconnected} reconnect(s); 20 later pushes delivered; limit learned: a 1.2 MB push refused at the API, ` +
          `30 × 50 KB delivered in messages below 1 MiB`,
      );
    });
  }
});

test('Redis: a command over bus.maxMessageBytes (1 MiB) is refused at the API; below it, and everything after, arrives', async (t) => {
  const { opened, prefix } = new RedisScope(t);
  const values = redisValues('direct', prefix);
  const [holder, pusher] = await startNodes(opened, values, 2);
  const client = await connectWs(opened, holder);
  assert.equal(pusher.bus.maxMessageBytes, 1024 * KB);
  assert.equal(await code(pusher.api.sendToClient(client.id, 'x'.repeat(1100 * KB))), 'GW_ERR_MESSAGE_TOO_LARGE');
  assert.equal(await code(pusher.api.sendToClient(client.id, 'y'.repeat(900 * KB))), 'resolved');
  await pusher.api.sendToClient(client.id, 'after');
  await client.client.waitForText('after', 10_000);
  assert.deepEqual(
    client.client
      .texts()
      .slice(1)
      .map((text) => text.length),
    [900 * KB, 'after'.length],
  );
});

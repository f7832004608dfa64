/**
 * A frozen node (SIGSTOP for 20 s, then SIGCONT) under a steady stream of pushes to its 20
 * clients from another node: every client gets every push once, in order. On RabbitMQ the broker
 * gives up on the frozen connection (heartbeat) and requeues what it had sent but not seen acked,
 * while the node, once it runs again, first applies what was already in its socket buffer; the
 * sequence numbers of wire version 2 drop those repeats (replay-guard.ts). On Redis the server
 * keeps the frozen subscriber's output and the node reads it on.
 *
 * While the node is frozen, calls for one of its clients from the other node either fail or take
 * effect, never "resolve and do nothing": one made before membership gives up on the node fails
 * once its deadline has passed (the node drops it when it runs again), those made after fail at
 * once with GW_ERR_NODE_UNREACHABLE; after SIGCONT none of them has happened.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildNode } from '../helpers/child-node.js';
import { WsTestClient } from '../helpers/clients.js';
import { sleep, startNode, uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, deleteExchanges } from '../helpers/amqp.js';
import { redisValues } from './redis-support.js';
import { cleanupBus } from '../helpers/cleanup.js';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';

const CLIENTS = 20;
const FREEZE_MS = 20_000;
/** one push to every client per tick */
const TICK_MS = 10;
/**
 * How much of the stream every client gets before the freeze (about 3 s of it), and after the
 * node is back in membership before the stream stops (about 5 s), in pushes.
 */
const STREAM = { beforeFreeze: 300, afterThaw: 400 };

interface Setup {
  name: string;
  values: () => { values: ConfigInput; cleanup: () => Promise<void> };
}

const setups: Setup[] = [
  {
    name: 'RabbitMQ direct',
    values: () => {
      const prefix = uniqueName('gw-freeze');
      return { values: amqpValues(prefix, 'direct'), cleanup: () => deleteExchanges(prefix) };
    },
  },
  {
    name: 'RabbitMQ fanout',
    values: () => {
      const prefix = uniqueName('gw-freeze-f');
      return { values: amqpValues(prefix, 'fanout'), cleanup: () => deleteExchanges(prefix) };
    },
  },
  {
    name: 'Redis direct',
    values: () => {
      const values = redisValues('direct');
      return { values, cleanup: () => cleanupBus(values) };
    },
  },
];

/** What one client received: the numbers after its id greeting, checked for gaps, repeats and steps back. */
function audit(
  texts: string[],
  sent: number,
): { received: number; duplicates: number; backwards: number; lost: number } {
  const seen = new Set<number>();
  let duplicates = 0;
  let backwards = 0;
  let last = -1;
  for (const text of texts.slice(1)) {
    const n = Number(text);
    if (seen.has(n)) duplicates += 1;
    if (n < last) backwards += 1;
    seen.add(n);
    last = n;
  }
  let lost = 0;
  for (let i = 0; i < sent; i++) if (!seen.has(i)) lost += 1;
  return { received: texts.length - 1, duplicates, backwards, lost };
}

describe('a node frozen for 20 s under pushes', () => {
  for (const setup of setups) {
    test(`${setup.name}: 0 repeats, 0 reorderings, 0 lost; calls for its clients meanwhile fail and never take effect`, async (t) => {
      const { values, cleanup } = setup.values();
      const clients: WsTestClient[] = [];
      let frozen: ChildNode | null = null;
      let pusher: GatewireNode | null = null;
      t.after(async () => {
        frozen?.signal('SIGCONT');
        for (const c of clients) c.ws.terminate();
        await frozen?.stop();
        await pusher?.stop();
        await cleanup();
      });
      frozen = await ChildNode.start({ values, handler: 'id', label: `frozen node (${setup.name})` });
      pusher = await startNode(values);
      const b = pusher;
      await waitFor(() => b.membership.isLive(frozen!.instance), 10_000, 'the pusher sees the node');
      const ids: string[] = [];
      for (let i = 0; i < CLIENTS; i++) {
        const client = await WsTestClient.connect(frozen.url('ws'));
        clients.push(client);
        const greeting = await client.nextText();
        ids.push(greeting.slice(3));
        await b.api.bindUid(ids[i]!, `u${i}`);
      }

      // The stream: every tick, the next number to every client, as one turn of pushes.
      let sent = 0;
      let pushing = true;
      const failures: string[] = [];
      const streamFrom = Date.now();
      const stream = (async () => {
        while (pushing) {
          const n = sent;
          await Promise.all(ids.map((_, i) => b.api.sendToUid(`u${i}`, String(n)))).catch((err: Error) =>
            failures.push(err.message),
          );
          sent += 1;
          await sleep(TICK_MS);
        }
      })();
      /** Waits until every client got push `n` of the stream. */
      const delivered = (n: number, what: string): Promise<void> =>
        waitFor(() => clients.every((c) => c.texts().includes(String(n))), 30_000, what);
      // The stream flows before the freeze: every client got its first pushes.
      await delivered(STREAM.beforeFreeze - 1, `the first ${STREAM.beforeFreeze} pushes at every client`);

      frozen.signal('SIGSTOP');
      const frozenAt = Date.now();
      const sentBeforeFreeze = sent;
      const victim = ids[0]!;
      const outcome = (p: Promise<unknown>): Promise<string> =>
        p.then(
          () => 'resolved',
          (err: { code?: string }) => String(err.code),
        );
      // Made while the node still counts as live: it times out, and carries a deadline.
      const early = outcome(b.api.updateSession(victim, { early: true }));
      await waitFor(() => !b.membership.isLive(frozen!.instance), 10_000, 'membership gives up on the frozen node');
      const late = await Promise.all([
        outcome(b.api.bindUid(victim, 'late')),
        outcome(b.api.joinGroup(victim, 'late-group')),
        outcome(b.api.setSession(victim, { late: true })),
      ]);
      assert.deepEqual(
        late,
        ['GW_ERR_NODE_UNREACHABLE', 'GW_ERR_NODE_UNREACHABLE', 'GW_ERR_NODE_UNREACHABLE'],
        'calls for a client of a node taken for dead fail at once',
      );
      // It waits past its deadline, then fails: timed out, or unreachable once the node was taken for dead.
      assert.ok(
        ['GW_ERR_REQUEST_TIMEOUT', 'GW_ERR_NODE_UNREACHABLE'].includes(await early),
        `early call: ${await early}`,
      );
      // Frozen for FREEZE_MS in all: time that must pass, not an event.
      await sleep(FREEZE_MS - (Date.now() - frozenAt));
      frozen.signal('SIGCONT');
      const thawedAt = Date.now();

      await waitFor(() => b.membership.isLive(frozen!.instance), 30_000, 'the node is back in membership');
      // The stream flows on after the thaw: every client got the pushes issued after it was back.
      await delivered(sent + STREAM.afterThaw - 1, `${STREAM.afterThaw} pushes after the thaw at every client`);
      pushing = false;
      await stream;
      const total = sent;
      await waitFor(
        () => clients.every((c) => c.texts().includes(String(total - 1))),
        30_000,
        'the last push reached every client',
      );
      // One more push after the last: anything still on its way from before has arrived by then.
      await Promise.all(ids.map((_, i) => b.api.sendToUid(`u${i}`, 'end')));
      await waitFor(() => clients.every((c) => c.texts().includes('end')), 10_000, 'the end marker');

      const audits = clients.map((c) =>
        audit(
          c.texts().filter((text) => text !== 'end'),
          total,
        ),
      );
      const sum = (key: keyof ReturnType<typeof audit>): number => audits.reduce((acc, a) => acc + a[key], 0);
      const stats = await frozen.stats();
      console.log(
        `[freeze ${setup.name}] SIGSTOP ${FREEZE_MS} ms after ${frozenAt - streamFrom} ms of pushes (${sentBeforeFreeze} turns), back in membership ${Date.now() - thawedAt} ms before the end, ${total} pushes to each of ${CLIENTS} clients (${total * CLIENTS} in all)\n` +
          `  received ${sum('received')}, duplicates ${sum('duplicates')}, backward steps ${sum('backwards')}, lost ${sum('lost')}; ` +
          `repeats dropped by the node ${stats.bus.duplicatesDropped ?? 0}, reconnects ${stats.bus.reconnects ?? 0}; push failures ${failures.length}\n` +
          `  calls while frozen: updateSession before the node was taken for dead -> ${await early}; bindUid, joinGroup, setSession after -> ${late.join(', ')}`,
      );
      assert.deepEqual(failures, []);
      assert.equal(sum('duplicates'), 0, 'no push arrived twice');
      assert.equal(sum('backwards'), 0, 'no stream stepped back');
      assert.equal(sum('lost'), 0, 'no push lost');
      assert.equal(sum('received'), total * CLIENTS);

      // None of the calls made while it was frozen took effect.
      assert.equal(await b.api.getUidByClientId(victim), 'u0');
      assert.deepEqual(await b.api.getSession(victim), {});
      assert.equal(await b.api.getClientCountByGroup('late-group'), 0);
    });
  }
});

/**
 * A uid's client moves from node A to node B while another node pushes 5,000 pushes/s to the uid,
 * routed by the holder directory (src/cluster/directory.ts), on RabbitMQ direct and Redis direct.
 * The client (the gatewire/client library, behind a proxy) loses its link to A without a close
 * frame and resumes its session at B, which takes the uid over: B binds and announces it, A lets
 * go of it. The sender never stops or waits. Checked:
 *   - the client gets every push once, in order, across the move;
 *   - after the move the sender's directory names B only, and A consumes none of the pushes sent
 *     from then on (reached on the new node only);
 *   - the pushes went by the directory (its routed count), and none was refused;
 *   - the send loop's longest gap is printed (no pause: it never awaits a push).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';
import { Op } from '../../src/protocol/commands.js';
import { cleanupBus } from '../helpers/cleanup.js';
import { openFor } from '../helpers/fixtures.js';
import {
  AMQP_URL,
  REDIS_URL,
  sleep,
  startNode,
  uniqueName,
  waitFor,
  waitForMembership,
  wsUrl,
} from '../helpers/nodes.js';
import { checkStream, closeAfter, GatewayProxy, Recorder, TestClient } from '../helpers/resume.js';

/** pushes per second, and how long the sender runs before and after the move */
const RATE = 5000;
const BEFORE_MS = 1000;
const AFTER_MS = 1500;

const BUSES: { name: string; bus: () => ConfigInput['bus'] }[] = [
  {
    name: 'amqp direct',
    bus: () => ({ kind: 'amqp', mode: 'direct', amqp: { url: AMQP_URL, exchange: uniqueName('gwmove') } }),
  },
  {
    name: 'redis direct',
    bus: () => ({ kind: 'redis', mode: 'direct', redis: { url: REDIS_URL, prefix: uniqueName('gwmove') } }),
  },
];

function port(node: GatewireNode): number {
  return Number(new URL(wsUrl(node)).port);
}

async function moveCase(t: TestContext, busName: string, bus: ConfigInput['bus']): Promise<void> {
  const values: ConfigInput = {
    bus,
    gateway: { resumeWindow: 60 },
    cluster: { announceInterval: 200, nodeTimeout: 3000 },
    node: { shutdownTimeout: 3000 },
  };
  const recorder = new Recorder();
  const uid = uniqueName('mover');
  let client: TestClient | null = null;
  const proxy = new GatewayProxy([]);
  closeAfter(t, proxy, () => client);
  const opened = openFor(t, () => cleanupBus(values));
  const sender = opened.node(await startNode(values, { handler: recorder.handler }));
  const a = opened.node(await startNode(values, { handler: recorder.handler }));
  const b = opened.node(await startNode(values, { handler: recorder.handler }));
  await waitForMembership([sender, a, b], 3);
  await waitFor(() => [sender, a, b].every((n) => n.directory?.routing === true), 10000, 'every directory routing');

  // Every push for the uid that reaches A's gateway from the bus, counted (the dispatcher calls
  // the gateway's push for each send command).
  let reachedA = 0;
  const gatewayA = a.gateway!;
  const push = gatewayA.push.bind(gatewayA);
  gatewayA.push = (cmd, sender, seq) => {
    if (cmd.op === Op.SEND_TO_UIDS) for (const u of cmd.u) if (u === uid) reachedA += 1;
    push(cmd, sender, seq);
  };

  proxy.retarget(port(a));
  await proxy.start();
  const [g1, g2] = [uniqueName('g1'), uniqueName('g2')];
  client = new TestClient(`${proxy.url}?uid=${uid}&g1=${g1}&g2=${g2}`, {
    pingIntervalMs: 250,
    heartbeatTimeoutMs: 200,
  });
  const c = client;
  await c.opened(1);
  const directory = sender.directory!;
  const key = `u.${uid}`;
  await waitFor(() => directory.holdersOf(key).join() === a.identity.instance, 5000, 'the sender sees A hold the uid');

  // The sender: RATE pushes/s in 1 ms steps, on schedule, never awaiting a push.
  const routedBefore = directory.stats.routed;
  const byKeyBefore = directory.stats.byKey;
  let sent = 0;
  let refused = 0;
  let maxGapMs = 0;
  let sending = true;
  const accepted: Promise<void>[] = [];
  const loop = (async () => {
    const started = performance.now();
    let last = started;
    while (sending) {
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - last);
      last = now;
      const due = Math.floor(((now - started) * RATE) / 1000);
      while (sent < due) {
        sent += 1;
        accepted.push(sender.api.sendToUid(uid, String(sent)).catch(() => void (refused += 1)));
      }
      await sleep(1);
    }
  })();

  await sleep(BEFORE_MS);
  const sentAtMove = sent;
  proxy.retarget(port(b));
  proxy.cut();
  const reopen = await c.opened(2, 10000);
  assert.equal(reopen.resumed, true, `resumed at B (reason ${reopen.reason})`);
  await waitFor(() => directory.holdersOf(key).join() === b.identity.instance, 5000, 'the sender sees B only');
  const settledAt = sent;
  // What the sender routed to A before its directory changed may still be on its way to A: the
  // count starts once the client has the last push sent then (through B), and a moment more.
  await waitFor(() => c.numbers().includes(settledAt), 5000, `push ${settledAt} at the client`);
  await sleep(100);
  const countedFrom = sent;
  const consumedOnA = reachedA;
  const movedMs = Date.now();
  await sleep(AFTER_MS);
  sending = false;
  await loop;
  await Promise.all(accepted);
  const total = sent;
  await waitFor(() => c.numbers().length >= total, 10000, `all ${total} pushes at the client`).catch(() => undefined);

  const numbers = c.numbers();
  const stream = checkStream(numbers, total);
  assert.equal(refused, 0, 'no push refused');
  assert.deepEqual(
    { ...stream, count: numbers.length },
    { exact: true, repeats: 0, missing: 0, inOrder: true, firstDisorder: '', count: total },
    'every push once, in order, across the move',
  );
  assert.equal(reachedA - consumedOnA, 0, `A consumed none of the ${total - countedFrom} pushes sent after the move`);
  const routed = directory.stats.routed - routedBefore;
  assert.ok(routed >= total * 0.9, `pushes routed by the directory: ${routed} of ${total}`);
  assert.equal(c.opens.length, 2, 'one move, no other reconnect');
  t.diagnostic(
    `[move ${busName}] ${numbers.length} of ${total} pushes once, in order, at ${RATE}/s; moved after ${sentAtMove}, ` +
      `B alone in the sender's directory after ${settledAt} (${settledAt - sentAtMove} pushes in between); ` +
      `${total - countedFrom} sent in the ${Date.now() - movedMs} ms after, 0 consumed on A; ` +
      `${routed} routed by the directory, ${directory.stats.byKey - byKeyBefore} by key, resets ${directory.stats.resets}; longest gap of the send loop ${maxGapMs.toFixed(1)} ms`,
  );
}

for (const { name, bus } of BUSES) {
  test(`${name}: a uid's client moves to another node under ${RATE} pushes/s: once, in order, the new node only`, (t) =>
    moveCase(t, name, bus()));
}

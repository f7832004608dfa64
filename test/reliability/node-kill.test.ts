/**
 * A node killed with SIGKILL (no LEAVE, no goodbye: its sockets just die). Three nodes run as
 * child processes on RabbitMQ (direct mode) with clients bound to uids and a shared group; one is
 * killed while a publisher keeps asking cluster-wide questions. The survivors and the publisher
 * drop it from the membership once it has been silent for cluster.nodeTimeout; queries that were
 * waiting for it end at that moment with the survivors' answers (not at cluster.queryTimeout),
 * and queries made afterwards do not ask it at all. Pushes to what it held resolve and go
 * nowhere; the survivors' clients keep being served.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testConfig, uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, cleanupAmqp } from '../helpers/amqp.js';
import { ChildNode } from '../helpers/child-node.js';
import { WsTestClient } from '../helpers/clients.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import { TOKENS } from '../../src/di/tokens.js';

const CLUSTER = { announceInterval: 200, nodeTimeout: 2000, queryTimeout: 6000 };

interface Timed<T> {
  what: string;
  startedAt: number;
  ms: number;
  value: T;
}

async function timed<T>(what: string, call: () => Promise<T>): Promise<Timed<T>> {
  const startedAt = Date.now();
  const value = await call();
  return { what, startedAt, ms: Date.now() - startedAt, value };
}

test('SIGKILL of a node: the others drop it within cluster.nodeTimeout; queries neither hang nor wait for it', async (t) => {
  const prefix = uniqueName('gw-kill');
  const values = { ...amqpValues(prefix, 'direct'), cluster: CLUSTER, gateway: { listen: ['ws://127.0.0.1:0/ws'] } };
  const children: ChildNode[] = [];
  const clients: WsTestClient[] = [];
  let publisher: Publisher | undefined;
  let loopRunning = false;
  t.after(async () => {
    loopRunning = false;
    for (const c of clients) c.ws.terminate();
    await Promise.all(children.map((c) => c.stop()));
    await publisher?.close().catch(() => undefined);
    await cleanupAmqp(prefix);
  });
  const [a, b, c] = await Promise.all(
    ['A', 'B', 'C'].map((name) =>
      ChildNode.start({ values: { ...values, node: { id: `kill-${name}` } }, label: `node ${name}` }),
    ),
  );
  children.push(a!, b!, c!);
  publisher = await createPublisher(testConfig({ ...values, cluster: CLUSTER }));
  const p = publisher;
  assert.equal(await p.waitForGateways(3, 10_000), 3);
  for (const child of children)
    await waitFor(async () => (await child.stats()).members.length === 3, 10_000, `${child.label} sees 3 nodes`);

  // Two clients on each node, each bound to its own uid, all in one group.
  const ids = new Map<ChildNode, string[]>();
  for (const [name, child] of [
    ['A', a!],
    ['B', b!],
    ['C', c!],
  ] as const) {
    for (let i = 1; i <= 2; i++) {
      const client = await WsTestClient.connect(child.url('ws'));
      clients.push(client);
      const id = (await client.nextText()).slice(3);
      ids.set(child, [...(ids.get(child) ?? []), id]);
      await p.api.bindUid(id, `u${name}${i}`);
      await p.api.joinGroup(id, 'room');
    }
  }
  const allIds = [...ids.values()].flat().sort();
  const survivorIds = [...ids.get(a!)!, ...ids.get(b!)!].sort();
  assert.equal(await p.api.getAllClientCount(), 6);
  assert.deepEqual((await p.api.getClientIdListByGroup('room')).sort(), allIds);

  // Cluster-wide questions all along: none may hang.
  const loop: Timed<number>[] = [];
  loopRunning = true;
  const looping = (async () => {
    while (loopRunning) {
      loop.push(await timed('getAllClientCount', () => p.api.getAllClientCount()));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  await waitFor(() => loop.length >= 5, 10_000, 'queries answered before the kill');

  const killedAt = Date.now();
  await c!.kill('SIGKILL');
  const exit = await c!.exited;
  // Asked right after the kill, before anyone noticed: these wait for C until it is dropped.
  const inFlight = [
    timed('publisher getAllClientCount', () => p.api.getAllClientCount()),
    timed('publisher getClientIdListByGroup', () => p.api.getClientIdListByGroup('room')),
    timed('publisher getAllUidList', () => p.api.getAllUidList()),
    timed('node B getAllClientCount', () => b!.api<number>('getAllClientCount')),
    timed('node B getClientIdListByGroup', () => b!.api<string[]>('getClientIdListByGroup', 'room')),
  ] as Promise<Timed<unknown>>[];

  const liveBound = 3 * CLUSTER.nodeTimeout + 5000; // a bound against hanging, not a measurement
  await waitFor(() => !p.membership.isLive(c!.instance), liveBound, 'the publisher dropped C');
  const droppedAt = Date.now();
  const droppedBy = new Map<string, number>([['publisher', droppedAt - killedAt]]);
  await Promise.all(
    [a!, b!].map(async (child) => {
      await waitFor(
        async () => !(await child.stats()).members.some((m) => m.instance === c!.instance),
        liveBound,
        `${child.label} dropped C`,
      );
      droppedBy.set(child.label, Date.now() - killedAt);
    }),
  );
  const answered = await Promise.all(inFlight);

  // Afterwards: survivors only, without waiting for anyone.
  const after = [
    await timed('getAllClientCount', () => p.api.getAllClientCount()),
    await timed('getClientIdListByGroup', () => p.api.getClientIdListByGroup('room')),
    await timed('getAllUidList', () => p.api.getAllUidList()),
    await timed('isUidOnline(uC1)', () => p.api.isUidOnline('uC1')),
    await timed('isOnline(a client of C)', () => p.api.isOnline(ids.get(c!)![0]!)),
    await timed('node A getAllClientCount', () => a!.api<number>('getAllClientCount')),
  ];
  // Pushes to what C held resolve (dropped); the survivors' clients are served.
  await p.api.sendToUid('uC1', 'to the dead node');
  await p.api.sendToGroup('room', 'after the kill');
  const survivors = clients.slice(0, 4);
  for (const client of survivors) await client.waitForText('after the kill', 10_000);
  const cClients = clients.slice(4);
  for (const client of cClients) await client.waitClosed(10_000);

  loopRunning = false;
  await looping;
  const phase = (from: number, to: number): Timed<number>[] =>
    loop.filter((q) => q.startedAt >= from && q.startedAt < to);
  const maxMs = (qs: Timed<unknown>[]): number => Math.max(0, ...qs.map((q) => q.ms));
  const beforeKill = phase(0, killedAt);
  const untilDrop = phase(killedAt, droppedAt);
  const afterDrop = phase(droppedAt, Infinity);
  const requests = p.container.get(TOKENS.Requests);
  console.log(
    `[node kill] injected: SIGKILL of node C (pid ${c!.pid}, exit ${exit.signal}) holding 2 of 6 clients; cluster.nodeTimeout ${CLUSTER.nodeTimeout} ms, announceInterval ${CLUSTER.announceInterval} ms, queryTimeout ${CLUSTER.queryTimeout} ms\n` +
      `  dropped from the membership after: ${[...droppedBy].map(([who, ms]) => `${who} ${ms} ms`).join(', ')}\n` +
      `  queries asked right after the kill (waited for C until it was dropped): ${answered.map((q) => `${q.what} ${q.ms} ms -> ${JSON.stringify(q.value).slice(0, 40)}`).join('; ')}\n` +
      `  queries after the drop: ${after.map((q) => `${q.what} ${q.ms} ms -> ${JSON.stringify(q.value).slice(0, 40)}`).join('; ')}\n` +
      `  background getAllClientCount every 100 ms: ${loop.length} asked, all answered; before the kill ${beforeKill.length} (max ${maxMs(beforeKill)} ms), kill..drop ${untilDrop.length} (max ${maxMs(untilDrop)} ms), after the drop ${afterDrop.length} (max ${maxMs(afterDrop)} ms)\n` +
      `  pushes: survivors' 4 clients got the group push after the kill, C's 2 clients saw their connection die; publisher queries that ended at queryTimeout: ${requests.timeouts}`,
  );

  assert.equal(exit.signal, 'SIGKILL');
  // In-flight queries ended when C was dropped, with the survivors' answers, not at queryTimeout:
  // no gather of the publisher ended with a node missing.
  const [count, group, uids, bCount, bGroup] = answered.map((q) => q.value);
  assert.equal(count, 4);
  assert.deepEqual((group as string[]).sort(), survivorIds);
  assert.deepEqual((uids as string[]).sort(), ['uA1', 'uA2', 'uB1', 'uB2']);
  assert.equal(bCount, 4);
  assert.deepEqual((bGroup as string[]).sort(), survivorIds);
  assert.equal(requests.timeouts, 0, 'no query of the publisher waited until cluster.queryTimeout');
  assert.equal(after[0]!.value, 4);
  assert.deepEqual((after[1]!.value as string[]).sort(), survivorIds);
  assert.deepEqual((after[2]!.value as string[]).sort(), ['uA1', 'uA2', 'uB1', 'uB2']);
  assert.equal(after[3]!.value, false);
  assert.equal(after[4]!.value, false);
  assert.equal(after[5]!.value, 4);
  for (const q of afterDrop) assert.equal(q.value, 4, 'every query after the drop counts the survivors');
  // Answered before the kill: all six (one asked just before it may have waited for C's drop).
  for (const q of beforeKill) if (q.startedAt + q.ms < killedAt) assert.equal(q.value, 6);
  for (const child of [a!, b!])
    assert.equal((await child.stats()).openRequests, 0, `${child.label} waits for no reply`);
});

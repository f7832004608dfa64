/**
 * 10,000 concurrent connections on one gateway, then all of them gone at once.
 *
 * The gateway runs in a child process (its own open-files budget, its own memory, GC on request)
 * on RabbitMQ in direct mode. 10,000 raw TCP clients (text protocol: cheap on the client side)
 * log in: each line "login <uid> <group> <value>" binds a uid (2,000 uids, 5 clients each), joins
 * a group (100 groups) and fills the session. Pushes flow (sendToAll, sendToUid to a subset,
 * sendToGroup) and every client must get exactly what was meant for it. Then every client
 * disconnects in the same instant while pushes keep coming. Afterwards the node holds nothing: no clients, uids, groups,
 * sessions, worker chains, pending writes, open requests, extra timers or handles; its wanted
 * keys and the broker's bindings are the base set again; its announcement counts 0; and its heap
 * is back near the baseline. Prints peak and final RSS and heap.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, boundKeys, cleanupAmqp } from '../helpers/amqp.js';
import { ChildNode, type ChildStats } from '../helpers/child-node.js';

const CLIENTS = 10_000;
const UIDS = 2_000;
const GROUPS = 100;
const OPEN_AT_ONCE = 500;
const TO_ALL = 20;
const UID_SUBSET = 200;
const TO_UID = 5;
const GROUP_SUBSET = 10;
const TO_GROUP = 3;

const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MB`;

class LightClient {
  lines = 0;
  loggedIn = false;
  closed = false;
  private tail = '';
  constructor(
    readonly socket: net.Socket,
    readonly uid: string,
    readonly group: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      const text = this.tail + chunk;
      let start = 0;
      let index: number;
      while ((index = text.indexOf('\n', start)) !== -1) {
        if (!this.loggedIn && text.startsWith('ok ', start)) this.loggedIn = true;
        else this.lines += 1;
        start = index + 1;
      }
      this.tail = text.slice(start);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => (this.closed = true));
  }
}

test('10,000 connections with pushes flowing, then all closing at once: nothing leaks, memory returns', async (t) => {
  const prefix = uniqueName('gw-10k');
  const node = await ChildNode.start({
    values: {
      ...amqpValues(prefix, 'direct'),
      gateway: { listen: ['tcp://127.0.0.1:0?protocol=text'] },
      cluster: { announceInterval: 500, nodeTimeout: 3000, queryTimeout: 10_000 },
    },
    handler: 'login',
    execArgv: ['--expose-gc'],
    label: '10k node',
  });
  const clients: LightClient[] = [];
  t.after(async () => {
    for (const c of clients) c.socket.destroy();
    await node.stop();
    await cleanupAmqp(prefix);
  });
  const port = node.port('tcp', 'text');
  const exchange = `${prefix}.direct`;
  const queue = `${exchange}.node.${node.instance}`;
  const baseKeys = (await node.stats()).desiredKeys;
  const baseBindings = await boundKeys(exchange, queue);
  const baseline = await node.gc();
  const base = await node.stats();

  // Connect and log in, OPEN_AT_ONCE at a time.
  const started = Date.now();
  for (let start = 0; start < CLIENTS; start += OPEN_AT_ONCE) {
    const batch: Promise<void>[] = [];
    for (let i = start; i < Math.min(CLIENTS, start + OPEN_AT_ONCE); i++) {
      batch.push(
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1');
          const client = new LightClient(socket, `u${i % UIDS}`, `g${i % GROUPS}`);
          clients.push(client);
          socket.once('error', reject);
          socket.once('connect', () => {
            socket.write(`login ${client.uid} ${client.group} v${i}\n`);
            resolve();
          });
        }),
      );
    }
    await Promise.all(batch);
  }
  await waitFor(() => clients.every((c) => c.loggedIn), 120_000, 'every client logged in');
  const loggedInMs = Date.now() - started;
  const connected = await node.stats();
  const peakLive = await node.gc();

  // Pushes: to everyone, to a subset of uids, to a few groups.
  const pushStarted = Date.now();
  for (let i = 0; i < TO_ALL; i++) await node.api('sendToAll', `all ${i}`);
  for (let k = 0; k < TO_UID; k++)
    await node.api(
      'sendToUid',
      Array.from({ length: UID_SUBSET }, (_, u) => `u${u}`),
      `uid ${k}`,
    );
  for (let k = 0; k < TO_GROUP; k++)
    await node.api(
      'sendToGroup',
      Array.from({ length: GROUP_SUBSET }, (_, g) => `g${g}`),
      `group ${k}`,
    );
  const expected = (c: LightClient): number =>
    TO_ALL +
    (Number(c.uid.slice(1)) < UID_SUBSET ? TO_UID : 0) +
    (Number(c.group.slice(1)) < GROUP_SUBSET ? TO_GROUP : 0);
  await waitFor(() => clients.every((c) => c.lines >= expected(c)), 60_000, 'every push delivered').catch(
    () => undefined,
  );
  const pushMs = Date.now() - pushStarted;
  const deliveries = clients.reduce((n, c) => n + expected(c), 0);
  const received = clients.reduce((n, c) => n + c.lines, 0);
  const wrong = clients.filter((c) => c.lines !== expected(c)).length;
  const during = await node.stats();
  const peakRss = Math.max(connected.memory.rss, during.memory.rss, peakLive.rss);
  const clusterCount = await node.api<number>('getAllClientCount');
  const uidCount = await node.api<number>('getAllUidCount');

  // Everyone leaves at once, while pushes to all and to uids keep coming.
  let pumping = true;
  let pumped = 0;
  const pump = (async () => {
    while (pumping) {
      await Promise.all([
        node.api('sendToAll', `late ${pumped}`),
        node.api('sendToUid', [`u${pumped % UIDS}`], `late uid ${pumped}`),
      ]);
      pumped += 1;
    }
  })();
  await waitFor(() => pumped >= 5, 10_000, 'late pushes flowing');
  const closedAt = Date.now();
  for (const c of clients) c.socket.destroy();
  await waitFor(async () => (await node.stats()).clients === 0, 60_000, 'the node let go of every client');
  const drainedMs = Date.now() - closedAt;
  pumping = false;
  await pump;
  // The announcement counts follow at the next interval; the broker's unbinds run in the background.
  await waitFor(
    async () => {
      const s = await node.stats();
      return s.members.every((m) => m.clients === 0 && m.uids === 0 && m.groups === 0);
    },
    10_000,
    'the announcement counts 0',
  );
  await waitFor(
    async () => (await boundKeys(exchange, queue)).join() === baseBindings.join(),
    60_000,
    'the broker bindings back to the base set',
  ).catch(() => undefined);
  const bindingsAfter = await boundKeys(exchange, queue);
  const final = await node.gc();
  const after = await node.stats();

  console.log(
    `[10k] ${CLIENTS} tcp clients (${UIDS} uids x 5, ${GROUPS} groups, a session each) logged in within ${loggedInMs} ms; node: ${connected.clients} clients, ${connected.uids} uids, ${connected.groups} groups, ${connected.sessions} sessions, ${connected.desiredKeys.length} keys wanted; cluster count ${clusterCount}, uid count ${uidCount}\n` +
      `  pushed ${TO_ALL} x sendToAll, ${TO_UID} x sendToUid(${UID_SUBSET} uids), ${TO_GROUP} x sendToGroup(${GROUP_SUBSET} groups) in ${pushMs} ms: expected ${deliveries} deliveries, received ${received}, lost ${deliveries - Math.min(received, deliveries)}, clients with a wrong count ${wrong}\n` +
      `  all ${CLIENTS} closed at once while ${pumped} rounds of late pushes (to all, to a uid) went on: node empty after ${drainedMs} ms; drops ${JSON.stringify(after.counters.drops)}\n` +
      `  memory: baseline (after gc) rss ${mb(baseline.rss)} heap ${mb(baseline.heapUsed)}; at 10k (after gc) rss ${mb(peakLive.rss)} heap ${mb(peakLive.heapUsed)}; peak rss ${mb(peakRss)}, peak heap ${mb(Math.max(connected.memory.heapUsed, during.memory.heapUsed))}; final (after gc) rss ${mb(final.rss)} heap ${mb(final.heapUsed)} (+${mb(final.heapUsed - baseline.heapUsed)} over the baseline)\n` +
      `  after: clients ${after.clients}, uids ${after.uids}, groups ${after.groups}, sessions ${after.sessions}, worker chains ${after.workerChains}, pending writes ${after.dirtyWrites}, open requests ${after.openRequests}, timers ${after.timers} (base ${base.timers}), handles ${JSON.stringify(after.resources)} (base ${JSON.stringify(base.resources)}), keys ${JSON.stringify(after.desiredKeys)}, broker bindings ${JSON.stringify(bindingsAfter)}`,
  );

  assert.equal(connected.clients, CLIENTS);
  assert.equal(connected.uids, UIDS);
  assert.equal(connected.groups, GROUPS);
  assert.equal(connected.sessions, CLIENTS);
  assert.equal(clusterCount, CLIENTS);
  assert.equal(uidCount, UIDS);
  assert.equal(wrong, 0, 'every client got exactly the pushes meant for it');
  assert.deepEqual(after.counters.drops, {}, 'no client was dropped by the node');
  assert.equal(after.counters.connectionsClosed, CLIENTS);
  // Nothing of the 10,000 is left.
  assert.equal(after.clients, 0);
  assert.equal(after.uids, 0);
  assert.equal(after.groups, 0);
  assert.equal(after.sessions, 0);
  assert.equal(after.workerChains, 0);
  assert.equal(after.dirtyWrites, 0);
  assert.equal(after.openRequests, 0);
  assert.equal(after.timers, base.timers, 'no timer left behind');
  // Sockets, servers and pipes; timers are counted above, and a pending setImmediate is transient.
  const handles = (r: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(r).filter(([kind]) => kind !== 'Immediate' && kind !== 'Timeout'));
  assert.deepEqual(handles(after.resources), handles(base.resources), 'no socket or other handle left behind');
  assert.deepEqual(after.desiredKeys, baseKeys, 'the node wants its base keys only');
  assert.deepEqual(bindingsAfter, baseBindings, 'the broker binds the base keys only');
  // Memory: the heap after a GC is back near the baseline (what 10,000 clients took is gone).
  const grew = peakLive.heapUsed - baseline.heapUsed;
  assert.ok(grew > 0);
  assert.ok(
    final.heapUsed - baseline.heapUsed < Math.max(0.1 * grew, 4 * 1048576),
    `heap back near the baseline: +${mb(final.heapUsed - baseline.heapUsed)} of +${mb(grew)} at 10k`,
  );
});

/**
 * A rolling restart on amqp direct with resumable sessions: two gateway processes behind a proxy
 * that sends each new connection to whichever gateway is up; 20 gatewire/client clients, each
 * bound to its uid (the 'login' handler); one publisher pushing numbered messages to every uid
 * without pause. Gateway A is stopped (its sessions are closed with 1001 and wait; their clients
 * come back through the proxy to B, which takes them over), started again, then B is stopped the
 * same way. Every client must get every push exactly once, in order, and never lose its session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigInput } from '../../src/config/load.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import { ChildNode } from '../helpers/child-node.js';
import { AMQP_URL, sleep, testConfig, uniqueName, waitFor } from '../helpers/nodes.js';
import { checkStream, GatewayProxy, TestClient } from '../helpers/resume.js';

const CLIENTS = 20;

test('rolling restart (amqp direct): every client gets every push once, in order, across two gateway restarts', async (t) => {
  const prefix = uniqueName('gwroll');
  const values: ConfigInput = {
    bus: { kind: 'amqp', mode: 'direct', amqp: { url: AMQP_URL, exchange: prefix } },
    gateway: { resumeWindow: 60, pingInterval: 0 },
    // the drain may take up to 10 s (shutdownTimeout minus its 5 s margin)
    node: { shutdownTimeout: 15000 },
  };
  const children: ChildNode[] = [];
  const clients: TestClient[] = [];
  const proxy = new GatewayProxy([]);
  let publisher: Publisher | null = null;
  let pushing = false;
  t.after(async () => {
    pushing = false;
    for (const c of clients) c.close();
    await waitFor(() => proxy.flowing === 0, 2000, 'the clients closed').catch(() => undefined);
    await proxy.close();
    await Promise.all(children.map((child) => child.stop(5000)));
    await publisher?.close();
    await cleanupAmqp(prefix);
  });
  const start = async (label: string) => {
    const child = await ChildNode.start({ values, handler: 'login', label });
    children.push(child);
    return child;
  };
  const a = await start('gateway A');
  const b = await start('gateway B');
  publisher = await createPublisher(testConfig(values));
  assert.equal(await publisher.waitForGateways(2, 5000), 2);
  const api = publisher.api;
  proxy.retarget(a.port('ws'), b.port('ws'));
  await proxy.start();

  const uids: string[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const uid = uniqueName(`u${i}`);
    const client = new TestClient(proxy.url, { minDelayMs: 20, maxDelayMs: 200 });
    clients.push(client);
    uids.push(uid);
    await client.opened(1);
    client.client.send(`login ${uid} ${prefix}-all`);
  }
  for (const [i, c] of clients.entries())
    await waitFor(() => c.texts.includes(`ok ${uids[i]}`), 5000, `client ${i} logged in`);
  const onA = (await a.stats()).clients;
  assert.ok(onA > 0 && onA < CLIENTS, `clients on both gateways (${onA} on A)`);

  let rounds = 0;
  pushing = true;
  const loop = (async () => {
    while (pushing) {
      rounds += 1;
      const text = String(rounds);
      await Promise.all(uids.map((uid) => api.sendToUid(uid, text)));
      await sleep(20); // pacing: a round for every client about every 25 ms
    }
  })();
  const roundsPast = async (more: number) => {
    const from = rounds;
    await waitFor(() => rounds >= from + more, 10000, `${more} more rounds`);
  };

  await roundsPast(20);
  let started = Date.now();
  await a.stop(20000);
  const drainA = Date.now() - started;
  assert.equal((await b.stats()).clients, CLIENTS, 'B holds every session');
  const a2 = await start('gateway A again');
  proxy.retarget(a2.port('ws'), b.port('ws'));
  await waitFor(
    async () => (await a2.stats()).members.some((m) => m.instance === b.instance),
    5000,
    'the new A sees B',
  );
  await roundsPast(20);
  started = Date.now();
  await b.stop(20000);
  const drainB = Date.now() - started;
  assert.equal((await a2.stats()).clients, CLIENTS, 'the new A holds every session');
  await roundsPast(20);
  pushing = false;
  await loop;

  await Promise.all(uids.map((uid) => api.sendToUid(uid, 'end')));
  for (const [i, c] of clients.entries()) await waitFor(() => c.texts.includes('end'), 10000, `client ${i}: end`);
  let moves = 0;
  for (const [i, c] of clients.entries()) {
    const stream = checkStream(c.numbers(), rounds);
    assert.deepEqual(
      stream,
      { exact: true, repeats: 0, missing: 0, inOrder: true, firstDisorder: '' },
      `client ${i}: every push once, in order`,
    );
    assert.equal(c.texts.at(-1), 'end');
    assert.equal(c.opens[0]!.resumed, false);
    for (const open of c.opens.slice(1)) assert.equal(open.resumed, true, `client ${i}: resumed (${open.reason})`);
    assert.ok(c.opens.length === 2 || c.opens.length === 3, `client ${i}: moved once or twice`);
    moves += c.opens.length - 1;
  }
  t.diagnostic(
    `[rolling restart amqp direct] ${CLIENTS} clients × ${rounds} pushes, all once, in order; ${moves} sessions moved; A drained in ${drainA} ms (${onA} sessions), B in ${drainB} ms (${CLIENTS})`,
  );
});

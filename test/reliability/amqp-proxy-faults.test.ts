/**
 * Network faults between the nodes and RabbitMQ, made with a TCP proxy (BrokerProxy) that every
 * process of the test connects through, while pushes flow (direct mode: each node must re-declare
 * a queue and replay its keys):
 *
 *   cut:   every proxied connection is dropped and new ones are refused for a while (the broker
 *          runs on; it sees the connections close and deletes their exclusive queues);
 *   stall: the proxy stops forwarding in both directions without closing anything, as a dead
 *          route or a lost NAT entry would; only the AMQP heartbeat can notice. The processes use
 *          the bus's own heartbeat (5 s unless the URL sets one; amqplib gives up after two silent
 *          periods, the broker likewise), so the figure printed is what an operator gets.
 *
 * Afterwards every bound uid and group is reachable from every process, each node has exactly its
 * keys bound again, and every push the API accepted is delivered, in order per pusher: before the
 * fault (also those confirmed and still on their way: a node's queue outlives its connection),
 * while the link was broken (waiting in the bounded buffer, or sent and not confirmed: sent again)
 * and after. Each test prints what it injected, what was sent, received and lost, and the times
 * to notice the fault and to recover.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, boundKeys, BrokerProxy, cleanupAmqp } from '../helpers/amqp.js';
import { Opened, connectTcp, connectWs } from '../e2e/support.js';
import type { Publisher } from '../../src/publisher.js';
import { amqpOf } from '../helpers/transports.js';
import type { Bus } from '../../src/transport/bus.js';
import type { GatewireNode } from '../../src/node.js';
import { PushFlow, startPairAndPublisher, type Push } from './amqp-flow.js';
import type { TcpTestClient, WsTestClient } from '../helpers/clients.js';

type Fault = 'cut' | 'stall';

interface Cluster {
  a: GatewireNode;
  b: GatewireNode;
  publisher: Publisher;
  buses: [string, Bus][];
  flow: PushFlow;
  probes: [string, () => Promise<void>, (WsTestClient | TcpTestClient)[]][];
  keysOf: () => Promise<string[][]>;
}

async function cluster(
  t: { after: (fn: () => Promise<void>) => void },
  fault: Fault,
): Promise<{ proxy: BrokerProxy; c: Cluster }> {
  const prefix = uniqueName(`gw-proxy-${fault}`);
  const opened = new Opened();
  const proxy = new BrokerProxy();
  let publisher: Publisher | undefined;
  t.after(async () => {
    proxy.heal();
    await proxy.restore().catch(() => undefined); // a cut proxy would keep everyone retrying
    await publisher?.close().catch(() => undefined);
    await opened.closeAll();
    await proxy.close();
    await cleanupAmqp(prefix);
  });
  await proxy.start();
  const values = {
    ...amqpValues(prefix, 'direct', { amqp: { url: proxy.url } }),
    gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'] },
  };
  const pair = await startPairAndPublisher(opened, values);
  publisher = pair.publisher;
  const { a, b } = pair;

  const a1 = await connectWs(opened, a);
  const a2 = await connectTcp(opened, a);
  const b1 = await connectWs(opened, b);
  await a.api.bindUid(a1.id, 'ua');
  await a.api.bindUid(a2.id, 'ua2');
  await b.api.bindUid(b1.id, 'ub');
  await a.api.joinGroup(a1.id, 'g1');
  await b.api.joinGroup(b1.id, 'g1');
  await a.api.joinGroup(a2.id, 'g2');
  const p = publisher;
  const flow = new PushFlow(
    [
      { name: 'nodeA', api: a.api, bus: a.bus },
      { name: 'nodeB', api: b.api, bus: b.bus },
      { name: 'publisher', api: p.api, bus: p.bus },
    ],
    [
      { kind: 'uid', name: 'ua', clients: [a1.client] },
      { kind: 'uid', name: 'ua2', clients: [a2.client] },
      { kind: 'uid', name: 'ub', clients: [b1.client] },
      { kind: 'group', name: 'g1', clients: [a1.client, b1.client] },
      { kind: 'group', name: 'g2', clients: [a2.client] },
    ],
  );
  return {
    proxy,
    c: {
      a,
      b,
      publisher: p,
      buses: [
        ['nodeA', a.bus],
        ['nodeB', b.bus],
        ['publisher', p.bus],
      ],
      flow,
      probes: [
        ['probe ua', () => b.api.sendToUid('ua', 'probe ua'), [a1.client]],
        ['probe ua2', () => p.api.sendToUid('ua2', 'probe ua2'), [a2.client]],
        ['probe ub', () => a.api.sendToUid('ub', 'probe ub'), [b1.client]],
        ['probe g1', () => p.api.sendToGroup('g1', 'probe g1'), [a1.client, b1.client]],
        ['probe g2', () => b.api.sendToGroup('g2', 'probe g2'), [a2.client]],
      ],
      keysOf: () => Promise.all([a, b].map((n) => boundKeys(amqpOf(n.bus).exchange, amqpOf(n.bus).queue))),
    },
  };
}

async function faultDuringTraffic(t: { after: (fn: () => Promise<void>) => void }, fault: Fault): Promise<void> {
  const { proxy, c } = await cluster(t, fault);
  const { flow, buses } = c;
  const keysBefore = await c.keysOf();
  const down = new Map<string, number>();
  const up = new Map<string, number>();
  for (const [name, bus] of buses) {
    bus.on('disconnected', () => down.set(name, Date.now()));
    bus.on('connected', () => up.set(name, Date.now()));
  }
  const reconnectsBefore = buses.map(([, bus]) => bus.stats.reconnects);

  // A push to each target from each pusher every 10 ms (1,500 pushes/s): a stall is noticed
  // after 10-15 s, and all of it waits and is checked.
  flow.start(10);
  await waitFor(() => flow.pushes.length >= 300, 10_000, 'pushes flowing');
  // What each push issued so far was at the fault: delivered everywhere, confirmed but still on
  // its way (it waits in the holder's queue, which outlives the connection), or not yet
  // confirmed (it must be sent again).
  const seen = new Map<unknown, Set<string>>();
  const texts = (client: WsTestClient | TcpTestClient): Set<string> => {
    let set = seen.get(client);
    if (set === undefined) seen.set(client, (set = new Set(client.texts())));
    return set;
  };
  const atFault = flow.pushes.map((p) =>
    p.accepted !== true
      ? 'unconfirmed'
      : p.target.clients.every((cl) => texts(cl).has(p.text))
        ? 'delivered'
        : 'in flight',
  );
  const faultSeq = flow.pushes.length;
  const faultAt = Date.now();
  let healedAt = 0;
  let noticedAt = 0;
  try {
    if (fault === 'cut') await proxy.cut();
    else proxy.stall();
    // 60 s is far past two heartbeat periods of 5 s (and a TCP close is seen at once).
    await waitFor(() => buses.every(([, bus]) => !bus.isConnected), 60_000, 'every bus noticed the broken link');
    noticedAt = Date.now();
    const downFrom = flow.pushes.length;
    await waitFor(() => flow.pushes.length >= downFrom + 300, 10_000, 'pushes issued while the link is broken');
  } finally {
    if (fault === 'cut') await proxy.restore();
    else proxy.heal();
    healedAt = Date.now();
  }
  await waitFor(
    () => buses.every(([, bus], i) => bus.isConnected && bus.stats.reconnects > reconnectsBefore[i]!),
    60_000,
    'every bus reconnected',
  );
  const allUpAt = Date.now();
  const recoveredSeq = flow.pushes.length;
  await waitFor(() => flow.pushes.length >= recoveredSeq + 300, 10_000, 'pushes after the recovery');
  await flow.stop();

  // Every bound uid and group is reachable again, from every process.
  for (const [text, send, clients] of c.probes) {
    await send();
    for (const client of clients) await client.waitForText(text, 10_000);
  }
  const reachableAt = Date.now();
  assert.deepEqual(await c.keysOf(), keysBefore, 'each node has exactly its keys bound');

  const before = (p: Push): boolean => p.seq < faultSeq;
  const inFlight = (p: Push): boolean => p.seq < faultSeq && atFault[p.seq] === 'in flight';
  const unconfirmed = (p: Push): boolean => p.seq < faultSeq && atFault[p.seq] === 'unconfirmed';
  const during = (p: Push): boolean => p.seq >= faultSeq && p.seq < recoveredSeq;
  const after = (p: Push): boolean => p.seq >= recoveredSeq;
  await waitFor(() => flow.missing() === 0, 30_000, 'every accepted push delivered').catch(() => undefined);
  const all = flow.report();
  const rBefore = flow.report(before);
  const rInFlight = flow.report(inFlight);
  const rUnconfirmed = flow.report(unconfirmed);
  const rDuring = flow.report(during);
  const rAfter = flow.report(after);
  const detection = buses.map(([name]) => `${name} ${(down.get(name) ?? NaN) - faultAt} ms`).join(', ');
  const recovery = buses.map(([name]) => `${name} ${(up.get(name) ?? NaN) - healedAt} ms`).join(', ');
  console.log(
    `[proxy ${fault}] injected: ${fault === 'cut' ? 'TCP proxy dropped every broker connection and refused new ones' : 'TCP proxy stopped forwarding both ways without closing (bus default heartbeat)'} for ${healedAt - faultAt} ms, during traffic (nodeA, nodeB, publisher all behind it; ${proxy.accepted} proxied connections in all)\n` +
      `  broken link noticed after: ${detection} (all by ${noticedAt - faultAt} ms)\n` +
      `  sent ${all.issued} pushes, accepted ${all.accepted}, rejected ${all.rejected} ${JSON.stringify(all.errors)}\n` +
      `  issued before the fault: ${rBefore.issued}, expected deliveries ${rBefore.deliveries}, received ${rBefore.received}, lost ${rBefore.lost}; of them at the fault: ${rUnconfirmed.issued} not yet confirmed (lost ${rUnconfirmed.lost}), ${rInFlight.issued} confirmed and on their way (lost ${rInFlight.lost})\n` +
      `  issued from the fault to the recovery: ${rDuring.issued} (${rDuring.issuedWhileDown} while the pusher knew it was disconnected), expected ${rDuring.deliveries}, received ${rDuring.received}, lost ${rDuring.lost}, duplicates ${rDuring.duplicates}\n` +
      `  issued after the recovery: ${rAfter.issued}, expected ${rAfter.deliveries}, received ${rAfter.received}, lost ${rAfter.lost}\n` +
      `  lost in all ${all.lost}, duplicates ${all.duplicates}, out of order ${all.outOfOrder}` +
      (all.lostSamples.length > 0 ? `; lost e.g. ${all.lostSamples.join('; ')}` : '') +
      `\n  recovery after the link was back: ${recovery}; all connected ${allUpAt - healedAt} ms, every uid and group reachable ${reachableAt - healedAt} ms`,
  );
  assert.ok(rDuring.issuedWhileDown > 0, 'pushes were issued while the link was broken');
  assert.equal(all.rejected, 0, 'no push was rejected');
  assert.equal(rUnconfirmed.lost, 0, 'every push not yet confirmed at the fault was sent again and arrived');
  assert.equal(
    rInFlight.lost,
    0,
    'every push confirmed and on its way at the fault arrived (the queue outlived the connection)',
  );
  assert.equal(rDuring.lost, 0, 'every push accepted from the fault to the recovery arrived');
  assert.equal(rAfter.lost, 0, 'every push after the recovery arrived');
  assert.equal(all.lost, 0, 'nothing the API accepted was lost');
  assert.equal(all.outOfOrder, 0, "each client saw each pusher's pushes in order");
}

test('proxy cut: every broker connection dropped during traffic; bindings hold and nothing accepted is lost', async (t) => {
  await faultDuringTraffic(t, 'cut');
});

test('proxy stall: the link stops forwarding without closing; the heartbeat notices, bindings hold and nothing accepted is lost', async (t) => {
  await faultDuringTraffic(t, 'stall');
});

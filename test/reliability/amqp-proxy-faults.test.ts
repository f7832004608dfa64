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
import { waitFor } from '../helpers/nodes.js';
import { amqpValues } from '../helpers/amqp.js';
import { AmqpScope } from '../helpers/faults.js';
import { startFaultCluster, type Push } from './amqp-flow.js';
import type { TcpTestClient, WsTestClient } from '../helpers/clients.js';

type Fault = 'cut' | 'stall';

async function faultDuringTraffic(t: { after: (fn: () => Promise<void>) => void }, fault: Fault): Promise<void> {
  const scope = new AmqpScope(t, `gw-proxy-${fault}`);
  const proxy = await scope.startProxy();
  const values = {
    ...amqpValues(scope.prefix, 'direct', { amqp: { url: proxy.url } }),
    gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'] },
  };
  const c = await startFaultCluster(scope, values);
  const { flow, buses } = c;
  const keysBefore = await c.keysOf();

  // A push to each target from each pusher every 10 ms (1,500 pushes/s): a stall is noticed
  // after 10-15 s, and all of it waits and is checked.
  flow.start(10);
  await flow.issued(300, 'pushes flowing');
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
    await flow.issued(300, 'pushes issued while the link is broken');
  } finally {
    if (fault === 'cut') await proxy.restore();
    else proxy.heal();
    healedAt = Date.now();
  }
  const { allUpAt, recoveredSeq, reachableAt } = await c.recover();
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
  const detection = buses
    .map(([name]) => `${name} ${(c.clocks.get(name)!.down.at(-1) ?? NaN) - faultAt} ms`)
    .join(', ');
  const recovery = buses.map(([name]) => `${name} ${(c.clocks.get(name)!.up.at(-1) ?? NaN) - healedAt} ms`).join(', ');
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

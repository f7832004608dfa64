/**
 * Fault tests of the AMQP bus with `rabbitmqctl close_connection`, in both modes, while pushes
 * flow. Each test prints what was injected, sent, received, lost and the recovery time.
 *
 * 1. The pushing processes (another node and a publisher) lose their connections: every push the
 *    API accepted, those that waited in the buffer during the outage included, is delivered, in
 *    order per pusher (a repeat is possible: at-least-once).
 * 2. The node holding the clients loses its connection: afterwards every uid and group it holds
 *    is reachable again from every node, pushes to the other node's clients never stop, and every
 *    push issued after its recovery arrives. Its queue outlives the lost connection, so what other
 *    processes published to its keys meanwhile waited there and arrives too: nothing is lost
 *    (a repeat is possible: at-least-once).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../helpers/nodes.js';
import { amqpValues, boundKeys, closeConnections } from '../helpers/amqp.js';
import { connectTcp, connectWs } from '../e2e/support.js';
import { amqpOf } from '../helpers/transports.js';
import type { ConfigInput } from '../../src/config/load.js';
import { AmqpScope, outageClock, place, reconnectCounts, waitReconnected } from '../helpers/faults.js';
import { PushFlow, pushersOf, runProbes, startPairAndPublisher, targetsOf, type Push } from './amqp-flow.js';

/** A scope on a fresh prefix, the pair and publisher of the fault tests on it in `mode`. */
async function cluster(t: { after: (fn: () => Promise<void>) => void }, name: string, mode: 'direct' | 'fanout') {
  const scope = new AmqpScope(t, name);
  const values: ConfigInput = {
    ...amqpValues(scope.prefix, mode),
    gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'] },
  };
  const { a, b, publisher } = await startPairAndPublisher(scope.opened, values);
  return { opened: scope.opened, a, b, publisher: scope.publisher(publisher) };
}

for (const mode of ['direct', 'fanout'] as const) {
  test(`${mode}: pushers lose their broker connections while pushing; every accepted push arrives, in order`, async (t) => {
    const { opened, a, b, publisher } = await cluster(t, `gw-amqp-loss-pub-${mode}`, mode);

    // The clients are on A; B (a node) and the publisher push to them.
    const a1 = await connectWs(opened, a);
    const a2 = await connectWs(opened, a);
    const a3 = await connectTcp(opened, a);
    const placement = { uids: { ua: [a1, a2] }, groups: { g1: [a1, a3], g2: [a2] } };
    await place(placement, b);
    const flow = new PushFlow(pushersOf({ nodeB: b, publisher }), targetsOf(placement));
    const pushers = [b.bus, publisher.bus];
    const clocks = pushers.map(outageClock);
    const reconnectsBefore = reconnectCounts(pushers);
    const names = pushers.map((bus) => amqpOf(bus).connectionName);

    flow.start(4);
    await flow.issued(300, 'pushes flowing');
    const closed = await closeConnections(names);
    assert.equal(closed, 2, "both pushers' connections were found and closed");
    await waitReconnected(pushers, reconnectsBefore, 30_000, 'every closed bus reconnected');
    await flow.issued(300, 'pushes after the recovery');
    await flow.stop();
    await waitFor(() => flow.missing() === 0, 20_000, 'every accepted push delivered').catch(() => undefined);

    const report = flow.report();
    const recovery = clocks.map((c) => (c.up.at(-1) ?? NaN) - (c.down[0] ?? NaN));
    console.log(
      `[amqp ${mode}] injected: rabbitmqctl close_connection of ${closed} pusher connections (${names.join(', ')})\n` +
        `  sent ${report.issued} pushes (${report.issuedWhileDown} while the pusher was disconnected), accepted ${report.accepted}, rejected ${report.rejected} ${JSON.stringify(report.errors)}\n` +
        `  expected deliveries ${report.deliveries}, received ${report.received}, lost ${report.lost} (while down: ${report.lostWhileDown}), duplicates ${report.duplicates}, out of order ${report.outOfOrder}\n` +
        `  recovery (disconnected -> connected): nodeB ${recovery[0]} ms, publisher ${recovery[1]} ms` +
        (report.lostSamples.length > 0 ? `\n  lost e.g. ${report.lostSamples.join('; ')}` : ''),
    );
    assert.ok(report.issuedWhileDown > 0, 'some pushes were issued while a pusher was disconnected');
    assert.equal(report.rejected, 0, 'no push was rejected');
    assert.equal(report.lost, 0, 'no accepted push was lost');
    assert.equal(report.outOfOrder, 0, "each client saw each pusher's pushes in order");
  });

  test(`${mode}: the node holding the clients loses its broker connection; its uids and groups are reachable again`, async (t) => {
    const { opened, a, b, publisher } = await cluster(t, `gw-amqp-loss-node-${mode}`, mode);

    const a1 = await connectWs(opened, a);
    const a2 = await connectTcp(opened, a);
    const b1 = await connectWs(opened, b);
    // uids first, then g1 (A's clients by A, B's by B): the targets ua, ua2, ub, g1
    const placement = { uids: { ua: [a1], ua2: [a2], ub: [b1] }, groups: { g1: [a1, a2, b1] } };
    await place(placement);
    const busA = a.bus;
    const amqpA = amqpOf(busA);
    const oldQueue = amqpA.queue;
    const keysBefore = mode === 'direct' ? await boundKeys(amqpA.exchange, oldQueue) : [];

    const flow = new PushFlow(pushersOf({ nodeB: b, publisher }), targetsOf(placement));
    const clock = outageClock(busA);
    const reconnectsBefore = busA.stats.reconnects;

    flow.start(4);
    await flow.issued(300, 'pushes flowing');
    const closed = await closeConnections([amqpA.connectionName]);
    assert.equal(closed, 1, "node A's connection was found and closed");
    await waitReconnected([busA], [reconnectsBefore], 30_000, 'every closed bus reconnected');
    const recoveredAt = flow.pushes.length;
    await flow.issued(300, 'pushes after the recovery');
    await flow.stop();

    // Every bound uid and group is reachable again, from the other node and from a publisher.
    await runProbes([
      ['probe ua from B', () => b.api.sendToUid('ua', 'probe ua from B'), [a1.client]],
      ['probe ua2 from publisher', () => publisher.api.sendToUid('ua2', 'probe ua2 from publisher'), [a2.client]],
      [
        'probe g1 from publisher',
        () => publisher.api.sendToGroup('g1', 'probe g1 from publisher'),
        [a1.client, a2.client, b1.client],
      ],
      ['probe ub from A', () => a.api.sendToUid('ub', 'probe ub from A'), [b1.client]],
    ]);
    const reachableAt = Date.now();
    if (mode === 'direct') {
      assert.equal(amqpA.queue, oldQueue, 'the same queue, which outlived the connection');
      assert.deepEqual(await boundKeys(amqpA.exchange, amqpA.queue), keysBefore, 'the same keys, no more');
    }

    const afterRecovery = (p: Push): boolean => p.seq >= recoveredAt;
    await waitFor(() => flow.missing(afterRecovery) === 0, 20_000, 'pushes after the recovery delivered').catch(
      () => undefined,
    );
    const onB = (p: Push): boolean => p.target.clients.includes(b1.client) && p.target.clients.length === 1;
    await waitFor(() => flow.missing(onB) === 0, 20_000, 'pushes to B delivered').catch(() => undefined);
    await waitFor(() => flow.missing() === 0, 20_000, 'every accepted push delivered').catch(() => undefined);
    const all = flow.report();
    const toB = flow.report(onB);
    const toA = flow.report((p) => !onB(p));
    const recovery = (clock.up.at(-1) ?? NaN) - (clock.down[0] ?? NaN);
    console.log(
      `[amqp ${mode}] injected: rabbitmqctl close_connection of node A (${amqpA.connectionName}), which holds uids ua, ua2 and members of g1\n` +
        `  sent ${all.issued} pushes from node B and a publisher, accepted ${all.accepted}, rejected ${all.rejected}\n` +
        `  to B's client (B connected throughout): expected ${toB.deliveries}, received ${toB.received}, lost ${toB.lost}\n` +
        `  to A's clients (and g1): expected ${toA.deliveries}, received ${toA.received}, lost ${toA.lost}, duplicates ${toA.duplicates}\n` +
        `  issued after A reconnected: lost ${flow.report((p) => afterRecovery(p)).lost}\n` +
        `  recovery: A disconnected -> connected ${recovery} ms; -> every uid and group reachable again (probes) ${reachableAt - (clock.down[0] ?? NaN)} ms`,
    );
    assert.equal(all.rejected, 0, 'no push was rejected');
    assert.equal(toB.lost, 0, 'pushes to the node that kept its connection never stopped');
    assert.equal(toA.lost, 0, 'pushes published to A while it reconnected waited in its queue');
    assert.equal(flow.report((p) => afterRecovery(p)).lost, 0, 'every push issued after the recovery arrived');
    assert.equal(all.outOfOrder, 0, "each client saw each pusher's pushes in order");
  });
}

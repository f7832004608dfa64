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
import { uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, boundKeys, closeConnections, cleanupAmqp } from '../helpers/amqp.js';
import { Opened, connectTcp, connectWs } from '../e2e/support.js';
import type { Publisher } from '../../src/publisher.js';
import { amqpBus, amqpOf } from '../helpers/transports.js';
import type { Bus } from '../../src/transport/bus.js';
import type { GatewireNode } from '../../src/node.js';
import { PushFlow, startPairAndPublisher, type Push } from './amqp-flow.js';
import type { TcpTestClient, WsTestClient } from '../helpers/clients.js';

const LISTEN = ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'];

/** Records when a bus went down and came back. */
function outageClock(bus: Bus): { down: number[]; up: number[] } {
  const clock = { down: [] as number[], up: [] as number[] };
  bus.on('disconnected', () => clock.down.push(Date.now()));
  bus.on('connected', () => clock.up.push(Date.now()));
  return clock;
}

async function pushersReconnected(buses: Bus[], before: number[]): Promise<void> {
  await waitFor(
    () => buses.every((b, i) => b.isConnected && b.stats.reconnects > before[i]!),
    30_000,
    'every closed bus reconnected',
  );
}

for (const mode of ['direct', 'fanout'] as const) {
  test(`${mode}: pushers lose their broker connections while pushing; every accepted push arrives, in order`, async (t) => {
    const prefix = uniqueName(`gw-amqp-loss-pub-${mode}`);
    const opened = new Opened();
    let publisher: Publisher | undefined;
    t.after(async () => {
      await publisher?.close();
      await opened.closeAll();
      await cleanupAmqp(prefix);
    });
    const values = { ...amqpValues(prefix, mode), gateway: { listen: LISTEN } };
    const pair = await startPairAndPublisher(opened, values);
    publisher = pair.publisher;
    const { a, b } = pair;

    // The clients are on A; B (a node) and the publisher push to them.
    const a1 = await connectWs(opened, a);
    const a2 = await connectWs(opened, a);
    const a3 = await connectTcp(opened, a);
    await b.api.bindUid(a1.id, 'ua');
    await b.api.bindUid(a2.id, 'ua');
    await b.api.joinGroup(a1.id, 'g1');
    await b.api.joinGroup(a3.id, 'g1');
    await b.api.joinGroup(a2.id, 'g2');
    const flow = new PushFlow(
      [
        { name: 'nodeB', api: b.api, bus: b.bus },
        { name: 'publisher', api: publisher.api, bus: publisher.bus },
      ],
      [
        { kind: 'uid', name: 'ua', clients: [a1.client, a2.client] },
        { kind: 'group', name: 'g1', clients: [a1.client, a3.client] },
        { kind: 'group', name: 'g2', clients: [a2.client] },
      ],
    );
    const pushers = [b.bus, publisher.bus];
    const clocks = pushers.map(outageClock);
    const reconnectsBefore = pushers.map((bus) => bus.stats.reconnects);
    const names = pushers.map((bus) => amqpOf(bus).connectionName);

    flow.start(4);
    await waitFor(() => flow.pushes.length >= 300, 10_000, 'pushes flowing');
    const closed = await closeConnections(names);
    assert.equal(closed, 2, "both pushers' connections were found and closed");
    await pushersReconnected(pushers, reconnectsBefore);
    const afterRecovery = flow.pushes.length;
    await waitFor(() => flow.pushes.length >= afterRecovery + 300, 10_000, 'pushes after the recovery');
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
    const prefix = uniqueName(`gw-amqp-loss-node-${mode}`);
    const opened = new Opened();
    let publisher: Publisher | undefined;
    t.after(async () => {
      await publisher?.close();
      await opened.closeAll();
      await cleanupAmqp(prefix);
    });
    const values = { ...amqpValues(prefix, mode), gateway: { listen: LISTEN } };
    const pair = await startPairAndPublisher(opened, values);
    publisher = pair.publisher;
    const { a, b } = pair;

    const a1 = await connectWs(opened, a);
    const a2 = await connectTcp(opened, a);
    const b1 = await connectWs(opened, b);
    await a.api.bindUid(a1.id, 'ua');
    await a.api.joinGroup(a1.id, 'g1');
    await a.api.joinGroup(a2.id, 'g1');
    await a.api.bindUid(a2.id, 'ua2');
    await b.api.bindUid(b1.id, 'ub');
    await b.api.joinGroup(b1.id, 'g1');
    const busA = a.bus;
    const amqpA = amqpOf(busA);
    const oldQueue = amqpA.queue;
    const keysBefore = mode === 'direct' ? await boundKeys(amqpA.exchange, oldQueue) : [];

    const targetsOnA = [
      { kind: 'uid' as const, name: 'ua', clients: [a1.client] },
      { kind: 'uid' as const, name: 'ua2', clients: [a2.client] },
    ];
    const targetsOnB = [{ kind: 'uid' as const, name: 'ub', clients: [b1.client] }];
    const mixed = { kind: 'group' as const, name: 'g1', clients: [a1.client, a2.client, b1.client] };
    const flow = new PushFlow(
      [
        { name: 'nodeB', api: b.api, bus: b.bus },
        { name: 'publisher', api: publisher.api, bus: publisher.bus },
      ],
      [...targetsOnA, ...targetsOnB, mixed],
    );
    const clock = outageClock(busA);
    const reconnectsBefore = busA.stats.reconnects;

    flow.start(4);
    await waitFor(() => flow.pushes.length >= 300, 10_000, 'pushes flowing');
    const closed = await closeConnections([amqpA.connectionName]);
    assert.equal(closed, 1, "node A's connection was found and closed");
    await pushersReconnected([busA], [reconnectsBefore]);
    const recoveredAt = flow.pushes.length;
    await waitFor(() => flow.pushes.length >= recoveredAt + 300, 10_000, 'pushes after the recovery');
    await flow.stop();

    // Every bound uid and group is reachable again, from the other node and from a publisher.
    const probes: [string, () => Promise<void>, (WsTestClient | TcpTestClient)[]][] = [
      ['probe ua from B', () => b.api.sendToUid('ua', 'probe ua from B'), [a1.client]],
      ['probe ua2 from publisher', () => publisher!.api.sendToUid('ua2', 'probe ua2 from publisher'), [a2.client]],
      [
        'probe g1 from publisher',
        () => publisher!.api.sendToGroup('g1', 'probe g1 from publisher'),
        [a1.client, a2.client, b1.client],
      ],
      ['probe ub from A', () => a.api.sendToUid('ub', 'probe ub from A'), [b1.client]],
    ];
    for (const [text, send, clients] of probes) {
      await send();
      for (const client of clients) await client.waitForText(text, 10_000);
    }
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

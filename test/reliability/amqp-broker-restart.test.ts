/**
 * The broker restarts (rabbitmqctl stop_app / start_app) while pushes flow between two nodes and
 * a publisher (direct mode: every node must re-declare a new queue and replay all its keys).
 * Afterwards every bound uid and group is reachable again, and every push the API accepted during
 * the outage (issued while its pusher was disconnected, so it waited in the buffer) is delivered.
 * Prints what was injected, sent, received, lost and the recovery times.
 *
 * The broker is a private RabbitMQ node started for this test (helpers/private-broker.ts) and
 * stopped after it: the shared broker is never stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, boundKeys } from '../helpers/amqp.js';
import { PrivateRabbit } from '../helpers/private-broker.js';
import { Opened, connectTcp, connectWs } from '../e2e/support.js';
import type { Publisher } from '../../src/publisher.js';
import { amqpOf } from '../helpers/transports.js';
import type { Bus } from '../../src/transport/bus.js';
import { PushFlow, startPairAndPublisher, type Push } from './amqp-flow.js';
import type { TcpTestClient, WsTestClient } from '../helpers/clients.js';

test('direct: the broker restarts while pushes flow; every uid and group is reachable again and no push accepted during the outage is lost', async (t) => {
  const prefix = uniqueName('gw-amqp-restart');
  const opened = new Opened();
  let publisher: Publisher | undefined;
  const broker = await PrivateRabbit.start();
  t.after(async () => {
    // Started again first, so the processes can close cleanly; everything goes with the broker.
    if (broker.running) await broker.startApp().catch(() => undefined);
    await publisher?.close();
    await opened.closeAll();
    await broker.stop();
  });
  const ctl = broker.ctl.bind(broker);
  const values = {
    ...amqpValues(prefix, 'direct', { amqp: { url: broker.url } }),
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
  const keysBefore = await Promise.all([a, b].map((n) => boundKeys(amqpOf(n.bus).exchange, amqpOf(n.bus).queue, ctl)));

  const buses: [string, Bus][] = [
    ['nodeA', a.bus],
    ['nodeB', b.bus],
    ['publisher', publisher.bus],
  ];
  const flow = new PushFlow(
    [
      { name: 'nodeA', api: a.api, bus: a.bus },
      { name: 'nodeB', api: b.api, bus: b.bus },
      { name: 'publisher', api: publisher.api, bus: publisher.bus },
    ],
    [
      { kind: 'uid', name: 'ua', clients: [a1.client] },
      { kind: 'uid', name: 'ua2', clients: [a2.client] },
      { kind: 'uid', name: 'ub', clients: [b1.client] },
      { kind: 'group', name: 'g1', clients: [a1.client, b1.client] },
      { kind: 'group', name: 'g2', clients: [a2.client] },
    ],
  );
  const down = new Map<string, number>();
  const up = new Map<string, number>();
  for (const [name, bus] of buses) {
    bus.on('disconnected', () => down.set(name, Date.now()));
    bus.on('connected', () => up.set(name, Date.now()));
  }
  const reconnectsBefore = buses.map(([, bus]) => bus.stats.reconnects);

  flow.start(10);
  await waitFor(() => flow.pushes.length >= 300, 10_000, 'pushes flowing');
  let stoppedAt = 0;
  let startedAt = 0;
  try {
    stoppedAt = Date.now();
    await broker.stopApp();
    await waitFor(() => buses.every(([, bus]) => !bus.isConnected), 30_000, 'every bus saw the broker go');
    const downFrom = flow.pushes.length;
    await waitFor(() => flow.pushes.length >= downFrom + 300, 10_000, 'pushes issued while the broker is down');
  } finally {
    // Times are taken from start_app's return (the app is up and listening); await_startup only
    // confirms it.
    startedAt = await broker.startApp();
  }
  await waitFor(
    () => buses.every(([, bus], i) => bus.isConnected && bus.stats.reconnects > reconnectsBefore[i]!),
    60_000,
    'every bus reconnected',
  );
  const allUpAt = Date.now();
  const recoveredAt = flow.pushes.length;
  await waitFor(() => flow.pushes.length >= recoveredAt + 300, 10_000, 'pushes after the recovery');
  await flow.stop();

  // Every bound uid and group is reachable again, from every process.
  const probes: [string, () => Promise<void>, (WsTestClient | TcpTestClient)[]][] = [
    ['probe ua', () => b.api.sendToUid('ua', 'probe ua'), [a1.client]],
    ['probe ua2', () => publisher!.api.sendToUid('ua2', 'probe ua2'), [a2.client]],
    ['probe ub', () => a.api.sendToUid('ub', 'probe ub'), [b1.client]],
    ['probe g1', () => publisher!.api.sendToGroup('g1', 'probe g1'), [a1.client, b1.client]],
    ['probe g2', () => b.api.sendToGroup('g2', 'probe g2'), [a2.client]],
  ];
  for (const [text, send, clients] of probes) {
    await send();
    for (const client of clients) await client.waitForText(text, 10_000);
  }
  const reachableAt = Date.now();
  const keysAfter = await Promise.all([a, b].map((n) => boundKeys(amqpOf(n.bus).exchange, amqpOf(n.bus).queue, ctl)));
  assert.deepEqual(keysAfter, keysBefore, 'each node has the same keys again, on its new queue');

  const whileDown = (p: Push): boolean => p.whileDown;
  const afterRecovery = (p: Push): boolean => p.seq >= recoveredAt;
  await waitFor(
    () => flow.missing(whileDown) + flow.missing(afterRecovery) === 0,
    30_000,
    'buffered and later pushes delivered',
  ).catch(() => undefined);
  const all = flow.report();
  const buffered = flow.report(whileDown);
  const later = flow.report(afterRecovery);
  const before = flow.report((p) => !p.whileDown && p.seq < recoveredAt);
  const recovery = buses.map(
    ([name]) =>
      `${name} ${(up.get(name) ?? NaN) - (down.get(name) ?? NaN)} ms down, up ${(up.get(name) ?? NaN) - startedAt} ms after start_app`,
  );
  console.log(
    `[amqp direct] injected: rabbitmqctl stop_app of a private broker (up in ${broker.startupMs} ms), broker down ${startedAt - stoppedAt} ms (stop_app to start_app done)\n` +
      `  sent ${all.issued} pushes from nodeA, nodeB and a publisher; accepted ${all.accepted}, rejected ${all.rejected} ${JSON.stringify(all.errors)}\n` +
      `  issued while the pusher was disconnected (waited in the buffer): ${buffered.issued}, expected deliveries ${buffered.deliveries}, received ${buffered.received}, lost ${buffered.lost}, duplicates ${buffered.duplicates}\n` +
      `  issued after every bus was back: ${later.issued}, lost ${later.lost}\n` +
      `  issued while connected before the outage: ${before.issued}, expected ${before.deliveries}, received ${before.received}, lost ${before.lost} (in flight when the broker stopped)\n` +
      `  out of order ${all.outOfOrder}, duplicates ${all.duplicates}\n` +
      `  recovery: ${recovery.join('; ')}; all connected ${allUpAt - startedAt} ms after start_app; every uid and group reachable ${reachableAt - startedAt} ms after start_app`,
  );
  assert.ok(buffered.issued > 0, 'pushes were issued during the outage');
  assert.equal(all.rejected, 0, 'no push was rejected');
  assert.equal(buffered.lost, 0, 'every push accepted during the outage arrived');
  assert.equal(later.lost, 0, 'every push after the recovery arrived');
  assert.equal(all.outOfOrder, 0, "each client saw each pusher's pushes in order");
});

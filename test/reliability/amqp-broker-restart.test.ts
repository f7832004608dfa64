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
import { amqpValues } from '../helpers/amqp.js';
import { PrivateRabbit } from '../helpers/private-broker.js';
import { FaultScope } from '../helpers/faults.js';
import { startFaultCluster, type Push } from './amqp-flow.js';

test('direct: the broker restarts while pushes flow; every uid and group is reachable again and no push accepted during the outage is lost', async (t) => {
  const broker = await PrivateRabbit.start();
  const scope = new FaultScope(t);
  // Started again first, so the processes can close cleanly; everything goes with the broker.
  scope.first(async () => {
    if (broker.running) await broker.startApp().catch(() => undefined);
  });
  scope.last(() => broker.stop());
  const values = {
    ...amqpValues(uniqueName('gw-amqp-restart'), 'direct', { amqp: { url: broker.url } }),
    gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'] },
  };
  const { flow, buses, keysOf, clocks, recover } = await startFaultCluster(scope, values, broker.ctl.bind(broker));
  const keysBefore = await keysOf();

  flow.start(10);
  await flow.issued(300, 'pushes flowing');
  let stoppedAt = 0;
  let startedAt = 0;
  try {
    stoppedAt = Date.now();
    await broker.stopApp();
    await waitFor(() => buses.every(([, bus]) => !bus.isConnected), 30_000, 'every bus saw the broker go');
    await flow.issued(300, 'pushes issued while the broker is down');
  } finally {
    // Times are taken from start_app's return (the app is up and listening); await_startup only
    // confirms it.
    startedAt = await broker.startApp();
  }
  const { allUpAt, recoveredSeq: recoveredAt, reachableAt } = await recover();
  assert.deepEqual(await keysOf(), keysBefore, 'each node has the same keys again, on its new queue');

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
  const recovery = buses.map(([name]) => {
    const { down, up } = clocks.get(name)!;
    return `${name} ${(up.at(-1) ?? NaN) - (down.at(-1) ?? NaN)} ms down, up ${(up.at(-1) ?? NaN) - startedAt} ms after start_app`;
  });
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

/**
 * Split roles on RabbitMQ: 2 gateways and 2 workers, 200 clients sending numbered messages
 * while every worker is reloaded one at a time (`gatewire reload`), then all workers are
 * stopped (`gatewire stop`) while every client sends a few more messages, and started again. No client is disconnected and
 * every message is handled exactly once, per client in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNode, uniqueName, waitForMembership, wsUrl } from '../helpers/nodes.js';
import { NumberedSenders } from '../helpers/fixtures.js';
import { killAll, runCli, runCliToEnd } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import type { GatewireNode } from '../../src/node.js';

const CLIENTS = 200;
/** each client sends one message per SEND_EVERY ms */
const SEND_EVERY = 250;

test('reloading and stopping workers loses no event and keeps each client in order', { timeout: 120000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-split-'));
  const exchange = uniqueName('split');
  const bus = { kind: 'amqp' as const, mode: 'direct' as const, amqp: { exchange } };
  const workerConfig = path.join(dir, 'worker.json');
  fs.writeFileSync(
    workerConfig,
    JSON.stringify({
      worker: { handler: path.resolve('dist/test/fixtures/numbered-handler.js'), partitions: 8 },
      bus,
      cluster: { announceInterval: 200, nodeTimeout: 1500 },
      log: { level: 'warn' },
    }),
  );
  const pidFile = path.join(dir, 'workers.pid');
  const gateways: GatewireNode[] = [];
  t.after(async () => {
    killAll();
    await Promise.all(gateways.map((g) => g.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
    // The durable event queues and the node queues stay on the broker otherwise.
    await cleanupAmqp(exchange);
  });

  for (let i = 0; i < 2; i++)
    gateways.push(await startNode({ bus, node: { roles: ['gateway'] }, worker: { partitions: 8 } }));
  let workers = runCli(['start', '--config', workerConfig, '--gateways', '0', '--workers', '2', '--pid-file', pidFile]);
  await workers.waitForOutput('cluster running');
  await waitForMembership(gateways, 2);

  const senders = await NumberedSenders.connect(gateways.map(wsUrl), CLIENTS);
  const { clients } = senders;
  senders.start(SEND_EVERY);

  // Traffic flows through the workers: every client has had two messages handled.
  await senders.untilHandled(() => 2, 15000, 'before the reload');
  const reload = await runCliToEnd(['reload', '--pid-file', pidFile]);
  assert.equal(reload.code, 0, reload.output);
  await workers.waitForOutput('reload complete', 60000);
  // The reloaded workers handle what is sent after the reload.
  const sentAtReload = clients.map((c) => c.sent);
  await senders.untilHandled((c) => sentAtReload[clients.indexOf(c)]! + 1, 30000, 'after the reload');

  const stop = await runCliToEnd(['stop', '--pid-file', pidFile]);
  assert.equal(stop.code, 0, stop.output);
  await workers.exited;
  const sentWhileDown = senders.total();
  // No worker runs: every client sends a few more messages, which wait on the broker.
  await senders.untilSentMore(4, 15000);
  workers = runCli(['start', '--config', workerConfig, '--gateways', '0', '--workers', '2', '--pid-file', pidFile]);
  await workers.waitForOutput('cluster running');
  // The started workers take the backlog and then what is sent after their start.
  const sentAtRestart = clients.map((c) => c.sent);
  await senders.untilHandled((c) => sentAtRestart[clients.indexOf(c)]! + 1, 60000, 'after the restart');
  await senders.stop();
  const total = senders.total();

  await senders.untilHandled((c) => c.sent, 60000, 'client handled all it sent');
  let duplicates = 0;
  let outOfOrder = 0;
  for (const c of clients) {
    const handled = NumberedSenders.handled(c);
    const expected = Array.from({ length: c.sent }, (_, i) => i + 1);
    if (handled.length > expected.length) duplicates += handled.length - expected.length;
    if (c.client.texts().some((text) => text.startsWith('ORDER'))) outOfOrder += 1;
    assert.deepEqual(handled, expected, 'every message handled exactly once, in order');
    assert.equal(c.client.closed, false, 'no client disconnected');
  }
  console.log(
    `split reload: ${CLIENTS} clients, ${total} messages sent (${total - sentWhileDown} after all workers were stopped), ` +
      `${total} handled exactly once, ${duplicates} duplicates, ${outOfOrder} clients out of order, 0 disconnected`,
  );
  assert.equal(outOfOrder, 0);
  await runCliToEnd(['stop', '--pid-file', pidFile]);
  for (const c of clients) c.client.close();
});

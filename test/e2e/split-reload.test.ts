/**
 * Split roles on RabbitMQ: 2 gateways and 2 workers, 200 clients sending numbered messages
 * while every worker is reloaded one at a time (`gatewire reload`), then all workers are
 * stopped for a few seconds (`gatewire stop`) and started again. No client is disconnected and
 * every message is handled exactly once, per client in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep, startNode, uniqueName, waitForMembership, wsUrl } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
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

  const clients: { client: WsTestClient; sent: number }[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const client = await WsTestClient.connect(wsUrl(gateways[i % 2]!));
    clients.push({ client, sent: 0 });
  }
  for (const c of clients) assert.match(await c.client.nextText(15000), /^id:/);

  let sending = true;
  const senders = clients.map(async (c, i) => {
    await sleep((i * SEND_EVERY) / CLIENTS);
    while (sending) {
      c.sent += 1;
      c.client.send(String(c.sent));
      await sleep(SEND_EVERY);
    }
  });

  await sleep(1000);
  const reload = await runCliToEnd(['reload', '--pid-file', pidFile]);
  assert.equal(reload.code, 0, reload.output);
  await workers.waitForOutput('reload complete', 60000);
  await sleep(1000);

  const stop = await runCliToEnd(['stop', '--pid-file', pidFile]);
  assert.equal(stop.code, 0, stop.output);
  await workers.exited;
  const sentWhileDown = clients.reduce((sum, c) => sum + c.sent, 0);
  await sleep(3000);
  workers = runCli(['start', '--config', workerConfig, '--gateways', '0', '--workers', '2', '--pid-file', pidFile]);
  await workers.waitForOutput('cluster running');
  await sleep(1000);
  sending = false;
  await Promise.all(senders);
  const total = clients.reduce((sum, c) => sum + c.sent, 0);

  for (const c of clients) {
    await c.client.until(() => c.client.texts().includes(`handled ${c.sent}`), 60000, `client handled ${c.sent}`);
  }
  let duplicates = 0;
  let outOfOrder = 0;
  for (const c of clients) {
    const handled = c.client
      .texts()
      .filter((text) => text.startsWith('handled '))
      .map((text) => Number(text.slice(8)));
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

/**
 * Split roles: one of two workers is killed with SIGKILL while clients send. Its pending and
 * future events are handled by the other, none lost (the event it was running may be handled
 * again: a crash gives at-least-once), each client's events still in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep, startNode, uniqueName, waitFor, waitForMembership, wsUrl } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
import { killAll, runCli } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import type { GatewireNode } from '../../src/node.js';

const CLIENTS = 60;

test('a worker killed with SIGKILL: the other takes its events over, none lost', { timeout: 90000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-kill-'));
  const exchange = uniqueName('kill');
  const bus = { kind: 'amqp' as const, mode: 'direct' as const, amqp: { exchange } };
  const cluster = { announceInterval: 200, nodeTimeout: 1500 };
  const workerConfig = path.join(dir, 'worker.json');
  fs.writeFileSync(
    workerConfig,
    JSON.stringify({
      node: { roles: ['worker'] },
      worker: { handler: path.resolve('dist/test/fixtures/numbered-handler.js'), partitions: 8 },
      bus,
      cluster,
      log: { level: 'warn' },
    }),
  );
  let started: GatewireNode | undefined;
  t.after(async () => {
    killAll();
    await started?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    // The durable event queues and the node queues stay on the broker otherwise.
    await cleanupAmqp(exchange);
  });
  const gateway = (started = await startNode({
    bus,
    cluster,
    node: { roles: ['gateway'] },
    worker: { partitions: 8 },
  }));
  const workers = [
    runCli(['start', '--config', workerConfig, '--pid-file', path.join(dir, 'w1.pid')]),
    runCli(['start', '--config', workerConfig, '--pid-file', path.join(dir, 'w2.pid')]),
  ];
  const workerIds: string[] = [];
  await waitFor(
    () => {
      workerIds.splice(
        0,
        workerIds.length,
        ...gateway.membership
          .list()
          .filter((m) => m.roles.includes('worker'))
          .map((m) => m.instance),
      );
      return workerIds.length === 2;
    },
    20000,
    'two workers in membership',
  );
  await waitForMembership([gateway], 1);

  const clients: { client: WsTestClient; sent: number }[] = [];
  for (let i = 0; i < CLIENTS; i++) clients.push({ client: await WsTestClient.connect(wsUrl(gateway)), sent: 0 });
  for (const c of clients) assert.match(await c.client.nextText(15000), /^id:/);

  let sending = true;
  const senders = clients.map(async (c, i) => {
    await sleep(i * 3);
    while (sending) {
      c.sent += 1;
      c.client.send(String(c.sent));
      await sleep(100);
    }
  });
  await sleep(1500);
  const killedAt = Date.now();
  workers[0]!.child.kill('SIGKILL');
  await workers[0]!.exited;
  await waitFor(
    () => gateway.membership.list().filter((m) => m.roles.includes('worker')).length === 1,
    10000,
    'the killed worker to leave membership',
  );
  const droppedAfterMs = Date.now() - killedAt;
  await sleep(1500);
  sending = false;
  await Promise.all(senders);

  let repeated = 0;
  for (const c of clients) {
    await c.client.until(() => c.client.texts().includes(`handled ${c.sent}`), 30000, `client handled ${c.sent}`);
    const handled = c.client
      .texts()
      .filter((text) => text.startsWith('handled '))
      .map((text) => Number(text.slice(8)));
    // A crash may repeat the event that was running; collapse repeats, then it must be 1..n.
    const collapsed = handled.filter((n, i) => i === 0 || n !== handled[i - 1]);
    repeated += handled.length - collapsed.length;
    assert.deepEqual(
      collapsed,
      Array.from({ length: c.sent }, (_, i) => i + 1),
      'none lost, in order',
    );
    assert.equal(c.client.texts().filter((text) => text.startsWith('ORDER')).length, 0);
    assert.equal(c.client.closed, false);
  }
  const total = clients.reduce((sum, c) => sum + c.sent, 0);
  console.log(
    `worker SIGKILL: ${CLIENTS} clients, ${total} messages, 0 lost, ${repeated} repeated (in flight at the kill); ` +
      `membership dropped the worker after ${droppedAfterMs} ms (cluster.nodeTimeout ${cluster.nodeTimeout} ms)`,
  );
  workers[1]!.child.kill('SIGTERM');
  await workers[1]!.exited;
  for (const c of clients) c.client.close();
});

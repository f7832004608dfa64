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
import { startNode, uniqueName, waitFor, waitForMembership, wsUrl } from '../helpers/nodes.js';
import { NumberedSenders } from '../helpers/fixtures.js';
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

  const senders = await NumberedSenders.connect([wsUrl(gateway)], CLIENTS);
  const { clients } = senders;
  senders.start(100, 3 * CLIENTS);
  // Both workers handle the clients' events: every client has had three handled.
  await senders.untilHandled(() => 3, 15000, 'before the kill');
  const killedAt = Date.now();
  workers[0]!.child.kill('SIGKILL');
  await workers[0]!.exited;
  await waitFor(
    () => gateway.membership.list().filter((m) => m.roles.includes('worker')).length === 1,
    10000,
    'the killed worker to leave membership',
  );
  const droppedAfterMs = Date.now() - killedAt;
  // The other worker handles what is sent after the killed one left.
  const sentAtDrop = clients.map((c) => c.sent);
  await senders.untilHandled((c) => sentAtDrop[clients.indexOf(c)]! + 1, 30000, 'after the kill');
  await senders.stop();

  let repeated = 0;
  for (const c of clients) {
    await c.client.until(() => c.client.texts().includes(`handled ${c.sent}`), 30000, `client handled ${c.sent}`);
    const handled = NumberedSenders.handled(c);
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
  const total = senders.total();
  console.log(
    `worker SIGKILL: ${CLIENTS} clients, ${total} messages, 0 lost, ${repeated} repeated (in flight at the kill); ` +
      `membership dropped the worker after ${droppedAfterMs} ms (cluster.nodeTimeout ${cluster.nodeTimeout} ms)`,
  );
  workers[1]!.child.kill('SIGTERM');
  await workers[1]!.exited;
  for (const c of clients) c.client.close();
});

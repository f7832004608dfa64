/**
 * Split roles (gateways and a worker in separate nodes, client events through the partition
 * queues): a gatewire.v1 client whose session moves to another gateway gets a new clientId, yet
 * its events keep their order. The worker is slow on the first messages, so the old clientId's
 * partition still has a backlog when the moved session's events arrive: they must wait behind it
 * (they travel on the session's first partition, and run in its chain), not overtake it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, uniqueName, waitFor, waitForMembership, wsUrl } from '../helpers/nodes.js';
import { GatewayProxy, TestClient } from '../helpers/resume.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import type { EventHandler } from '../../src/worker/handler.js';
import type { GatewireNode } from '../../src/node.js';

const SLOW_MS = 300;

test('split roles: a session moved to another gateway keeps the order of its events', { timeout: 60000 }, async (t) => {
  const exchange = uniqueName('rsplit');
  const bus = { kind: 'amqp' as const, mode: 'direct' as const, amqp: { exchange } };
  const nodes: GatewireNode[] = [];
  let proxy: GatewayProxy | null = null;
  let client: TestClient | null = null;
  t.after(async () => {
    client?.close();
    await proxy?.close();
    for (const node of nodes.reverse()) await node.stop();
    await cleanupAmqp(exchange);
  });
  const seen: string[] = [];
  const handler: EventHandler = {
    onConnect() {
      seen.push('connect');
    },
    async onMessage(_clientId, message) {
      const text = String(message);
      if (text.startsWith('slow')) await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
      seen.push(text);
    },
    onResume() {
      seen.push('resume');
    },
    onClose() {
      seen.push('close');
    },
  };
  const gatewayValues = {
    bus,
    node: { roles: ['gateway' as const], shutdownTimeout: 3000 },
    worker: { partitions: 8 },
    gateway: { resumeWindow: 30, pingInterval: 0 },
  };
  const a = await startNode(gatewayValues);
  nodes.push(a);
  const b = await startNode(gatewayValues);
  nodes.push(b);
  nodes.push(await startNode({ bus, node: { roles: ['worker'] }, worker: { partitions: 8 } }, { handler }));
  await waitForMembership([a, b], 2);

  const portOf = (node: GatewireNode): number => Number(new URL(wsUrl(node)).port);
  proxy = new GatewayProxy([portOf(a)]);
  await proxy.start();
  client = new TestClient(proxy.url, { heartbeatTimeoutMs: 400, pingIntervalMs: 200 });
  const first = await client.opened(1);
  await waitFor(() => seen.includes('connect'), 10000, 'onConnect');
  for (const text of ['slow1', 'slow2', 'slow3', 'm4']) client.client.send(text);
  // Gateway A has all four (the worker is still on the first slow one): then the link drops.
  await waitFor(() => a.gateway!.registry.get(first.clientId)?.resume?.received === 4, 5000, 'four messages at A');
  proxy.retarget(portOf(b));
  proxy.cut();
  const moved = await client.opened(2);
  assert.equal(moved.resumed, true);
  assert.equal(moved.previousClientId, first.clientId);
  assert.notEqual(moved.clientId, first.clientId);
  for (const text of ['m5', 'm6']) client.client.send(text);
  await waitFor(() => seen.includes('m6'), 15000, 'every event handled');
  assert.deepEqual(seen, ['connect', 'slow1', 'slow2', 'slow3', 'm4', 'resume', 'm5', 'm6']);
  t.diagnostic(
    `[resume split roles] events in order across the move: ${seen.join(', ')}; ` +
      `moved ${moved.at - first.at} ms after the first open`,
  );
  client.close();
  await waitFor(() => seen.includes('close'), 10000, 'onClose');
  assert.equal(seen.filter((e) => e === 'close').length, 1);
});

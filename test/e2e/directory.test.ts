/**
 * The holder directory (src/cluster/directory.ts), on RabbitMQ direct and Redis direct, 3 nodes:
 *   - once every node has every peer's state, a push goes by the holder's node key (counted in
 *     directory.stats.routed), each node consumes only its own clients' pushes, and each node's
 *     share of a turn travels in few broker messages;
 *   - bindUid / joinGroup resolve only once every node knows: a push from another node right
 *     after them reaches the client, round after round, also for a uid on two nodes;
 *   - isUidOnline and getAllUidCount are answered exactly from the directory;
 *   - a node that stops is dropped from every directory; its uids are offline at once;
 *   - the metrics show it (gatewire_directory_routing, gatewire_directory_sends_total).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';
import { nodeKey, uidKey } from '../../src/protocol/routing-keys.js';
import { AMQP_URL, waitFor } from '../helpers/nodes.js';
import { amqpFixture, connectWs, redisFixture, startNodes, type Opened } from '../helpers/fixtures.js';
import type { TestContext } from 'node:test';

const BUSES: { name: string; fixture: (t: TestContext) => { opened: Opened; values: ConfigInput } }[] = [
  {
    name: 'amqp direct',
    fixture: (t) => {
      const { opened, prefix } = amqpFixture(t, 'gwdir');
      return { opened, values: { bus: { kind: 'amqp', mode: 'direct', amqp: { url: AMQP_URL, exchange: prefix } } } };
    },
  },
  {
    name: 'redis direct',
    fixture: (t) => {
      const { opened, prefix } = redisFixture(t, 'gwdir');
      return { opened, values: { bus: { kind: 'redis', mode: 'direct', redis: { prefix } } } };
    },
  },
];

/** Faster announcements so the directory settles quickly (settle = 1.5 × announceInterval). */
const CLUSTER = { cluster: { announceInterval: 200, nodeTimeout: 3000 }, admin: { listen: '127.0.0.1:0' } };

async function routingNodes(opened: Opened, values: ConfigInput, count: number): Promise<GatewireNode[]> {
  const nodes = await startNodes(opened, count, { ...values, ...CLUSTER });
  await waitFor(() => nodes.every((n) => n.directory?.routing === true), 10000, 'every directory routing');
  return nodes;
}

for (const { name, fixture } of BUSES) {
  describe(`${name}: the holder directory`, () => {
    test('pushes go by the holder node key; each node consumes only its own', async (t) => {
      const { opened, values } = fixture(t);
      const [issuer, a, b] = await routingNodes(opened, values, 3);
      const onA = await connectWs(opened, a!);
      const onB = await connectWs(opened, b!);
      await a!.api.bindUid(onA.id, 'alice');
      await b!.api.bindUid(onB.id, 'bob');
      const before = { a: a!.bus.stats.pushesConsumed, b: b!.bus.stats.pushesConsumed, routed: 0 };
      before.routed = issuer!.directory!.stats.routed;
      const messagesBefore = issuer!.bus.stats.messagesPublished;
      const pushes: Promise<void>[] = [];
      for (let i = 0; i < 200; i++) pushes.push(issuer!.api.sendToUid(i % 2 === 0 ? 'alice' : 'bob', `m${i}`));
      await Promise.all(pushes);
      await onA.client.until(() => onA.client.texts().length === 101, 5000, '100 pushes to alice');
      await onB.client.until(() => onB.client.texts().length === 101, 5000, '100 pushes to bob');
      assert.deepEqual(
        onA.client.texts().slice(1),
        Array.from({ length: 100 }, (_, i) => `m${2 * i}`),
      );
      assert.deepEqual(
        onB.client.texts().slice(1),
        Array.from({ length: 100 }, (_, i) => `m${2 * i + 1}`),
      );
      assert.equal(issuer!.directory!.stats.routed - before.routed, 200, 'all 200 routed by the directory');
      assert.equal(a!.bus.stats.pushesConsumed - before.a, 100, "node A consumed only alice's pushes");
      assert.equal(b!.bus.stats.pushesConsumed - before.b, 100, "node B consumed only bob's pushes");
      // One turn: one message per node (maxCommandsPerMessage allowing), not one per push.
      const messages = issuer!.bus.stats.messagesPublished - messagesBefore;
      assert.ok(messages <= 4, `200 pushes of one turn in ${messages} broker messages`);
      t.diagnostic(`[directory] 200 pushes of one turn to 2 nodes in ${messages} broker messages`);
      assert.deepEqual(issuer!.bus.desiredKeys().includes(nodeKey(a!.identity.instance)), false);
      const metrics = await (await fetch(`http://127.0.0.1:${issuer!.adminPort}/metrics`)).text();
      assert.match(metrics, /^gatewire_directory_routing\{[^}]*\} 1$/m);
      const routed = /^gatewire_directory_sends_total\{path="directory"[^}]*\} (\d+)$/m.exec(metrics);
      assert.ok(Number(routed?.[1]) >= 200, `gatewire_directory_sends_total{path="directory"}: ${routed?.[1]}`);
    });

    test('bindUid and joinGroup resolve once every node knows: a push right after reaches the client', async (t) => {
      const { opened, values } = fixture(t);
      const [issuer, a, b] = await routingNodes(opened, values, 3);
      const onA = await connectWs(opened, a!);
      const onB = await connectWs(opened, b!);
      const rounds = 30;
      for (let i = 0; i < rounds; i++) {
        // one holder, then a second holder on another node for the same uid and group
        await a!.api.bindUid(onA.id, `u${i}`);
        await issuer!.api.sendToUid(`u${i}`, `a${i}`);
        await b!.api.bindUid(onB.id, `u${i}`);
        await issuer!.api.sendToUid(`u${i}`, `ab${i}`);
        await b!.api.joinGroup(onB.id, `g${i}`);
        await issuer!.api.sendToGroup(`g${i}`, `g${i}`);
        await a!.api.unbindUid(onA.id, `u${i}`);
      }
      await onA.client.until(() => onA.client.texts().length === 1 + 2 * rounds, 5000, 'pushes on A');
      await onB.client.until(() => onB.client.texts().length === 1 + 2 * rounds, 5000, 'pushes on B');
      assert.deepEqual(
        onA.client.texts().slice(1),
        Array.from({ length: rounds }, (_, i) => [`a${i}`, `ab${i}`]).flat(),
      );
      assert.deepEqual(
        onB.client.texts().slice(1),
        Array.from({ length: rounds }, (_, i) => [`ab${i}`, `g${i}`]).flat(),
      );
      assert.ok(issuer!.directory!.stats.routed >= 3 * rounds, 'routed by the directory');
    });

    test('isUidOnline and getAllUidCount come from the directory; a stopped node is dropped', async (t) => {
      const { opened, values } = fixture(t);
      const [issuer, a, b] = await routingNodes(opened, values, 3);
      const onA = await connectWs(opened, a!);
      const onB = await connectWs(opened, b!);
      await a!.api.bindUid(onA.id, 'carol');
      await b!.api.bindUid(onB.id, 'dave');
      const dir = issuer!.directory!;
      assert.equal(dir.holdsKey(uidKey('carol', { uidBuckets: 0, groupBuckets: 0 })), true);
      assert.equal(await issuer!.api.isUidOnline('carol'), true);
      assert.equal(await issuer!.api.isUidOnline('nobody'), false);
      assert.equal(await issuer!.api.getAllUidCount(), 2);
      await b!.stop();
      await waitFor(() => dir.holdsKey('u.dave') === false, 5000, 'dave offline in the directory');
      assert.equal(await issuer!.api.isUidOnline('dave'), false);
      assert.equal(await issuer!.api.getAllUidCount(), 1);
    });
  });
}

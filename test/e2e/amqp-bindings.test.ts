/**
 * The AMQP bus on a real RabbitMQ: which keys a node's queue has bound (read back with
 * rabbitmqctl list_bindings), and that a push sent right after bindUid/joinGroup resolved
 * reaches the client from another node, in both modes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../helpers/nodes.js';
import { amqpValues, boundKeys, closeConnections, listBindings } from '../helpers/amqp.js';
import { amqpFixture, connectEach, connectWs, inbox, sorted, startPair } from '../helpers/fixtures.js';
import { amqpOf } from '../helpers/transports.js';
import type { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js';
import type { GatewireNode } from '../../src/node.js';
import { bucketOf } from '../../src/transport/bus.js';

const amqpBus = (node: GatewireNode): AmqpTransport => amqpOf(node.bus);

/** The keys bound to the node's current queue. */
function keysOf(node: GatewireNode): Promise<string[]> {
  const bus = amqpBus(node);
  return boundKeys(bus.exchange, bus.queue);
}

function baseKeys(node: GatewireNode): string[] {
  return sorted([`n.${node.bus.instance}`, 'all']);
}

async function waitForKeys(node: GatewireNode, expected: string[], what: string): Promise<void> {
  let last: string[] = [];
  await waitFor(
    async () => {
      last = await keysOf(node);
      return JSON.stringify(last) === JSON.stringify(sorted(expected));
    },
    20_000,
    `${what} (last seen: ${JSON.stringify(last)})`,
  );
}

test('direct mode: uid and group keys are bound only while the node holds a holder; reads never bind', async (t) => {
  const { opened, prefix } = amqpFixture(t, 'gw-amqp-bind');
  const [a, b] = await startPair(opened, amqpValues(prefix, 'direct'));
  const exchange = amqpBus(a).exchange;
  assert.equal(exchange, `${prefix}.direct`);

  // At start: only the node key and the broadcast key, and only on the two queues.
  assert.deepEqual(await keysOf(a), baseKeys(a));
  assert.deepEqual(await keysOf(b), baseKeys(b));
  assert.deepEqual(
    sorted((await listBindings(exchange)).map((x) => x.destination)),
    sorted([amqpBus(a).queue, amqpBus(a).queue, amqpBus(b).queue, amqpBus(b).queue]),
  );

  // uid: bound on the first local holder (asked from the other node), kept while one remains.
  const [c1, c2] = await connectEach(opened, a, ['ws', 'ws']);
  await b.api.bindUid(c1.id, 'alice');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), 'u.alice']));
  assert.deepEqual(await keysOf(b), baseKeys(b), 'the asking node binds nothing');
  await a.api.bindUid(c2.id, 'alice');
  await b.api.unbindUid(c1.id, 'alice');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), 'u.alice']), 'still bound: c2 holds alice');
  await b.api.sendToUid('alice', 'for alice');
  assert.deepEqual(await inbox(b, c1, c2), [[], ['for alice']]);
  c2.client.close();
  await waitForKeys(a, baseKeys(a), 'u.alice unbound after its last client closed');

  // group: bound on the first member, kept while one remains, unbound on the last leave/close.
  const [c3, c4] = await connectEach(opened, a, ['ws', 'ws']);
  await b.api.joinGroup(c3.id, 'room');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), 'g.room']));
  await a.api.joinGroup(c4.id, 'room');
  await b.api.leaveGroup(c3.id, 'room');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), 'g.room']), 'still bound: c4 is a member');
  await b.api.sendToGroup('room', 'for room');
  assert.deepEqual(await inbox(b, c3, c4), [[], ['for room']]);
  await b.api.leaveGroup(c4.id, 'room');
  await waitForKeys(a, baseKeys(a), 'g.room unbound after its last member left');
  await a.api.joinGroup(c4.id, 'room2');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), 'g.room2']));
  c4.client.close();
  await waitForKeys(a, baseKeys(a), 'g.room2 unbound after its last member closed');

  // Reads, from both nodes, about bound and unknown uids and groups, bind nothing anywhere.
  const c5 = await connectWs(opened, a);
  await a.api.bindUid(c5.id, 'carol');
  await a.api.joinGroup(c5.id, 'lobby');
  const before = { a: await keysOf(a), b: await keysOf(b), all: (await listBindings(exchange)).length };
  assert.deepEqual(before.a, sorted([...baseKeys(a), 'u.carol', 'g.lobby']));
  for (const node of [a, b]) {
    assert.equal(await node.api.isUidOnline('bob'), false);
    assert.equal(await node.api.isUidOnline('carol'), true);
    assert.deepEqual(await node.api.getClientIdByUid('dave'), []);
    assert.deepEqual(await node.api.isUidsOnline(['carol', 'erin']), { carol: true, erin: false });
    assert.equal(await node.api.getClientCountByGroup('nogroup'), 0);
    assert.deepEqual(await node.api.getClientIdListByGroup('lobby'), [c5.id]);
    assert.deepEqual(await node.api.getUidListByGroup('other'), []);
    assert.equal(await node.api.isOnline(c5.id), true);
    assert.equal(await node.api.getUidByClientId(c5.id), 'carol');
    await node.api.getAllUidList();
    await node.api.getAllGroupIdList();
  }
  assert.deepEqual({ a: await keysOf(a), b: await keysOf(b), all: (await listBindings(exchange)).length }, before);
});

test('direct mode with buckets: one key per bucket, bound while any uid or group of it is held, filtered on the node', async (t) => {
  const { opened, prefix } = amqpFixture(t, 'gw-amqp-bucket');
  const [a, b] = await startPair(opened, amqpValues(prefix, 'direct', { uidBuckets: 4, groupBuckets: 4 }));

  // Two uids in the same bucket, one in another.
  const same = [
    'alice',
    ...['bob', 'carol', 'dave', 'erin', 'frank', 'grace'].filter((u) => bucketOf(u, 4) === bucketOf('alice', 4)),
  ][1];
  assert.ok(same, "some uid shares alice's bucket");
  const bucket = `ub.${bucketOf('alice', 4)}`;
  const [c1, c2] = await connectEach(opened, a, ['ws', 'ws']);
  await b.api.bindUid(c1.id, 'alice');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), bucket]));
  await b.api.bindUid(c2.id, same);
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), bucket]), 'one key for both uids');

  // The bucket brings the node both uids' pushes; it delivers each only to its own uid.
  await b.api.sendToUid('alice', 'for alice');
  await b.api.sendToUid(same, `for ${same}`);
  assert.deepEqual(await inbox(b, c1, c2), [['for alice'], [`for ${same}`]]);

  await b.api.unbindUid(c1.id, 'alice');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), bucket]), `still bound: ${same} is held`);
  await b.api.unbindUid(c2.id, same);
  await waitForKeys(a, baseKeys(a), 'bucket key unbound after its last uid left');

  await b.api.joinGroup(c1.id, 'room');
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), `gb.${bucketOf('room', 4)}`]));
  await b.api.sendToGroup('room', 'for room');
  assert.deepEqual(await inbox(b, c1, c2), [['for room'], []]);
});

for (const mode of ['direct', 'fanout'] as const) {
  test(`${mode} mode: bindUid/joinGroup on node A, then an immediate push from node B reaches the client`, async (t) => {
    const { opened, prefix } = amqpFixture(t, `gw-amqp-imm-${mode}`);
    const [a, b] = await startPair(opened, amqpValues(prefix, mode));
    // Fresh clients, uids and groups every round, so every bind is a first bind (a new key) and
    // no later rebind can race with a push still on its way.
    const local: Awaited<ReturnType<typeof connectWs>>[] = [];
    const remote: Awaited<ReturnType<typeof connectWs>>[] = [];
    for (let i = 0; i < 25; i++) {
      const l = await connectWs(opened, a);
      local.push(l);
      await a.api.bindUid(l.id, `uid-${i}`);
      await b.api.sendToUid(`uid-${i}`, `uid push ${i}`);
      await a.api.joinGroup(l.id, `group-${i}`);
      await b.api.sendToGroup(`group-${i}`, `group push ${i}`);
      // Asked from B: B's bindUid/joinGroup resolve after A confirmed the bind.
      const r = await connectWs(opened, a);
      remote.push(r);
      await b.api.bindUid(r.id, `remote-${i}`);
      await b.api.sendToUid(`remote-${i}`, `remote uid push ${i}`);
      await b.api.joinGroup(r.id, `remote-group-${i}`);
      await b.api.sendToGroup(`remote-group-${i}`, `remote group push ${i}`);
    }
    const got = await inbox(b, ...local, ...remote);
    assert.deepEqual(got, [
      ...local.map((_, i) => [`uid push ${i}`, `group push ${i}`]),
      ...remote.map((_, i) => [`remote uid push ${i}`, `remote group push ${i}`]),
    ]);
  });
}

test('direct mode: after a lost connection the surviving queue keeps its bindings; only what changed meanwhile is bound or unbound', async (t) => {
  const { opened, prefix } = amqpFixture(t, 'gw-amqp-blip');
  const [a, b] = await startPair(opened, amqpValues(prefix, 'direct'));
  const bus = amqpBus(a);
  const clients = await connectEach(opened, a, ['ws', 'ws', 'ws', 'ws', 'ws']);
  for (const [i, c] of clients.entries()) await a.api.bindUid(c.id, `user-${i}`);
  const queueBefore = bus.queue;
  const uidKeys = clients.map((_, i) => `u.user-${i}`);
  assert.deepEqual(await keysOf(a), sorted([...baseKeys(a), ...uidKeys]));
  const { bound: boundBefore, kept: keptBefore } = { ...bus.bindingStats };

  const reconnects = a.bus.stats.reconnects;
  assert.equal(await closeConnections([bus.connectionName]), 1);
  await waitFor(() => !a.bus.isConnected, 10_000, 'A saw its connection go');
  // While A is away: user-0's client leaves, a new client takes user-9 (kept until the reconnect).
  clients[0]!.client.close();
  const late = await connectWs(opened, a);
  const lateBind = a.api.bindUid(late.id, 'user-9');
  await waitFor(() => a.bus.stats.reconnects > reconnects && a.bus.isConnected, 20_000, 'A reconnected');
  await lateBind;

  assert.equal(bus.queue, queueBefore, 'the same queue');
  const expected = sorted([...baseKeys(a), ...uidKeys.slice(1), 'u.user-9']);
  await waitForKeys(a, expected, 'user-0 unbound, user-9 bound, the rest untouched');
  assert.equal(bus.bindingStats.bound - boundBefore, 1, 'one queue.bind after the reconnect: user-9');
  assert.equal(bus.bindingStats.kept - keptBefore, 6, 'n.<A>, all and user-1..4 found in place');
  await b.api.sendToUid('user-3', 'after');
  await b.api.sendToUid('user-9', 'late');
  assert.deepEqual(await inbox(b, clients[3]!, late), [['after'], ['late']]);
});

/**
 * Binding, closing, sessions, online checks and every count/list method of DESIGN §2, on one
 * node and on three nodes in one process (local bus) where the queries must be exact across
 * nodes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GatewireNode } from '../../src/node.js';
import { waitFor, waitForMembership } from '../helpers/nodes.js';
import {
  connectEach,
  oneNode,
  connectTcp,
  connectWs,
  inbox,
  openFor,
  sorted,
  startNodes,
} from '../helpers/fixtures.js';

const LISTEN = ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'];

test('bindUid: rebinding replaces the uid; a uid has several clients; bound uids go with the client', async (t) => {
  const { opened, node, api } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b, c] = await connectEach(opened, node, ['ws', 'tcp', 'ws']);

  await api.bindUid(a.id, 'u1');
  assert.equal(await api.getUidByClientId(a.id), 'u1');
  await api.bindUid(a.id, 'u2');
  assert.equal(await api.getUidByClientId(a.id), 'u2');
  assert.deepEqual(await api.getClientIdByUid('u1'), []);
  assert.equal(await api.isUidOnline('u1'), false);
  await api.sendToUid('u1', 'to u1');
  await api.sendToUid('u2', 'to u2');
  assert.deepEqual(await inbox(node, a), [['to u2']]);

  // binding the same uid again changes nothing
  await api.bindUid(a.id, 'u2');
  await api.bindUid(b.id, 'u2');
  await api.bindUid(c.id, 7);
  assert.deepEqual(sorted(await api.getClientIdByUid('u2')), sorted([a.id, b.id]));
  assert.deepEqual(await api.getClientIdByUid(7), [c.id]);
  assert.deepEqual(await api.getClientIdByUid('7'), [c.id]);
  assert.equal(await api.getUidByClientId(c.id), '7');
  assert.equal(await api.isUidOnline('u2'), true);
  assert.equal(await api.getAllUidCount(), 2);

  // unbindUid ignores its uid argument, as in GatewayWorker: the client's uid goes
  await api.unbindUid(b.id, 'not-its-uid');
  assert.equal(await api.getUidByClientId(b.id), null);
  assert.deepEqual(await api.getClientIdByUid('u2'), [a.id]);
  await api.sendToUid('u2', 'to u2 again');
  assert.deepEqual(await inbox(node, a, b), [['to u2 again'], []]);

  // a closed client's uid is released
  a.client.close();
  await a.client.waitClosed();
  await waitFor(async () => (await api.getClientIdByUid('u2')).length === 0, 5000, 'u2 released');
  assert.equal(await api.isUidOnline('u2'), false);
  assert.deepEqual(await api.getAllUidList(), ['7']);
  assert.equal(await api.getUidByClientId(a.id), null);
});

test('joinGroup, leaveGroup and ungroup', async (t) => {
  const { opened, node, api } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b, c] = await connectEach(opened, node, ['ws', 'tcp', 'ws']);

  await api.joinGroup(a.id, 'room');
  await api.joinGroup(a.id, 'room'); // twice is once
  await api.joinGroup(b.id, 'room');
  await api.joinGroup(b.id, 'lobby');
  await api.joinGroup(c.id, 'lobby');
  assert.equal(await api.getClientCountByGroup('room'), 2);
  assert.deepEqual(sorted(await api.getAllGroupIdList()), ['lobby', 'room']);

  await api.leaveGroup(b.id, 'room');
  await api.leaveGroup(c.id, 'room'); // not a member: nothing happens
  assert.deepEqual(await api.getClientIdListByGroup('room'), [a.id]);
  await api.sendToGroup('room', 'to room');
  assert.deepEqual(await inbox(node, a, b, c), [['to room'], [], []]);

  await api.ungroup('lobby');
  assert.deepEqual(await api.getAllGroupIdList(), ['room']);
  assert.equal(await api.getClientCountByGroup('lobby'), 0);
  await api.sendToGroup('lobby', 'to lobby');
  assert.deepEqual(await inbox(node, a, b, c), [[], [], []]);
  // the members stay connected, and can join again
  assert.equal(await api.getAllClientCount(), 3);
  await api.joinGroup(c.id, 'lobby');
  await api.sendToGroup('lobby', 'lobby again');
  assert.deepEqual(await inbox(node, a, b, c), [[], [], ['lobby again']]);

  // leaving the last group of a name removes the name
  await api.leaveGroup(a.id, 'room');
  assert.deepEqual(await api.getAllGroupIdList(), ['lobby']);
  // groups of a closed client are released
  c.client.close();
  await c.client.waitClosed();
  await waitFor(async () => (await api.getAllGroupIdList()).length === 0, 5000, 'lobby released');
  await api.ungroup('never-existed');
});

test('closeClient(data) flushes what is queued, sends data, then closes (ws and tcp)', async (t) => {
  const { opened, node, api } = await oneNode(t, { gateway: { listen: LISTEN } });
  const ws = await connectWs(opened, node);
  const tcp = await connectTcp(opened, node);
  const other = await connectWs(opened, node);

  // Queued in the same turn as the close: they go out first, then the goodbye, then the close.
  await Promise.all([api.sendToClient(ws.id, 'one'), api.sendToClient(ws.id, 'two'), api.closeClient(ws.id, 'bye')]);
  await Promise.all([api.sendToClient(tcp.id, 'one'), api.sendToClient(tcp.id, 'two'), api.closeClient(tcp.id, 'bye')]);
  await ws.client.waitClosed();
  await tcp.client.waitClosed();
  assert.deepEqual(ws.client.texts().slice(1), ['one', 'two', 'bye']);
  assert.equal(ws.client.closeCode, 1000);
  assert.deepEqual(tcp.client.texts().slice(1), ['one', 'two', 'bye']);

  // bytes as the goodbye stay binary; no data closes without a message
  const ws2 = await connectWs(opened, node);
  await api.closeClient(ws2.id, Buffer.from([1, 2, 3]));
  await ws2.client.waitClosed();
  assert.deepEqual(ws2.client.received.slice(1), [{ data: Buffer.from([1, 2, 3]), binary: true }]);
  const ws3 = await connectWs(opened, node);
  await api.closeClient(ws3.id);
  await ws3.client.waitClosed();
  assert.equal(ws3.client.received.length, 1);
  assert.equal(ws3.client.closeCode, 1000);

  await waitFor(async () => (await api.getAllClientCount()) === 1, 5000, 'closed clients gone');
  assert.deepEqual(await api.getAllClientIdList(), [other.id]);
  assert.deepEqual(await inbox(node, other), [[]]);
});

test('destroyClient drops the connection at once; closeUid closes every client of the uid', async (t) => {
  const { opened, node, api } = await oneNode(t, { gateway: { listen: LISTEN } });
  const ws = await connectWs(opened, node);
  const tcp = await connectTcp(opened, node);
  // pushed in the same turn, before the destroy: dropped with the connection, not flushed
  await Promise.all([api.sendToClient(ws.id, 'lost'), api.destroyClient(ws.id)]);
  await Promise.all([api.sendToClient(tcp.id, 'lost'), api.destroyClient(tcp.id)]);
  await ws.client.waitClosed();
  await tcp.client.waitClosed();
  assert.deepEqual(ws.client.texts().slice(1), []);
  assert.deepEqual(tcp.client.texts().slice(1), []);
  // no close handshake: the ws client sees an abnormal closure
  assert.equal(ws.client.closeCode, 1006);
  assert.equal(await api.isOnline(ws.id), false);
  assert.equal(await api.isOnline(tcp.id), false);

  const [a, b, c] = await connectEach(opened, node, ['ws', 'tcp', 'ws']);
  await api.bindUid(a.id, 'u');
  await api.bindUid(b.id, 'u');
  await api.bindUid(c.id, 'v');
  await api.closeUid('u', 'kicked');
  await a.client.waitClosed();
  await b.client.waitClosed();
  assert.deepEqual(a.client.texts().slice(1), ['kicked']);
  assert.equal(a.client.closeCode, 1000);
  assert.deepEqual(b.client.texts().slice(1), ['kicked']);
  await api.closeUid('nobody');
  assert.deepEqual(await inbox(node, c), [[]]);
  await waitFor(async () => (await api.getAllClientCount()) === 1, 5000, 'uid u closed');
  assert.equal(await api.isUidOnline('u'), false);
  assert.equal(await api.isUidOnline('v'), true);
});

test('setSession replaces, updateSession merges (nested objects merge), getSession (null when offline)', async (t) => {
  const { opened, node, api } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b] = await connectEach(opened, node, ['ws', 'tcp']);

  assert.deepEqual(await api.getSession(a.id), {});
  await api.setSession(a.id, { name: 'ann', prefs: { theme: 'dark', lang: 'en' }, tags: [1, 2, 3] });
  assert.deepEqual(await api.getSession(a.id), { name: 'ann', prefs: { theme: 'dark', lang: 'en' }, tags: [1, 2, 3] });
  await api.setSession(a.id, { only: true });
  assert.deepEqual(await api.getSession(a.id), { only: true });

  await api.setSession(b.id, { name: 'bob', prefs: { theme: 'dark', deep: { x: 1, y: 2 } }, tags: [1, 2, 3], n: 1 });
  await api.updateSession(b.id, { prefs: { lang: 'fr', deep: { y: 3 } }, tags: [9], n: null, extra: 'yes' });
  assert.deepEqual(await api.getSession(b.id), {
    name: 'bob',
    prefs: { theme: 'dark', deep: { x: 1, y: 3 }, lang: 'fr' },
    tags: [9],
    n: null,
    extra: 'yes',
  });
  // a session replaced by a scalar field, and the other way round
  await api.updateSession(b.id, { prefs: 'none' });
  assert.equal((await api.getSession(b.id))!.prefs, 'none');
  await api.updateSession(b.id, { prefs: { back: 1 } });
  assert.deepEqual((await api.getSession(b.id))!.prefs, { back: 1 });
  // updating an empty session is setting it
  await api.setSession(a.id, {});
  await api.updateSession(a.id, { k: { v: 1 } });
  assert.deepEqual(await api.getSession(a.id), { k: { v: 1 } });

  // The session is the gateway's: neither the object a caller passed in nor the one a query
  // returned is kept by reference (in one process as across nodes).
  const mine = { counter: 1, nested: { v: 1 } };
  await api.setSession(a.id, mine);
  mine.counter = 2;
  mine.nested.v = 2;
  assert.deepEqual(await api.getSession(a.id), { counter: 1, nested: { v: 1 } });
  const update = { nested: { w: 1 } };
  await api.updateSession(a.id, update);
  update.nested.w = 2;
  const got = (await api.getSession(a.id)) as { nested: { v: number; w?: number }; added?: boolean };
  assert.deepEqual(got, { counter: 1, nested: { v: 1, w: 1 } });
  got.nested.v = 3;
  (got as Record<string, unknown>).added = true;
  const all = await api.getAllClientSessions();
  (all[a.id] as { counter: number }).counter = 99;
  assert.deepEqual(await api.getSession(a.id), { counter: 1, nested: { v: 1, w: 1 } });

  assert.deepEqual(await api.getAllClientSessions(), {
    [a.id]: { counter: 1, nested: { v: 1, w: 1 } },
    [b.id]: await api.getSession(b.id),
  });

  a.client.close();
  await a.client.waitClosed();
  await waitFor(async () => (await api.getSession(a.id)) === null, 5000, 'session gone with the client');
  assert.equal(await api.getSession(`${node.identity.instance}zzzz`), null);
});

test('isOnline, isUidOnline, getClientIdByUid, getUidByClientId and their batch forms', async (t) => {
  const { opened, node, api } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b, c] = await connectEach(opened, node, ['ws', 'ws', 'tcp']);
  await api.bindUid(a.id, 'x');
  await api.bindUid(b.id, 'x');
  await api.bindUid(c.id, 3);

  assert.equal(await api.isOnline(a.id), true);
  assert.equal(await api.isOnline(`${node.identity.instance}zzzz`), false);
  assert.equal(await api.isOnline('zzzzzzzzzzzz1'), false);
  assert.equal(await api.isUidOnline('x'), true);
  assert.equal(await api.isUidOnline(3), true);
  assert.equal(await api.isUidOnline('y'), false);
  assert.equal(await api.getUidByClientId(c.id), '3');
  assert.equal(await api.getUidByClientId('zzzzzzzzzzzz1'), null);

  assert.deepEqual(await api.isUidsOnline(['x', 'y', 3]), { x: true, y: false, 3: true });
  const batch = await api.batchGetClientIdByUid(['x', 'y', 3]);
  assert.deepEqual(Object.keys(batch).sort(), ['3', 'x', 'y']);
  assert.deepEqual(sorted(batch.x!), sorted([a.id, b.id]));
  assert.deepEqual(batch.y, []);
  assert.deepEqual(batch['3'], [c.id]);
  assert.deepEqual(await api.isUidsOnline([]), {});
  assert.deepEqual(await api.batchGetClientIdByUid([]), {});
});

interface Scene {
  a: string;
  b: string;
  c: string;
  d: string;
  e: string;
}

/**
 * The same scene on one node or spread over nodes:
 *   a: uid u1, groups g1          (session {n:'a'})
 *   b: uid u1, groups g1, g2      (session {n:'b'})
 *   c: uid u2, groups g2
 *   d: no uid, groups g2          (session {n:'d', deep:{k:1}})
 *   e: no uid, no group
 */
async function checkCountsAndLists(api: GatewireNode['api'], s: Scene): Promise<void> {
  assert.equal(await api.getAllClientCount(), 5);
  assert.deepEqual(sorted(await api.getAllClientIdList()), sorted([s.a, s.b, s.c, s.d, s.e]));
  assert.deepEqual(await api.getAllClientSessions(), {
    [s.a]: { n: 'a' },
    [s.b]: { n: 'b' },
    [s.c]: {},
    [s.d]: { n: 'd', deep: { k: 1 } },
    [s.e]: {},
  });
  assert.deepEqual(sorted(await api.getAllUidList()), ['u1', 'u2']);
  assert.equal(await api.getAllUidCount(), 2);
  assert.deepEqual(sorted(await api.getAllGroupIdList()), ['g1', 'g2']);

  assert.equal(await api.getClientCountByGroup('g1'), 2);
  assert.equal(await api.getClientCountByGroup('g2'), 3);
  assert.equal(await api.getClientCountByGroup('none'), 0);
  assert.deepEqual(sorted(await api.getClientIdListByGroup('g1')), sorted([s.a, s.b]));
  assert.deepEqual(sorted(await api.getClientIdListByGroup('g2')), sorted([s.b, s.c, s.d]));
  assert.deepEqual(await api.getClientIdListByGroup('none'), []);
  assert.deepEqual(await api.getClientSessionsByGroup('g1'), { [s.a]: { n: 'a' }, [s.b]: { n: 'b' } });
  assert.deepEqual(await api.getClientSessionsByGroup('g2'), {
    [s.b]: { n: 'b' },
    [s.c]: {},
    [s.d]: { n: 'd', deep: { k: 1 } },
  });
  assert.deepEqual(await api.getClientSessionsByGroup('none'), {});
  // distinct uids: a and b share u1; d has none
  assert.deepEqual(await api.getUidListByGroup('g1'), ['u1']);
  assert.deepEqual(sorted(await api.getUidListByGroup('g2')), ['u1', 'u2']);
  assert.deepEqual(await api.getUidListByGroup('none'), []);
  assert.equal(await api.getUidCountByGroup('g1'), 1);
  assert.equal(await api.getUidCountByGroup('g2'), 2);
  assert.equal(await api.getUidCountByGroup('none'), 0);
}

async function buildScene(api: GatewireNode['api'], s: Scene): Promise<void> {
  await api.bindUid(s.a, 'u1');
  await api.bindUid(s.b, 'u1');
  await api.bindUid(s.c, 'u2');
  await api.joinGroup(s.a, 'g1');
  await api.joinGroup(s.b, 'g1');
  await api.joinGroup(s.b, 'g2');
  await api.joinGroup(s.c, 'g2');
  await api.joinGroup(s.d, 'g2');
  await api.setSession(s.a, { n: 'a' });
  await api.setSession(s.b, { n: 'b' });
  await api.updateSession(s.d, { n: 'd', deep: { k: 1 } });
}

test('every count and list method on one node', async (t) => {
  const { opened, node, api } = await oneNode(t, { gateway: { listen: LISTEN } });
  assert.equal(await api.getAllClientCount(), 0);
  assert.deepEqual(await api.getAllClientIdList(), []);
  assert.deepEqual(await api.getAllClientSessions(), {});
  assert.deepEqual(await api.getAllUidList(), []);
  assert.equal(await api.getAllUidCount(), 0);
  assert.deepEqual(await api.getAllGroupIdList(), []);

  const [a, b, c, d, e] = (await connectEach(opened, node, ['ws', 'tcp', 'ws', 'tcp', 'ws'])).map((x) => x.id);
  const s: Scene = { a: a!, b: b!, c: c!, d: d!, e: e! };
  await buildScene(api, s);
  await checkCountsAndLists(api, s);
});

test('three nodes on the local bus: binds, sessions, closes and queries are exact across nodes', async (t) => {
  const opened = openFor(t);
  const nodes: GatewireNode[] = [];
  for (let i = 0; i < 3; i++)
    nodes.push(...(await startNodes(opened, 1, { node: { id: `n${i}` }, gateway: { listen: LISTEN } })));
  await waitForMembership(nodes, 3);
  const [n0, n1, n2] = nodes as [GatewireNode, GatewireNode, GatewireNode];

  // a and b share uid u1 but sit on different nodes; the scene is built from n2, which holds
  // only c and e, so most calls travel to the owning node
  const a = await connectWs(opened, n0);
  const b = await connectTcp(opened, n1);
  const c = await connectWs(opened, n2);
  const d = await connectWs(opened, n1);
  const e = await connectTcp(opened, n2);
  const s: Scene = { a: a.id, b: b.id, c: c.id, d: d.id, e: e.id };
  await buildScene(n2.api, s);
  for (const node of nodes) await checkCountsAndLists(node.api, s);

  // online checks and lookups from every node
  for (const node of nodes) {
    assert.equal(await node.api.isOnline(b.id), true);
    assert.equal(await node.api.getUidByClientId(b.id), 'u1');
    assert.deepEqual(sorted(await node.api.getClientIdByUid('u1')), sorted([a.id, b.id]));
    assert.deepEqual(await node.api.getSession(d.id), { n: 'd', deep: { k: 1 } });
    assert.deepEqual(await node.api.isUidsOnline(['u1', 'u2', 'u3']), { u1: true, u2: true, u3: false });
  }

  // pushes from one node reach the clients on the others, once each
  await n1.api.sendToUid('u1', 'u1 from n1');
  await n0.api.sendToGroup(['g1', 'g2'], 'groups from n0', { exclude: c.id });
  await n2.api.sendToAll('all from n2', { exclude: [a.id] });
  assert.deepEqual(await inbox(n0, a, b, c, d, e), [
    ['u1 from n1', 'groups from n0'],
    ['u1 from n1', 'groups from n0', 'all from n2'],
    ['all from n2'],
    ['groups from n0', 'all from n2'],
    ['all from n2'],
  ]);

  // rebinding and session writes from a remote node
  await n2.api.bindUid(a.id, 'u9');
  assert.equal(await n1.api.getUidByClientId(a.id), 'u9');
  assert.deepEqual(await n1.api.getClientIdByUid('u1'), [b.id]);
  await n0.api.updateSession(d.id, { deep: { z: 2 } });
  assert.deepEqual(await n2.api.getSession(d.id), { n: 'd', deep: { k: 1, z: 2 } });
  await n1.api.leaveGroup(b.id, 'g2');
  await n0.api.ungroup('g1');
  for (const node of nodes) {
    assert.deepEqual(await node.api.getAllGroupIdList(), ['g2']);
    assert.deepEqual(sorted(await node.api.getUidListByGroup('g2')), ['u2']);
    assert.equal(await node.api.getClientCountByGroup('g2'), 2);
  }

  // closing from a remote node
  await n0.api.closeClient(c.id, 'bye c');
  await n2.api.destroyClient(b.id);
  await n1.api.closeUid('u9', 'bye u9');
  await c.client.waitClosed();
  await b.client.waitClosed();
  await a.client.waitClosed();
  assert.equal(c.client.texts().at(-1), 'bye c');
  assert.equal(a.client.texts().at(-1), 'bye u9');
  for (const node of nodes) {
    await waitFor(async () => (await node.api.getAllClientCount()) === 2, 5000, 'three clients closed');
    assert.deepEqual(sorted(await node.api.getAllClientIdList()), sorted([d.id, e.id]));
    assert.equal(await node.api.getSession(c.id), null);
    assert.equal(await node.api.isOnline(b.id), false);
    assert.deepEqual(await node.api.getAllUidList(), []);
  }
});

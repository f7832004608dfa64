/**
 * The send methods of DESIGN §2 against real ws and tcp clients: sendToClient, sendToUid,
 * sendToGroup, sendToAll, text vs bytes end to end, and pushes to unknown clients.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectEach, idHandler, inbox, oneNode } from '../helpers/fixtures.js';

const LISTEN = ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text', 'tcp://127.0.0.1:0?protocol=frame'];

test('sendToClient reaches exactly that client (ws and tcp)', async (t) => {
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b, c] = await connectEach(opened, node, ['ws', 'ws', 'tcp']);

  await node.api.sendToClient(a.id, 'to a');
  await node.api.sendToClient(c.id, 'to c');
  await node.api.sendToClient(c.id, 'to c again');
  assert.deepEqual(await inbox(node, a, b, c), [['to a'], [], ['to c', 'to c again']]);
});

test('sendToUid: one uid with several clients, and an array of uids', async (t) => {
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b, c, d, e] = await connectEach(opened, node, ['ws', 'tcp', 'ws', 'ws', 'ws']);
  await node.api.bindUid(a.id, 'alice');
  await node.api.bindUid(b.id, 'alice');
  await node.api.bindUid(c.id, 'bob');
  await node.api.bindUid(d.id, 42);

  await node.api.sendToUid('alice', 'for alice');
  assert.deepEqual(await inbox(node, a, b, c, d, e), [['for alice'], ['for alice'], [], [], []]);

  // A client reached through two of the uids would still get one copy: each client has one uid.
  await node.api.sendToUid(['alice', 'bob', 'nobody'], 'for alice and bob');
  assert.deepEqual(await inbox(node, a, b, c, d, e), [
    ['for alice and bob'],
    ['for alice and bob'],
    ['for alice and bob'],
    [],
    [],
  ]);

  // Integer uids are their decimal string.
  await node.api.sendToUid(42, 'for 42');
  await node.api.sendToUid('42', 'for "42"');
  await node.api.sendToUid([], 'for nobody');
  assert.deepEqual(await inbox(node, a, b, c, d, e), [[], [], [], ['for 42', 'for "42"'], []]);
});

test('sendToGroup: one group, many groups (one copy each), exclude as string and array', async (t) => {
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b, c, d] = await connectEach(opened, node, ['ws', 'ws', 'tcp', 'ws']);
  await node.api.joinGroup(a.id, 'g1');
  await node.api.joinGroup(b.id, 'g1');
  await node.api.joinGroup(b.id, 'g2');
  await node.api.joinGroup(c.id, 'g2');

  await node.api.sendToGroup('g1', 'g1 only');
  assert.deepEqual(await inbox(node, a, b, c, d), [['g1 only'], ['g1 only'], [], []]);

  await node.api.sendToGroup(['g1', 'g2'], 'g1 and g2');
  assert.deepEqual(await inbox(node, a, b, c, d), [['g1 and g2'], ['g1 and g2'], ['g1 and g2'], []]);

  await node.api.sendToGroup('g1', 'g1 but a', { exclude: a.id });
  assert.deepEqual(await inbox(node, a, b, c, d), [[], ['g1 but a'], [], []]);

  await node.api.sendToGroup(['g1', 'g2'], 'both but a and c', { exclude: [a.id, c.id] });
  assert.deepEqual(await inbox(node, a, b, c, d), [[], ['both but a and c'], [], []]);

  await node.api.sendToGroup(['g2', 'g1', 'g2'], 'repeated names', { exclude: [] });
  await node.api.sendToGroup('nosuchgroup', 'to an empty group');
  assert.deepEqual(await inbox(node, a, b, c, d), [['repeated names'], ['repeated names'], ['repeated names'], []]);
});

test('sendToAll: everyone, only clientIds, with exclude', async (t) => {
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b, c, d] = await connectEach(opened, node, ['ws', 'tcp', 'ws', 'ws']);

  await node.api.sendToAll('all');
  assert.deepEqual(await inbox(node, a, b, c, d), [['all'], ['all'], ['all'], ['all']]);

  await node.api.sendToAll('a and c', { clientIds: [a.id, c.id] });
  assert.deepEqual(await inbox(node, a, b, c, d), [['a and c'], [], ['a and c'], []]);

  await node.api.sendToAll('all but b', { exclude: b.id });
  await node.api.sendToAll('all but b and d', { exclude: [b.id, d.id] });
  assert.deepEqual(await inbox(node, a, b, c, d), [
    ['all but b', 'all but b and d'],
    [],
    ['all but b', 'all but b and d'],
    ['all but b'],
  ]);

  // a client listed twice gets one copy (GatewayWorker keys the list by client id)
  await node.api.sendToAll('listed twice', { clientIds: [a.id, a.id, b.id] });
  assert.deepEqual(await inbox(node, a, b, c, d), [['listed twice'], ['listed twice'], [], []]);

  await node.api.sendToAll('listed but not excluded', { clientIds: [a.id, b.id, c.id], exclude: [b.id] });
  await node.api.sendToAll('empty list', { clientIds: [] });
  assert.deepEqual(await inbox(node, a, b, c, d), [['listed but not excluded'], [], ['listed but not excluded'], []]);
});

test('text stays text and bytes stay binary: ws frames, tcp frame protocol, tcp text', async (t) => {
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [ws, frame, line] = await connectEach(opened, node, ['ws', 'frame', 'tcp']);
  // bytes that are not UTF-8 and contain a newline and a zero
  const bytes = Buffer.from([0x00, 0x01, 0x0a, 0xff, 0xfe, 0x80]);

  await node.api.sendToClient(ws.id, 'héllo ✓');
  await node.api.sendToClient(ws.id, bytes);
  await node.api.sendToClient(ws.id, new Uint8Array([7, 8, 9]));
  await node.api.sendToClient(ws.id, new Uint8Array([5, 6]).buffer);
  await node.api.sendToClient(ws.id, '');
  await ws.client.until(() => ws.client.received.length >= 6);
  assert.deepEqual(
    ws.client.received.slice(1).map((r) => ({ binary: r.binary, data: r.binary ? [...(r.data as Buffer)] : r.data })),
    [
      { binary: false, data: 'héllo ✓' },
      { binary: true, data: [...bytes] },
      { binary: true, data: [7, 8, 9] },
      { binary: true, data: [5, 6] },
      { binary: false, data: '' },
    ],
  );

  // The frame protocol carries the exact bytes, length-prefixed; text is its UTF-8 bytes.
  await node.api.sendToClient(frame.id, bytes);
  await node.api.sendToClient(frame.id, 'héllo ✓');
  await node.api.sendToClient(frame.id, Buffer.alloc(0));
  await frame.client.until(() => frame.client.received.length >= 4);
  const frameIn = frame.client.received.slice(1).map((r) => r.data as Buffer);
  assert.deepEqual(frameIn, [bytes, Buffer.from('héllo ✓', 'utf8'), Buffer.alloc(0)]);

  // One broadcast of bytes: binary to ws, exact bytes to frame, a line to text clients.
  const blob = Buffer.from('blob\u0000data', 'utf8');
  await node.api.sendToAll(blob);
  await ws.client.until(() => ws.client.received.length >= 7);
  const last = ws.client.received[6]!;
  assert.equal(last.binary, true);
  assert.deepEqual(last.data, blob);
  await frame.client.until(() => frame.client.received.length >= 5);
  assert.deepEqual(frame.client.received[4]!.data, blob);
  await line.client.until(() => line.client.received.length >= 2);
  assert.equal(line.client.received[1]!.data, 'blob\u0000data');
});

test('the same text to many uids, call by call; one Buffer changed between sends arrives as it was at each', async (t) => {
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, b] = await connectEach(opened, node, ['ws', 'frame']);
  await node.api.bindUid(a.id, 'alice');
  await node.api.bindUid(b.id, 'bob');

  // Adjacent sends of one text travel merged and are framed once; each client still gets its copy,
  // in order with what came before and after.
  await Promise.all([
    node.api.sendToUid('alice', 'first'),
    node.api.sendToUid('alice', 'news'),
    node.api.sendToUid('bob', 'news'),
    node.api.sendToUid('alice', 'news'),
    node.api.sendToUid('bob', 'last'),
  ]);
  assert.deepEqual(await inbox(node, a), [['first', 'news', 'news']]);
  await b.client.until(() => b.client.received.length >= 3);
  assert.deepEqual(
    b.client.received.slice(1).map((r) => String(r.data)),
    ['news', 'last'],
  );

  // An application that reuses one Buffer: each send carries what it held when that send went out.
  const buffer = Buffer.from('v1');
  await node.api.sendToUid('alice', buffer);
  buffer.write('v2');
  await node.api.sendToUid('alice', buffer);
  // received: the id greeting, first, news, news, the inbox marker, then these two
  await a.client.until(() => a.client.received.length >= 7);
  assert.deepEqual(
    a.client.received.slice(5).map((r) => ({ binary: r.binary, data: String(r.data) })),
    [
      { binary: true, data: 'v1' },
      { binary: true, data: 'v2' },
    ],
  );
});

test('what a client sends keeps its kind on the way in, and back out (echo)', async (t) => {
  const seen: { kind: string; value: string }[] = [];
  const { opened, node } = await oneNode(
    t,
    { gateway: { listen: LISTEN } },
    {
      handler: idHandler({
        async onMessage(clientId, message, { gateway }) {
          seen.push(
            typeof message === 'string'
              ? { kind: 'string', value: message }
              : {
                  kind: Buffer.isBuffer(message) ? 'buffer' : 'uint8array',
                  value: Buffer.from(message).toString('hex'),
                },
          );
          await gateway.sendToClient(clientId, message);
        },
      }),
    },
  );
  const [ws, frame, line] = await connectEach(opened, node, ['ws', 'frame', 'tcp']);

  ws.client.send('text in');
  assert.deepEqual(await ws.client.next(), { data: 'text in', binary: false });
  ws.client.send(Buffer.from([1, 2, 0xff]));
  assert.deepEqual(await ws.client.next(), { data: Buffer.from([1, 2, 0xff]), binary: true });
  frame.client.send(Buffer.from([0x0a, 0x00, 0xff]));
  assert.deepEqual((await frame.client.next()).data, Buffer.from([0x0a, 0x00, 0xff]));
  line.client.send('a line');
  assert.equal(await line.client.nextText(), 'a line');

  assert.deepEqual(seen, [
    { kind: 'string', value: 'text in' },
    { kind: 'buffer', value: '0102ff' },
    { kind: 'buffer', value: '0a00ff' },
    { kind: 'string', value: 'a line' },
  ]);
});

test('pushes to unknown (well-formed) clientIds are dropped silently; calls for a client of no live node reject; the node goes on', async (t) => {
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN } });
  const [a, gone] = await connectEach(opened, node, ['ws', 'ws']);
  gone.client.close();
  await gone.client.waitClosed();
  const goneId = gone.id;
  // the same node, a connection number never handed out
  const unknownHere = `${node.identity.instance}zzzzzz`;
  // a node that does not exist
  const unknownNode = 'zzzzzzzzzzzz1';
  await node.api.sendToAll('wait for close', { clientIds: [a.id] });
  await a.client.waitForText('wait for close');
  assert.equal(await node.api.isOnline(goneId), false);

  for (const id of [goneId, unknownHere, unknownNode]) {
    await node.api.sendToClient(id, 'lost');
    await node.api.closeClient(id, 'lost');
    await node.api.destroyClient(id);
    if (id === unknownNode) {
      // No live node holds it: the calls cannot take effect, and say so (a node taken for dead
      // may still hold the client, frozen: resolving would claim an effect that never happens).
      const unreachable = (err: unknown): boolean => (err as { code?: string }).code === 'GW_ERR_NODE_UNREACHABLE';
      await assert.rejects(node.api.bindUid(id, 'ghost'), unreachable);
      await assert.rejects(node.api.joinGroup(id, 'ghosts'), unreachable);
      await assert.rejects(node.api.setSession(id, { x: 1 }), unreachable);
    } else {
      // Its node is live and answers: the client is gone, so there is nothing to do.
      await node.api.bindUid(id, 'ghost');
      await node.api.joinGroup(id, 'ghosts');
      await node.api.setSession(id, { x: 1 });
    }
    assert.equal(await node.api.getSession(id), null);
  }
  await node.api.sendToAll('a among unknown', { clientIds: [unknownNode, a.id, unknownHere, goneId] });
  await node.api.sendToAll('excluding unknown', { exclude: [unknownNode, goneId] });
  assert.deepEqual(await inbox(node, a), [['wait for close', 'a among unknown', 'excluding unknown']]);
  assert.deepEqual(await node.api.getClientIdByUid('ghost'), []);
  assert.deepEqual(await node.api.getAllGroupIdList(), []);
  assert.equal(await node.api.getAllClientCount(), 1);
});

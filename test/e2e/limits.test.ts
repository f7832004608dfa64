/**
 * Gateway limits: maxPayload (ws close 1009, tcp connection closed), the per-client send
 * buffer (a client that stops reading is disconnected; what the server holds for it stays
 * bounded), and maxMessagesPerSecond (ws close 1008, tcp closed). Other clients are unaffected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../helpers/nodes.js';
import { connectEach, connectTcp, connectWs, idHandler, inbox, oneNode } from '../helpers/fixtures.js';

const LISTEN = ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text', 'tcp://127.0.0.1:0?protocol=frame'];

/** A handler that records what it got and echoes "got <length>". */
function recordingHandler(received: Map<string, number[]>) {
  return idHandler({
    async onMessage(clientId, message, { gateway }) {
      const length = typeof message === 'string' ? Buffer.byteLength(message) : message.length;
      received.set(clientId, [...(received.get(clientId) ?? []), length]);
      await gateway.sendToClient(clientId, `got ${length}`);
    },
  });
}

test('maxPayload: ws closes with 1009, tcp text and frame connections are closed, others go on', async (t) => {
  const received = new Map<string, number[]>();
  const { opened, node } = await oneNode(
    t,
    { gateway: { listen: LISTEN, maxPayload: 1024 } },
    { handler: recordingHandler(received) },
  );
  const [wsBystander, tcpBystander] = await connectEach(opened, node, ['ws', 'tcp']);

  // exactly maxPayload is allowed everywhere
  const ws = await connectWs(opened, node);
  ws.client.send('w'.repeat(1024));
  await ws.client.waitForText('got 1024');
  ws.client.send(Buffer.alloc(1025, 1));
  await ws.client.waitClosed();
  assert.equal(ws.client.closeCode, 1009);

  const line = await connectTcp(opened, node, 'text');
  line.client.send('l'.repeat(1024));
  await line.client.waitForText('got 1024');
  line.client.send('l'.repeat(1025));
  await line.client.waitClosed();

  // a line that never ends is cut as soon as it passes the limit
  const endless = await connectTcp(opened, node, 'text');
  endless.client.socket.write('e'.repeat(600));
  endless.client.socket.write('e'.repeat(600));
  await endless.client.waitClosed();

  const frame = await connectTcp(opened, node, 'frame');
  frame.client.send(Buffer.alloc(1024, 2));
  await frame.client.waitForText('got 1024');
  // only the header of a frame that is too large: closed without waiting for its body
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1025);
  frame.client.socket.write(header);
  await frame.client.waitClosed();

  const hugeHeader = await connectTcp(opened, node, 'frame');
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(0xffffffff);
  hugeHeader.client.socket.write(huge);
  await hugeHeader.client.waitClosed();

  // the oversized messages never reached the handler
  for (const lengths of received.values()) for (const length of lengths) assert.ok(length <= 1024);
  assert.equal(node.gateway!.counters.drops.max_payload, 5);

  // the bystanders were not touched and are still served both ways
  await waitFor(async () => (await node.api.getAllClientCount()) === 2, 5000, 'only the bystanders left');
  assert.deepEqual((await node.api.getAllClientIdList()).sort(), [wsBystander.id, tcpBystander.id].sort());
  await node.api.sendToAll('still here');
  assert.deepEqual(await inbox(node, wsBystander, tcpBystander), [['still here'], ['still here']]);
  wsBystander.client.send('x'.repeat(10));
  tcpBystander.client.send('y'.repeat(20));
  await wsBystander.client.waitForText('got 10');
  await tcpBystander.client.waitForText('got 20');
});

test('send buffer: a tcp client that stops reading is disconnected; what is held for it stays bounded', async (t) => {
  const sendBufferSize = 256 * 1024;
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN, sendBufferSize } });
  const reader = await connectWs(opened, node);
  const stalled = await connectTcp(opened, node, 'text');
  // stop reading: the kernel buffers fill, then the gateway's send buffer
  stalled.client.socket.pause();

  const message = 'm'.repeat(64 * 1024);
  const frameSize = message.length + 1;
  const maxPushes = 2000; // 128 MiB: far past any kernel buffer
  let pushes = 0;
  let maxHeld = 0;
  while (pushes < maxPushes) {
    const held = node.gateway!.client(stalled.id);
    if (held === undefined || held.closed) break;
    maxHeld = Math.max(maxHeld, held.bufferedBytes);
    await node.api.sendToClient(stalled.id, message);
    pushes += 1;
  }
  assert.ok(pushes < maxPushes, 'the stalled client was disconnected');
  // never more than the limit plus the message that passed it
  assert.ok(maxHeld <= sendBufferSize + frameSize, `held ${maxHeld} bytes for the client`);
  assert.equal(node.gateway!.counters.drops.send_buffer, 1);

  // more pushes to it are dropped; the node holds nothing for it
  for (let i = 0; i < 20; i++) await node.api.sendToClient(stalled.id, message);
  assert.equal(node.gateway!.client(stalled.id), undefined);
  await waitFor(async () => (await node.api.getAllClientCount()) === 1, 5000, 'stalled client gone');
  assert.deepEqual(await node.api.getAllClientIdList(), [reader.id]);
  assert.equal(await node.api.isOnline(stalled.id), false);

  // the client, reading again, gets what was in flight and then the end of the connection
  let bytes = 0;
  stalled.client.socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  stalled.client.socket.resume();
  await stalled.client.waitClosed(10000);
  assert.ok(bytes < (pushes + 20) * frameSize, 'not everything pushed was delivered');

  // the reader was never affected
  await node.api.sendToAll('after the overflow');
  assert.deepEqual(await inbox(node, reader), [['after the overflow']]);
});

test('send buffer: one message larger than the limit still reaches a client that keeps reading', async (t) => {
  const sendBufferSize = 64 * 1024;
  const { opened, node } = await oneNode(t, { gateway: { listen: LISTEN, sendBufferSize } });
  const reader = await connectWs(opened, node);
  const big = 'b'.repeat(4 * sendBufferSize);
  await node.api.sendToClient(reader.id, big);
  await node.api.sendToClient(reader.id, 'after the big one');
  await reader.client.waitForText('after the big one');
  assert.ok(reader.client.texts().includes(big), 'the large message arrived whole');
  assert.equal(reader.client.closed, false);
  assert.equal(node.gateway!.counters.drops.send_buffer, undefined);
});

test('maxMessagesPerSecond: a flooding ws client is closed with 1008, tcp is closed, a polite client stays', async (t) => {
  const received = new Map<string, number[]>();
  const limit = 5;
  const { opened, node } = await oneNode(
    t,
    { gateway: { listen: LISTEN, maxMessagesPerSecond: limit } },
    { handler: recordingHandler(received) },
  );
  const [polite, floodWs, floodTcp] = await connectEach(opened, node, ['ws', 'ws', 'tcp']);

  polite.client.send('a');
  polite.client.send('bb');
  polite.client.send('ccc');
  for (let i = 0; i < 20; i++) floodWs.client.send(`message ${i}`);
  for (let i = 0; i < 20; i++) floodTcp.client.send(`message ${i}`);
  await floodWs.client.waitClosed();
  await floodTcp.client.waitClosed();
  assert.equal(floodWs.client.closeCode, 1008);
  await waitFor(async () => (await node.api.getAllClientCount()) === 1, 5000, 'flooders gone');
  await node.worker!.drain();

  // at most the limit per second-window (a burst can straddle two windows)
  assert.ok((received.get(floodWs.id)?.length ?? 0) <= 2 * limit);
  assert.ok((received.get(floodTcp.id)?.length ?? 0) <= 2 * limit);
  assert.deepEqual(received.get(polite.id), [1, 2, 3]);
  assert.equal(polite.client.closed, false);
  assert.equal(node.gateway!.counters.drops.rate_limit, 2);
  await node.api.sendToClient(polite.id, 'still here');
  await polite.client.waitForText('still here');
});

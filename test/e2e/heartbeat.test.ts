/**
 * Heartbeat with GatewayWorker's semantics: every pingInterval seconds the gateway sends
 * pingData (and, to WebSocket clients, a ping frame); a client with no sign of life (any data
 * it sends, a pong, a ping) for pingNotResponseLimit periods is disconnected; limit 0 never
 * disconnects. Intervals are whole seconds, so these tests use 1 s and wait for beats, not for
 * times: "stays" means it outlived beats that evicted the silent client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, waitFor } from '../helpers/nodes.js';
import { Opened, connectTcp, connectWs, idHandler } from './support.js';

const pings = (texts: string[]): number => texts.filter((t) => t === 'ping').length;

test('tcp: a silent client is evicted, a client that keeps sending stays, pingData arrives; limit 0 never evicts', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const closed: string[] = [];
  const handler = idHandler({
    onClose(clientId) {
      closed.push(clientId);
    },
  });
  const listen = ['tcp://127.0.0.1:0?protocol=text', 'tcp://127.0.0.1:0?protocol=frame'];
  const [node, lenient] = await Promise.all([
    startNode({ gateway: { listen, pingInterval: 1, pingNotResponseLimit: 1, pingData: 'ping' } }, { handler }),
    startNode({ gateway: { listen, pingInterval: 1, pingNotResponseLimit: 0, pingData: 'ping' } }, { handler }),
  ]);
  opened.node(node);
  opened.node(lenient);

  const silent = await connectTcp(opened, node, 'text');
  const silentFrame = await connectTcp(opened, node, 'frame');
  const active = await connectTcp(opened, node, 'text');
  const tolerated = await connectTcp(opened, lenient, 'text');
  const keepAlive = setInterval(() => active.client.send('alive'), 200);
  t.after(() => clearInterval(keepAlive));

  await silent.client.waitClosed(6000);
  await silentFrame.client.waitClosed(6000);
  // the silent clients got the ping data (text line and frame) before they were dropped
  assert.ok(pings(silent.client.texts()) >= 1, 'silent text client received pingData');
  assert.ok(pings(silentFrame.client.texts()) >= 1, 'silent frame client received pingData');
  assert.equal(await node.api.isOnline(silent.id), false);
  assert.equal(await node.api.isOnline(silentFrame.id), false);
  assert.ok((node.gateway!.counters.drops.heartbeat ?? 0) >= 2);
  await waitFor(
    () => closed.includes(silent.id) && closed.includes(silentFrame.id),
    5000,
    'onClose of the evicted clients',
  );

  // Two more beats: the active client and the silent one on the limit-0 node are still there.
  const seen = pings(active.client.texts());
  await active.client.until(() => pings(active.client.texts()) >= seen + 2, 6000, 'two more pings');
  await tolerated.client.until(() => pings(tolerated.client.texts()) >= 3, 6000, 'three pings');
  assert.equal(active.client.closed, false);
  assert.equal(tolerated.client.closed, false);
  assert.equal(await node.api.isOnline(active.id), true);
  assert.equal(await lenient.api.isOnline(tolerated.id), true);
  // both nodes share the in-process bus, so they form one cluster
  assert.deepEqual((await node.api.getAllClientIdList()).sort(), [active.id, tolerated.id].sort());
});

test('ws: a client that does not answer pings is evicted; auto-pong and client pings keep a client', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const node = opened.node(
    await startNode(
      { gateway: { listen: ['ws://127.0.0.1:0/ws'], pingInterval: 1, pingNotResponseLimit: 1, pingData: 'ping' } },
      { handler: idHandler() },
    ),
  );
  const mute = await connectWs(opened, node, { autoPong: false });
  const normal = await connectWs(opened, node);
  const pinger = await connectWs(opened, node, { autoPong: false });
  let normalPingFrames = 0;
  normal.client.ws.on('ping', () => (normalPingFrames += 1));
  let pingerPingFrames = 0;
  pinger.client.ws.on('ping', () => (pingerPingFrames += 1));
  // it never answers the server's pings, but pings the server itself
  const keepAlive = setInterval(() => pinger.client.ws.ping(), 200);
  t.after(() => clearInterval(keepAlive));

  await mute.client.waitClosed(6000);
  assert.equal(mute.client.closeCode, 1006, 'terminated without a close handshake');
  assert.ok(pings(mute.client.texts()) >= 1, 'the evicted client received pingData');
  assert.equal(await node.api.isOnline(mute.id), false);

  const seen = normalPingFrames;
  await normal.client.until(() => normalPingFrames >= seen + 2, 6000, 'two more ping frames');
  await pinger.client.until(() => pingerPingFrames >= 3, 6000, 'three ping frames');
  assert.ok(pings(normal.client.texts()) >= 2, 'pingData arrives as a text message');
  assert.equal(normal.client.received.find((r) => r.data === 'ping')?.binary, false);
  assert.equal(normal.client.closed, false);
  assert.equal(pinger.client.closed, false);
  assert.deepEqual((await node.api.getAllClientIdList()).sort(), [normal.id, pinger.id].sort());
});

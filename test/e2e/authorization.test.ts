/**
 * The authorization hook sees the upgrade request (url, headers, query, origin) and decides:
 * true lets the client in; false is HTTP 401; a status such as 403 is that status; a hook that
 * throws (or returns nonsense) is HTTP 500. A rejected client never becomes a client: no
 * onConnect, no onWebSocketConnect. TCP connections are asked too, and closed when refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AuthorizationRequest } from '../../src/gateway/listener.js';
import type { ClientRequestInfo } from '../../src/gateway/client.js';
import { startNode, tcpPort, wsUrl } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
import { Opened, connectTcp, connectWs, idHandler } from './support.js';

test('the authorization hook decides each WebSocket upgrade; rejected upgrades get HTTP 401/403/500 and no events', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const seen: AuthorizationRequest[] = [];
  const connects: string[] = [];
  const wsConnects: { clientId: string; request: ClientRequestInfo }[] = [];
  let tcpAllowed = false;
  const node = opened.node(
    await startNode(
      { gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'] } },
      {
        handler: idHandler({
          onConnect(clientId) {
            connects.push(clientId);
          },
          onWebSocketConnect(clientId, request) {
            wsConnects.push({ clientId, request });
          },
        }),
        async authorize(request) {
          seen.push(request);
          if (request.transport === 'tcp') return tcpAllowed;
          switch (request.query?.token) {
            case 'ok':
              return true;
            case 'later':
              await new Promise((resolve) => setTimeout(resolve, 20));
              return true;
            case 'deny':
              return false;
            case 'forbid':
              return 403;
            case 'boom':
              throw new Error('the token service is down');
            case 'reject':
              return Promise.reject(new Error('rejected promise'));
            default:
              return 'yes' as unknown as boolean; // neither a boolean nor a status
          }
        },
      },
    ),
  );
  const base = wsUrl(node);

  const refused: [token: string, status: number][] = [
    ['deny', 401],
    ['forbid', 403],
    ['boom', 500],
    ['reject', 500],
    ['nonsense', 500],
  ];
  for (const [token, status] of refused) {
    await assert.rejects(
      WsTestClient.connect(`${base}?token=${token}&room=7`, {
        headers: { 'x-api-key': 'k-123' },
        origin: 'https://app.example',
      }),
      { message: `HTTP ${status}` },
      `token=${token}`,
    );
  }
  assert.equal(seen.length, refused.length);
  const first = seen[0]!;
  assert.equal(first.transport, 'ws');
  assert.equal(first.url, '/ws?token=deny&room=7');
  assert.deepEqual(first.query, { token: 'deny', room: '7' });
  assert.equal(first.origin, 'https://app.example');
  assert.equal(first.headers?.['x-api-key'], 'k-123');
  assert.equal(first.headers?.origin, 'https://app.example');
  assert.equal(first.remoteAddress, '127.0.0.1');
  assert.ok(first.remotePort > 0);

  // nothing of the rejected attempts reached the worker or the registry
  await node.worker!.drain();
  assert.equal(connects.length, 0);
  assert.equal(wsConnects.length, 0);
  assert.equal(await node.api.getAllClientCount(), 0);

  // the process is fine: allowed clients connect, also after a hook that threw
  const client = opened.client(
    await WsTestClient.connect(`${base}?token=ok&room=7`, {
      headers: { 'x-api-key': 'k-123' },
      origin: 'https://app.example',
    }),
  );
  const id = (await client.nextText()).slice(3);
  const later = opened.client(await WsTestClient.connect(`${base}?token=later`));
  const laterId = (await later.nextText()).slice(3);
  await node.worker!.drain();
  assert.deepEqual(connects, [id, laterId]);
  assert.equal(wsConnects.length, 2);
  assert.equal(wsConnects[0]!.clientId, id);
  assert.equal(wsConnects[0]!.request.url, '/ws?token=ok&room=7');
  assert.deepEqual(wsConnects[0]!.request.query, { token: 'ok', room: '7' });
  assert.equal(wsConnects[0]!.request.headers['x-api-key'], 'k-123');
  assert.equal(await node.api.getAllClientCount(), 2);

  // TCP connections are asked as well: refused means closed, with no events
  const refusedTcp = net.connect(tcpPort(node, 'text'), '127.0.0.1');
  refusedTcp.on('error', () => undefined);
  let refusedBytes = 0;
  refusedTcp.on('data', (chunk: Buffer) => (refusedBytes += chunk.length));
  await new Promise<void>((resolve) => refusedTcp.once('close', () => resolve()));
  assert.equal(refusedBytes, 0);
  assert.equal(seen.at(-1)!.transport, 'tcp');
  tcpAllowed = true;
  const tcp = await connectTcp(opened, node, 'text');
  await node.worker!.drain();
  assert.deepEqual(connects, [id, laterId, tcp.id]);
  assert.equal(wsConnects.length, 2);

  // an upgrade on another path is 404 and does not ask the hook
  const asked = seen.length;
  await assert.rejects(WsTestClient.connect(base.replace(/\/ws$/, '/other')), { message: 'HTTP 404' });
  assert.equal(seen.length, asked);
});

test('without a hook everyone is let in', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const node = opened.node(await startNode({}, { handler: idHandler() }));
  const a = await connectWs(opened, node);
  assert.equal(await node.api.isOnline(a.id), true);
});

/**
 * The worker role: the callbacks and their order, ctx, session write-back, per-client ordering
 * with asynchronous handlers, handlers that throw or reject, and the worker hooks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createNode, type GatewireNode } from '../../src/node.js';
import { TOKENS } from '../../src/di/tokens.js';
import type { EventHandler, EventContext, WorkerContext } from '../../src/worker/handler.js';
import type { ClientRequestInfo } from '../../src/gateway/client.js';
import { sleep, startNode, testConfig, waitFor, wsUrl } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
import { Opened, connectTcp, connectWs, idHandler } from './support.js';

const LISTEN = ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'];

test('onConnect, onWebSocketConnect, onMessage, onClose run in order with a full ctx', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const events = new Map<string, string[]>();
  const contexts: EventContext[] = [];
  let wsRequest: ClientRequestInfo | undefined;
  const log = (id: string, what: string): void => void events.set(id, [...(events.get(id) ?? []), what]);
  const node = opened.node(
    await startNode(
      { gateway: { listen: LISTEN } },
      {
        handler: {
          async onConnect(clientId, ctx) {
            contexts.push(ctx);
            // a slow onConnect still finishes before the client's first message is handled
            await sleep(30);
            log(clientId, 'connect');
            await ctx.gateway.sendToClient(clientId, `id:${clientId}`);
          },
          onWebSocketConnect(clientId, request) {
            wsRequest = request;
            log(clientId, 'websocketConnect');
          },
          onMessage(clientId, message) {
            log(clientId, `message ${String(message)}`);
          },
          onClose(clientId) {
            log(clientId, 'close');
          },
        },
      },
    ),
  );

  const ws = opened.client(
    await WsTestClient.connect(`${wsUrl(node)}?room=lobby&x=1`, { headers: { 'x-client': 'test' } }),
  );
  ws.send('first');
  ws.send('second');
  const wsId = (await ws.nextText()).slice(3);
  const tcp = await connectTcp(opened, node, 'text');
  const tcpLocalPort = tcp.client.socket.localPort;
  tcp.client.send('over tcp');
  await waitFor(() => (events.get(tcp.id) ?? []).length === 2, 5000, 'tcp message handled');
  ws.close();
  tcp.client.close();
  await waitFor(() => events.get(wsId)?.at(-1) === 'close' && events.get(tcp.id)?.at(-1) === 'close', 5000, 'onClose');

  assert.deepEqual(events.get(wsId), ['connect', 'websocketConnect', 'message first', 'message second', 'close']);
  assert.deepEqual(events.get(tcp.id), ['connect', 'message over tcp', 'close']);

  assert.equal(wsRequest!.url, '/ws?room=lobby&x=1');
  assert.deepEqual(wsRequest!.query, { room: 'lobby', x: '1' });
  assert.equal(wsRequest!.headers['x-client'], 'test');

  const ctx = contexts[0]!;
  assert.equal(ctx.clientId, wsId);
  assert.equal(ctx.gateway, node.api);
  assert.equal(ctx.gatewayNode, node.identity.instance);
  assert.equal(ctx.remoteAddress, '127.0.0.1');
  assert.deepEqual(ctx.session, {});
  const tcpCtx = contexts[1]!;
  assert.equal(tcpCtx.clientId, tcp.id);
  assert.equal(tcpCtx.remotePort, tcpLocalPort);
});

test('session write-back: changes to ctx.session are seen by the next event and by getSession', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const closingSessions: unknown[] = [];
  const node = opened.node(
    await startNode(
      { gateway: { listen: LISTEN } },
      {
        handler: idHandler({
          onConnect(_clientId, ctx) {
            ctx.session.count = 0;
            ctx.session.profile = { name: 'anon' };
          },
          async onMessage(clientId, message, ctx) {
            const count = Number(ctx.session.count) + 1;
            ctx.session.count = count;
            ctx.session.last = String(message);
            if (message === 'rename') (ctx.session.profile as { name: string }).name = 'ann';
            if (message === 'replace') ctx.session = { replaced: true, count };
            await ctx.gateway.sendToClient(clientId, `count ${count}`);
          },
          onClose(_clientId, ctx) {
            closingSessions.push(ctx.session);
          },
        }),
      },
    ),
  );
  const a = await connectWs(opened, node);
  const b = await connectTcp(opened, node, 'text');
  await waitFor(async () => (await node.api.getSession(a.id))?.count === 0, 5000, 'onConnect session saved');

  a.client.send('x');
  await a.client.waitForText('count 1');
  a.client.send('rename');
  await a.client.waitForText('count 2');
  assert.deepEqual(await node.api.getSession(a.id), { count: 2, profile: { name: 'ann' }, last: 'rename' });

  // a session set through the API is what the next event sees
  await node.api.setSession(a.id, { count: 10, profile: { name: 'set' } });
  a.client.send('y');
  await a.client.waitForText('count 11');
  assert.deepEqual(await node.api.getSession(a.id), { count: 11, profile: { name: 'set' }, last: 'y' });

  // replacing ctx.session altogether is written back as well
  a.client.send('replace');
  await a.client.waitForText('count 12');
  assert.deepEqual(await node.api.getSession(a.id), { replaced: true, count: 12 });

  // sessions are per client
  b.client.send('z');
  await b.client.waitForText('count 1');
  assert.deepEqual(await node.api.getSession(b.id), { count: 1, profile: { name: 'anon' }, last: 'z' });

  // onClose sees the last session
  a.client.close();
  await waitFor(() => closingSessions.length === 1, 5000, 'onClose');
  assert.deepEqual(closingSessions[0], { replaced: true, count: 12 });
});

test("one client's events are handled in arrival order even with random awaits; clients run concurrently", async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const handled = new Map<string, number[]>();
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const node = opened.node(
    await startNode(
      { gateway: { listen: LISTEN } },
      {
        handler: idHandler({
          async onMessage(clientId, message, ctx) {
            const text = String(message);
            if (text === 'wait') {
              await gate; // only another client can open it
              await ctx.gateway.sendToClient(clientId, 'gate passed');
              return;
            }
            if (text === 'open') {
              openGate();
              return;
            }
            await sleep(Math.floor(Math.random() * 8));
            const n = Number(text);
            handled.set(clientId, [...(handled.get(clientId) ?? []), n]);
            // the session counter sees every earlier message of this client
            ctx.session.seen = Number(ctx.session.seen ?? 0) + 1;
            if (Math.random() < 0.5) await sleep(Math.floor(Math.random() * 4));
            if (ctx.session.seen !== n + 1)
              throw new Error(`message ${n} saw session.seen ${String(ctx.session.seen)}`);
          },
        }),
      },
    ),
  );
  const clients = [
    await connectWs(opened, node),
    await connectTcp(opened, node, 'text'),
    await connectWs(opened, node),
  ];
  const count = 40;
  for (let i = 0; i < count; i++) for (const c of clients) c.client.send(String(i));
  const expected = Array.from({ length: count }, (_, i) => i);
  await waitFor(() => clients.every((c) => handled.get(c.id)?.length === count), 10000, 'every message handled');
  for (const c of clients) assert.deepEqual(handled.get(c.id), expected);
  await node.worker!.drain();
  assert.equal(node.worker!.handlerErrors, 0);
  for (const c of clients) assert.equal((await node.api.getSession(c.id))?.seen, count);

  // a blocked client does not block the others
  const blocked = clients[0]!;
  blocked.client.send('wait');
  clients[1]!.client.send('open');
  await blocked.client.waitForText('gate passed');
});

test('a handler that throws or rejects is logged with the clientId; the next event runs and others are served', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));

  let throwOnConnect = false;
  const handler: EventHandler = idHandler({
    onConnect() {
      if (throwOnConnect) throw new Error('connect broke');
    },
    onMessage(clientId, message, ctx) {
      if (message === 'throw') throw new Error('sync boom');
      if (message === 'reject') return sleep(5).then(() => Promise.reject(new Error('async boom')));
      if (message === 'reject-nonerror') return Promise.reject('a string');
      return ctx.gateway.sendToClient(clientId, `ok ${String(message)}`);
    },
    onClose() {
      throw new Error('close broke');
    },
  });
  const config = testConfig({ gateway: { listen: LISTEN } });
  const node: GatewireNode = opened.node(
    await createNode({
      config,
      handler,
      configure: (container) => container.rebind(TOKENS.Logger).toConstantValue(pino({ level: 'info' }, sink)),
    }),
  );
  await node.start();

  const a = await connectWs(opened, node);
  const b = await connectTcp(opened, node, 'text');
  a.client.send('throw');
  a.client.send('after throw');
  a.client.send('reject');
  a.client.send('reject-nonerror');
  a.client.send('after reject');
  b.client.send('meanwhile');
  await a.client.waitForText('ok after throw');
  await a.client.waitForText('ok after reject');
  await b.client.waitForText('ok meanwhile');
  assert.deepEqual(a.client.texts().slice(1), ['ok after throw', 'ok after reject']);

  await node.worker!.drain();
  assert.equal(node.worker!.handlerErrors, 3);
  const failures = lines.filter((l) => l.msg === 'handler failed');
  assert.equal(failures.length, 3);
  for (const f of failures) {
    assert.equal(f.clientId, a.id);
    assert.equal(f.event, 'message');
    assert.equal(f.level, 50);
  }
  assert.match(JSON.stringify(failures[0]!.err), /sync boom/);
  assert.match(JSON.stringify(failures[1]!.err), /async boom/);

  // a throwing onConnect and onClose: the client is still connected and served; closing goes on
  throwOnConnect = true;
  const c = await connectWs(opened, node);
  c.client.send('hello');
  await c.client.waitForText('ok hello');
  c.client.close();
  await waitFor(async () => !(await node.api.isOnline(c.id)), 5000, 'c closed');
  await node.worker!.drain();
  const more = lines.filter((l) => l.msg === 'handler failed' && l.clientId === c.id).map((l) => l.event);
  assert.deepEqual(more, ['connect', 'close']);
  assert.deepEqual(unhandled, []);
  assert.equal(node.running, true);
  await node.api.sendToAll('still serving');
  await b.client.waitForText('still serving');
});

test('onWorkerStart runs before any client event and onWorkerStop after the last, on node stop', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const calls: string[] = [];
  let startCtx: WorkerContext | undefined;
  let stopCtx: WorkerContext | undefined;
  const node = await startNode(
    { node: { id: 'worker-hooks' }, gateway: { listen: LISTEN } },
    {
      handler: idHandler({
        onWorkerStart(ctx) {
          startCtx = ctx;
          calls.push('start');
        },
        onConnect() {
          calls.push('connect');
        },
        onMessage() {
          calls.push('message');
        },
        async onClose() {
          await sleep(20);
          calls.push('close');
        },
        async onWorkerStop(ctx) {
          stopCtx = ctx;
          calls.push('stop');
        },
      }),
    },
  );
  assert.deepEqual(calls, ['start']);
  assert.equal(startCtx!.nodeId, 'worker-hooks');
  assert.equal(startCtx!.gateway, node.api);

  const a = await connectWs(opened, node);
  a.client.send('m');
  await waitFor(() => calls.includes('message'), 5000, 'message handled');
  await node.stop();
  // the client was told the server is going away; its onClose finished before onWorkerStop
  await a.client.waitClosed();
  assert.equal(a.client.closeCode, 1001);
  assert.deepEqual(calls, ['start', 'connect', 'message', 'close', 'stop']);
  assert.equal(stopCtx!.nodeId, 'worker-hooks');
});

test('a failing onWorkerStart is logged and the node still serves', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const node = opened.node(
    await startNode(
      { gateway: { listen: LISTEN } },
      {
        handler: idHandler({
          async onWorkerStart() {
            throw new Error('start broke');
          },
          async onMessage(clientId, _message, { gateway }) {
            await gateway.sendToClient(clientId, 'served');
          },
        }),
      },
    ),
  );
  assert.equal(node.worker!.handlerErrors, 1);
  const a = await connectWs(opened, node);
  a.client.send('hi');
  await a.client.waitForText('served');
});

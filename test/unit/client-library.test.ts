/**
 * gatewire/client against an in-process fake gatewire.v1 server: the first welcome, reconnects
 * with exponential backoff and full jitter, the queue's bound, requests (reply, handler error,
 * timeout), the U+0000 escape both ways, and final closes (no reconnect, no timer left).
 */
import { test, mock, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { GatewireClient, type GatewireClientOptions, type ReceivedData } from '../../src/client/gatewire-client.js';
import { codeOf, next, until, clientOnFake as setup } from '../helpers/fake-v1-server.js';

function activeTimeouts(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
}

test('the first welcome opens a new session: open event, clientId, state, an ack at once', async (t) => {
  const { fake, client } = await setup(t);
  assert.equal(client.state, 'connecting');
  const acks = until(fake, 'ack', () => fake.sessions[0]?.acked === 0);
  const open = await next<{ clientId: string; resumed: boolean; reason?: string }>(client, 'open');
  assert.deepEqual(open, { clientId: fake.sessions[0]!.clientId, resumed: false });
  assert.equal(client.state, 'open');
  assert.equal(client.clientId, open.clientId);
  assert.deepEqual(fake.hellos, [{ token: undefined, seq: undefined }]);
  await acks;
  client.close();
  assert.equal(client.state, 'closed');
  assert.equal(client.clientId, null);
});

test('reconnects with exponential backoff and full jitter, capped at maxDelayMs, reset after a welcome', async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const draws = [0.5, 0.5, 0.999, 0.3];
  const { fake, client } = await setup(
    t,
    { refuseFirst: 3 },
    { minDelayMs: 100, maxDelayMs: 300, random: () => draws.shift() ?? 0 },
  );
  t.after(() => mock.timers.reset());
  const seen: { attempt: number; delayMs: number }[] = [];
  client.on('reconnecting', (event) => seen.push(event));
  for (const expected of [50, 100, 299]) {
    const event = await next<{ attempt: number; delayMs: number }>(client, 'reconnecting');
    assert.equal(client.state, 'reconnecting');
    assert.equal(event.delayMs, expected);
    mock.timers.tick(event.delayMs);
  }
  await next(client, 'open');
  assert.deepEqual(seen, [
    { attempt: 1, delayMs: 50 },
    { attempt: 2, delayMs: 100 }, // 0.5 × 200
    { attempt: 3, delayMs: 299 }, // 0.999 × min(300, 400)
  ]);
  fake.dropAll();
  assert.deepEqual(await next(client, 'reconnecting'), { attempt: 1, delayMs: 30 }); // 0.3 × 100: counted afresh
  client.close();
});

test('the queue is bounded by messages and bytes: GW_CLIENT_QUEUE_FULL; acks free room', async (t) => {
  const { fake, client } = await setup(t, { welcome: false }, { maxQueuedMessages: 3, maxQueuedBytes: 10 });
  client.send('12345678');
  assert.throws(() => client.send('abc'), codeOf('GW_CLIENT_QUEUE_FULL')); // 11 bytes
  client.send('a');
  client.send(new Uint8Array([1]));
  assert.throws(() => client.send('b'), codeOf('GW_CLIENT_QUEUE_FULL')); // a 4th message
  await assert.rejects(client.request('c'), codeOf('GW_CLIENT_QUEUE_FULL'));
  assert.throws(
    () => client.send(42 as unknown as string),
    (err) => err instanceof TypeError,
  );
  client.close();
  assert.throws(() => client.send('d'), codeOf('GW_CLIENT_CLOSED'));
  await assert.rejects(client.request('d'), codeOf('GW_CLIENT_CLOSED'));

  // connected, what was sent and not acknowledged counts too, until the server's ack
  const second = await setup(t, { ack: false }, { maxQueuedMessages: 2 });
  await next(second.client, 'open');
  second.client.send('x1');
  second.client.send('x2');
  assert.throws(() => second.client.send('x3'), codeOf('GW_CLIENT_QUEUE_FULL'));
  await until(second.fake, 'message', () => second.fake.sessions[0]!.got.length === 2);
  const session = second.fake.sessions[0]!;
  second.fake.control(session, { t: 'ack', n: 2 });
  second.fake.push(session, 'after the ack');
  await next(second.client, 'message');
  second.client.send('x3');
  second.client.send('x4');
  await until(second.fake, 'message', () => session.got.length === 4);
  assert.deepEqual(session.got, ['x1', 'x2', 'x3', 'x4']);
  second.client.close();
});

test('messages queued before the welcome go out after it, in order; text and bytes both ways', async (t) => {
  const { fake, client, got } = await setup(t);
  client.send('one');
  client.send(new Uint8Array([1, 2, 3]));
  client.send(new Uint8Array([9, 8]).buffer);
  await next(client, 'open');
  await until(fake, 'message', () => fake.sessions[0]!.got.length === 3);
  assert.deepEqual(fake.sessions[0]!.got, ['one', new Uint8Array([1, 2, 3]), new Uint8Array([9, 8])]);
  fake.push(fake.sessions[0]!, 'two');
  fake.push(fake.sessions[0]!, new Uint8Array([4, 5]));
  await until(client, 'message', () => got.length === 2);
  assert.deepEqual(got, ['two', new Uint8Array([4, 5])]);
  client.close();
});

test('text that starts with U+0000 is escaped both ways', async (t) => {
  const { fake, client, got } = await setup(t);
  await next(client, 'open');
  client.send('\u0000not a control');
  client.send('\u0000\u0000two');
  await until(fake, 'message', () => fake.sessions[0]!.got.length === 2);
  assert.ok(fake.frames.includes('\u0000\u0000not a control'));
  assert.deepEqual(fake.sessions[0]!.got, ['\u0000not a control', '\u0000\u0000two']);
  fake.push(fake.sessions[0]!, '\u0000{"t":"welcome"}'); // sent as U+0000 U+0000 {…}: a message
  await next(client, 'message');
  assert.deepEqual(got, ['\u0000{"t":"welcome"}']);
  client.close();
});

test('request: the reply as text or bytes, the handler error (GW_CLIENT_REQUEST_FAILED), the timeout', async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const { fake, client } = await setup(t, {
    onRequest: (got) => {
      const { d } = got as { d?: string };
      if (d === 'fail') throw new Error('boom');
      if (d === 'never') return undefined;
      if (d === 'bytes') return new Uint8Array([7, 7]);
      return `echo ${d ?? `${(got as { b: string }).b} (base64)`}`;
    },
  });
  t.after(() => mock.timers.reset());
  const early = client.request('before the welcome'); // queued, a counted req once open
  await next(client, 'open');
  assert.equal(await early, 'echo before the welcome');
  assert.equal(await client.request('hi'), 'echo hi');
  assert.equal(await client.request(new Uint8Array([1, 2])), 'echo AQI= (base64)');
  assert.deepEqual(await client.request('bytes'), new Uint8Array([7, 7]));
  await assert.rejects(client.request('fail'), (err: Error & { code?: string }) => {
    return err.code === 'GW_CLIENT_REQUEST_FAILED' && err.message === 'boom';
  });
  const never = client.request('never', { timeoutMs: 5000 });
  await until(fake, 'message', () => fake.sessions[0]!.got.length === 6);
  mock.timers.tick(4999);
  let settled = false;
  never.catch(() => {}).finally(() => (settled = true));
  await Promise.resolve();
  assert.equal(settled, false);
  mock.timers.tick(1);
  await assert.rejects(never, codeOf('GW_CLIENT_TIMEOUT'));
  assert.deepEqual(
    fake.sessions[0]!.got.map((got) => typeof got === 'object' && 'req' in got && got.req),
    [1, 2, 3, 4, 5, 6],
  );
  const pending = client.request('never');
  client.close();
  await assert.rejects(pending, codeOf('GW_CLIENT_CLOSED'));
});

test('a server close with 1008 (or 1000, 1011) is final: close event, no reconnect, no timer left', async (t) => {
  const before = activeTimeouts();
  const { fake, client } = await setup(t);
  await next(client, 'open');
  let reconnects = 0;
  client.on('reconnecting', () => reconnects++);
  const pending = client.request('no answer');
  const closed = next(client, 'close');
  fake.closeAll(1008, 'policy');
  assert.deepEqual(await closed, { code: 1008, reason: 'policy' });
  assert.equal(client.state, 'closed');
  assert.equal(reconnects, 0);
  await assert.rejects(pending, codeOf('GW_CLIENT_CLOSED'));
  assert.equal(activeTimeouts(), before);
});

test('1001 and 1012 reconnect and resume; close() while a retry waits leaves no timer', async (t) => {
  const before = activeTimeouts();
  const draws = [0, 0, 0.5];
  const { fake, client, allClosed } = await setup(
    t,
    {},
    { minDelayMs: 60000, maxDelayMs: 60000, random: () => draws.shift() ?? 0 },
  );
  await next(client, 'open');
  for (const code of [1001, 1012]) {
    const reconnecting = next<{ delayMs: number }>(client, 'reconnecting');
    fake.closeAll(code, 'going away');
    assert.equal((await reconnecting).delayMs, 0); // random() drew 0
    const open = await next<{ resumed: boolean }>(client, 'open');
    assert.equal(open.resumed, true);
  }
  assert.deepEqual(
    fake.hellos.map((hello) => hello.token),
    [undefined, `${client.clientId}.t0`, `${client.clientId}.t1`],
  );
  const reconnecting = next<{ delayMs: number }>(client, 'reconnecting');
  fake.dropAll();
  assert.equal((await reconnecting).delayMs, 30000);
  const closed = next(client, 'close');
  client.close();
  assert.deepEqual(await closed, { code: 1000, reason: '' });
  await allClosed();
  assert.equal(activeTimeouts(), before);
});

test('close() sends a close frame with 1000 and ends the session at the server', async (t) => {
  const { fake, client } = await setup(t);
  await next(client, 'open');
  const disconnect = next<number>(fake, 'disconnect');
  client.close();
  assert.equal(await disconnect, 1000);
  client.close(); // twice is harmless
});

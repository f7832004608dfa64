/**
 * gatewire/client across drops, against the in-process fake gatewire.v1 server: resume with the
 * token and seq, resend after `welcome.received` exactly once and in order, a reply that survives
 * a drop, a `req` lost in flight, the `resumed: false` path, and the dead-link watch.
 */
import { test, mock, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { GatewireClient, type GatewireClientOptions, type ReceivedData } from '../../src/client/gatewire-client.js';
import { codeOf, next, until, clientOnFake as setup, type Got } from '../helpers/fake-v1-server.js';

const reqId = (got: Got) => (typeof got === 'object' && 'req' in got ? got.req : null);

test('a drop resumes with token and seq; both sides get what they missed once, in order', async (t) => {
  let lost = false;
  const { fake, client, got } = await setup(t, {
    lose: (message) => message === 'c3' && !lost && (lost = true), // c3 is lost in flight, once
  });
  await next(client, 'open');
  const session = fake.sessions[0]!;
  const token = session.tokens[0];
  for (const text of ['s1', 's2', 's3']) fake.push(session, text);
  await until(client, 'message', () => got.length === 3);
  client.on('reconnecting', () => {
    client.send('c6'); // queued while away: after the resend
    fake.push(session, 's4'); // kept for the resume
    fake.push(session, 's5');
  });
  for (const text of ['c1', 'c2', 'c3', 'c4', 'c5']) client.send(text);
  const open = await next<{ resumed: boolean; clientId: string }>(client, 'open');
  assert.deepEqual(open, { clientId: session.clientId, resumed: true });
  assert.deepEqual(fake.hellos[1], { token, seq: 3 });
  await until(fake, 'message', () => session.got.length === 6);
  await until(client, 'message', () => got.length === 5);
  assert.deepEqual(session.got, ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
  assert.deepEqual(got, ['s1', 's2', 's3', 's4', 's5']);
  await until(fake, 'ack', () => session.acked === 5);
  client.send('c7');
  await until(fake, 'message', () => session.got.length === 7);
  assert.equal(session.got[6], 'c7');
});

test('a reply sent while the client was away arrives after the resume; a lost req is resent once', async (t) => {
  let lost = false;
  const { fake, client } = await setup(t, {
    onRequest: (got) => ((got as { d: string }).d === 'later' ? undefined : `re ${(got as { d: string }).d}`),
    lose: (got) => (got as { d?: string }).d === 'lost' && !lost && (lost = true),
  });
  await next(client, 'open');
  const session = fake.sessions[0]!;
  const later = client.request('later');
  await until(fake, 'message', () => session.got.length === 1);
  const reconnecting = next(client, 'reconnecting');
  fake.dropAll();
  await reconnecting;
  fake.reply(session, 1, 'the answer'); // while away: kept, resent after the client's seq
  assert.equal(await later, 'the answer');

  assert.equal(await client.request('lost'), 're lost'); // dropped with its req, resent after the welcome
  assert.deepEqual(session.got.map(reqId), [1, 2]);
  assert.equal(fake.hellos.length, 3);
});

test('resumed: false: numbering restarts, sent requests reject GW_CLIENT_NOT_RECOVERED, queued ones go out', async (t) => {
  const { fake, client, got } = await setup(t, { resume: false, ack: false, onRequest: () => undefined });
  await next(client, 'open');
  const first = fake.sessions[0]!;
  fake.push(first, 'old');
  await next(client, 'message');
  client.send('unacked');
  const lost = client.request('sent before the drop');
  await until(fake, 'message', () => first.got.length === 2);
  client.on('reconnecting', () => {
    client.send('queued');
    queuedRequest = client.request('queued request');
  });
  let queuedRequest: Promise<ReceivedData> | null = null;
  const reopened = next<{ resumed: boolean; reason?: string }>(client, 'open');
  fake.dropAll();
  await assert.rejects(lost, codeOf('GW_CLIENT_NOT_RECOVERED'));
  const open = await reopened;
  assert.equal(open.resumed, false);
  assert.equal(open.reason, 'expired');
  const second = fake.sessions[1]!;
  assert.equal(client.clientId, second.clientId);
  await until(fake, 'message', () => second.got.length === 2);
  assert.deepEqual(second.got, ['queued', { req: 2, d: 'queued request' }]); // not 'unacked': it was lost
  fake.reply(second, 2, 'ok');
  assert.equal(await queuedRequest, 'ok');
  assert.deepEqual(got, ['old']); // the reply is not a message
  await until(fake, 'ack', () => second.acked === 1); // counted from 1 again: the reply
});

test('no frame within 2 × heartbeat + 5 s: the link is taken for dead and resumed', async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const { fake, client, errors } = await setup(t, { heartbeat: 1 });
  t.after(() => mock.timers.reset());
  await next(client, 'open');
  mock.timers.tick(6999);
  assert.equal(client.state, 'open');
  const reconnecting = next<{ attempt: number }>(client, 'reconnecting');
  mock.timers.tick(1);
  assert.equal((await reconnecting).attempt, 1);
  assert.match(errors.at(-1)!.message, /no frame for 7000 ms/);
  mock.timers.tick(0);
  const open = await next<{ resumed: boolean }>(client, 'open');
  assert.equal(open.resumed, true);
});

test('with heartbeat 0 the client pings every 15 s and wants a frame within 10 s after', async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const { fake, client } = await setup(t, { pong: false });
  t.after(() => mock.timers.reset());
  await next(client, 'open');
  const ping = until(fake, 'control', () => fake.frames.includes('\u0000{"t":"ping"}'));
  mock.timers.tick(15000);
  await ping;
  mock.timers.tick(9999);
  assert.equal(client.state, 'open');
  const reconnecting = next(client, 'reconnecting');
  mock.timers.tick(1);
  await reconnecting;
});

/**
 * Bad arguments to the push and query API reject with a TypeError whose message is one clear
 * sentence naming the argument; nothing is sent, and the process keeps serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GatewayApi } from '../../src/api/gateway-api.js';
import { startNode } from '../helpers/nodes.js';
import { Opened, connectWs, idHandler, inbox } from './support.js';

type Call = [label: string, argument: string, call: (api: GatewayApi, id: string) => Promise<unknown>];

// `any` lets the calls pass what TypeScript would refuse, as JavaScript callers can.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const x = (value: unknown): any => value;

const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

const CALLS: Call[] = [
  // clientId
  ['sendToClient empty clientId', 'clientId', (api) => api.sendToClient('', 'hi')],
  ['sendToClient upper-case clientId', 'clientId', (api) => api.sendToClient('ABCDEFGHIJKLMN', 'hi')],
  ['sendToClient short clientId', 'clientId', (api) => api.sendToClient('abc', 'hi')],
  ['sendToClient 33-char clientId', 'clientId', (api) => api.sendToClient('a'.repeat(33), 'hi')],
  ['sendToClient clientId with a dot', 'clientId', (api) => api.sendToClient('abcdefghijklm.n', 'hi')],
  ['sendToClient undefined clientId', 'clientId', (api) => api.sendToClient(x(undefined), 'hi')],
  ['sendToClient numeric clientId', 'clientId', (api) => api.sendToClient(x(1234567890123), 'hi')],
  ['closeClient malformed', 'clientId', (api) => api.closeClient('no way')],
  ['destroyClient null', 'clientId', (api) => api.destroyClient(x(null))],
  ['bindUid malformed clientId', 'clientId', (api) => api.bindUid('-', 'u')],
  ['joinGroup malformed clientId', 'clientId', (api) => api.joinGroup('x/y', 'g')],
  ['setSession malformed clientId', 'clientId', (api) => api.setSession('', {})],
  ['getSession malformed', 'clientId', (api) => api.getSession('bad id')],
  ['isOnline number', 'clientId', (api) => api.isOnline(x(5))],
  ['getUidByClientId empty', 'clientId', (api) => api.getUidByClientId('')],
  ['sendToAll clientIds entry', 'clientIds[1]', (api, id) => api.sendToAll('hi', { clientIds: [id, 'bad'] })],
  ['sendToAll exclude string', 'exclude', (api) => api.sendToAll('hi', { exclude: 'bad' })],
  ['sendToAll exclude number', 'exclude', (api) => api.sendToAll('hi', { exclude: x(5) })],
  ['sendToGroup exclude entry', 'exclude[0]', (api) => api.sendToGroup('g', 'hi', { exclude: ['bad'] })],
  // data
  ['sendToClient number data', 'data', (api, id) => api.sendToClient(id, x(123))],
  ['sendToClient object data', 'data', (api, id) => api.sendToClient(id, x({ text: 'hi' }))],
  ['sendToClient null data', 'data', (api, id) => api.sendToClient(id, x(null))],
  ['sendToClient undefined data', 'data', (api, id) => api.sendToClient(id, x(undefined))],
  ['sendToUid array data', 'data', (api) => api.sendToUid('u', x(['hi']))],
  ['sendToGroup boolean data', 'data', (api) => api.sendToGroup('g', x(true))],
  ['sendToAll number data', 'data', (api) => api.sendToAll(x(1))],
  ['closeClient object data', 'data', (api, id) => api.closeClient(id, x({}))],
  ['closeUid number data', 'data', (api) => api.closeUid('u', x(3))],
  // uid
  ['sendToUid empty uid', 'uid', (api) => api.sendToUid('', 'hi')],
  ['sendToUid fractional uid', 'uid', (api) => api.sendToUid(1.5, 'hi')],
  ['sendToUid null uid', 'uid', (api) => api.sendToUid(x(null), 'hi')],
  ['sendToUid empty uid in a list', 'uid[1]', (api) => api.sendToUid(['ok', ''], 'hi')],
  ['bindUid empty uid', 'uid', (api, id) => api.bindUid(id, '')],
  ['bindUid object uid', 'uid', (api, id) => api.bindUid(id, x({}))],
  ['bindUid too long uid', 'uid', (api, id) => api.bindUid(id, 'u'.repeat(201))],
  // routing keys (AMQP: 255 bytes) carry the uid and group: the limit is in bytes, not characters
  ['bindUid uid of 100 three-byte characters', 'uid', (api, id) => api.bindUid(id, '€'.repeat(100))],
  ['unbindUid empty uid', 'uid', (api, id) => api.unbindUid(id, '')],
  ['closeUid empty uid', 'uid', (api) => api.closeUid('')],
  ['isUidOnline empty', 'uid', (api) => api.isUidOnline('')],
  ['getClientIdByUid boolean', 'uid', (api) => api.getClientIdByUid(x(true))],
  ['isUidsOnline bad entry', 'uid[1]', (api) => api.isUidsOnline(['ok', x(undefined)])],
  ['batchGetClientIdByUid bad entry', 'uid[0]', (api) => api.batchGetClientIdByUid([x(null)])],
  // group
  ['sendToGroup number group', 'group', (api) => api.sendToGroup(x(5), 'hi')],
  ['sendToGroup empty group', 'group', (api) => api.sendToGroup('', 'hi')],
  ['sendToGroup number in a list', 'group[1]', (api) => api.sendToGroup(['g', x(7)], 'hi')],
  ['joinGroup number group', 'group', (api, id) => api.joinGroup(id, x(3))],
  ['joinGroup empty group', 'group', (api, id) => api.joinGroup(id, '')],
  ['joinGroup too long group', 'group', (api, id) => api.joinGroup(id, 'g'.repeat(201))],
  ['joinGroup group of 70 four-byte characters', 'group', (api, id) => api.joinGroup(id, '😀'.repeat(70))],
  ['leaveGroup null group', 'group', (api, id) => api.leaveGroup(id, x(null))],
  ['ungroup array', 'group', (api) => api.ungroup(x(['g']))],
  ['getClientCountByGroup number', 'group', (api) => api.getClientCountByGroup(x(1))],
  ['getClientIdListByGroup empty', 'group', (api) => api.getClientIdListByGroup('')],
  ['getClientSessionsByGroup null', 'group', (api) => api.getClientSessionsByGroup(x(null))],
  ['getUidListByGroup object', 'group', (api) => api.getUidListByGroup(x({}))],
  ['getUidCountByGroup number', 'group', (api) => api.getUidCountByGroup(x(2))],
  // session
  ['setSession string', 'session', (api, id) => api.setSession(id, x('name=ann'))],
  ['setSession null', 'session', (api, id) => api.setSession(id, x(null))],
  ['setSession array', 'session', (api, id) => api.setSession(id, x([1, 2]))],
  ['setSession bytes', 'session', (api, id) => api.setSession(id, x(Buffer.from('x')))],
  ['setSession cyclic', 'session', (api, id) => api.setSession(id, cyclic)],
  ['setSession BigInt', 'session', (api, id) => api.setSession(id, { n: 1n })],
  ['updateSession number', 'session', (api, id) => api.updateSession(id, x(5))],
  ['updateSession undefined', 'session', (api, id) => api.updateSession(id, x(undefined))],
];

function checkMessage(err: unknown, argument: string): true {
  assert.ok(err instanceof TypeError, `expected a TypeError, got ${String(err)}`);
  assert.equal(err.name, 'TypeError');
  assert.equal((err as { code?: string }).code, 'GW_ERR_INVALID_ARGUMENT');
  const message = err.message;
  // names the argument first, as "<argument> must be …"
  assert.ok(message.startsWith(`${argument} must `), `message should start with "${argument} must": ${message}`);
  // one sentence: one line, ends with a full stop, no second sentence
  assert.ok(!message.includes('\n'), `one line: ${message}`);
  assert.ok(message.endsWith('.'), `ends with a full stop: ${message}`);
  assert.doesNotMatch(message, /[.!?]\s+[A-Z]/, `one sentence: ${message}`);
  assert.doesNotMatch(message, /undefined undefined|null null/, `clear: ${message}`);
  assert.ok(message.length <= 200, `short: ${message}`);
  return true;
}

test('bad arguments reject with a TypeError of one sentence naming the argument; nothing is sent', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const node = opened.node(await startNode({}, { handler: idHandler() }));
  const a = await connectWs(opened, node);
  await node.api.bindUid(a.id, 'u');
  await node.api.joinGroup(a.id, 'g');
  await node.api.setSession(a.id, { kept: true });

  for (const [label, argument, call] of CALLS) {
    await t.test(label, async () => {
      let promise: Promise<unknown>;
      try {
        promise = call(node.api, a.id);
      } catch (err) {
        assert.fail(`${label}: threw synchronously instead of rejecting: ${String(err)}`);
      }
      await assert.rejects(promise, (err) => checkMessage(err, argument));
    });
  }

  // nothing of the rejected calls happened: no message, uid, group and session unchanged
  assert.deepEqual(await inbox(node, a), [[]]);
  assert.equal(await node.api.getUidByClientId(a.id), 'u');
  assert.deepEqual(await node.api.getAllGroupIdList(), ['g']);
  assert.deepEqual(await node.api.getSession(a.id), { kept: true });
  assert.equal(await node.api.isOnline(a.id), true);
  await node.api.sendToAll('still serving');
  await a.client.waitForText('still serving');
});

test('uids and groups up to the byte limit are accepted, also in other scripts', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const node = opened.node(await startNode({}, { handler: idHandler() }));
  const a = await connectWs(opened, node);
  const uid = 'ü'.repeat(100); // 200 bytes
  const group = `${'日'.repeat(66)}ab`; // 200 bytes
  await node.api.bindUid(a.id, uid);
  await node.api.joinGroup(a.id, group);
  await node.api.bindUid(a.id, 'u'.repeat(200));
  assert.deepEqual(await node.api.getClientIdListByGroup(group), [a.id]);
  await node.api.sendToGroup(group, 'to the long group');
  await a.client.waitForText('to the long group');
});

test('a handler that passes bad arguments is logged and the worker keeps serving', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const node = opened.node(
    await startNode(
      {},
      {
        handler: idHandler({
          async onMessage(clientId, message, { gateway }) {
            if (message === 'bad') await gateway.sendToClient('not-an-id', 'x');
            else await gateway.sendToClient(clientId, `echo ${String(message)}`);
          },
        }),
      },
    ),
  );
  const a = await connectWs(opened, node);
  const b = await connectWs(opened, node);
  a.client.send('bad');
  a.client.send('after');
  b.client.send('other');
  await a.client.waitForText('echo after');
  await b.client.waitForText('echo other');
  assert.equal(node.worker!.handlerErrors, 1);
  assert.deepEqual(a.client.texts().slice(1), ['echo after']);
});

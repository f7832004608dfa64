/**
 * Per-client commands at the gateway that holds the client (applyCommand), with fake clients:
 * close and destroy, close of every client of a uid, binds and groups through the registry,
 * session writes that replace or merge (nested plain objects merge, the rest replaces) in place,
 * on a copy, each bumping the version; a client that is gone gives null; sends are pushed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyCommand, copySession, mergeSession } from '../../src/gateway/client-commands.js';
import { ClientRegistry } from '../../src/gateway/client-registry.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import { fakeClient, type FakeClient } from '../helpers/fakes.js';

function registryOf(...ids: string[]) {
  const registry = new ClientRegistry({
    subscribe: async () => undefined,
    unsubscribe: async () => undefined,
    subscribed: async () => undefined,
  });
  const clients = ids.map((id) => fakeClient(id));
  for (const client of clients) registry.add(client);
  const pushed: Command[] = [];
  const apply = (cmd: Command) => applyCommand(registry, cmd, (send) => pushed.push(send));
  return { registry, clients, pushed, apply };
}

test('session writes replace or merge in place, on a copy, bumping the version; a gone client gives null', async () => {
  const { clients, apply } = registryOf('c1');
  const [c1] = clients as [FakeClient];
  const held = c1.session;
  const given = { a: { x: 1, y: [1, 2] }, b: 'keep' };
  assert.equal(await apply({ op: Op.SET_SESSION, c: 'c1', s: given }), 1);
  given.a.x = 99;
  assert.equal(c1.session, held);
  assert.deepEqual(c1.session, { a: { x: 1, y: [1, 2] }, b: 'keep' });
  assert.equal(await apply({ op: Op.UPDATE_SESSION, c: 'c1', s: { a: { y: [3], z: 2 }, c: null } }), 2);
  assert.deepEqual(c1.session, { a: { x: 1, y: [3], z: 2 }, b: 'keep', c: null });
  assert.equal(await apply({ op: Op.SET_SESSION, c: 'c1', s: { only: 1 } }), 3);
  assert.deepEqual(c1.session, { only: 1 });
  assert.equal(c1.session, held);
  assert.equal(await apply({ op: Op.UPDATE_SESSION, c: 'gone', s: {} }), null);
});

test('mergeSession merges nested plain objects and replaces arrays, bytes and other values', () => {
  const bytes = new Uint8Array([1]);
  assert.deepEqual(mergeSession({ a: { b: { c: 1 } }, l: [1, 2], v: bytes }, { a: { b: { d: 2 } }, l: [3], v: 'x' }), {
    a: { b: { c: 1, d: 2 } },
    l: [3],
    v: 'x',
  });
  const session = { nested: { n: 1 } };
  const copy = copySession(session);
  assert.notEqual(copy.nested, session.nested);
  assert.deepEqual(copy, session);
});

test('close, destroy and closing a uid reach the clients held here; binds and groups go through the registry', async () => {
  const { registry, clients, apply, pushed } = registryOf('c1', 'c2', 'c3');
  const [c1, c2, c3] = clients as [FakeClient, FakeClient, FakeClient];
  await apply({ op: Op.BIND_UID, c: 'c1', u: 'alice' });
  await apply({ op: Op.BIND_UID, c: 'c2', u: 'alice' });
  await apply({ op: Op.BIND_UID, c: 'gone', u: 'alice' });
  await apply({ op: Op.CLOSE_UID, u: 'alice', d: 'bye' });
  assert.deepEqual([c1.ended, c2.ended], [['close bye'], ['close bye']]);
  await apply({ op: Op.CLOSE_CLIENT, c: 'c3' });
  await apply({ op: Op.DESTROY_CLIENT, c: 'c3' });
  await apply({ op: Op.DESTROY_CLIENT, c: 'gone' });
  assert.deepEqual(c3.ended, ['close undefined', 'destroy']);
  await apply({ op: Op.UNBIND_UID, c: 'c1', u: 'someone-else' } as Command);
  assert.equal(c1.uid, null);
  await apply({ op: Op.JOIN_GROUP, c: 'c3', g: 'g' });
  await apply({ op: Op.JOIN_GROUP, c: 'c2', g: 'g' });
  await apply({ op: Op.LEAVE_GROUP, c: 'c3', g: 'g' });
  assert.deepEqual(
    [...registry.groups.get('g')!].map((c) => c.id),
    ['c2'],
  );
  await apply({ op: Op.UNGROUP, g: 'g' });
  assert.equal(registry.groups.has('g'), false);
  assert.equal(c2.groups.size, 0);
  const send: Command = { op: Op.SEND_TO_ALL, d: 'x' };
  await apply(send);
  assert.deepEqual(pushed, [send]);
  assert.equal(await apply({ op: Op.LEAVE, i: 'x' }), undefined);
});

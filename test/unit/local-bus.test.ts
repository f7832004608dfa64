/**
 * The Bus on the in-process transport (transport/local): nodes on one LocalHub reach each other
 * as through a direct exchange, each receiving only what is routed to the keys it holds (its
 * node key, the broadcast key, the uids and groups it subscribed), once per message; the last
 * holder's release unbinds; close unbinds everything and refuses later publishes.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { LocalHub } from '../../src/transport/local/local-hub.js';
import type { Bus } from '../../src/transport/bus.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import type { Route } from '../../src/protocol/routes.js';
import { ErrorCodes } from '../../src/errors.js';
import { localBus } from '../helpers/fakes.js';

const A = 'aaaaaaaaaaaa';
const B = 'bbbbbbbbbbbb';

/** Two nodes on a hub of their own; B holds `routes`; what B receives. */
async function twoNodes(t: TestContext, ...routes: Route[]) {
  const hub = new LocalHub();
  const a = await localBus(t, hub, A);
  const b = await localBus(t, hub, B);
  const toB = inbox(b);
  for (const route of routes) await b.subscribe(route);
  return { hub, a, b, toB };
}

/** What a bus receives, as "sender: payload" lines. */
function inbox(bus: Bus): string[] {
  const lines: string[] = [];
  bus.onCommands((commands, sender) => {
    for (const cmd of commands) lines.push(`${sender}: ${String((cmd as { d?: unknown }).d)}`);
  });
  return lines;
}

test('each node receives what is routed to its keys: broadcasts, its clients, the uids it holds', async (t) => {
  const { a, b, toB } = await twoNodes(t, { kind: 'uid', uid: 'alice' });
  const toA = inbox(a);
  assert.equal(a.isConnected, true);
  // one turn each: one message each
  await a.publish({ op: Op.SEND_TO_ALL, d: 'all' });
  await a.publish({ op: Op.SEND_TO_UIDS, u: ['alice'], d: 'to alice' });
  await a.publish({ op: Op.SEND_TO_CLIENTS, c: [`${A}1`], d: 'to a client of A' });
  await a.publish({ op: Op.SEND_TO_UIDS, u: ['nobody'], d: 'lost' });
  assert.deepEqual(toB, [`${A}: all`, `${A}: to alice`]);
  assert.deepEqual(toA, [`${A}: all`, `${A}: to a client of A`]);
  assert.equal(a.stats.messagesPublished, 4);
  assert.equal(b.stats.commandsConsumed, 2);
});

test('commands of one turn travel as one message, copied whole to each node bound to any of its keys', async (t) => {
  const { a, toB } = await twoNodes(t, { kind: 'uid', uid: 'alice' });
  await Promise.all([
    a.publish({ op: Op.SEND_TO_UIDS, u: ['alice'], d: '1' }),
    a.publish({ op: Op.SEND_TO_CLIENTS, c: [`${A}1`], d: '2' }),
  ]);
  assert.deepEqual(toB, [`${A}: 1`, `${A}: 2`]);
  assert.equal(a.stats.messagesPublished, 1);
});

test('a node holding several keys of one message gets it once', async (t) => {
  const { a, toB } = await twoNodes(t, { kind: 'uid', uid: 'x' }, { kind: 'group', group: 'g' });
  const commands: Command[] = [
    { op: Op.SEND_TO_UIDS, u: ['x', 'y'], d: '1' },
    { op: Op.SEND_TO_GROUPS, g: ['g'], d: '2' },
  ];
  await Promise.all(commands.map((c) => a.publish(c)));
  assert.deepEqual(toB, [`${A}: 1`, `${A}: 2`]);
});

test('the last holder of a route unbinds it; close unbinds everything and refuses later publishes', async (t) => {
  const hub = new LocalHub();
  const b = await localBus(t, hub, B, { uidBuckets: 4 });
  const key = b.keyOf({ kind: 'uid', uid: 'alice' })!;
  assert.match(key, /^ub\.[0-3]$/);
  await b.subscribe({ kind: 'uid', uid: 'alice' });
  await b.subscribe({ kind: 'uid', uid: 'alice' });
  await b.unsubscribe({ kind: 'uid', uid: 'alice' });
  assert.equal(hub.boundCount(key), 1);
  await b.unsubscribe({ kind: 'uid', uid: 'alice' });
  assert.equal(hub.boundCount(key), 0);
  assert.deepEqual(b.desiredKeys().sort(), ['all', `n.${B}`]);
  assert.equal(hub.boundCount(`n.${B}`), 1);
  assert.equal(await b.probe(A), 'unknown');
  await b.close();
  assert.equal(hub.boundCount(`n.${B}`), 0);
  assert.equal(hub.boundCount('all'), 0);
  assert.equal(b.isConnected, false);
  await assert.rejects(b.publish({ op: Op.SEND_TO_ALL, d: 'late' }), { code: ErrorCodes.BUS_CLOSED });
});

/**
 * The gateway's delivery path with fake clients: ClientRegistry (indexes by uid and group, the
 * first holder subscribes and the last releases, a failed subscribe rolls back), Delivery (each
 * send framed once, the last text message reused, a client in several groups of one call reached
 * once, also across the parts of a split call) and WriteScheduler (one flush per marked client
 * when the turn ends, forgotten clients skipped unless marked again).
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { ClientRegistry, type RouteHolder } from '../../src/gateway/client-registry.js';
import { Delivery } from '../../src/gateway/delivery.js';
import { WriteScheduler, type Flushable } from '../../src/gateway/write-scheduler.js';
import { Op } from '../../src/protocol/commands.js';
import type { Route } from '../../src/protocol/routes.js';
import { fakeClient, stateOf, type FakeClient } from '../helpers/fakes.js';

const name = (route: Route): string =>
  route.kind === 'uid' ? `u.${route.uid}` : route.kind === 'group' ? `g.${route.group}` : route.kind;

/** A bus side that logs subscribe (+) and unsubscribe (-); `refuse` fails the next subscribe. */
function routeHolder() {
  const holder = {
    log: [] as string[],
    refuse: null as Error | null,
    async subscribe(route: Route) {
      holder.log.push(`+${name(route)}`);
      const err = holder.refuse;
      holder.refuse = null;
      if (err) throw err;
    },
    async unsubscribe(route: Route) {
      holder.log.push(`-${name(route)}`);
    },
    async subscribed() {},
  };
  return holder satisfies RouteHolder;
}

/** A gateway holding clients `ids`; `groups` lists, for each client in turn, the groups it joins. */
async function inGroups(groups: string[][]) {
  const g = gateway(...groups.map((_, i) => `c${i + 1}`));
  for (const [i, names] of groups.entries()) for (const name of names) await g.registry.joinGroup(g.clients[i]!, name);
  return g;
}

function gateway(...ids: string[]) {
  const routes = routeHolder();
  const registry = new ClientRegistry(routes);
  const clients = ids.map((id) => fakeClient(id));
  for (const client of clients) registry.add(client);
  let counted = 0;
  const delivery = new Delivery(registry, () => (counted += 1));
  return { routes, registry, clients, delivery, counted: () => counted };
}

const texts = (client: FakeClient): unknown[] => client.received.map((m) => m.data);

test('a uid: the first holder subscribes, the last releases; binding another uid replaces the old one', async () => {
  const { routes, registry, clients } = gateway('c1', 'c2');
  const [c1, c2] = clients as [FakeClient, FakeClient];
  await registry.bindUid(c1, 'alice');
  await registry.bindUid(c2, 'alice');
  await registry.bindUid(c1, 'alice'); // already: nothing
  assert.deepEqual(routes.log, ['+u.alice']);
  await registry.bindUid(c1, 'bob');
  assert.deepEqual(routes.log, ['+u.alice', '+u.bob']);
  assert.deepEqual(
    [...registry.uids.get('alice')!].map((c) => c.id),
    ['c2'],
  );
  registry.remove(c2);
  assert.deepEqual(routes.log, ['+u.alice', '+u.bob', '-u.alice']);
  assert.equal(registry.uids.has('alice'), false);
  registry.unbindUid(c1);
  assert.equal(c1.uid, null);
  assert.deepEqual(routes.log.at(-1), '-u.bob');
  assert.equal(registry.size, 1);
});

test('a failed subscribe rolls back: no local state claims a binding the broker does not have', async () => {
  const { routes, registry, clients } = gateway('c1');
  const [c1] = clients as [FakeClient];
  routes.refuse = new Error('bind refused');
  await assert.rejects(registry.bindUid(c1, 'alice'), /bind refused/);
  assert.equal(c1.uid, null);
  assert.equal(registry.uids.has('alice'), false);
  routes.refuse = new Error('bind refused');
  await assert.rejects(registry.joinGroup(c1, 'room'), /bind refused/);
  assert.equal(c1.groups.has('room'), false);
  assert.equal(registry.groups.has('room'), false);
});

test('groups: join, leave, ungroup and remove subscribe and release on the first and last member', async () => {
  const { routes, registry, clients } = await inGroups([['a', 'b'], ['a']]);
  const [c1, c2] = clients as [FakeClient, FakeClient];
  assert.deepEqual(routes.log, ['+g.a', '+g.b']);
  registry.leaveGroup(c1, 'a');
  registry.leaveGroup(c1, 'a'); // not a member any more: nothing
  assert.deepEqual(routes.log, ['+g.a', '+g.b']);
  registry.ungroup('a');
  assert.equal(c2.groups.has('a'), false);
  registry.remove(c1);
  registry.remove(c1);
  assert.deepEqual(routes.log, ['+g.a', '+g.b', '-g.a', '-g.b']);
  assert.equal(c1.groups.size, 0);
});

test('a send to clients reaches those held here, with one message for all of them', () => {
  const { clients, delivery, counted } = gateway('c1', 'c2', 'c3');
  const [c1, c2, c3] = clients as [FakeClient, FakeClient, FakeClient];
  delivery.push({ op: Op.SEND_TO_CLIENTS, c: ['c1', 'elsewhere', 'c3'], d: 'hi' });
  assert.deepEqual(texts(c1), ['hi']);
  assert.deepEqual(texts(c2), []);
  assert.equal(c1.received[0], c3.received[0]);
  assert.equal(counted(), 2);
});

test('a send to all skips the excluded clients', () => {
  const { clients, delivery } = gateway('c1', 'c2', 'c3');
  delivery.push({ op: Op.SEND_TO_ALL, d: 'all', x: ['c2'] });
  assert.deepEqual(clients.map(texts), [['all'], [], ['all']]);
});

test('the same text in consecutive sends reuses one message; bytes never do', async () => {
  const { registry, clients, delivery } = gateway('c1', 'c2');
  const [c1, c2] = clients as [FakeClient, FakeClient];
  await registry.bindUid(c1, 'a');
  await registry.bindUid(c2, 'b');
  delivery.push({ op: Op.SEND_TO_UIDS, u: ['a'], d: 'note' });
  delivery.push({ op: Op.SEND_TO_UIDS, u: ['b'], d: 'note' });
  assert.equal(c1.received[0], c2.received[0]);
  const bytes = Buffer.from('x');
  delivery.push({ op: Op.SEND_TO_UIDS, u: ['a'], d: bytes });
  delivery.push({ op: Op.SEND_TO_UIDS, u: ['b'], d: bytes });
  assert.notEqual(c1.received[1], c2.received[1]);
  delivery.push({ op: Op.SEND_TO_UIDS, u: ['nobody'], d: 'x' });
  assert.equal(c1.received.length, 2);
});

test('a client in several groups of one send, or of the parts of one split call, gets it once', async () => {
  const { clients, delivery } = await inGroups([['a', 'b'], ['b']]);
  const [c1, c2] = clients as [FakeClient, FakeClient];
  delivery.push({ op: Op.SEND_TO_GROUPS, g: ['a', 'b'], d: 'one' });
  assert.deepEqual([texts(c1), texts(c2)], [['one'], ['one']]);
  // a call split in two parts (same k from the same sender)
  delivery.push({ op: Op.SEND_TO_GROUPS, g: ['a'], d: 'split', k: 1 }, 'node1');
  delivery.push({ op: Op.SEND_TO_GROUPS, g: ['b'], d: 'split', k: 1 }, 'node1');
  assert.deepEqual(
    [texts(c1), texts(c2)],
    [
      ['one', 'split'],
      ['one', 'split'],
    ],
  );
  // another call, or the same k from another sender, starts afresh
  delivery.push({ op: Op.SEND_TO_GROUPS, g: ['b'], d: 'again', k: 1 }, 'node2');
  delivery.push({ op: Op.SEND_TO_GROUPS, g: ['a'], d: 'next', k: 2 }, 'node1');
  assert.deepEqual(texts(c1), ['one', 'split', 'again', 'next']);
  // one group sent twice in separate sends arrives twice; excluded members never
  delivery.push({ op: Op.SEND_TO_GROUPS, g: ['b'], d: 'x', x: ['c1'] });
  assert.deepEqual(texts(c2), ['one', 'split', 'again', 'x']);
});

test('WriteScheduler flushes each marked client when the turn ends, skipping forgotten ones unless marked again', (t) => {
  mock.timers.enable({ apis: ['setImmediate'] });
  t.after(() => mock.timers.reset());
  const scheduler = new WriteScheduler();
  const flushed: string[] = [];
  const client = (id: string): Flushable => ({
    flush: () => {
      flushed.push(id);
      // marked while flushing: the next run
      if (id === 'a' && flushed.length === 1) scheduler.mark(b);
    },
  });
  const a = client('a');
  const b = client('b');
  const c = client('c');
  scheduler.forget(c); // nothing pending: remembers nothing
  scheduler.mark(a);
  scheduler.mark(c);
  scheduler.forget(c);
  assert.deepEqual(flushed, []);
  scheduler.flushAll(); // a marks b while flushing: b waits for the next run
  assert.deepEqual(flushed, ['a']);
  mock.timers.tick(0);
  assert.deepEqual(flushed, ['a', 'b']);
  scheduler.mark(c);
  scheduler.mark(a);
  assert.deepEqual(flushed, ['a', 'b']);
  mock.timers.tick(0);
  assert.deepEqual(flushed, ['a', 'b', 'c', 'a']);
  // forgotten, then marked again in the same turn (it queued anew): flushed (its first mark is still
  // in the run too; a Client's second flush finds its queue empty)
  scheduler.mark(c);
  scheduler.forget(c);
  scheduler.mark(c);
  mock.timers.tick(0);
  assert.deepEqual(flushed.slice(4), ['c', 'c']);
});

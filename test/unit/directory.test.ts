/**
 * The holder directory (cluster/directory.ts) with a fake bus and a fake membership, no broker:
 * the table both ways; routing only once settled and every peer's state arrived, to the node keys
 * of a key's holders (this node's own included), by key for what it cannot answer; DIR_STATE in
 * parts replacing a peer's entries, DIR_UPDATE applied and acked once per turn; the announcer's
 * one DIR_UPDATE per turn and its promise (published and acked by every peer that asked), peers
 * gone no longer waited for and sent a DIR_DROP; the answer to a hello in parts; and the resets
 * (lost broker session, event-loop stall, DIR_DROP) that route by key until every peer answered.
 */
import { mock, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Directory, type DirectoryOptions } from '../../src/cluster/directory.js';
import { DirectoryTable } from '../../src/cluster/directory-table.js';
import type { Membership } from '../../src/cluster/membership.js';
import { Op, type DirectoryCommand } from '../../src/protocol/commands.js';
import type { Bus } from '../../src/transport/bus.js';
import { deferred, type Deferred } from '../../src/transport/outgoing-batch.js';
import { silentLog, stateOf } from '../helpers/fakes.js';

const SELF = 'self';

/** What Directory uses of a Bus: what it publishes (each publish's promise under test control when `manual`). */
class FakeBus extends EventEmitter {
  readonly instance = SELF;
  isConnected = true;
  manual = false;
  readonly sent: DirectoryCommand[] = [];
  readonly publishes: Deferred[] = [];
  /** the keys this node's local holders want */
  readonly held = new Set<string>();
  readonly keys = {
    setRouter: (): void => undefined,
    setAnnouncer: (): void => undefined,
    holds: (key: string): boolean => this.held.has(key),
  };

  desiredKeys(): string[] {
    return [...this.held];
  }

  /** The broker session lost and back, `meanwhile` run in between; what was sent is forgotten. */
  reconnect(meanwhile: () => void): void {
    this.isConnected = false;
    this.emit('disconnected');
    meanwhile();
    this.sent.length = 0;
    this.isConnected = true;
    this.emit('connected');
  }

  publish(cmd: DirectoryCommand): Promise<void> {
    this.sent.push(cmd);
    if (!this.manual) return Promise.resolve();
    const done = deferred();
    this.publishes.push(done);
    return done.promise;
  }

  /** The commands sent with this op, in order; forgets every command sent so far when `clear`. */
  of<O extends DirectoryCommand['op']>(op: O, clear = false): Extract<DirectoryCommand, { op: O }>[] {
    const out = this.sent.filter((c) => c.op === op) as Extract<DirectoryCommand, { op: O }>[];
    if (clear) this.sent.length = 0;
    return out;
  }
}

/** What Directory uses of Membership: the members (suspect ones are listed but not live). */
class FakeMembership extends EventEmitter {
  readonly members = new Map<string, { suspect: boolean }>();

  constructor(instances: string[]) {
    super();
    for (const instance of instances) this.members.set(instance, { suspect: false });
  }

  list(): { instance: string }[] {
    return [...this.members.keys()].map((instance) => ({ instance }));
  }

  isLive(instance: string): boolean {
    const member = this.members.get(instance);
    return member !== undefined && !member.suspect;
  }

  join(instance: string): void {
    this.members.set(instance, { suspect: false });
    this.emit('join', instance);
  }

  leave(instance: string): void {
    this.members.delete(instance);
    this.emit('leave', instance, 'left');
  }

  silent(instance: string): void {
    this.members.delete(instance);
    this.emit('leave', instance, 'silent');
  }

  suspect(instance: string): void {
    this.members.get(instance)!.suspect = true;
    this.emit('suspect', instance);
  }
}

function setup(t: TestContext, peers: string[] = [], options: Partial<DirectoryOptions> = {}) {
  const bus = new FakeBus();
  const membership = new FakeMembership([SELF, ...peers]);
  const dir = new Directory(
    bus as unknown as Bus,
    membership as unknown as Membership,
    { settleMs: 0, stallMs: 60_000, askAgainMs: 60_000, retainMs: 60_000, ...options },
    silentLog,
  );
  t.after(() => dir.stop());
  dir.start();
  return { bus, membership, dir };
}

const hello = (i: string): DirectoryCommand => ({ op: Op.DIR_HELLO, i, t: SELF });
const state = (i: string, k: string[], m = 0): DirectoryCommand => ({ op: Op.DIR_STATE, i, t: SELF, k, m });
const update = (i: string, s: number, a: string[], o: string[] = []): DirectoryCommand => ({
  op: Op.DIR_UPDATE,
  i,
  s,
  a,
  o,
});
const ack = (i: string, s: number): DirectoryCommand => ({ op: Op.DIR_ACK, i, t: SELF, s });
const drop = (i: string): DirectoryCommand => ({ op: Op.DIR_DROP, i, t: SELF });

/** X and Y were asked; routing waits for both answers, then routes u.a (held by X) to X. */
function askedXYThenRouting(bus: FakeBus, dir: Directory): void {
  assert.deepEqual(
    bus.of(Op.DIR_HELLO).map((c) => c.t),
    ['X', 'Y'],
  );
  dir.onCommand(state('X', ['u.a']));
  assert.equal(dir.route(['u.a']), null);
  dir.onCommand(state('Y', []));
  assert.deepEqual(dir.route(['u.a']), ['n.X']);
}

/** Lets the turn's setImmediate callbacks (acks, announcements) run. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the table ---------------------------------------------------------------------------

test('table: holders and keys both ways; the last holder gone deletes the key', () => {
  const table = new DirectoryTable();
  table.add('X', 'u.a');
  table.add('X', 'g.x');
  table.add('Y', 'u.a');
  assert.deepEqual([...table.holdersOf('u.a')!].sort(), ['X', 'Y']);
  assert.deepEqual([...table.keysOf('X')!].sort(), ['g.x', 'u.a']);
  assert.equal(table.countKeys('u.'), 1);
  assert.equal(table.countKeys('g.'), 1);
  assert.equal(table.countKeys(''), 2);

  table.remove('X', 'u.a');
  assert.deepEqual([...table.holdersOf('u.a')!], ['Y']);
  assert.deepEqual([...table.keysOf('X')!], ['g.x']);
  table.remove('Y', 'u.a');
  assert.equal(table.holdersOf('u.a'), undefined);
  assert.equal(table.countKeys('u.'), 0);
  table.remove('Y', 'u.nobody');

  table.add('Y', 'g.x');
  table.dropNode('X');
  assert.equal(table.keysOf('X'), undefined);
  assert.deepEqual([...table.holdersOf('g.x')!], ['Y']);
  table.dropNode('Y');
  assert.equal(table.holdersOf('g.x'), undefined);
  assert.equal(table.countKeys(''), 0);
  table.dropNode('Z');
});

// ---- routing -----------------------------------------------------------------------------

test('routing waits for the settle time (counted by key), then answers', async (t) => {
  const { dir } = setup(t, ['X'], { settleMs: 150 });
  dir.onCommand(state('X', ['u.a']));
  assert.equal(dir.route(['u.a']), null);
  assert.equal(dir.routing, false);
  assert.equal(dir.stats.byKey, 1);
  await sleep(320);
  assert.equal(dir.routing, true);
  assert.deepEqual(dir.route(['u.a']), ['n.X']);
  assert.deepEqual(dir.stats, { routed: 1, byKey: 1, resets: 0 });
});

test("routing waits for every peer's state", (t) => {
  const { bus, dir } = setup(t, ['X', 'Y']);
  askedXYThenRouting(bus, dir);
});

test("routes to the holders' node keys, this node's own included; by key when it cannot say", (t) => {
  const { bus, dir } = setup(t, ['X', 'Y']);
  dir.onCommand(state('X', ['u.a', 'u.both', 'g.x']));
  dir.onCommand(state('Y', ['g.x']));
  bus.held.add('u.mine');
  bus.held.add('u.both');

  assert.deepEqual(dir.route(['u.a']), ['n.X']);
  assert.deepEqual(dir.route(['u.mine']), ['n.self']);
  assert.deepEqual(dir.route(['u.both']), ['n.self', 'n.X']);
  assert.deepEqual(dir.route(['g.x'])?.sort(), ['n.X', 'n.Y']);
  assert.deepEqual(dir.route(['n.Y']), ['n.Y']);
  assert.deepEqual(dir.stats, { routed: 5, byKey: 0, resets: 0 });

  assert.equal(dir.route(['u.nobody']), null);
  assert.equal(dir.route(['all']), null);
  assert.equal(dir.stats.byKey, 2);

  assert.deepEqual(dir.route(['u.a', 'u.mine', 'g.x', 'u.both']), ['n.X', 'n.self', 'n.Y']);
  assert.equal(dir.route(['u.a', 'u.nobody']), null);
  assert.deepEqual(dir.stats, { routed: 6, byKey: 3, resets: 0 });
  assert.deepEqual(dir.holdersOf('g.x'), ['X', 'Y']);
});

// ---- what arrives ------------------------------------------------------------------------

test("a state in parts replaces the peer's earlier entries; updates apply on top", (t) => {
  const { dir } = setup(t, ['X']);
  dir.onCommand(state('X', ['u.old', 'u.keep']));
  assert.deepEqual(dir.route(['u.old']), ['n.X']);

  dir.onCommand(drop('X'));
  dir.onCommand(state('X', ['u.keep', 'u.p1'], 1));
  assert.equal(dir.route(['u.p1']), null, 'not routing while parts arrive');
  dir.onCommand(state('X', ['u.p2'], 0));
  assert.equal(dir.route(['u.old']), null);
  assert.deepEqual(dir.route(['u.keep']), ['n.X']);
  assert.deepEqual(dir.route(['u.p1']), ['n.X']);
  assert.deepEqual(dir.route(['u.p2']), ['n.X']);

  dir.onCommand(update('X', 1, ['u.new', 'g.x'], ['u.keep']));
  assert.deepEqual(dir.route(['u.new']), ['n.X']);
  assert.deepEqual(dir.route(['g.x']), ['n.X']);
  assert.equal(dir.route(['u.keep']), null);
  assert.equal(dir.countKeys('u.'), 3);
});

test('a state nobody asked for, or a second answer after the first, is ignored', (t) => {
  const { dir } = setup(t, ['X']);
  dir.onCommand(state('Z', ['u.z']));
  dir.onCommand(state('X', ['u.a']));
  dir.onCommand(state('X', ['u.b']));
  assert.deepEqual(dir.route(['u.a']), ['n.X']);
  assert.equal(dir.route(['u.b']), null);
  assert.equal(dir.route(['u.z']), null);
});

test('every update is acked, once per turn per announcer with its highest number', async (t) => {
  const { bus, dir } = setup(t, ['X', 'Y']);
  dir.onCommand(state('X', []));
  bus.sent.length = 0;
  dir.onCommand(update('X', 1, ['u.a']));
  dir.onCommand(update('X', 2, ['u.b']));
  dir.onCommand(update('Y', 7, ['u.c']));
  assert.deepEqual(bus.of(Op.DIR_ACK), [], 'acks wait for the end of the turn');
  await turn();
  assert.deepEqual(bus.of(Op.DIR_ACK, true), [
    { op: Op.DIR_ACK, i: SELF, t: 'X', s: 2 },
    { op: Op.DIR_ACK, i: SELF, t: 'Y', s: 7 },
  ]);
  dir.onCommand(update('X', 3, [], ['u.a']));
  await turn();
  assert.deepEqual(bus.of(Op.DIR_ACK), [{ op: Op.DIR_ACK, i: SELF, t: 'X', s: 3 }]);
});

test('an update from a node not asked yet (listed by membership or not yet) is acked, applied, and makes this node ask it', async (t) => {
  const { bus, membership, dir } = setup(t);
  membership.members.set('N', { suspect: false });
  dir.onCommand(update('N', 4, ['u.n']));
  dir.onCommand(update('Z', 1, ['u.z']));
  assert.deepEqual(
    bus.of(Op.DIR_HELLO).map((c) => c.t),
    ['N', 'Z'],
  );
  assert.equal(dir.route(['u.n']), null, 'routing waits for their answers');
  assert.deepEqual(dir.holdersOf('u.z'), ['Z'], 'the update applied meanwhile');
  await turn();
  assert.deepEqual(
    bus.of(Op.DIR_ACK).map((c) => [c.t, c.s]),
    [
      ['N', 4],
      ['Z', 1],
    ],
  );
  dir.onCommand(state('N', ['u.n']));
  dir.onCommand(state('Z', ['u.z']));
  assert.deepEqual(dir.route(['u.n']), ['n.N']);
});

// ---- the announcer -----------------------------------------------------------------------

test('keys held in one turn travel in one update, which resolves once published and acked by every acker', async (t) => {
  const { bus, dir } = setup(t, ['X', 'Y']);
  dir.onCommand(hello('X'));
  dir.onCommand(hello('Y'));
  bus.sent.length = 0;
  bus.manual = true;

  const a = dir.announcer.held('u.a');
  const b = dir.announcer.held('g.x');
  assert.deepEqual(bus.of(Op.DIR_UPDATE), []);
  await turn();
  assert.deepEqual(bus.of(Op.DIR_UPDATE), [{ op: Op.DIR_UPDATE, i: SELF, s: 1, a: ['u.a', 'g.x'], o: [] }]);
  assert.equal(dir.announcer.announcements, 1);

  dir.onCommand(ack('X', 1));
  dir.onCommand(ack('Y', 1));
  assert.equal(await stateOf(a), 'pending', 'acked but not confirmed by the broker');
  bus.publishes[0]!.resolve();
  assert.equal(await stateOf(a), 'resolved');
  assert.equal(await stateOf(b), 'resolved');
  assert.equal(await stateOf(dir.announcer.held('u.a')), 'resolved', 'an announced key');
});

test('a turn of many keys is announced in parts of at most 1000, and resolves once every part is acked', async (t) => {
  const { bus, dir } = setup(t, ['X']);
  dir.onCommand(hello('X'));
  bus.sent.length = 0;
  const keys = Array.from({ length: 2500 }, (_, i) => `u.${i}`);
  const held = keys.map((key) => dir.announcer.held(key));
  await turn();
  const parts = bus.of(Op.DIR_UPDATE);
  assert.deepEqual(
    parts.map((c) => [c.s, c.a.length, c.o.length]),
    [
      [1, 1000, 0],
      [2, 1000, 0],
      [3, 500, 0],
    ],
  );
  assert.deepEqual(
    parts.flatMap((c) => c.a),
    keys,
  );
  dir.onCommand(ack('X', 2));
  assert.equal(await stateOf(held[0]!), 'pending', 'two parts of three acked');
  dir.onCommand(ack('X', 3));
  assert.equal(await stateOf(held[0]!), 'resolved');
  assert.equal(await stateOf(held[2499]!), 'resolved');
});

test('an announcement that could not be published rejects its callers and is made again, as the keys stand then', async (t) => {
  const { bus, dir } = setup(t, ['X']);
  bus.manual = true;
  const a = dir.announcer.held('u.a');
  void dir.announcer.held('u.b');
  await turn();
  assert.deepEqual(bus.of(Op.DIR_UPDATE, true), [{ op: Op.DIR_UPDATE, i: SELF, s: 1, a: ['u.a', 'u.b'], o: [] }]);
  dir.announcer.released('u.b'); // let go of before the failure is known
  bus.publishes[0]!.reject(new Error('the broker refused it'));
  assert.equal(await stateOf(a), 'rejected');
  const again = dir.announcer.held('u.a');
  await sleep(1100);
  const updates = bus.of(Op.DIR_UPDATE);
  assert.deepEqual(
    updates.map((c) => [c.s, c.a, c.o]),
    [[2, ['u.a'], ['u.b']]],
    'u.a announced again with the let-go of u.b, once (the retry found nothing left to do)',
  );
  bus.publishes.at(-1)!.resolve();
  assert.equal(await stateOf(again), 'resolved', 'no acker: published is enough');
});

test('the promise waits for the last acker; an ack of a later number acks the earlier ones', async (t) => {
  const { bus, dir } = setup(t, ['X', 'Y']);
  dir.onCommand(hello('X'));
  dir.onCommand(hello('Y'));
  const keys = Array.from({ length: 1500 }, (_, i) => `u.${i}`);
  const first = dir.announcer.held(keys[0]!);
  for (const key of keys.slice(1)) void dir.announcer.held(key);
  await turn();
  assert.deepEqual(
    bus.of(Op.DIR_UPDATE).map((c) => [c.s, c.a.length]),
    [
      [1, 1000],
      [2, 500],
    ],
  );
  assert.equal(await stateOf(first), 'pending', 'published, no acks');
  dir.onCommand(ack('X', 2));
  assert.equal(await stateOf(first), 'pending');
  assert.equal(await stateOf(dir.announcer.held(keys[0]!)), 'pending', 'held again: the same announcement');
  dir.onCommand(ack('Y', 1));
  assert.equal(await stateOf(first), 'pending', 'part 2 not acked by Y yet');
  dir.onCommand(ack('Y', 5));
  assert.equal(await stateOf(first), 'resolved');
});

test('what is held or let go of while an announcement is in flight goes out together once it is published and acked', async (t) => {
  const { bus, dir } = setup(t, ['X']);
  dir.onCommand(hello('X'));
  bus.sent.length = 0;
  bus.manual = true;
  const first = dir.announcer.held('u.a');
  await turn();
  assert.deepEqual(
    bus.of(Op.DIR_UPDATE, true).map((c) => [c.s, c.a, c.o]),
    [[1, ['u.a'], []]],
    'alone: announced in its own turn',
  );

  const b = dir.announcer.held('u.b');
  await turn();
  const c = dir.announcer.held('u.c');
  dir.announcer.released('u.a');
  const gone = dir.announcer.held('u.gone');
  dir.announcer.released('u.gone');
  await turn();
  assert.deepEqual(bus.of(Op.DIR_UPDATE), [], 'nothing more while announcement 1 is in flight');
  assert.equal(await stateOf(gone), 'pending', 'waits for the turn it would have gone in');

  bus.publishes[0]!.resolve();
  await turn();
  assert.deepEqual(bus.of(Op.DIR_UPDATE), [], 'published but not acked: still in flight');
  dir.onCommand(ack('X', 1));
  assert.equal(await stateOf(first), 'resolved');
  await turn();
  assert.deepEqual(
    bus.of(Op.DIR_UPDATE, true).map((c) => [c.s, c.a, c.o]),
    [[2, ['u.b', 'u.c'], ['u.a']]],
    'two turns of changes in one announcement',
  );
  assert.equal(await stateOf(b), 'pending');
  assert.equal(await stateOf(gone), 'pending', 'its turn is the one announced');
  bus.publishes[1]!.resolve();
  dir.onCommand(ack('X', 2));
  assert.equal(await stateOf(b), 'resolved');
  assert.equal(await stateOf(gone), 'resolved');
  assert.equal(await stateOf(c), 'resolved');
});

test('a stop resolves what waits behind an announcement in flight', async (t) => {
  const { bus, dir } = setup(t, ['X']);
  dir.onCommand(hello('X'));
  const first = dir.announcer.held('u.a');
  await turn();
  const waiting = dir.announcer.held('u.b');
  await turn();
  assert.deepEqual(
    bus.of(Op.DIR_UPDATE).map((c) => c.a),
    [['u.a']],
  );
  dir.stop();
  assert.equal(await stateOf(first), 'resolved');
  assert.equal(await stateOf(waiting), 'resolved');
});

test('held and released in one turn announces nothing; released after announced goes in `o`', async (t) => {
  const { bus, dir } = setup(t, ['X']);
  const gone = dir.announcer.held('u.gone');
  dir.announcer.released('u.gone');
  dir.announcer.released('u.never');
  await turn();
  assert.deepEqual(bus.of(Op.DIR_UPDATE), []);
  assert.equal(await stateOf(gone), 'resolved');

  void dir.announcer.held('u.gone');
  const kept = dir.announcer.held('u.kept');
  dir.announcer.released('u.gone');
  await turn();
  assert.deepEqual(
    bus.of(Op.DIR_UPDATE, true).map((c) => [c.a, c.o]),
    [[['u.kept'], []]],
  );
  assert.equal(await stateOf(kept), 'resolved', 'no acker yet');

  dir.announcer.released('u.kept');
  await turn();
  assert.deepEqual(bus.of(Op.DIR_UPDATE, true), [{ op: Op.DIR_UPDATE, i: SELF, s: 2, a: [], o: ['u.kept'] }]);

  void dir.announcer.held('u.back');
  await turn();
  dir.announcer.released('u.back');
  assert.equal(await stateOf(dir.announcer.held('u.back')), 'resolved', 'released and held again in one turn');
  await turn();
  assert.deepEqual(
    bus.of(Op.DIR_UPDATE).map((c) => [c.a, c.o]),
    [[['u.back'], []]],
  );
});

for (const how of ['leave', 'silent', 'suspect'] as const) {
  test(`a peer gone (${how}) no longer holds up an announcement and is sent a DIR_DROP`, async (t) => {
    const { bus, membership, dir } = setup(t, ['X', 'Y']);
    dir.onCommand(state('X', ['u.x']));
    dir.onCommand(state('Y', []));
    dir.onCommand(hello('X'));
    dir.onCommand(hello('Y'));
    const p = dir.announcer.held('u.a');
    await turn();
    dir.onCommand(ack('Y', 1));
    assert.equal(await stateOf(p), 'pending');
    bus.sent.length = 0;
    membership[how]('X');
    assert.equal(await stateOf(p), 'resolved');
    assert.deepEqual(bus.of(Op.DIR_DROP), [{ op: Op.DIR_DROP, i: SELF, t: 'X' }]);
    assert.equal(dir.routing, true, 'not waited for');
    if (how === 'leave') assert.equal(dir.route(['u.x']), null, 'a node that left: its entries dropped');
    // One that fell silent or vanished from the broker may come back with its queue: pushes
    // still go to its node key (as to its bindings), but it counts as offline.
    else assert.deepEqual(dir.route(['u.x']), ['n.X'], 'its entries kept');
    assert.equal(dir.holdsKey('u.x'), false, 'offline');

    // A later announcement does not wait for it either.
    const q = dir.announcer.held('u.b');
    await turn();
    dir.onCommand(ack('Y', 2));
    assert.equal(await stateOf(q), 'resolved');
  });
}

test('a peer gone that never asked is not sent a DIR_DROP', (t) => {
  const { bus, membership } = setup(t, ['X']);
  bus.sent.length = 0;
  membership.leave('X');
  assert.deepEqual(bus.sent, []);
});

test('a hello from a node membership does not list (or suspects) is ignored', async (t) => {
  const { bus, membership, dir } = setup(t, ['S']);
  dir.onCommand(state('S', []));
  membership.members.get('S')!.suspect = true;
  bus.sent.length = 0;
  dir.onCommand(hello('Z'));
  dir.onCommand(hello('S'));
  assert.deepEqual(bus.sent, []);
  const p = dir.announcer.held('u.a');
  await turn();
  assert.equal(await stateOf(p), 'resolved', 'neither is waited for');
});

// ---- answering a hello -------------------------------------------------------------------

test('a hello is answered with the state in parts of at most 1000 keys', async (t) => {
  const { bus, dir } = setup(t, ['X']);
  const keys = Array.from({ length: 2500 }, (_, i) => `u.${i}`);
  for (const key of keys) void dir.announcer.held(key);
  await turn();
  bus.sent.length = 0;
  dir.onCommand(hello('X'));
  const parts = bus.of(Op.DIR_STATE);
  assert.deepEqual(
    parts.map((p) => [p.t, p.k.length, p.m]),
    [
      ['X', 1000, 1],
      ['X', 1000, 1],
      ['X', 500, 0],
    ],
  );
  assert.deepEqual(
    parts.flatMap((p) => p.k),
    keys,
  );
  assert.deepEqual(bus.of(Op.DIR_HELLO), [], 'X was asked already');

  bus.sent.length = 0;
  for (let i = 0; i < 500; i++) dir.announcer.released(`u.${i}`);
  await turn();
  bus.sent.length = 0;
  dir.onCommand(hello('X'));
  assert.deepEqual(
    bus.of(Op.DIR_STATE).map((p) => [p.k.length, p.m]),
    [
      [1000, 1],
      [1000, 0],
    ],
  );
});

test('an empty state is one part; a hello from a peer not asked yet is answered with a hello', (t) => {
  const { bus, membership, dir } = setup(t);
  membership.members.set('N', { suspect: false });
  dir.onCommand(hello('N'));
  assert.deepEqual(bus.sent, [
    { op: Op.DIR_STATE, i: SELF, t: 'N', k: [], m: 0 },
    { op: Op.DIR_HELLO, i: SELF, t: 'N' },
  ]);
  assert.equal(dir.routing, false, 'waits for its state');
  dir.onCommand(state('N', []));
  assert.equal(dir.routing, true);
});

// ---- resets ------------------------------------------------------------------------------

test('a lost broker session routes by key until connected and every state arrived again', (t) => {
  const { bus, dir } = setup(t, ['X']);
  dir.onCommand(state('X', ['u.a']));
  assert.deepEqual(dir.route(['u.a']), ['n.X']);

  bus.isConnected = false;
  bus.emit('disconnected');
  assert.equal(dir.route(['u.a']), null);
  dir.onCommand(state('X', ['u.a']));
  assert.equal(dir.route(['u.a']), null, 'a state not asked for');

  bus.sent.length = 0;
  bus.isConnected = true;
  bus.emit('connected');
  assert.deepEqual(bus.of(Op.DIR_HELLO), [{ op: Op.DIR_HELLO, i: SELF, t: 'X' }]);
  assert.equal(dir.route(['u.a']), null);
  dir.onCommand(state('X', ['u.a']));
  assert.deepEqual(dir.route(['u.a']), ['n.X']);
});

test('a stall resets the directory and asks every peer again', (t) => {
  const { bus, dir } = setup(t, ['X', 'Y'], { stallMs: 150 });
  dir.onCommand(state('X', ['u.a']));
  dir.onCommand(state('Y', []));
  assert.deepEqual(dir.route(['u.a']), ['n.X']);
  bus.sent.length = 0;

  const until = Date.now() + 250;
  while (Date.now() < until);
  assert.equal(dir.route(['u.a']), null);
  assert.equal(dir.stats.resets, 1);
  askedXYThenRouting(bus, dir);
});

test('the entries of a peer taken for dead are kept for retainMs, then dropped; one that comes back is asked', async (t) => {
  const { bus, membership, dir } = setup(t, ['X', 'Y'], { retainMs: 150 });
  dir.onCommand(state('X', ['u.x']));
  dir.onCommand(state('Y', ['u.y']));
  membership.silent('X');
  membership.suspect('Y');
  assert.deepEqual(dir.route(['u.x']), ['n.X']);
  await sleep(350);
  assert.equal(dir.route(['u.x']), null, 'dropped after retainMs');
  assert.equal(dir.route(['u.y']), null, 'dropped after retainMs');

  bus.sent.length = 0;
  membership.join('X');
  assert.deepEqual(bus.of(Op.DIR_HELLO), [{ op: Op.DIR_HELLO, i: SELF, t: 'X' }]);
  assert.equal(dir.routing, false, 'waits for the node that came back');
  dir.onCommand(state('X', ['u.x2']));
  assert.deepEqual(dir.route(['u.x2']), ['n.X']);
});

test('after a lost broker session, a peer membership no longer lists keeps its entries and is not waited for', (t) => {
  const { bus, membership, dir } = setup(t, ['X', 'Y']);
  dir.onCommand(state('X', ['u.x', 'g.both']));
  dir.onCommand(state('Y', ['g.both']));
  bus.reconnect(() => membership.silent('Y')); // Y timed out while this node was cut off
  assert.deepEqual(
    bus.of(Op.DIR_HELLO).map((c) => c.t),
    ['X'],
  );
  dir.onCommand(state('X', ['u.x', 'g.both']));
  assert.equal(dir.routing, true, 'Y not waited for');
  assert.deepEqual(dir.route(['g.both'])?.sort(), ['n.X', 'n.Y'], "Y's entries kept: it may come back with its queue");
});

test('a DIR_DROP makes this node ask the peer again (routing waits), the answer replaces its entries', (t) => {
  const { bus, dir } = setup(t, ['X', 'Y']);
  dir.onCommand(state('X', ['u.a', 'g.x']));
  dir.onCommand(state('Y', ['g.x']));
  bus.sent.length = 0;

  dir.onCommand(drop('X'));
  assert.deepEqual(bus.sent, [{ op: Op.DIR_HELLO, i: SELF, t: 'X' }]);
  assert.equal(dir.route(['u.a']), null);
  assert.equal(dir.route(['g.x']), null);
  dir.onCommand(state('X', ['g.x']));
  assert.equal(dir.route(['u.a']), null, 'u.a gone from X in its answer');
  assert.deepEqual(dir.route(['g.x'])?.sort(), ['n.X', 'n.Y']);

  dir.onCommand(drop('Z'));
  assert.equal(bus.of(Op.DIR_HELLO).length, 1, 'a drop from a node never asked is ignored');
});

test('a peer that joins later is asked, and waited for', (t) => {
  const { bus, membership, dir } = setup(t);
  assert.equal(dir.routing, true);
  membership.join('N');
  assert.deepEqual(bus.of(Op.DIR_HELLO), [{ op: Op.DIR_HELLO, i: SELF, t: 'N' }]);
  assert.equal(dir.routing, false);
  dir.onCommand(state('N', ['u.n']));
  assert.deepEqual(dir.route(['u.n']), ['n.N']);
});

// ---- counts ------------------------------------------------------------------------------

test("holdsKey and countKeys are exact when routing (null when not), this node's own keys included", (t) => {
  const { bus, dir } = setup(t, ['X']);
  bus.held.add('u.mine');
  bus.held.add('u.both');
  bus.held.add('n.self');
  assert.equal(dir.holdsKey('u.mine'), null);
  assert.equal(dir.countKeys('u.'), null);

  dir.onCommand(state('X', ['u.a', 'u.both', 'g.x']));
  assert.equal(dir.holdsKey('u.mine'), true);
  assert.equal(dir.holdsKey('u.a'), true);
  assert.equal(dir.holdsKey('u.nobody'), false);
  assert.equal(dir.countKeys('u.'), 3);
  assert.equal(dir.countKeys('g.'), 1);
});

// ---- asking again ------------------------------------------------------------------------

test('a peer that does not answer is asked again; one whose answer is arriving in parts is not', (t) => {
  mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
  t.after(() => mock.timers.reset());
  const { bus, dir } = setup(t, ['X'], { askAgainMs: 250 });
  mock.timers.tick(200);
  assert.equal(bus.of(Op.DIR_HELLO).length, 1);
  mock.timers.tick(100);
  assert.equal(bus.of(Op.DIR_HELLO, true).length, 2, 'asked again');
  mock.timers.tick(200);
  dir.onCommand(state('X', ['u.p1'], 1));
  mock.timers.tick(200);
  assert.deepEqual(bus.of(Op.DIR_HELLO), [], 'its answer is arriving');
  dir.onCommand(state('X', ['u.p2'], 0));
  assert.deepEqual(dir.route(['u.p1']), ['n.X'], 'the first part kept');
  assert.deepEqual(dir.route(['u.p2']), ['n.X']);
});

test('a peer whose answer stopped arriving part-way is asked again', (t) => {
  mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
  t.after(() => mock.timers.reset());
  const { bus, dir } = setup(t, ['X'], { askAgainMs: 250 });
  dir.onCommand(state('X', ['u.lost'], 1));
  bus.sent.length = 0;
  mock.timers.tick(300);
  assert.deepEqual(bus.of(Op.DIR_HELLO), [{ op: Op.DIR_HELLO, i: SELF, t: 'X' }]);
  dir.onCommand(state('X', ['u.a'], 0));
  assert.deepEqual(dir.route(['u.a']), ['n.X']);
  assert.equal(dir.route(['u.lost']), null, 'the new answer replaced the lost one');
});

test('after a (re)start a suspect member is not asked, nor waited for', (t) => {
  const { bus, membership, dir } = setup(t, ['X', 'S']);
  bus.reconnect(() => (membership.members.get('S')!.suspect = true));
  assert.deepEqual(
    bus.of(Op.DIR_HELLO).map((c) => c.t),
    ['X'],
  );
  dir.onCommand(state('X', ['u.a']));
  assert.equal(dir.routing, true);
  assert.deepEqual(dir.route(['u.a']), ['n.X']);
});

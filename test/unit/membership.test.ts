/**
 * Membership with a fake bus and fake time: a node announces itself at start and every interval,
 * answers a newcomer at once, takes a node silent past nodeTimeout for dead ('leave', 'silent';
 * the transport is not told), forgets one that left ('leave', 'left'; the transport told), marks
 * a node the broker shows gone suspect until it announces itself again, tells the bus while a
 * version-1 node is live, and sends LEAVE on stop only while connected.
 */
import { test, mock, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Membership } from '../../src/cluster/membership.js';
import type { Bus } from '../../src/transport/bus.js';
import { Op, type Command, type NodeAnnouncement } from '../../src/protocol/commands.js';
import { silentLog } from '../helpers/fakes.js';

const SELF = 'aaaaaaaaaaaa';

const announcement = (i: string, more: Partial<NodeAnnouncement> = {}): NodeAnnouncement => ({
  i,
  n: `node-${i}`,
  ro: ['gateway'],
  ad: '',
  st: 0,
  cc: 0,
  uc: 3,
  gc: 1,
  iv: 1000,
  wv: 2,
  ...more,
});

function setup(t: TestContext, announce = true) {
  mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
  const log: string[] = [];
  const bus = {
    instance: SELF,
    isConnected: true,
    published: [] as Command[],
    async publish(command: Command) {
      bus.published.push(command);
    },
    peerAnnounced: (i: string, uids: number, groups: number) => log.push(`peer ${i} ${uids} ${groups}`),
    peerLeft: (i: string) => log.push(`peer-left ${i}`),
    legacy: false,
    setLegacyPeers: (live: boolean) => (bus.legacy = live),
  };
  const membership = new Membership(
    bus as unknown as Bus,
    { announceInterval: 1000, nodeTimeout: 3000, announce },
    () => announcement(SELF),
    silentLog,
  );
  for (const event of ['join', 'leave', 'suspect'])
    membership.on(event, (...args: unknown[]) => log.push(`${event} ${args.join(' ')}`));
  t.after(async () => {
    await membership.stop();
    mock.timers.reset();
  });
  const announces = () => bus.published.filter((c) => c.op === Op.ANNOUNCE).length;
  return { membership, bus, log, announces };
}

test('a node announces itself at start and at every interval, and answers a newcomer at once', (t) => {
  const { membership, log, announces } = setup(t);
  membership.start();
  assert.equal(announces(), 1);
  assert.deepEqual(
    membership.list().map((m) => m.instance),
    [SELF],
  );
  mock.timers.tick(1000);
  assert.equal(announces(), 2);
  membership.onAnnounce(announcement('bbbbbbbbbbbb'));
  assert.equal(announces(), 3);
  membership.onAnnounce(announcement('bbbbbbbbbbbb')); // known: no answer
  assert.equal(announces(), 3);
  assert.deepEqual(log, ['peer bbbbbbbbbbbb 3 1', 'join bbbbbbbbbbbb', 'peer bbbbbbbbbbbb 3 1']);
  assert.deepEqual(membership.gateways().sort(), [SELF, 'bbbbbbbbbbbb']);
  membership.onAnnounce({ n: 'no instance' } as unknown as NodeAnnouncement);
  assert.equal(membership.list().length, 2);
});

test('a publisher listens but never announces itself', (t) => {
  const { membership, announces } = setup(t, false);
  membership.start();
  membership.onAnnounce(announcement('bbbbbbbbbbbb'));
  mock.timers.tick(5000);
  assert.equal(announces(), 0);
  assert.deepEqual(
    membership.list().map((m) => m.instance),
    [],
  );
});

test('a node silent past nodeTimeout is taken for dead, the transport not told; one that left is forgotten', (t) => {
  const { membership, log } = setup(t);
  membership.start();
  membership.onAnnounce(announcement('bbbbbbbbbbbb'));
  membership.onAnnounce(announcement('cccccccccccc'));
  log.length = 0;
  membership.onLeave('cccccccccccc');
  membership.onLeave('cccccccccccc');
  assert.deepEqual(log, ['peer-left cccccccccccc', 'leave cccccccccccc left']);
  mock.timers.tick(3000);
  assert.equal(membership.isLive('bbbbbbbbbbbb'), true);
  mock.timers.tick(1000);
  assert.equal(membership.isLive('bbbbbbbbbbbb'), false);
  assert.deepEqual(log.slice(2), ['leave bbbbbbbbbbbb silent']);
  assert.equal(membership.isLive(SELF), true); // never times itself out
});

test('a node the broker shows gone is suspect until it announces itself again; never itself', (t) => {
  const { membership, log } = setup(t);
  membership.start();
  membership.onAnnounce(announcement('bbbbbbbbbbbb'));
  membership.suspect('bbbbbbbbbbbb');
  membership.suspect('bbbbbbbbbbbb');
  membership.suspect(SELF);
  membership.suspect('unknown00000');
  assert.equal(membership.isSuspect('bbbbbbbbbbbb'), true);
  assert.equal(membership.isLive('bbbbbbbbbbbb'), false);
  assert.equal(log.filter((l) => l.startsWith('suspect')).length, 1);
  membership.onAnnounce(announcement('bbbbbbbbbbbb'));
  assert.equal(membership.isSuspect('bbbbbbbbbbbb'), false);
  assert.equal(membership.isLive('bbbbbbbbbbbb'), true);
});

test('the bus is told while a version-1 node (no wv) is live', (t) => {
  const { membership, bus } = setup(t);
  membership.start();
  assert.equal(bus.legacy, false);
  membership.onAnnounce(announcement('bbbbbbbbbbbb', { wv: undefined }));
  assert.equal(bus.legacy, true);
  membership.onLeave('bbbbbbbbbbbb');
  assert.equal(bus.legacy, false);
});

test('stop sends LEAVE while connected, and nothing while the broker is unreachable', async (t) => {
  const { membership, bus } = setup(t);
  membership.start();
  await membership.stop();
  assert.deepEqual(bus.published.at(-1), { op: Op.LEAVE, i: SELF });
  const count = bus.published.length;
  bus.isConnected = false;
  membership.start();
  await membership.stop();
  assert.equal(bus.published.length, count + 1); // the start's announcement only
  mock.timers.tick(5000);
  assert.equal(bus.published.length, count + 1); // stopped: no more announcements
});

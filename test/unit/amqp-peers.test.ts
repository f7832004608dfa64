/**
 * What the AMQP transport learns from membership: CcPolicy (estimated bindings from the peers'
 * announcements, capped per bucket count, stale nodes left out; CC up to AMQP_KEYS_PER_MESSAGE
 * keys while the estimate is at most the limit, one key above it) and PeerBarrier (after a
 * reconnect, wait for every peer heard before the loss, at most waitMs; publishers are not peers;
 * a LEAVE or a cancel ends the wait). On fake time.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { AMQP_KEYS_PER_MESSAGE, CcPolicy } from '../../src/transport/amqp/cc-policy.js';
import { PeerBarrier, UNKNOWN_PEERS } from '../../src/transport/amqp/peer-barrier.js';
import { stateOf } from '../helpers/fakes.js';

/** A barrier (waitMs 10 s) that knew `peers` before a loss, on a new connection now. */
function reconnected(...peers: string[]): PeerBarrier {
  const barrier = new PeerBarrier('self', 10000);
  for (const peer of peers) barrier.announced(peer);
  barrier.reset();
  return barrier;
}

function fakeTime(t: { after(fn: () => void): void }): void {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  t.after(() => mock.timers.reset());
}

test('CcPolicy counts 2 keys per node plus its uids and groups, capped by the bucket counts', () => {
  const policy = new CcPolicy(0, 0, 10000);
  policy.announced('a', 10, 5);
  policy.announced('b', 0, 0);
  assert.equal(policy.estimatedBindings(), 2 + 15 + 2);
  policy.announced('a', 1, 1); // a newer announcement replaces the older one
  assert.equal(policy.estimatedBindings(), 4 + 2);
  policy.left('a');
  assert.equal(policy.estimatedBindings(), 2);

  const buckets = new CcPolicy(8, 4, 10000);
  buckets.announced('a', 1000, 1000);
  buckets.announced('b', 3, 1);
  assert.equal(buckets.estimatedBindings(), 2 + 8 + 4 + (2 + 3 + 1));
  buckets.announced('c', Number.NaN, undefined as unknown as number);
  assert.equal(buckets.estimatedBindings(), 20 + 2);
});

test('CcPolicy leaves out nodes not heard from for staleMs', (t) => {
  fakeTime(t);
  const policy = new CcPolicy(0, 0, 5000);
  policy.announced('old', 100, 0);
  mock.timers.tick(3000);
  policy.announced('new', 10, 0);
  mock.timers.tick(2000);
  assert.equal(policy.estimatedBindings(), 102 + 12);
  mock.timers.tick(1);
  assert.equal(policy.estimatedBindings(), 12);
});

test('CcPolicy allows CC keys up to the binding limit and one key per message above it', () => {
  const policy = new CcPolicy(0, 0, 10000, 100);
  policy.announced('a', 98, 0);
  assert.equal(policy.keysPerMessage(), AMQP_KEYS_PER_MESSAGE);
  policy.announced('b', 0, 0);
  assert.equal(policy.estimatedBindings(), 102);
  assert.equal(policy.keysPerMessage(), 1);
});

test('PeerBarrier resolves at once when no peer is expected; itself and publishers are never waited for', async () => {
  const barrier = new PeerBarrier('self', 1000);
  barrier.announced('self');
  barrier.heardFrom('publisher');
  assert.deepEqual(await barrier.wait(Date.now(), new Promise(() => undefined)), { expected: [], missing: [] });
});

test('PeerBarrier waits for every peer announced before the loss until each is heard on the new connection', async (t) => {
  fakeTime(t);
  const barrier = reconnected('a', 'b');
  const waiting = barrier.wait(Date.now(), new Promise(() => undefined));
  barrier.heardFrom('a');
  assert.equal(await stateOf(waiting), 'pending');
  barrier.announced('b');
  assert.deepEqual(await waiting, { expected: ['a', 'b'], missing: [] });
});

test('PeerBarrier gives up after waitMs and names the missing peers; a peer that left is not waited for', async (t) => {
  fakeTime(t);
  const barrier = reconnected('a', 'b', 'c');
  const waiting = barrier.wait(Date.now(), new Promise(() => undefined));
  barrier.left('c');
  mock.timers.tick(9999);
  assert.equal(await stateOf(waiting), 'pending');
  barrier.heardFrom('a');
  mock.timers.tick(1);
  assert.deepEqual(await waiting, { expected: ['a', 'b', 'c'], missing: ['b'] });
});

test('PeerBarrier forgets peers silent longer than waitMs before the loss', async (t) => {
  fakeTime(t);
  const barrier = new PeerBarrier('self', 1000);
  barrier.announced('gone');
  mock.timers.tick(1001);
  barrier.reset();
  assert.deepEqual(await barrier.wait(Date.now(), new Promise(() => undefined)), { expected: [], missing: [] });
});

test('PeerBarrier: a cancel ends the wait with every expected peer missing', async (t) => {
  fakeTime(t);
  const barrier = reconnected('a', 'b');
  let cancel!: (err: Error) => void;
  const waiting = barrier.wait(Date.now(), new Promise((_resolve, reject) => (cancel = reject)));
  barrier.heardFrom('a');
  cancel(new Error('connection lost'));
  assert.deepEqual(await waiting, { expected: ['a', 'b'], missing: ['a', 'b'] });
});

test('PeerBarrier: a process that lost the broker within learnMs of its first connect and knew no peer waits for the first node to announce itself', async (t) => {
  fakeTime(t);
  const barrier = new PeerBarrier('self', 10000, 2000);
  barrier.connected();
  mock.timers.tick(300); // a publisher created 0.3 s before the broker went: no ANNOUNCE reached it
  const lostAt = Date.now();
  barrier.reset();
  const waiting = barrier.wait(lostAt, new Promise(() => undefined));
  barrier.heardFrom('another-publisher'); // a READY proves nothing: publishers are not nodes
  mock.timers.tick(5000);
  assert.equal(await stateOf(waiting), 'pending');
  barrier.announced('node-a');
  assert.deepEqual(await waiting, { expected: [], missing: [] });
});

test('PeerBarrier: the young, peerless wait ends after waitMs, naming the unknown peers as missing', async (t) => {
  fakeTime(t);
  const barrier = new PeerBarrier('self', 10000, 2000);
  barrier.connected();
  barrier.reset();
  const waiting = barrier.wait(Date.now(), new Promise(() => undefined));
  barrier.announced('self');
  mock.timers.tick(9999);
  assert.equal(await stateOf(waiting), 'pending');
  mock.timers.tick(1);
  assert.deepEqual(await waiting, { expected: [], missing: [UNKNOWN_PEERS] });
});

test('PeerBarrier: past learnMs a process that knows no peer is alone and waits for no one', async (t) => {
  fakeTime(t);
  const barrier = new PeerBarrier('self', 10000, 2000);
  barrier.connected();
  mock.timers.tick(2000);
  barrier.connected(); // later connects do not restart the learning time
  barrier.reset();
  assert.deepEqual(await barrier.wait(Date.now(), new Promise(() => undefined)), { expected: [], missing: [] });
});

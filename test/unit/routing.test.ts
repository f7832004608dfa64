/**
 * Routes and routing keys (protocol/routes.ts, routing-keys.ts): where each command goes, the key
 * spelled for each route (one per uid or group, or a bucket), the distinct keys of a command in
 * order, and the FNV-1a bucket that every language must compute the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Op, type Command } from '../../src/protocol/commands.js';
import { routesOf } from '../../src/protocol/routes.js';
import {
  BROADCAST_KEY,
  bucketOf,
  groupKey,
  keyOfTarget,
  keysOfCommand,
  nodeKey,
  uidKey,
} from '../../src/protocol/routing-keys.js';

const A = 'aaaaaaaaaaaa';
const B = 'bbbbbbbbbbbb';
const plain = { uidBuckets: 0, groupBuckets: 0 };
const buckets = { uidBuckets: 16, groupBuckets: 4 };

test('routes: sends to their targets, per-client commands to the owner, broadcasts to all, client events nowhere', () => {
  assert.deepEqual(routesOf({ op: Op.SEND_TO_CLIENTS, c: [`${A}1`, `${B}1`, `${A}2`], d: '' }), [
    { kind: 'node', node: A },
    { kind: 'node', node: B },
  ]);
  assert.deepEqual(routesOf({ op: Op.SEND_TO_UIDS, u: ['x', 'y'], d: '' }), [
    { kind: 'uid', uid: 'x' },
    { kind: 'uid', uid: 'y' },
  ]);
  assert.deepEqual(routesOf({ op: Op.CLOSE_UID, u: 'x' }), [{ kind: 'uid', uid: 'x' }]);
  assert.deepEqual(routesOf({ op: Op.UNGROUP, g: 'g' }), [{ kind: 'group', group: 'g' }]);
  assert.deepEqual(routesOf({ op: Op.BIND_UID, c: `${B}9`, u: 'x' }), [{ kind: 'node', node: B }]);
  assert.deepEqual(routesOf({ op: Op.QUERY, q: 'count', a: [], r: 1, f: A }), [{ kind: 'all' }]);
  assert.deepEqual(routesOf({ op: Op.QUERY, q: 'count', a: [], r: 1, f: A, t: B }), [{ kind: 'node', node: B }]);
  assert.deepEqual(routesOf({ op: Op.REPLY, r: 1, f: B, t: A } as Command), [{ kind: 'node', node: A }]);
  assert.deepEqual(routesOf({ op: Op.LEAVE, i: A }), [{ kind: 'all' }]);
  assert.deepEqual(routesOf({ op: Op.CLIENT_EVENT } as unknown as Command), []);
});

test('keys: n.<instance>, all, u.<uid> or ub.<bucket>, g.<group> or gb.<bucket>', () => {
  assert.equal(nodeKey(A), `n.${A}`);
  assert.equal(BROADCAST_KEY, 'all');
  assert.equal(uidKey('alice', plain), 'u.alice');
  assert.equal(groupKey('room', plain), 'g.room');
  assert.equal(uidKey('alice', buckets), `ub.${bucketOf('alice', 16)}`);
  assert.equal(groupKey('room', buckets), `gb.${bucketOf('room', 4)}`);
});

test('bucketOf is FNV-1a over the UTF-8 bytes, modulo n', () => {
  // FNV-1a 32 of "" is the offset basis, of "a" 0xe40c292c (published test vectors)
  assert.equal(bucketOf('', 2 ** 32), 0x811c9dc5);
  assert.equal(bucketOf('a', 2 ** 32), 0xe40c292c);
  assert.equal(bucketOf('a', 1000), 0xe40c292c % 1000);
  // UTF-8, not UTF-16: "é" is the two bytes c3 a9
  let hash = 0x811c9dc5;
  for (const byte of [0xc3, 0xa9]) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  assert.equal(bucketOf('é', 2 ** 32), hash);
});

test('the keys of a command are distinct and in the order of its targets', () => {
  assert.deepEqual(keysOfCommand({ op: Op.SEND_TO_UIDS, u: ['b', 'a', 'b'], d: '' }, plain), ['u.b', 'u.a']);
  assert.deepEqual(keysOfCommand({ op: Op.SEND_TO_CLIENTS, c: [`${B}1`], d: '' }, plain), [`n.${B}`]);
  assert.deepEqual(keysOfCommand({ op: Op.SEND_TO_CLIENTS, c: [`${B}1`, `${A}1`, `${B}2`], d: '' }, plain), [
    `n.${B}`,
    `n.${A}`,
  ]);
  assert.deepEqual(keysOfCommand({ op: Op.SEND_TO_ALL, d: '' }, plain), ['all']);
  // uids in one bucket share its key
  const one = { uidBuckets: 1, groupBuckets: 1 };
  assert.deepEqual(keysOfCommand({ op: Op.SEND_TO_UIDS, u: ['a', 'b', 'c'], d: '' }, one), ['ub.0']);
  assert.deepEqual(keysOfCommand({ op: Op.SEND_TO_GROUPS, g: ['a', 'b'], d: '' }, one), ['gb.0']);
});

test('the key of one target of a send', () => {
  assert.equal(keyOfTarget(Op.SEND_TO_UIDS, 'x', plain), 'u.x');
  assert.equal(keyOfTarget(Op.SEND_TO_GROUPS, 'x', plain), 'g.x');
  assert.equal(keyOfTarget(Op.SEND_TO_CLIENTS, `${A}7`, plain), `n.${A}`);
});

/**
 * Node instance tags and clientIds (DESIGN §1): globally unique, never reused (also not after a
 * restart), [0-9a-z] only (URL- and routing-key-safe), at most 32 characters, and naming the
 * node that holds the client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientIdGenerator,
  INSTANCE_LENGTH,
  createInstanceId,
  isClientId,
  ownerOf,
} from '../../src/protocol/identity.js';

test('instance tags: 12 characters of [0-9a-z], the start time first', () => {
  const a = createInstanceId(1_700_000_000_000);
  assert.equal(INSTANCE_LENGTH, 12);
  assert.match(a, /^[0-9a-z]{12}$/);
  assert.equal(a.slice(0, 8), (1_700_000_000_000).toString(36).padStart(8, '0'));
  // a later start sorts after an earlier one, so a restarted process never takes an old tag
  const later = createInstanceId(1_700_000_000_001);
  assert.ok(later.slice(0, 8) > a.slice(0, 8));
  assert.match(createInstanceId(0), /^00000000[0-9a-z]{4}$/);
  assert.match(createInstanceId(), /^[0-9a-z]{12}$/);
});

test('instance tags drawn in the same millisecond differ in their random part', () => {
  const now = Date.now();
  const tags = new Set(Array.from({ length: 8 }, () => createInstanceId(now)));
  // 4 random base-36 digits: 8 draws collide with probability below 2e-5
  assert.equal(tags.size, 8);
  for (const tag of tags) assert.equal(tag.slice(0, 8), now.toString(36).padStart(8, '0'));
});

test('clientIds: the instance tag, then a counter; unique; well-formed; owner recoverable', () => {
  const instance = createInstanceId();
  const ids = new ClientIdGenerator(instance);
  const seen = new Set<string>();
  for (let i = 0; i < 20000; i++) {
    const id = ids.next();
    assert.ok(isClientId(id), id);
    assert.ok(id.startsWith(instance));
    assert.equal(ownerOf(id), instance);
    seen.add(id);
  }
  assert.equal(seen.size, 20000);
  // another process (or the same one restarted) has another tag: no id in common
  const other = new ClientIdGenerator(createInstanceId(Date.now() + 1));
  for (let i = 0; i < 1000; i++) assert.equal(seen.has(other.next()), false);
});

test('clientIds stay within 32 characters up to the largest counter', () => {
  const instance = createInstanceId();
  const ids = new ClientIdGenerator(instance);
  (ids as unknown as { counter: number }).counter = Number.MAX_SAFE_INTEGER - 1;
  const id = ids.next();
  assert.ok(id.length <= 32, `${id} has ${id.length} characters`);
  assert.ok(isClientId(id));
  assert.equal(ownerOf(id), instance);
  // safe in URLs and routing keys as they are
  assert.equal(encodeURIComponent(id), id);
});

test('isClientId accepts only 13 to 32 characters of [0-9a-z]', () => {
  assert.equal(isClientId('abcdefghijkl1'), true);
  assert.equal(isClientId('a'.repeat(32)), true);
  for (const bad of [
    '',
    'abcdefghijkl',
    'a'.repeat(33),
    'ABCDEFGHIJKL1',
    'abcdefghijk.1',
    'abcdefghijkl-1',
    'abcdefghijkl 1',
  ]) {
    assert.equal(isClientId(bad), false, JSON.stringify(bad));
  }
  for (const bad of [undefined, null, 1234567890123, {}, ['abcdefghijkl1']]) assert.equal(isClientId(bad), false);
});

/**
 * SessionCache, a worker's view of its clients' sessions: the cached session wins over an older
 * snapshot in an event, a newer version in an event wins over the cache, a client without an entry
 * is read from the gateway once (a fresh connect needs no read), and a partition given up is
 * forgotten.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionCache } from '../../src/events/session-cache.js';
import type { PushApi } from '../../src/protocol/push-api.js';
import type { ClientEvent } from '../../src/protocol/client-event.js';
import type { Session } from '../../src/protocol/commands.js';

/** A gateway that answers readSession from `sessions` and counts the reads. */
function gateway(sessions: Map<string, { session: Session; version: number }>) {
  const api = {
    reads: [] as string[],
    async readSession(clientId: string) {
      api.reads.push(clientId);
      return sessions.get(clientId) ?? null;
    },
  };
  return api;
}

const event = (
  clientId: string,
  type: 'connect' | 'message' | 'close',
  session: Session,
  sessionVersion: number,
): ClientEvent => ({ type, clientId, session, sessionVersion, data: '' }) as ClientEvent;

function cacheOf(sessions = new Map<string, { session: Session; version: number }>()) {
  const api = gateway(sessions);
  // partition: the client id's last character
  const cache = new SessionCache(api as unknown as PushApi, (id) => Number(id.slice(-1)));
  return { api, cache };
}

test('a fresh connect (version 0) is taken as it is, with no read', async () => {
  const { api, cache } = cacheOf();
  assert.deepEqual(await cache.read(event('c1', 'connect', { a: 1 }, 0)), { a: 1 });
  assert.deepEqual(api.reads, []);
  assert.equal(cache.size, 1);
});

test('what this worker wrote wins over an older snapshot; a newer version in an event wins over the cache', async () => {
  const { api, cache } = cacheOf();
  await cache.read(event('c1', 'connect', {}, 0));
  cache.wrote('c1', { mine: true }, 3);
  assert.deepEqual(await cache.read(event('c1', 'message', { stale: true }, 2)), { mine: true });
  assert.deepEqual(await cache.read(event('c1', 'message', { stale: true }, 3)), { mine: true });
  assert.deepEqual(await cache.read(event('c1', 'message', { other: true }, 4)), { other: true });
  // and the newer one is remembered
  assert.deepEqual(await cache.read(event('c1', 'message', { stale: true }, 4)), { other: true });
  // an older write does not replace a newer entry
  cache.wrote('c1', { old: true }, 1);
  assert.deepEqual(await cache.read(event('c1', 'close', {}, 0)), { other: true });
  assert.deepEqual(api.reads, []);
});

test('a client without an entry is read from the gateway once', async () => {
  const { api, cache } = cacheOf(new Map([['c1', { session: { fresh: 1 }, version: 7 }]]));
  assert.deepEqual(await cache.read(event('c1', 'message', { snap: 1 }, 5)), { fresh: 1 });
  assert.deepEqual(await cache.read(event('c1', 'message', { snap: 1 }, 6)), { fresh: 1 });
  assert.deepEqual(api.reads, ['c1']);
});

test("a client the gateway no longer has, or has behind the event, gets the event's snapshot (not cached)", async () => {
  const { api, cache } = cacheOf(new Map([['c2', { session: { behind: 1 }, version: 1 }]]));
  assert.deepEqual(await cache.read(event('c1', 'message', { snap: 1 }, 5)), { snap: 1 });
  assert.deepEqual(await cache.read(event('c2', 'message', { snap: 2 }, 5)), { snap: 2 });
  assert.equal(cache.size, 0);
  assert.deepEqual(api.reads, ['c1', 'c2']);
});

test('forget and forgetPartition drop entries; the next event reads again', async () => {
  const { api, cache } = cacheOf(new Map([['a1', { session: { s: 1 }, version: 1 }]]));
  cache.wrote('a1', { s: 1 }, 1);
  cache.wrote('b1', { s: 1 }, 1);
  cache.wrote('a2', { s: 2 }, 1);
  cache.forgetPartition(1);
  assert.equal(cache.size, 1);
  cache.forget('a2');
  assert.equal(cache.size, 0);
  await cache.read(event('a1', 'message', {}, 1));
  assert.deepEqual(api.reads, ['a1']);
});

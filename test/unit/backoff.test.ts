/**
 * Reconnect delays (Backoff: exponential growth, a cap that the largest jitter draw lands on, a
 * reset after a success, a lower cap after a refused connect; Redis's reconnectDelayOf) and the
 * ReconnectLoop that uses them (retries until an attempt succeeds, a first start failing at once on
 * a refusal, stop() ending a wait at once, the refused cap, the log thinning), on fake timers.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../src/transport/amqp/backoff.js';
import { reconnectDelayOf } from '../../src/transport/redis/redis-link.js';
import { ReconnectLoop, ReconnectStopped, retryWorthLogging } from '../../src/transport/amqp/reconnect-loop.js';
import { stateOf } from '../helpers/fakes.js';

/** A random source that always draws `value` (0: the lowest jitter, 0.5: none, 1: the highest). */
const draws = (value: number) => () => value;

test('delays grow by the factor from initialMs and reset after a success', () => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 100000, factor: 2, jitter: 0.3 }, draws(0.5));
  assert.deepEqual(
    [1, 2, 3, 4].map(() => backoff.next()),
    [100, 200, 400, 800],
  );
  assert.equal(backoff.attempts, 4);
  backoff.reset();
  assert.equal(backoff.attempts, 0);
  assert.equal(backoff.next(), 100);
});

test('the base is capped at maxMs / (1 + jitter): the highest draw lands on maxMs, the jitter still spreads', () => {
  const high = new Backoff({ initialMs: 100, maxMs: 1300, jitter: 0.3 }, draws(1));
  const low = new Backoff({ initialMs: 100, maxMs: 1300, jitter: 0.3 }, draws(0));
  for (let i = 0; i < 10; i++) {
    high.next();
    low.next();
  }
  assert.equal(high.next(), 1300);
  assert.equal(low.next(), 700); // 1000 * (1 - 0.3)
});

test('options are clamped: jitter to 0..1, factor to at least 1, maxMs to at least initialMs; defaults apply', () => {
  const odd = new Backoff({ initialMs: 500, maxMs: 10, factor: 0.5, jitter: 7 }, draws(0.5));
  assert.equal(odd.next(), 250); // cap 500 / (1 + 1)
  assert.equal(odd.next(), 250);
  const defaults = new Backoff({}, draws(0.5));
  assert.equal(defaults.next(), 100);
  assert.equal(defaults.next(), 200);
  const none = new Backoff({ initialMs: 50, jitter: 0 }, draws(1));
  assert.equal(none.next(), 50);
});

test('the loop retries after each backoff delay until an attempt succeeds, then resets its count', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const calls: boolean[] = [];
  const retries: [number, number][] = [];
  let failures = 2;
  const loop = new ReconnectLoop({
    backoff: { initialMs: 100, jitter: 0 },
    attempt: async (reconnect) => {
      calls.push(reconnect);
      if (failures-- > 0) throw new Error('refused');
    },
    onRetry: (_err, attempt, delay) => retries.push([attempt, delay]),
  });
  const started = loop.start();
  await stateOf(started);
  assert.deepEqual(retries, [[1, 100]]);
  mock.timers.tick(99);
  assert.equal(await stateOf(started), 'pending');
  assert.equal(calls.length, 1);
  mock.timers.tick(1);
  await stateOf(started);
  assert.deepEqual(retries, [
    [1, 100],
    [2, 200],
  ]);
  mock.timers.tick(200);
  assert.equal(await stateOf(started), 'resolved');
  assert.deepEqual(calls, [false, false, false]);
  assert.equal(loop.attempts, 0);
});

test('a first start fails at once with a refusal the broker would repeat; a reconnect keeps trying', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const refusal = new Error('ACCESS_REFUSED');
  const first = new ReconnectLoop({
    attempt: async () => {
      throw refusal;
    },
    isRefusal: (err) => err === refusal,
  });
  await assert.rejects(first.start(), (err) => err === refusal);

  let tries = 0;
  const reconnected: number[] = [];
  const again = new ReconnectLoop({
    backoff: { initialMs: 10, jitter: 0 },
    attempt: async () => {
      if (++tries < 3) throw refusal;
    },
    isRefusal: (err) => err === refusal,
    onReconnected: (attempts) => reconnected.push(attempts),
  });
  const errors: unknown[] = [];
  again.lost((err) => errors.push(err));
  again.lost((err) => errors.push(err)); // one loop at a time: ignored
  await stateOf(Promise.resolve());
  mock.timers.tick(10);
  await stateOf(Promise.resolve());
  mock.timers.tick(20);
  await again.settled();
  assert.equal(tries, 3);
  assert.deepEqual(reconnected, [2]);
  assert.deepEqual(errors, []);
});

test('stop() ends a wait at once: a first start rejects with ReconnectStopped, a reconnect ends quietly', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  let tries = 0;
  const loop = new ReconnectLoop({
    backoff: { initialMs: 60000, jitter: 0 },
    attempt: async () => {
      tries += 1;
      throw new Error('down');
    },
  });
  const started = loop.start();
  await stateOf(started);
  loop.stop();
  await assert.rejects(started, ReconnectStopped);
  assert.equal(tries, 1);

  const errors: unknown[] = [];
  const restarted = loop.start();
  await stateOf(restarted);
  loop.stop();
  await assert.rejects(restarted, ReconnectStopped);
  loop.lost((err) => errors.push(err)); // stopped: no loop
  await loop.settled();
  assert.equal(tries, 2);
  assert.deepEqual(errors, []);
});

test('after a refused connect the delay is capped at refusedMaxMs (default 500 ms); other failures keep the full backoff', () => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 5000, jitter: 0.3 }, draws(1));
  const refused = [1, 2, 3, 4, 5, 6].map(() => backoff.next(true));
  assert.deepEqual(refused, [130, 260, 500, 500, 500, 500]); // the highest draw lands on 500
  assert.equal(backoff.next(false), 5000); // the 7th attempt's full base (6,400) is capped at 5,000
  const low = new Backoff({ initialMs: 100, refusedMaxMs: 1300, jitter: 0.3 }, draws(0));
  for (let i = 0; i < 8; i++) low.next(true);
  assert.equal(low.next(true), 700); // 1000 * (1 - 0.3)
  const clamped = new Backoff({ initialMs: 200, maxMs: 300, refusedMaxMs: 50, jitter: 0 }, draws(0.5));
  assert.equal(clamped.next(true), 200); // never below initialMs
  const above = new Backoff({ initialMs: 100, maxMs: 300, refusedMaxMs: 9000, jitter: 0 }, draws(0.5));
  for (let i = 0; i < 5; i++) above.next(true);
  assert.equal(above.next(true), 300); // never above maxMs
});

test('the loop waits the refused cap after ECONNREFUSED and the full backoff after other errors', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const retries: [number, number][] = [];
  const errors = [
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    new Error('handshake timed out'),
  ];
  const loop = new ReconnectLoop({
    backoff: { initialMs: 200, maxMs: 5000, refusedMaxMs: 300, jitter: 0 },
    attempt: async () => {
      const err = errors.shift();
      if (err !== undefined) throw err;
    },
    onRetry: (_err, attempt, delay) => retries.push([attempt, delay]),
  });
  const started = loop.start();
  for (const ms of [200, 300, 300, 1600]) {
    await stateOf(started);
    mock.timers.tick(ms);
  }
  assert.equal(await stateOf(started), 'resolved');
  assert.deepEqual(retries, [
    [1, 200],
    [2, 300],
    [3, 300],
    [4, 1600],
  ]);
});

test('a failed attempt is logged the first 5 times and every 10th after', () => {
  const logged = Array.from({ length: 40 }, (_, i) => i + 1).filter(retryWorthLogging);
  assert.deepEqual(logged, [1, 2, 3, 4, 5, 10, 20, 30, 40]);
});

test('Redis reconnects: doubling from reconnectInitialMs to reconnectMaxMs ± 30 %, at most 500 ms after a refused connect', () => {
  const settings = { reconnectInitialMs: 50, reconnectMaxMs: 2000 };
  const highest = (attempt: number, refused: boolean): number => reconnectDelayOf(attempt, settings, refused, () => 1);
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((n) => highest(n, false)),
    [65, 130, 260, 520, 1040, 2080, 2600],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((n) => highest(n, true)),
    [65, 130, 260, 500, 500, 500, 500],
  );
  assert.equal(
    reconnectDelayOf(9, settings, true, () => 0),
    269,
  ); // 500 / 1.3 * 0.7
  assert.equal(
    reconnectDelayOf(9, { reconnectInitialMs: 50, reconnectMaxMs: 100 }, true, () => 0.5),
    100,
  );
});

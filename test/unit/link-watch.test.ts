/**
 * The client library's dead-link watch (src/client/link-watch.ts): with no server heartbeat the
 * client pings, and a link with no frame within the timeout after a ping is dead, also when the
 * client pings more often than the timeout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkWatch } from '../../src/client/link-watch.js';

test('pings more often than the timeout: a silent link is still found dead within the timeout of the first ping', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const deaths: string[] = [];
  let pings = 0;
  const watch = new LinkWatch(
    (why) => deaths.push(why),
    () => (pings += 1),
  );
  watch.start(0, 300, 100);
  // One tick per timer period: the mocked clock runs the timers due at each step.
  for (let ms = 0; ms < 399; ms += 1) t.mock.timers.tick(1);
  assert.equal(pings, 3);
  assert.deepEqual(deaths, []);
  t.mock.timers.tick(1);
  assert.equal(deaths.length, 1);
  assert.match(deaths[0]!, /no frame within 300 ms after a ping/);
  watch.stop();
});

test('a link that answers is never taken for dead', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const deaths: string[] = [];
  const watch = new LinkWatch(
    (why) => deaths.push(why),
    () => undefined,
  );
  watch.start(0, 300, 100);
  for (let i = 0; i < 50; i++) {
    t.mock.timers.tick(50);
    watch.heard();
  }
  assert.deepEqual(deaths, []);
  watch.stop();
});

test('with a server heartbeat: dead after the timeout without a frame, not before', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const deaths: string[] = [];
  const watch = new LinkWatch(
    (why) => deaths.push(why),
    () => undefined,
  );
  watch.start(1, undefined, 100); // 2 × 1 s + 5 s
  t.mock.timers.tick(3000);
  watch.heard();
  for (let ms = 0; ms < 6999; ms += 1) t.mock.timers.tick(1);
  assert.deepEqual(deaths, []);
  t.mock.timers.tick(1);
  assert.equal(deaths.length, 1);
  watch.stop();
});

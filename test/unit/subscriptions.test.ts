/**
 * Subscriptions: the first local holder of a key binds it, the last one unbinds it, operations
 * on one key run one after another (a bind and an unbind never race), a failed bind does not
 * block the next operation, and a replay after a reconnect binds every desired key again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subscriptions } from '../../src/transport/subscriptions.js';
import { stateOf } from '../helpers/fakes.js';

/** Bind and unbind functions that log, and whose completion the test controls when `manual`. */
function broker(manual = false) {
  const log: string[] = [];
  const waiting: (() => void)[] = [];
  let fail: Error | null = null;
  const op = (sign: string) => async (key: string) => {
    log.push(`${sign}${key}`);
    if (manual) await new Promise<void>((resolve) => waiting.push(resolve));
    if (fail) {
      const err = fail;
      fail = null;
      throw err;
    }
  };
  return {
    log,
    subs: new Subscriptions(op('+'), op('-')),
    finishNext: () => waiting.shift()!(),
    failNext: (err: Error) => (fail = err),
  };
}

test('the first holder binds, the last one unbinds; holders in between do nothing', async () => {
  const { log, subs } = broker();
  await subs.hold('u.a');
  await subs.hold('u.a');
  assert.deepEqual(log, ['+u.a']);
  await subs.release('u.a');
  assert.deepEqual(log, ['+u.a']);
  assert.equal(subs.wants('u.a'), true);
  await subs.release('u.a');
  assert.deepEqual(log, ['+u.a', '-u.a']);
  assert.equal(subs.wants('u.a'), false);
  assert.deepEqual(subs.keys(), []);
});

test('operations on one key run one after another: an unbind waits for the bind in flight', async () => {
  const { log, subs, finishNext } = broker(true);
  const bind = subs.hold('g.x');
  await stateOf(bind); // the bind is in flight
  const unbind = subs.release('g.x');
  await stateOf(unbind);
  assert.deepEqual(log, ['+g.x']);
  assert.equal(await stateOf(subs.settled('g.x')), 'pending');
  finishNext();
  await bind;
  await stateOf(unbind);
  assert.deepEqual(log, ['+g.x', '-g.x']);
  finishNext();
  await unbind;
  assert.equal(await stateOf(subs.settled('g.x')), 'resolved');
});

test('each operation reads the wanted state when its turn comes: a hold and release in one turn bind nothing', async () => {
  const { log, subs, finishNext } = broker(true);
  await Promise.all([subs.hold('gone'), subs.release('gone')]);
  assert.deepEqual(log, []);

  const first = subs.hold('k');
  const second = subs.release('k');
  const third = subs.hold('k');
  await stateOf(first);
  finishNext(); // the bind
  await first;
  // the release found the key wanted again by the time it ran: nothing to do
  await second;
  await third;
  assert.deepEqual(log, ['+k']);
});

test('a failed bind rejects its holder and does not block the next operation on the key', async () => {
  const { log, subs, failNext } = broker();
  failNext(new Error('NOT_FOUND'));
  await assert.rejects(subs.hold('k'), /NOT_FOUND/);
  // still desired but not bound: a second holder's hold binds it
  await subs.hold('k');
  assert.deepEqual(log, ['+k', '+k']);
});

test('always-held keys and every desired key are bound again by replay; released ones are not', async () => {
  const { log, subs } = broker();
  subs.always('n.self');
  await subs.hold('u.a');
  await subs.hold('u.b');
  await subs.release('u.b');
  log.length = 0;
  subs.lost();
  await subs.replay();
  assert.deepEqual(log.sort(), ['+n.self', '+u.a']);
  // bound now: a further replay after a loss binds again, a hold does not
  log.length = 0;
  await subs.hold('u.a');
  assert.deepEqual(log, []);
});

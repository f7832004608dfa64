/**
 * The admin dashboard's pure parts: rates between counter samples (RateHistory: per second,
 * bounded, a counter that went down counts from zero), the warning ring (parseWarning: warn and
 * worse only, err as its message, long fields shortened; WarningRing: bounded, newest first, the
 * total kept), and the logger tap that feeds it (tapLogLines: a node's logger and its children,
 * nothing after the tap is removed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { RateHistory, ratesBetween, type CounterSample } from '../../src/admin/rates.js';
import { WarningRing, parseWarning, type WarningEntry } from '../../src/admin/warning-ring.js';
import { createLogger, tapLogLines } from '../../src/logger.js';

const counters = (pushes: number, deliveries = 0, drops = 0, messagesIn = 0): CounterSample => ({
  pushes,
  deliveries,
  drops,
  messagesIn,
});

test('ratesBetween: the difference per second; a counter that went down counts from zero', () => {
  const point = ratesBetween(
    { time: 1000, counters: counters(10, 4, 0, 2) },
    { time: 3000, counters: counters(30, 10, 1, 2) },
  );
  assert.deepEqual(point, { time: 3000, pushes: 10, deliveries: 3, drops: 0.5, messagesIn: 0 });
  const reset = ratesBetween({ time: 0, counters: counters(100) }, { time: 2000, counters: counters(8) });
  assert.equal(reset.pushes, 4);
  assert.equal(ratesBetween({ time: 5, counters: counters(1) }, { time: 5, counters: counters(9) }).pushes, 0);
});

test('RateHistory: a point per sample after the first, the oldest dropped past its size', () => {
  const history = new RateHistory(3);
  assert.deepEqual(history.current(), { time: 0, pushes: 0, deliveries: 0, drops: 0, messagesIn: 0 });
  history.add(0, counters(0));
  assert.deepEqual(history.series(), [], 'one sample is no rate yet');
  assert.equal(history.current().pushes, 0);
  for (let i = 1; i <= 5; i++) history.add(i * 2000, counters(i * i * 2));
  const series = history.series();
  assert.deepEqual(
    series.map((p) => p.time),
    [6000, 8000, 10000],
  );
  // pushes at 4000: 8, 6000: 18, 8000: 32, 10000: 50 -> per second over 2 s
  assert.deepEqual(
    series.map((p) => p.pushes),
    [5, 7, 9],
  );
  assert.equal(history.current().pushes, 9);
  assert.deepEqual(history.totals(), counters(50));
  history.add(10000, counters(99));
  history.add(9000, counters(99));
  assert.equal(history.series().length, 3, 'a sample not later than the last is ignored');
  assert.deepEqual(history.totals(), counters(50));
  assert.throws(() => new RateHistory(0), RangeError);
});

/** A line as pino writes it: level first (parseWarning reads it before parsing). */
const line = ({ level, ...fields }: { level: number } & Record<string, unknown>) =>
  `${JSON.stringify({ level, time: 1700000000000, pid: 1, ...fields })}\n`;

test('parseWarning: warn, error and fatal lines; below warn, and what is not JSON, are not warnings', () => {
  assert.equal(parseWarning(line({ level: 30, msg: 'info' })), null);
  assert.equal(parseWarning('{"level":40, not json'), null);
  assert.equal(parseWarning('plain text\n'), null);
  const warn = parseWarning(
    line({ level: 40, node: 'n1', component: 'gateway', clientId: 'c1', msg: 'client stopped reading' }),
  );
  assert.deepEqual(warn, {
    time: 1700000000000,
    level: 'warn',
    component: 'gateway',
    msg: 'client stopped reading',
    detail: '{"clientId":"c1"}',
  });
  const error = parseWarning(line({ level: 50, err: { type: 'Error', message: 'boom', stack: 'at …' }, msg: 'x' }));
  assert.equal(error?.level, 'error');
  assert.equal(error?.component, '');
  assert.equal(error?.detail, '{"err":"boom"}', 'err as its message, without the stack');
  assert.equal(parseWarning(line({ level: 60, msg: 'dead' }))?.level, 'fatal');
  assert.equal(parseWarning(line({ level: 40, msg: 'bare' }))?.detail, '');
  const long = parseWarning(line({ level: 40, msg: 'm'.repeat(2000), data: 'd'.repeat(2000) }))!;
  assert.equal(long.msg.length, 500);
  assert.ok(long.msg.endsWith('…'));
  assert.ok(long.detail.length <= 300);
});

test('WarningRing: keeps the last `capacity` warnings, newest first, and counts them all', () => {
  const ring = new WarningRing(3);
  assert.deepEqual(ring.list(), []);
  ring.add(line({ level: 30, msg: 'not kept' }));
  for (let i = 1; i <= 2; i++) ring.add(line({ level: 40, msg: `w${i}` }));
  assert.deepEqual(
    ring.list().map((w: WarningEntry) => w.msg),
    ['w2', 'w1'],
  );
  for (let i = 3; i <= 7; i++) ring.add(line({ level: 50, msg: `w${i}` }));
  assert.deepEqual(
    ring.list().map((w) => w.msg),
    ['w7', 'w6', 'w5'],
  );
  assert.equal(ring.total, 7);
  assert.throws(() => new WarningRing(0), RangeError);
});

test('tapLogLines: the lines of a logger and its children, until removed; other loggers untouched', () => {
  const logger = createLogger('silent');
  const seen: string[] = [];
  const untap = tapLogLines(logger, (l) => seen.push(l));
  // level silent: nothing is written, so nothing is tapped
  logger.warn('not written');
  assert.deepEqual(seen, []);
  logger.level = 'warn';
  const child = logger.child({ component: 'c' });
  child.level = 'warn';
  child.info('below the level');
  child.warn({ a: 1 }, 'tapped');
  assert.equal(seen.length, 1);
  assert.deepEqual(parseWarning(seen[0]!)?.msg, 'tapped');
  untap();
  logger.error('after the tap is removed');
  assert.equal(seen.length, 1);
  // A logger made elsewhere has no taps: the call does nothing.
  const other = pino(new Writable({ write: (_c, _e, cb) => cb() }));
  tapLogLines(other, () => assert.fail('not tapped'))();
  other.warn('x');
});

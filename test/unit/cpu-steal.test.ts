import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpuTimes, stealPercent, stealText } from '../bench/cpu-steal.js';

test('steal is the stolen share of all CPU time between two readings, to 0.1 %', () => {
  assert.equal(stealPercent({ steal: 100, total: 10_000 }, { steal: 350, total: 11_000 }), 25);
  assert.equal(stealPercent({ steal: 0, total: 0 }, { steal: 1, total: 3 }), 33.3);
  assert.equal(stealPercent({ steal: 5, total: 50 }, { steal: 5, total: 150 }), 0);
});

test('steal is unknown without two readings or when no time passed', () => {
  assert.equal(stealPercent(null, { steal: 1, total: 2 }), null);
  assert.equal(stealPercent({ steal: 1, total: 2 }, null), null);
  assert.equal(stealPercent({ steal: 1, total: 2 }, { steal: 1, total: 2 }), null);
  assert.equal(stealText(null), 'CPU steal unknown');
  assert.equal(stealText(12.5), 'CPU steal 12.5 %');
});

test('on Linux the reading counts steal within the total and both only grow; elsewhere it is null', () => {
  const first = cpuTimes();
  if (process.platform !== 'linux') {
    assert.equal(first, null);
    return;
  }
  assert.ok(first !== null, '/proc/stat has a cpu line');
  assert.ok(first.steal >= 0 && first.steal <= first.total);
  const second = cpuTimes()!;
  assert.ok(second.total >= first.total && second.steal >= first.steal);
});

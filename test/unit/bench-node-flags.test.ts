import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchNodeFlags, missingFlags } from '../bench/node-flags.js';

test('single-threaded GC on 2 cores or fewer, V8 default above', () => {
  assert.deepEqual(benchNodeFlags({}, 1), ['--single-threaded-gc']);
  assert.deepEqual(benchNodeFlags({}, 2), ['--single-threaded-gc']);
  assert.deepEqual(benchNodeFlags({}, 4), []);
});

test('GATEWIRE_BENCH_GC chooses, GATEWIRE_BENCH_NODE_FLAGS adds; a wrong choice is an error', () => {
  assert.deepEqual(benchNodeFlags({ GATEWIRE_BENCH_GC: 'parallel' }, 2), []);
  assert.deepEqual(benchNodeFlags({ GATEWIRE_BENCH_GC: 'single' }, 8), ['--single-threaded-gc']);
  assert.deepEqual(benchNodeFlags({ GATEWIRE_BENCH_NODE_FLAGS: ' --trace-gc  --max-semi-space-size=64 ' }, 8), [
    '--trace-gc',
    '--max-semi-space-size=64',
  ]);
  assert.throws(() => benchNodeFlags({ GATEWIRE_BENCH_GC: 'fast' }, 2), /auto, parallel or single.*"fast"/);
});

test('the flags a process already has are not missing', () => {
  const wanted = benchNodeFlags();
  assert.deepEqual(missingFlags(wanted), []);
  assert.deepEqual(missingFlags([]), wanted);
});

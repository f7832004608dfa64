/**
 * The sequence and replay rules (replay-guard.ts, docs/wire-format.md "Sequence and replay
 * rules"): per sender and epoch, only a message above the last one applied is new; with a secret,
 * messages from the future, too old, or from an unknown sender stamped before this node started
 * are refused; memory is bounded, and an evicted sender's old messages stay refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayGuard, type ReplayGuardOptions } from '../../src/transport/replay-guard.js';
import type { EnvelopeHeader } from '../../src/protocol/envelope.js';

const START = 1_800_000_000_000;

function guard(options: Partial<ReplayGuardOptions> = {}): { guard: ReplayGuard; clock: { now: number } } {
  const clock = { now: START };
  const g = new ReplayGuard({
    signed: true,
    startedAt: START,
    maxClockSkewMs: 1000,
    maxAgeMs: 300_000,
    maxSenders: 100,
    now: () => clock.now,
    ...options,
  });
  return { guard: g, clock };
}

const h = (sender: string, seq: number, time: number, epoch = START - 10_000): EnvelopeHeader => ({
  sender,
  epoch,
  seq,
  time,
});

/** check, and accept when new: what the bus does with each message. */
function offer(g: ReplayGuard, header: EnvelopeHeader): string {
  const verdict = g.check(header);
  if (verdict === 'new') g.accept(header);
  return verdict;
}

test('per sender and epoch: each sequence number once, in order; a repeat or an older one is dropped', () => {
  const { guard: g } = guard();
  assert.equal(offer(g, h('a', 1, START)), 'new');
  assert.equal(offer(g, h('a', 2, START)), 'new');
  assert.equal(offer(g, h('a', 2, START)), 'duplicate');
  assert.equal(offer(g, h('a', 1, START)), 'duplicate');
  // a gap (messages that went to other nodes) is fine; what is behind it is not
  assert.equal(offer(g, h('a', 7, START)), 'new');
  assert.equal(offer(g, h('a', 5, START)), 'duplicate');
  // senders are independent
  assert.equal(offer(g, h('b', 1, START)), 'new');
  assert.equal(offer(g, h('b', 1, START)), 'duplicate');
});

test('a copy checked but not accepted (filtered out by the receive rule) stays new', () => {
  const { guard: g } = guard();
  assert.equal(g.check(h('a', 1, START)), 'new');
  assert.equal(g.check(h('a', 1, START)), 'new');
  g.accept(h('a', 1, START));
  assert.equal(g.check(h('a', 1, START)), 'duplicate');
});

test('a restart (higher epoch) starts the sequence again; the earlier epoch is refused', () => {
  const { guard: g } = guard();
  assert.equal(offer(g, h('a', 50, START, START - 5000)), 'new');
  assert.equal(offer(g, h('a', 1, START, START - 1000)), 'new');
  assert.equal(offer(g, h('a', 51, START, START - 5000)), 'old-epoch');
  assert.equal(offer(g, h('a', 2, START, START - 1000)), 'new');
});

test('signed: from the future, too old, or before this node started (unknown sender) is refused', () => {
  const { guard: g, clock } = guard();
  assert.equal(offer(g, h('a', 1, START + 1001)), 'from-future');
  assert.equal(offer(g, h('a', 1, START + 1000)), 'new');
  // a capture from before this node started, by a sender it never heard from
  assert.equal(offer(g, h('b', 1, START - 1001)), 'before-start');
  assert.equal(offer(g, h('b', 1, START - 1000)), 'new');
  clock.now = START + 400_000;
  assert.equal(offer(g, h('c', 1, clock.now - 300_001)), 'too-old');
  assert.equal(offer(g, h('c', 1, clock.now - 299_000)), 'new');
  assert.equal(g.refusedBefore, START - 1000);
});

test('unsigned: times are not trusted (anyone could forge them); only the sequence rule applies', () => {
  const { guard: g } = guard({ signed: false });
  assert.equal(offer(g, h('a', 1, 0)), 'new');
  assert.equal(offer(g, h('a', 2, START + 10_000_000)), 'new');
  assert.equal(offer(g, h('a', 2, START)), 'duplicate');
});

test('a sender that left keeps a tombstone: its replayed announcement is still a duplicate', () => {
  const { guard: g } = guard();
  assert.equal(offer(g, h('n1', 10, START)), 'new');
  g.left('n1');
  assert.ok(g.hasLeft('n1'));
  assert.equal(offer(g, h('n1', 9, START)), 'duplicate');
  assert.equal(offer(g, h('n1', 10, START)), 'duplicate');
  // it may start again (a higher epoch)
  assert.equal(offer(g, h('n1', 1, START, START)), 'new');
  assert.ok(!g.hasLeft('n1'));
});

test('memory: silent senders age out; past maxSenders the least recent goes, and its old messages stay refused', () => {
  const { guard: g, clock } = guard({ maxSenders: 3 });
  for (const [i, sender] of ['a', 'b', 'c'].entries()) {
    clock.now = START + i * 10;
    assert.equal(offer(g, h(sender, 1, clock.now)), 'new');
  }
  assert.equal(g.size, 3);
  clock.now = START + 100;
  assert.equal(offer(g, h('d', 1, clock.now)), 'new');
  assert.equal(g.size, 3, 'bounded');
  // 'a' was evicted: its replays (stamped at or before its last message) are refused
  assert.equal(offer(g, h('a', 1, START)), 'before-start');
  assert.equal(g.refusedBefore, START + 1);
  // a new message of 'a' is accepted (its state starts again)
  assert.equal(offer(g, h('a', 2, START + 100)), 'new');
  // sweeping: senders not heard from for maxAge are dropped
  clock.now = START + 100 + 300_001;
  assert.equal(g.sweep(), 3);
  assert.equal(g.size, 0);
});

test("an evicted sender with a clock ahead cannot push the floor past this node's present", () => {
  const { guard: g, clock } = guard({ maxSenders: 1 });
  assert.equal(offer(g, h('fast', 1, START + 900)), 'new');
  assert.equal(offer(g, h('next', 1, START)), 'new');
  assert.equal(g.refusedBefore, START, 'the floor is at most now');
  clock.now = START + 10;
  assert.equal(offer(g, h('other', 1, START + 5)), 'new');
});

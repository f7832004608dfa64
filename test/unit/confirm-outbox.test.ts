/**
 * ConfirmOutbox: messages go out in the order added and stay until confirmed; a channel that dies
 * hands every unconfirmed message to the next one, first and in order; a nack on a living channel
 * rejects with GW_ERR_BUS_BROKER; messages the broker refuses are dropped with GW_ERR_BUS_REFUSED;
 * a full socket buffer waits for 'drain'. Driven with a fake confirm channel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ConfirmChannel } from 'amqplib';
import { ConfirmOutbox, type OutboxMessage } from '../../src/transport/amqp/confirm-outbox.js';
import { ErrorCodes } from '../../src/errors.js';
import { stateOf } from '../helpers/fakes.js';

interface Published {
  key: string;
  body: string;
  cc: string[] | undefined;
  confirm: (err: unknown) => void;
}

/** A confirm channel that records what is published and confirms when the test says. */
class FakeChannel extends EventEmitter {
  readonly published: Published[] = [];
  /** what publish returns: false once the socket buffer is "full" */
  writable = true;
  failWith: Error | null = null;

  publish(_exchange: string, key: string, body: Buffer, options: { CC?: string[] }, confirm: (err: unknown) => void) {
    if (this.failWith) throw this.failWith;
    this.published.push({ key, body: body.toString(), cc: options.CC, confirm });
    return this.writable;
  }
  keys(): string[] {
    return this.published.map((p) => p.key);
  }
  ackAll(): void {
    for (const p of this.published) p.confirm(null);
  }
  asChannel(): ConfirmChannel {
    return this as unknown as ConfirmChannel;
  }
}

/** A message whose envelope is its key and how many times it was sealed. */
function message(key: string, body = key, cc: string[] = []): OutboxMessage & { seals: number } {
  const m = { routingKey: key, cc, seals: 0, seal: () => Buffer.from(`${body}#${++m.seals}`) };
  return m;
}

/** An outbox, and a channel attached to it (or, with `attach` false, not yet). */
function setup(attach = true): { outbox: ConfirmOutbox; channel: FakeChannel; broken: Error[] } {
  const broken: Error[] = [];
  const outbox = new ConfirmOutbox((err) => broken.push(err));
  const channel = new FakeChannel();
  if (attach) outbox.attach(channel.asChannel(), 'x');
  return { outbox, channel, broken };
}

test('messages go out in order; one promise resolves once the last of its messages is confirmed', async () => {
  const { outbox, channel } = setup();
  const done = outbox.addAll([message('a', 'a', ['b', 'c']), message('d')]);
  assert.deepEqual(channel.keys(), ['a', 'd']);
  assert.deepEqual(channel.published[0]!.cc, ['b', 'c']);
  assert.equal(channel.published[1]!.cc, undefined);
  assert.equal(outbox.size, 2);
  channel.published[0]!.confirm(null);
  assert.equal(await stateOf(done), 'pending');
  channel.published[1]!.confirm(null);
  assert.equal(await stateOf(done), 'resolved');
  assert.equal(outbox.size, 0);
  await outbox.addAll([]);
});

test('messages added with no channel wait; a dead channel hands every unconfirmed one to the next, first and in order', async () => {
  const { outbox, channel: first } = setup(false);
  const early = outbox.addAll([message('1')]);
  outbox.attach(first.asChannel(), 'x');
  const second = outbox.addAll([message('2'), message('3')]);
  assert.deepEqual(first.keys(), ['1', '2', '3']);
  first.published[0]!.confirm(null);
  assert.equal(await stateOf(early), 'resolved');

  first.emit('close');
  // amqplib then fails the confirms of the closed channel: not nacks, the messages are resent.
  first.published[1]!.confirm(new Error('channel closed'));
  const later = outbox.addAll([message('4')]);
  const next = new FakeChannel();
  outbox.attach(next.asChannel(), 'x');
  assert.deepEqual(next.keys(), ['2', '3', '4']);
  // sealed again at the resend
  assert.deepEqual(
    next.published.map((p) => p.body),
    ['2#2', '3#2', '4#1'],
  );
  next.ackAll();
  assert.equal(await stateOf(second), 'resolved');
  assert.equal(await stateOf(later), 'resolved');
});

test('a nack on a living channel rejects with GW_ERR_BUS_BROKER', async () => {
  const { outbox, channel } = setup();
  const done = outbox.addAll([message('a')]);
  channel.published[0]!.confirm(new Error('internal error'));
  await assert.rejects(done, { code: ErrorCodes.BUS_BROKER });
  assert.equal(outbox.size, 0);
  await outbox.drained();
});

test('a full socket buffer stops publishing until drain', () => {
  const { outbox, channel } = setup();
  channel.writable = false;
  void outbox.addAll([message('a'), message('b'), message('c')]);
  assert.deepEqual(channel.keys(), ['a']);
  channel.writable = true;
  channel.emit('drain');
  assert.deepEqual(channel.keys(), ['a', 'b', 'c']);
});

test('a publish that throws reports the channel broken; the message goes out on the next channel', async () => {
  const { outbox, channel, broken } = setup();
  channel.failWith = new Error('Channel closed');
  const done = outbox.addAll([message('a')]);
  assert.deepEqual(
    broken.map((e) => e.message),
    ['Channel closed'],
  );
  const next = new FakeChannel();
  outbox.attach(next.asChannel(), 'x');
  assert.deepEqual(next.keys(), ['a']);
  next.ackAll();
  assert.equal(await stateOf(done), 'resolved');
});

test('refuseLarger drops the messages written larger than the limit, with GW_ERR_BUS_REFUSED', async () => {
  const { outbox, channel } = setup();
  const small = outbox.addAll([message('s', 'x')]);
  const large = outbox.addAll([message('l', 'x'.repeat(100))]);
  const drained = outbox.drained();
  assert.equal(outbox.refuseLarger(50, 'message size exceeds'), 1);
  await assert.rejects(large, { code: ErrorCodes.BUS_REFUSED });
  assert.equal(outbox.size, 1);
  assert.equal(await stateOf(drained), 'pending');
  channel.ackAll();
  assert.equal(await stateOf(small), 'resolved');
  assert.equal(await stateOf(drained), 'resolved');
});

test('strikeOldest drops the oldest written message at the third strike and returns its size', async () => {
  const { outbox, channel } = setup(false);
  assert.equal(outbox.strikeOldest('none'), 0);
  const unwritten = outbox.addAll([message('a', 'abc')]);
  assert.equal(outbox.strikeOldest('never written'), 0);
  outbox.attach(channel.asChannel(), 'x');
  const other = outbox.addAll([message('b')]);
  assert.equal(outbox.strikeOldest('PRECONDITION_FAILED'), 0);
  assert.equal(outbox.strikeOldest('PRECONDITION_FAILED'), 0);
  assert.equal(outbox.strikeOldest('PRECONDITION_FAILED'), 'abc#1'.length);
  await assert.rejects(unwritten, { code: ErrorCodes.BUS_REFUSED, message: /3 times: PRECONDITION_FAILED/ });
  assert.equal(outbox.size, 1);
  assert.equal(await stateOf(other), 'pending');
});

test('failAll rejects everything unconfirmed and wakes drained()', async () => {
  const { outbox, channel } = setup();
  const a = outbox.addAll([message('a')]);
  const b = outbox.addAll([message('b')]);
  const drained = outbox.drained();
  outbox.failAll(new Error('closing'));
  await assert.rejects(a, /closing/);
  await assert.rejects(b, /closing/);
  assert.equal(await stateOf(drained), 'resolved');
  // a late confirm of a failed message changes nothing
  channel.ackAll();
  assert.equal(outbox.size, 0);
});

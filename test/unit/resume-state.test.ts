/**
 * The bookkeeping of a gatewire.v1 session (gateway/resume-state.ts) and the subprotocol's pure
 * parts (protocol/client-protocol.ts): counting, keeping until acknowledged, the byte bound and
 * what a resume can still be served from, the hold of a takeover; controls, the U+0000 escape,
 * tokens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResumeState, type KeptMessage } from '../../src/gateway/resume-state.js';
import { OutgoingMessage } from '../../src/gateway/outgoing-message.js';
import {
  isControlText,
  needsEscape,
  newResumeToken,
  parseClientControl,
  replyControl,
  sameToken,
  tokenClientId,
  unescapeText,
} from '../../src/protocol/client-protocol.js';

function kept(text: string, seq = 0): KeptMessage {
  return { message: new OutgoingMessage(text), control: false, sender: seq > 0 ? 'p' : '', seq };
}

function texts(list: KeptMessage[] | null): string[] | null {
  return list === null ? null : list.map((k) => k.message.data as string);
}

test('messages are counted and kept until acknowledged; a resume gets what came after its seq', () => {
  const state = new ResumeState(1000, null, 'c1', 't');
  for (const text of ['a', 'b', 'c', 'd']) state.record(kept(text));
  assert.equal(state.sent, 4);
  assert.deepEqual(texts(state.since(1)), ['b', 'c', 'd']);
  assert.ok(state.ack(2));
  assert.equal(state.bytes, 2);
  assert.deepEqual(texts(state.since(2)), ['c', 'd']);
  assert.deepEqual(texts(state.since(4)), []);
  // Before what is still kept, or past what was sent: nothing to serve.
  assert.equal(state.since(1), null);
  assert.equal(state.since(5), null);
  // An ack of more than was sent is a protocol error; an old ack changes nothing.
  assert.equal(state.ack(5), false);
  assert.ok(state.ack(1));
  assert.deepEqual(texts(state.since(2)), ['c', 'd']);
});

test('many messages and acks: the count, what is kept and what a resume gets stay right as the store compacts', () => {
  const state = new ResumeState(64 * 10, null, 'c1', 't'); // ten 64-byte messages at the most
  const text = (i: number): string => String(i).padStart(64, '.');
  for (let i = 1; i <= 5000; i++) {
    state.record(kept(text(i)));
    if (i % 7 === 0) assert.ok(state.ack(i - 3));
  }
  assert.equal(state.sent, 5000);
  assert.ok(state.bytes <= 640);
  // The last ack (at 4998) was for 4995: a resume from 4995 gets 4996..5000, from before it nothing.
  assert.deepEqual(
    texts(state.since(4995)),
    Array.from({ length: 5 }, (_, i) => text(4996 + i)),
  );
  assert.equal(state.since(4994), null);
  assert.ok(state.ack(5000));
  assert.equal(state.bytes, 0);
  assert.deepEqual(texts(state.since(5000)), []);
});

test('a client that never acknowledges: the bound holds over many messages, and the newest stay', () => {
  const state = new ResumeState(64 * 10, null, 'c1', 't');
  const text = (i: number): string => String(i).padStart(64, '.');
  for (let i = 1; i <= 5000; i++) state.record(kept(text(i)));
  assert.equal(state.overflowed, true);
  assert.equal(state.bytes, 640);
  assert.deepEqual(
    texts(state.since(4990)),
    Array.from({ length: 10 }, (_, i) => text(4991 + i)),
  );
  assert.equal(state.since(4989), null);
});

test('an ack lets go of the previous token (the client has the new one)', () => {
  const state = new ResumeState(1000, null, 'c1', 'new');
  state.previousToken = 'old';
  state.record(kept('a'));
  state.ack(0);
  assert.equal(state.previousToken, null);
});

test('past the byte bound the oldest go, and a resume from before them cannot be served', () => {
  const state = new ResumeState(10, 'alice', 'c1', 't');
  for (let i = 0; i < 5; i++) state.record(kept(`m${i}---`)); // 5 bytes each
  assert.equal(state.overflowed, true);
  assert.ok(state.bytes <= 10);
  assert.equal(state.sent, 5);
  assert.equal(state.since(0), null);
  assert.deepEqual(texts(state.since(3)), ['m3---', 'm4---']);
  // One message larger than the bound is not kept at all.
  const small = new ResumeState(3, null, 'c2', 't');
  small.record(kept('12345'));
  assert.equal(small.bytes, 0);
  assert.equal(small.since(0), null);
  assert.deepEqual(texts(small.since(1)), []);
});

test('while a takeover holds, messages wait uncounted; continueFrom starts the count at the client seq', () => {
  const state = new ResumeState(1000, null, 'c1', null);
  state.holding = [];
  state.record(kept('live', 7));
  assert.equal(state.sent, 0);
  assert.equal(state.holding.length, 1);
  state.holding = null;
  state.continueFrom(10);
  state.record(kept('handed'));
  assert.equal(state.sent, 11);
  assert.deepEqual(texts(state.since(10)), ['handed']);
  assert.equal(state.since(9), null);
});

test('controls: a text frame is a control when it starts with one U+0000, escaped text with two', () => {
  assert.equal(isControlText('\u0000{"t":"ping"}'), true);
  assert.equal(isControlText('\u0000\u0000text'), false);
  assert.equal(isControlText('plain'), false);
  assert.equal(unescapeText('\u0000\u0000text'), '\u0000text');
  assert.equal(unescapeText('plain'), 'plain');
  assert.equal(needsEscape('\u0000x'), true);
  assert.equal(needsEscape('x'), false);
  assert.equal(needsEscape(new Uint8Array([0])), false);
  // The escaped frame carries the mark twice; others are the plain WebSocket frame.
  const escaped = new OutgoingMessage('\u0000x');
  assert.notDeepEqual(escaped.v1Frame, escaped.wsFrame);
  assert.equal(escaped.v1Frame.subarray(2).toString(), '\u0000\u0000x');
  const plain = new OutgoingMessage('x');
  assert.equal(plain.v1Frame, plain.wsFrame);
});

test('controls: what a client may send is parsed strictly', () => {
  const parse = (value: unknown): unknown => parseClientControl('\u0000' + JSON.stringify(value));
  assert.deepEqual(parse({ t: 'hello' }), { t: 'hello' });
  const token = newResumeToken('abc');
  assert.deepEqual(parse({ t: 'hello', token, seq: 3 }), { t: 'hello', token, seq: 3 });
  assert.deepEqual(parse({ t: 'ack', n: 5 }), { t: 'ack', n: 5 });
  assert.deepEqual(parse({ t: 'req', id: 'x', d: 'hi' }), { t: 'req', id: 'x', d: 'hi' });
  assert.deepEqual(parse({ t: 'req', id: 1, b: 'AAE=' }), { t: 'req', id: 1, b: 'AAE=' });
  for (const bad of [
    { t: 'hello', token },
    { t: 'hello', token: 5, seq: 1 },
    { t: 'ack', n: -1 },
    { t: 'ack', n: 1.5 },
    { t: 'req', id: {}, d: 'x' },
    { t: 'req', id: 'x'.repeat(65), d: 'x' },
    { t: 'req', id: 1 },
    { t: 'welcome' },
    [1, 2],
  ]) {
    assert.equal(parse(bad), null, JSON.stringify(bad));
  }
  assert.equal(parseClientControl('\u0000not json'), null);
});

test('replies carry text as d, bytes as base64 b, a failure as error', () => {
  assert.deepEqual(replyControl(1, true, 'ok'), { t: 'reply', id: 1, ok: true, d: 'ok' });
  assert.deepEqual(replyControl('r', true, new Uint8Array([0, 1])), { t: 'reply', id: 'r', ok: true, b: 'AAE=' });
  assert.deepEqual(replyControl(2, false, 'boom'), { t: 'reply', id: 2, ok: false, error: 'boom' });
});

test('tokens name their clientId, are unguessable, and compare exactly', () => {
  const a = newResumeToken('mx12ab');
  const b = newResumeToken('mx12ab');
  assert.notEqual(a, b);
  assert.equal(tokenClientId(a), 'mx12ab');
  assert.equal(tokenClientId('mx12ab.short'), null);
  assert.equal(tokenClientId('nodot'), null);
  assert.ok(sameToken(a, a));
  assert.ok(!sameToken(a, b));
  assert.ok(!sameToken(null, a));
  assert.ok(!sameToken(a, a.slice(1)));
});

/**
 * The field check of commands from a broker (command-check.ts) and the size bound of commands
 * (command-size.ts): every command of the wire format passes with its fields, a missing field or
 * one of the wrong type is named, optional fields may be absent or nil, unknown ops pass; the
 * cheap bound is never below the exact MessagePack size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Op, type Command } from '../../src/protocol/commands.js';
import { commandProblem } from '../../src/protocol/command-check.js';
import { commandBytes, exactCommandBytes, listBytes, payloadBytes } from '../../src/protocol/command-size.js';

const C = 'aaaaaaaaaaaa1';
const announce = { i: 'aaaaaaaaaaaa', ro: ['gateway'], n: 'node', st: 1, cc: 2, uc: 0, gc: 0, wv: 2 };

/** One valid command of each op. */
const valid: Command[] = [
  { op: Op.SEND_TO_CLIENTS, c: [C], d: 'x' },
  { op: Op.SEND_TO_ALL, d: new Uint8Array([1]), x: [C] },
  { op: Op.CLOSE_CLIENT, c: C },
  { op: Op.DESTROY_CLIENT, c: C },
  { op: Op.UPDATE_SESSION, c: C, s: { a: 1 }, r: 1, f: 'f', dl: 1.5 },
  { op: Op.SET_SESSION, c: C, s: {} },
  { op: Op.BIND_UID, c: C, u: 'u' },
  { op: Op.UNBIND_UID, c: C } as Command,
  { op: Op.SEND_TO_UIDS, u: ['a', 'b'], d: 'x' },
  { op: Op.JOIN_GROUP, c: C, g: 'g' },
  { op: Op.LEAVE_GROUP, c: C, g: 'g' },
  { op: Op.SEND_TO_GROUPS, g: ['g'], d: 'x', x: [C], k: 3 },
  { op: Op.UNGROUP, g: 'g' },
  { op: Op.CLOSE_UID, u: 'u', d: 'bye' },
  { op: Op.QUERY, q: 'count', a: [], r: 1, f: 'f' },
  { op: Op.REPLY, r: 1, f: 'f', t: 't', v: { n: 1 } } as Command,
  { op: Op.ANNOUNCE, n: announce } as unknown as Command,
  { op: Op.LEAVE, i: 'i' },
];

const problem = (cmd: unknown): string | null => commandProblem(cmd as Record<string, unknown>);

test('every command of the wire format passes with its fields', () => {
  for (const cmd of valid) assert.equal(problem(cmd), null, JSON.stringify(cmd));
});

test('a missing field or one of the wrong type is named', () => {
  assert.equal(problem({ op: Op.SEND_TO_UIDS, u: 'alice', d: 'x' }), 'u must be a list of strings');
  assert.equal(problem({ op: Op.SEND_TO_UIDS, u: [1], d: 'x' }), 'u must be a list of strings');
  assert.equal(problem({ op: Op.SEND_TO_CLIENTS, c: [C] }), 'd must be a string or bytes');
  assert.equal(problem({ op: Op.BIND_UID, c: C, u: 5 }), 'u must be a string');
  assert.equal(problem({ op: Op.SET_SESSION, c: C, s: [] }), 's must be a map');
  assert.equal(problem({ op: Op.SET_SESSION, c: C, s: new Uint8Array(1) }), 's must be a map');
  assert.equal(problem({ op: Op.QUERY, q: 'x', a: [], r: 1.5, f: 'f' }), 'r must be an integer');
  assert.equal(problem({ op: Op.UPDATE_SESSION, c: C, s: {}, dl: Infinity }), 'dl must be a number when present');
  assert.equal(problem({ op: Op.SEND_TO_GROUPS, g: ['g'], d: 'x', k: 'k' }), 'k must be an integer when present');
  assert.equal(problem({ op: Op.ANNOUNCE, n: null }), 'n must be a map');
  assert.equal(problem({ op: Op.ANNOUNCE, n: { ...announce, ro: 'gateway' } }), 'ro must be a list of strings');
  assert.equal(problem({ op: Op.ANNOUNCE, n: { ...announce, wv: 2.5 } }), 'wv must be an integer when present');
  assert.equal(problem({ op: Op.LEAVE }), 'i must be a string');
});

test('optional fields may be absent or nil; unknown ops pass (receivers ignore them)', () => {
  assert.equal(problem({ op: Op.CLOSE_CLIENT, c: C, d: null }), null);
  assert.equal(problem({ op: Op.QUERY, q: 'x', a: [], r: 1, f: 'f', t: null }), null);
  assert.equal(problem({ op: Op.UNBIND_UID, c: C, u: 42 }), null); // u is not read
  assert.equal(problem({ op: 99, anything: true }), null);
});

test('the size bound is never below the exact MessagePack size', () => {
  const wide = [
    ...valid,
    { op: Op.SEND_TO_UIDS, u: ['é'.repeat(50), '😀'.repeat(20)], d: '字'.repeat(300) },
    { op: Op.SET_SESSION, c: C, s: { n: 1.5, list: [1, 2, 3], nested: { é: 'x' } } },
    { op: Op.SEND_TO_CLIENTS, c: Array.from({ length: 100 }, (_, i) => `${C}${i}`), d: Buffer.alloc(1000) },
  ] as Command[];
  for (const cmd of wide) assert.ok(commandBytes(cmd) >= exactCommandBytes(cmd), JSON.stringify(cmd).slice(0, 80));
});

test('the bound of a string is 3 bytes per UTF-16 unit plus a 5-byte header, of bytes their length plus 5', () => {
  assert.equal(payloadBytes('abc'), 14);
  assert.equal(payloadBytes(new Uint8Array(10)), 15);
  assert.equal(payloadBytes(undefined), 0);
  assert.equal(listBytes(['a', 'bb']), 5 + 8 + 11);
  assert.equal(listBytes(undefined), 0);
  // a session that is not JSON-able has no bound: the exact size decides
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.equal(commandBytes({ op: Op.SET_SESSION, c: C, s: cyclic }), Number.POSITIVE_INFINITY);
});

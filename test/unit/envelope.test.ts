/**
 * The bus envelope (DESIGN §6): MessagePack [version, sender, commands, signature], commands as
 * bytes, an optional HMAC signature over sender and commands. Round trips keep text as text and
 * bytes as bytes; a configured secret requires a valid signature; anything unreadable is
 * rejected with GW_ERR_BUS_DECODE or GW_ERR_BUS_SIGNATURE and nothing else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { decodeEnvelope, encodeEnvelope, WIRE_VERSION } from '../../src/bus/envelope.js';
import { Op, type Command } from '../../src/bus/commands.js';
import { GatewireError } from '../../src/errors.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const SENDER = 'mwsu91b9g4g8';

const COMMANDS: Command[] = [
  { op: Op.SEND_TO_CLIENTS, c: [`${SENDER}1`, `${SENDER}2`], d: 'héllo ✓' },
  { op: Op.SEND_TO_ALL, d: new Uint8Array([0, 1, 0xff, 0x0a]), x: [`${SENDER}3`] },
  { op: Op.SEND_TO_UIDS, u: ['alice', '42'], d: '' },
  { op: Op.SEND_TO_GROUPS, g: ['room'], d: Buffer.alloc(0) },
  { op: Op.SET_SESSION, c: `${SENDER}1`, s: { name: 'ann', nested: { n: 1, list: [1, 'two', null] } }, r: 7, f: SENDER },
  { op: Op.QUERY, q: 'count', a: [''], r: 8, f: SENDER },
];

function code(err: unknown): string {
  assert.ok(err instanceof GatewireError, `expected a GatewireError, got ${String(err)}`);
  return err.code;
}

function decodeError(data: Uint8Array, secret = ''): string {
  try {
    decodeEnvelope(data, secret);
  } catch (err) {
    return code(err);
  }
  assert.fail('expected the envelope to be rejected');
}

/** The outer fields of an encoded envelope, read with a general MessagePack decoder. */
function outer(envelope: Buffer): [number, string, Uint8Array, Uint8Array | null] {
  return packr.unpack(envelope) as [number, string, Uint8Array, Uint8Array | null];
}

test('round trip: sender and commands come back; text stays a string, bytes stay bytes', () => {
  const decoded = decodeEnvelope(encodeEnvelope(SENDER, COMMANDS, ''), '');
  assert.equal(decoded.sender, SENDER);
  assert.equal(decoded.commands.length, COMMANDS.length);
  const [toClients, toAll, toUids, toGroups, session, query] = decoded.commands as [
    Extract<Command, { op: 5 }>,
    Extract<Command, { op: 6 }>,
    Extract<Command, { op: 14 }>,
    Extract<Command, { op: 22 }>,
    Extract<Command, { op: 204 | 9 }>,
    Extract<Command, { op: 40 }>,
  ];
  assert.deepEqual(toClients, COMMANDS[0]);
  assert.equal(typeof toClients.d, 'string');
  assert.ok(toAll.d instanceof Uint8Array);
  assert.deepEqual([...toAll.d], [0, 1, 0xff, 0x0a]);
  assert.deepEqual(toAll.x, [`${SENDER}3`]);
  assert.equal(toUids.d, '');
  assert.ok(toGroups.d instanceof Uint8Array);
  assert.equal(toGroups.d.length, 0);
  assert.deepEqual(session, COMMANDS[4]);
  assert.deepEqual(query, COMMANDS[5]);
});

test('the layout is [version, sender, commands as bin, signature or nil], readable by any MessagePack library', () => {
  const unsigned = outer(encodeEnvelope(SENDER, COMMANDS, ''));
  assert.equal(unsigned[0], WIRE_VERSION);
  assert.equal(unsigned[1], SENDER);
  assert.ok(unsigned[2] instanceof Uint8Array);
  assert.deepEqual(packr.unpack(unsigned[2]).length, COMMANDS.length);
  assert.equal(unsigned[3], null);
  const signed = outer(encodeEnvelope(SENDER, COMMANDS, 'k'));
  assert.equal(signed[3]!.length, 32);

  // an envelope written by another MessagePack encoder (here msgpackr's own) is read too
  const foreign = packr.pack([WIRE_VERSION, 'other-lang', packr.pack([{ op: Op.SEND_TO_ALL, d: 'from python' }]), null]);
  assert.deepEqual(decodeEnvelope(foreign, ''), { sender: 'other-lang', commands: [{ op: Op.SEND_TO_ALL, d: 'from python' }] });
  // and a long sender (str8/str16) and a large body (bin16/bin32)
  const long = 's'.repeat(300);
  const big = [{ op: Op.SEND_TO_ALL, d: Buffer.alloc(70000, 1) }] as Command[];
  const decoded = decodeEnvelope(encodeEnvelope(long, big, 'k'), 'k');
  assert.equal(decoded.sender, long);
  assert.equal((decoded.commands[0] as Extract<Command, { op: 6 }>).d.length, 70000);
});

test('signatures: required and verified when a secret is set', () => {
  const signed = encodeEnvelope(SENDER, COMMANDS, 'shared-secret');
  assert.equal(decodeEnvelope(signed, 'shared-secret').commands.length, COMMANDS.length);
  // a node without a secret reads signed messages (it does not check)
  assert.equal(decodeEnvelope(signed, '').sender, SENDER);

  assert.equal(decodeError(encodeEnvelope(SENDER, COMMANDS, ''), 'shared-secret'), 'GW_ERR_BUS_SIGNATURE');
  assert.equal(decodeError(signed, 'another-secret'), 'GW_ERR_BUS_SIGNATURE');

  // the signature covers the commands...
  const [version, sender, body, signature] = outer(signed);
  const tampered = Buffer.from(body);
  tampered[tampered.length - 1] ^= 0x01;
  assert.equal(decodeError(packr.pack([version, sender, tampered, signature]), 'shared-secret'), 'GW_ERR_BUS_SIGNATURE');
  // ...and the sender
  assert.equal(decodeError(packr.pack([version, 'impostor', body, signature]), 'shared-secret'), 'GW_ERR_BUS_SIGNATURE');
  // a truncated or wrong-typed signature
  assert.equal(decodeError(packr.pack([version, sender, body, signature!.subarray(0, 31)]), 'shared-secret'), 'GW_ERR_BUS_SIGNATURE');
  assert.equal(decodeError(packr.pack([version, sender, body, 'not bytes']), 'shared-secret'), 'GW_ERR_BUS_SIGNATURE');
  // the untouched parts still verify
  assert.equal(decodeEnvelope(packr.pack([version, sender, body, signature]), 'shared-secret').sender, SENDER);
});

test('garbage is rejected with GW_ERR_BUS_DECODE', () => {
  const body = packr.pack([{ op: Op.SEND_TO_ALL, d: 'x' }]);
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['not MessagePack', Buffer.from([0xc1, 0xc1, 0xc1])],
    ['text', Buffer.from('hello, broker')],
    ['a map', packr.pack({ v: 1 })],
    ['three fields', packr.pack([WIRE_VERSION, SENDER, body])],
    ['five fields', packr.pack([WIRE_VERSION, SENDER, body, null, null])],
    ['another version', packr.pack([2, SENDER, body, null])],
    ['a numeric sender', packr.pack([WIRE_VERSION, 5, body, null])],
    ['commands as a string', packr.pack([WIRE_VERSION, SENDER, 'not bytes', null])],
    ['commands not MessagePack', packr.pack([WIRE_VERSION, SENDER, Buffer.from([0xc1]), null])],
    ['commands not an array', packr.pack([WIRE_VERSION, SENDER, packr.pack({ op: 6 }), null])],
    ['a command without op', packr.pack([WIRE_VERSION, SENDER, packr.pack([{ d: 'x' }]), null])],
    ['a command with a string op', packr.pack([WIRE_VERSION, SENDER, packr.pack([{ op: '6' }]), null])],
    ['a null command', packr.pack([WIRE_VERSION, SENDER, packr.pack([null]), null])],
    ['truncated', encodeEnvelope(SENDER, COMMANDS, '').subarray(0, 20)],
    ['trailing bytes', Buffer.concat([encodeEnvelope(SENDER, COMMANDS, ''), Buffer.from([0x01])])],
  ];
  for (const [name, data] of cases) assert.equal(decodeError(data), 'GW_ERR_BUS_DECODE', name);
  // with a secret, a message that is not even an envelope is a decode error, not a signature error
  assert.equal(decodeError(Buffer.from('junk'), 'k'), 'GW_ERR_BUS_DECODE');
});

test('any corruption of a valid envelope decodes or fails with a bus error code, never anything else', () => {
  // a small seeded generator: the same cases on every run
  let seed = 0x9e3779b9;
  const random = (n: number): number => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed % n;
  };
  for (const secret of ['', 'k']) {
    const valid = encodeEnvelope(SENDER, COMMANDS, secret);
    for (let i = 0; i < 3000; i++) {
      const data = Buffer.from(valid);
      const kind = random(3);
      let input: Buffer = data;
      if (kind === 0) data[random(data.length)] = random(256);
      else if (kind === 1) input = data.subarray(0, random(data.length));
      else for (let j = 0; j < 4; j++) data[random(data.length)] = random(256);
      try {
        decodeEnvelope(input, secret);
      } catch (err) {
        assert.ok(['GW_ERR_BUS_DECODE', 'GW_ERR_BUS_SIGNATURE'].includes(code(err)), `case ${i}: ${String(err)}`);
      }
    }
  }
});

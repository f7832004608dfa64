/**
 * The bus envelope (DESIGN §6): MessagePack [2, sender, epoch, seq, time, commands, signature],
 * commands as bytes, an optional HMAC signature over every field. Round trips keep text as text
 * and bytes as bytes; a configured secret requires a valid signature over all of it; version 1
 * (gatewire 0.1) is still read; anything unreadable is rejected with GW_ERR_BUS_DECODE or
 * GW_ERR_BUS_SIGNATURE and nothing else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import {
  decodeEnvelope,
  encodeEnvelope,
  encodeLegacyEnvelope,
  WIRE_VERSION,
  type EnvelopeHeader,
} from '../../src/protocol/envelope.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import { GatewireError } from '../../src/errors.js';
import { documentedSignature } from '../helpers/envelopes.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const SENDER = 'mwsu91b9g4g8';
const HEADER: EnvelopeHeader = { sender: SENDER, epoch: 1764600000000, seq: 42, time: 1764600012345 };
const at = (sender: string, seq = 1): EnvelopeHeader => ({ ...HEADER, sender, seq });

const COMMANDS: Command[] = [
  { op: Op.SEND_TO_CLIENTS, c: [`${SENDER}1`, `${SENDER}2`], d: 'héllo ✓' },
  { op: Op.SEND_TO_ALL, d: new Uint8Array([0, 1, 0xff, 0x0a]), x: [`${SENDER}3`] },
  { op: Op.SEND_TO_UIDS, u: ['alice', '42'], d: '' },
  { op: Op.SEND_TO_GROUPS, g: ['room'], d: Buffer.alloc(0) },
  {
    op: Op.SET_SESSION,
    c: `${SENDER}1`,
    s: { name: 'ann', nested: { n: 1, list: [1, 'two', null] } },
    r: 7,
    f: SENDER,
  },
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

/**
 * The outer fields of an encoded envelope, read with a general MessagePack decoder (which hands
 * 64-bit integers over as BigInt: numbers here).
 */
function outer(envelope: Buffer): [number, string, number, number, number, Uint8Array, Uint8Array | null] {
  const fields = packr.unpack(envelope) as unknown[];
  return fields.map((f) => (typeof f === 'bigint' ? Number(f) : f)) as [
    number,
    string,
    number,
    number,
    number,
    Uint8Array,
    Uint8Array | null,
  ];
}

test('round trip: header and commands come back; text stays a string, bytes stay bytes', () => {
  const decoded = decodeEnvelope(encodeEnvelope(HEADER, COMMANDS, ''), '');
  assert.equal(decoded.version, WIRE_VERSION);
  assert.deepEqual({ sender: decoded.sender, epoch: decoded.epoch, seq: decoded.seq, time: decoded.time }, HEADER);
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

test('the layout is [2, sender, epoch, seq, time, commands as bin, signature or nil], readable by any MessagePack library', () => {
  const unsigned = outer(encodeEnvelope(HEADER, COMMANDS, ''));
  assert.deepEqual(unsigned.slice(0, 5), [WIRE_VERSION, SENDER, HEADER.epoch, HEADER.seq, HEADER.time]);
  assert.ok(unsigned[5] instanceof Uint8Array);
  assert.deepEqual(packr.unpack(unsigned[5]).length, COMMANDS.length);
  assert.equal(unsigned[6], null);
  const signed = outer(encodeEnvelope(HEADER, COMMANDS, 'k'));
  assert.equal(signed[6]!.length, 32);
  // the signature is exactly what docs/wire-format.md says
  assert.deepEqual(Buffer.from(signed[6]!), documentedSignature('k', HEADER, signed[5]));

  // an envelope written by another MessagePack encoder (here msgpackr's own) is read too
  const foreignBody = packr.pack([{ op: Op.SEND_TO_ALL, d: 'from python' }]);
  const foreign = packr.pack([WIRE_VERSION, 'other-lang', 7, 3, 1764600000001, foreignBody, null]);
  assert.deepEqual(decodeEnvelope(foreign, ''), {
    version: 2,
    sender: 'other-lang',
    epoch: 7,
    seq: 3,
    time: 1764600000001,
    commands: [{ op: Op.SEND_TO_ALL, d: 'from python' }],
  });
  // signed by that other encoder, following the documented signature
  const header = { sender: 'other-lang', epoch: 7, seq: 4, time: 1764600000002 };
  const foreignSigned = packr.pack([
    WIRE_VERSION,
    'other-lang',
    7,
    4,
    1764600000002,
    foreignBody,
    documentedSignature('s3cret', header, foreignBody),
  ]);
  assert.equal(decodeEnvelope(foreignSigned, 's3cret').seq, 4);
  // and a long sender (str8/str16), a large body (bin16/bin32), every uint width
  const long = 's'.repeat(300);
  const big = [{ op: Op.SEND_TO_ALL, d: Buffer.alloc(70000, 1) }] as Command[];
  for (const value of [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
    const h = { sender: long, epoch: value, seq: value === 0 ? 1 : value, time: value };
    const decoded = decodeEnvelope(encodeEnvelope(h, big, 'k'), 'k');
    assert.deepEqual([decoded.sender, decoded.epoch, decoded.seq, decoded.time], [long, h.epoch, h.seq, h.time]);
    assert.equal((decoded.commands[0] as Extract<Command, { op: 6 }>).d.length, 70000);
    // what a general decoder reads agrees
    assert.deepEqual(outer(encodeEnvelope(h, big, '')).slice(2, 5), [h.epoch, h.seq, h.time]);
  }
});

test('signatures: required and verified when a secret is set, over every field', () => {
  const signed = encodeEnvelope(HEADER, COMMANDS, 'shared-secret');
  assert.equal(decodeEnvelope(signed, 'shared-secret').commands.length, COMMANDS.length);
  // a node without a secret reads signed messages (it does not check)
  assert.equal(decodeEnvelope(signed, '').sender, SENDER);

  assert.equal(decodeError(encodeEnvelope(HEADER, COMMANDS, ''), 'shared-secret'), 'GW_ERR_BUS_SIGNATURE');
  assert.equal(decodeError(signed, 'another-secret'), 'GW_ERR_BUS_SIGNATURE');

  const [version, sender, epoch, seq, time, body, signature] = outer(signed);
  const tampered = Buffer.from(body);
  tampered[tampered.length - 1] ^= 0x01;
  const with_ = (fields: unknown[]): Buffer => packr.pack(fields);
  // the signature covers the commands, the sender, the epoch, the sequence number and the time
  assert.equal(
    decodeError(with_([version, sender, epoch, seq, time, tampered, signature]), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  assert.equal(
    decodeError(with_([version, 'impostor', epoch, seq, time, body, signature]), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  assert.equal(
    decodeError(with_([version, sender, epoch + 1, seq, time, body, signature]), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  assert.equal(
    decodeError(with_([version, sender, epoch, seq + 1, time, body, signature]), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  assert.equal(
    decodeError(with_([version, sender, epoch, seq, time + 1, body, signature]), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  // a truncated or wrong-typed signature
  assert.equal(
    decodeError(with_([version, sender, epoch, seq, time, body, signature!.subarray(0, 31)]), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  assert.equal(
    decodeError(with_([version, sender, epoch, seq, time, body, 'not bytes']), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  // a version 1 signature does not make a version 2 message
  const v1 = packr.unpack(encodeLegacyEnvelope(SENDER, COMMANDS, 'shared-secret')) as unknown[];
  assert.equal(
    decodeError(with_([version, sender, epoch, seq, time, body, v1[3]]), 'shared-secret'),
    'GW_ERR_BUS_SIGNATURE',
  );
  // the untouched parts still verify
  assert.equal(
    decodeEnvelope(with_([version, sender, epoch, seq, time, body, signature]), 'shared-secret').sender,
    SENDER,
  );
});

test('version 1 (gatewire 0.1) is still read, signed and unsigned, with no sequence', () => {
  const v1 = decodeEnvelope(encodeLegacyEnvelope(SENDER, COMMANDS, 'k'), 'k');
  assert.deepEqual(
    [v1.version, v1.sender, v1.epoch, v1.seq, v1.time, v1.commands.length],
    [1, SENDER, 0, 0, 0, COMMANDS.length],
  );
  assert.equal(decodeEnvelope(encodeLegacyEnvelope(SENDER, COMMANDS, ''), '').version, 1);
  assert.equal(decodeError(encodeLegacyEnvelope(SENDER, COMMANDS, ''), 'k'), 'GW_ERR_BUS_SIGNATURE');
  assert.equal(decodeError(encodeLegacyEnvelope(SENDER, COMMANDS, 'other'), 'k'), 'GW_ERR_BUS_SIGNATURE');
  // as another library writes it
  assert.equal(
    decodeEnvelope(packr.pack([1, 'py', packr.pack([{ op: Op.SEND_TO_ALL, d: 'x' }]), null]), '').sender,
    'py',
  );
});

test('garbage is rejected with GW_ERR_BUS_DECODE', () => {
  const body = packr.pack([{ op: Op.SEND_TO_ALL, d: 'x' }]);
  const v = WIRE_VERSION;
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['not MessagePack', Buffer.from([0xc1, 0xc1, 0xc1])],
    ['text', Buffer.from('hello, broker')],
    ['a map', packr.pack({ v: 1 })],
    ['six fields', packr.pack([v, SENDER, 1, 1, 1, body])],
    ['eight fields', packr.pack([v, SENDER, 1, 1, 1, body, null, null])],
    ['version 1 with seven fields', packr.pack([1, SENDER, 1, 1, 1, body, null])],
    ['version 2 with four fields', packr.pack([v, SENDER, body, null])],
    ['another version', packr.pack([3, SENDER, 1, 1, 1, body, null])],
    ['a numeric sender', packr.pack([v, 5, 1, 1, 1, body, null])],
    ['a negative seq', packr.pack([v, SENDER, 1, -1, 1, body, null])],
    ['a fractional time', packr.pack([v, SENDER, 1, 1, 1.5, body, null])],
    ['a string epoch', packr.pack([v, SENDER, '1', 1, 1, body, null])],
    ['commands with seq 0', packr.pack([v, SENDER, 1, 0, 1, body, null])],
    ['commands as a string', packr.pack([v, SENDER, 1, 1, 1, 'not bytes', null])],
    ['commands not MessagePack', packr.pack([v, SENDER, 1, 1, 1, Buffer.from([0xc1]), null])],
    ['commands not an array', packr.pack([v, SENDER, 1, 1, 1, packr.pack({ op: 6 }), null])],
    ['a command without op', packr.pack([v, SENDER, 1, 1, 1, packr.pack([{ d: 'x' }]), null])],
    ['a command with a string op', packr.pack([v, SENDER, 1, 1, 1, packr.pack([{ op: '6' }]), null])],
    ['a null command', packr.pack([v, SENDER, 1, 1, 1, packr.pack([null]), null])],
    ['truncated', encodeEnvelope(HEADER, COMMANDS, '').subarray(0, 20)],
    ['trailing bytes', Buffer.concat([encodeEnvelope(HEADER, COMMANDS, ''), Buffer.from([0x01])])],
  ];
  for (const [name, data] of cases) assert.equal(decodeError(data), 'GW_ERR_BUS_DECODE', name);
  // with a secret, a message that is not even an envelope is a decode error, not a signature error
  assert.equal(decodeError(Buffer.from('junk'), 'k'), 'GW_ERR_BUS_DECODE');
  // seq 0 without commands is a valid, unsequenced signal
  assert.equal(decodeEnvelope(encodeEnvelope(at(SENDER, 0), [], ''), '').seq, 0);
});

test('any corruption of a valid envelope decodes or fails with a bus error code, never anything else', () => {
  // a small seeded generator: the same cases on every run
  let seed = 0x9e3779b9;
  const random = (n: number): number => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed % n;
  };
  for (const secret of ['', 'k']) {
    for (const valid of [encodeEnvelope(HEADER, COMMANDS, secret), encodeLegacyEnvelope(SENDER, COMMANDS, secret)]) {
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
  }
});

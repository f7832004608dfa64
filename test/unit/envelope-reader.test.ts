/**
 * The envelope's fast reader (readOuter): the plain form every gatewire process writes is read
 * field by field, as the full decoder would; any other form (another header, a longer string
 * encoding it does not take, bytes after the end, truncation) returns null so the full decoder
 * decides.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { readOuter } from '../../src/protocol/envelope-reader.js';
import { encodeEnvelope, encodeLegacyEnvelope, packCommands } from '../../src/protocol/envelope.js';
import { Op, type Command } from '../../src/protocol/commands.js';

const commands: Command[] = [{ op: Op.SEND_TO_ALL, d: 'x' }];
const header = { sender: 'aaaaaaaaaaaa', epoch: 1_700_000_000_000, seq: 70000, time: 1_700_000_000_123 };
const plain = new Packr({ useRecords: false, mapsAsObjects: true });

test('version 2, unsigned and signed, is read as the full decoder reads it', () => {
  const unsigned = encodeEnvelope(header, commands, '');
  const fields = [2, 'aaaaaaaaaaaa', header.epoch, header.seq, header.time, packCommands(commands)];
  assert.deepEqual(readOuter(unsigned), [...fields, null]);
  // the full decoder reads the same (uint64 fields as BigInt)
  assert.deepEqual(
    (plain.unpack(unsigned) as unknown[]).map((v) => (typeof v === 'bigint' ? Number(v) : v)),
    [...fields, null],
  );
  const outer = readOuter(encodeEnvelope(header, commands, 'secret'))!;
  assert.deepEqual(outer.slice(0, 6), fields);
  assert.equal((outer[6] as Buffer).length, 32);
  // a Uint8Array view of the same bytes reads the same
  const copy = new Uint8Array(unsigned);
  assert.deepEqual(readOuter(copy), readOuter(unsigned));
});

test('version 1 is read in its 4-field form', () => {
  const legacy = encodeLegacyEnvelope('node-1', commands, '');
  assert.deepEqual(readOuter(legacy), plain.unpack(legacy));
  assert.equal(readOuter(legacy)![0], 1);
});

test('any other form returns null: trailing bytes, truncation, another header, a map', () => {
  const unsigned = encodeEnvelope(header, commands, '');
  assert.equal(readOuter(Buffer.concat([unsigned, Buffer.from([0xc0])])), null);
  for (let cut = 0; cut < unsigned.length; cut++) assert.equal(readOuter(unsigned.subarray(0, cut)), null);
  assert.equal(readOuter(plain.pack([3, 'a', 1, 1, 1, Buffer.from([0x90]), null])), null);
  assert.equal(readOuter(plain.pack({ v: 2 })), null);
  // a number where the sender belongs
  assert.equal(readOuter(plain.pack([2, 5, 1, 1, 1, Buffer.from([0x90]), null])), null);
});

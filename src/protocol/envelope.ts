/**
 * The broker message format (docs/wire-format.md is the contract).
 *
 * Version 2, what every gatewire process sends:
 *
 *   MessagePack array [2, sender, epoch, seq, time, commands, signature]
 *     sender     str: who published it (a gatewire process puts its instance tag)
 *     epoch      uint: when the sender started (ms since 1970); a restart must raise it
 *     seq        uint: the sender's message number in this epoch, 1, 2, 3, … in publish order;
 *                0 only for messages without commands (not sequenced)
 *     time       uint: when the message was sent (ms since 1970)
 *     commands   bin: the MessagePack encoding of an array of command maps
 *     signature  bin: HMAC-SHA256(secret, signed bytes), or nil unsigned, where the signed bytes
 *                are 0x02 ++ u16be(byte length of sender) ++ sender ++ u64be(epoch) ++ u64be(seq)
 *                ++ u64be(time) ++ commands
 *
 * The signature covers every field, so nothing a receiver acts on (who sent it, which message of
 * theirs it is, when) can be changed by someone without the secret. The fields it signs are laid
 * out in a fixed binary form rather than as MessagePack, so a publisher in another language needs
 * no canonical MessagePack to sign: it packs the commands once, and hashes those bytes with the
 * fixed header.
 *
 * Version 1 ([1, sender, commands, signature], HMAC over sender ++ commands) is what gatewire
 * 0.1 sent. It carries no sequence number or time, so it can be neither deduplicated nor
 * refused as a replay; it is read only during a rolling upgrade (bus.ts decides when) and written
 * only while a 0.1 node is live (encodeLegacyEnvelope).
 *
 * The commands are kept as bytes inside the outer array so the signature covers exactly the
 * bytes that were sent, whatever MessagePack library the publisher used.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { Command } from './commands.js';
import { ErrorCodes, GatewireError } from '../errors.js';
import { readOuter } from './envelope-reader.js';
import { LEGACY_WIRE_VERSION, WIRE_VERSION } from './wire-version.js';

export { LEGACY_WIRE_VERSION, WIRE_VERSION };

/** Bytes of the envelope around the commands and the sender: array, version, three uint64, signature. */
export const ENVELOPE_OVERHEAD = 1 + 1 + 5 + 3 * 9 + 5 + 2 + 32;

// Plain MessagePack (no msgpackr records extension) so any language can read and write it.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

/** Who sent a message and which of theirs it is. */
export interface EnvelopeHeader {
  sender: string;
  epoch: number;
  seq: number;
  time: number;
}

export interface DecodedEnvelope extends EnvelopeHeader {
  /** 2, or 1 for a message in the 0.1 format (epoch, seq and time are then 0) */
  version: number;
  commands: Command[];
}

/** The commands as the bytes an envelope carries (packed once; an envelope may be sealed again). */
export function packCommands(commands: readonly Command[]): Buffer {
  return packr.pack(commands);
}

function signV2(secret: string, header: EnvelopeHeader, senderBytes: Buffer, body: Uint8Array): Buffer {
  const fixed = Buffer.allocUnsafe(1 + 2 + senderBytes.length + 24);
  fixed[0] = WIRE_VERSION;
  fixed.writeUInt16BE(senderBytes.length, 1);
  senderBytes.copy(fixed, 3);
  let at = 3 + senderBytes.length;
  for (const value of [header.epoch, header.seq, header.time]) {
    fixed.writeUInt32BE(Math.floor(value / 0x100000000), at);
    fixed.writeUInt32BE(value >>> 0, at + 4);
    at += 8;
  }
  return createHmac('sha256', secret).update(fixed).update(body).digest();
}

function signV1(secret: string, sender: string, body: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(sender).update(body).digest();
}

/**
 * A version 2 envelope around commands already packed (packCommands). The outer array is written
 * directly, in the shortest MessagePack form of each field, which is what docs/wire-format.md
 * shows byte for byte; the body is copied once.
 */
export function sealEnvelope(header: EnvelopeHeader, body: Buffer, secret: string): Buffer {
  const sender = senderField(header.sender);
  const signature = secret === '' ? null : signV2(secret, header, sender.bytes, body);
  const size =
    1 +
    1 +
    sender.head.length +
    uintSize(header.epoch) +
    uintSize(header.seq) +
    uintSize(header.time) +
    binHeadSize(body.length) +
    body.length +
    (signature === null ? 1 : 2 + signature.length);
  const out = Buffer.allocUnsafe(size);
  out[0] = 0x97; // fixarray of 7
  out[1] = WIRE_VERSION;
  let at = 2 + sender.head.copy(out, 2);
  at = writeUint(out, at, header.epoch);
  at = writeUint(out, at, header.seq);
  at = writeUint(out, at, header.time);
  at = writeBinHead(out, at, body.length);
  at += body.copy(out, at);
  if (signature === null) out[at] = 0xc0;
  else signature.copy(out, writeBinHead(out, at, signature.length));
  return out;
}

/** A version 2 envelope (packs the commands and seals them). */
export function encodeEnvelope(header: EnvelopeHeader, commands: readonly Command[], secret: string): Buffer {
  return sealEnvelope(header, packCommands(commands), secret);
}

/** A version 1 envelope, for peers still on 0.1 during a rolling upgrade (see the header). */
export function encodeLegacyEnvelope(sender: string, commands: readonly Command[], secret: string): Buffer {
  return legacyEnvelope(sender, packCommands(commands), secret);
}

export function legacyEnvelope(senderName: string, body: Buffer, secret: string): Buffer {
  const sender = senderField(senderName);
  const signature = secret === '' ? null : signV1(secret, senderName, body);
  const out = Buffer.allocUnsafe(
    2 + sender.head.length + binHeadSize(body.length) + body.length + (signature === null ? 1 : 2 + signature.length),
  );
  out[0] = 0x94; // fixarray of 4
  out[1] = LEGACY_WIRE_VERSION;
  let at = 2 + sender.head.copy(out, 2);
  at = writeBinHead(out, at, body.length);
  at += body.copy(out, at);
  if (signature === null) out[at] = 0xc0;
  else signature.copy(out, writeBinHead(out, at, signature.length));
  return out;
}

/** `str` header (head includes the bytes) of the sender; a process publishes under one name: cached. */
let lastSender = '';
let lastSenderField: { head: Buffer; bytes: Buffer } | null = null;
function senderField(sender: string): { head: Buffer; bytes: Buffer } {
  if (sender === lastSender && lastSenderField !== null) return lastSenderField;
  const bytes = Buffer.from(sender, 'utf8');
  const n = bytes.length;
  const header =
    n < 32
      ? Buffer.from([0xa0 | n])
      : n < 0x100
        ? Buffer.from([0xd9, n])
        : n < 0x10000
          ? Buffer.from([0xda, n >> 8, n & 0xff])
          : Buffer.from([0xdb, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
  lastSender = sender;
  lastSenderField = { head: Buffer.concat([header, bytes]), bytes };
  return lastSenderField;
}

function uintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x100 ? 2 : value < 0x10000 ? 3 : value < 0x100000000 ? 5 : 9;
}

function writeUint(out: Buffer, at: number, value: number): number {
  if (value < 0x80) {
    out[at] = value;
    return at + 1;
  }
  if (value < 0x100000000) return writeSized(out, at, value, UINT_MARKERS);
  out[at] = 0xcf;
  out.writeUInt32BE(Math.floor(value / 0x100000000), at + 1);
  out.writeUInt32BE(value >>> 0, at + 5);
  return at + 9;
}

function binHeadSize(length: number): number {
  return length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
}

function writeBinHead(out: Buffer, at: number, length: number): number {
  return writeSized(out, at, length, BIN_MARKERS);
}

/** MessagePack's markers of a value (uint) or length (bin) that follows in 1, 2 or 4 bytes. */
type SizedMarkers = readonly [one: number, two: number, four: number];
const UINT_MARKERS: SizedMarkers = [0xcc, 0xcd, 0xce];
const BIN_MARKERS: SizedMarkers = [0xc4, 0xc5, 0xc6];

/** Writes the marker and `value` (< 2^32) in the fewest of 1, 2 or 4 bytes; returns the next offset. */
function writeSized(out: Buffer, at: number, value: number, markers: SizedMarkers): number {
  if (value < 0x100) {
    out[at] = markers[0];
    out[at + 1] = value;
    return at + 2;
  }
  if (value < 0x10000) {
    out[at] = markers[1];
    out.writeUInt16BE(value, at + 1);
    return at + 3;
  }
  out[at] = markers[2];
  out.writeUInt32BE(value, at + 1);
  return at + 5;
}

function decodeError(message: string): GatewireError {
  return new GatewireError(ErrorCodes.BUS_DECODE, message);
}

/**
 * A non-negative integer that a JavaScript number holds exactly, as a number; null otherwise.
 * MessagePack decoders hand 64-bit integers over as BigInt: those within range are taken too.
 */
function count(value: unknown): number | null {
  if (typeof value === 'bigint') return value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function checkSignature(signature: unknown, expected: () => Buffer, sender: string): void {
  if (!(signature instanceof Uint8Array)) {
    throw new GatewireError(
      ErrorCodes.BUS_SIGNATURE,
      `unsigned bus message from ${JSON.stringify(sender.slice(0, 64))}`,
    );
  }
  const want = expected();
  if (signature.length !== want.length || !timingSafeEqual(signature, want)) {
    throw new GatewireError(
      ErrorCodes.BUS_SIGNATURE,
      `wrongly signed bus message from ${JSON.stringify(sender.slice(0, 64))}`,
    );
  }
}

/**
 * Decodes and, with a secret, verifies an envelope of either version. Throws GatewireError
 * BUS_DECODE or BUS_SIGNATURE; never anything else. Whether a version 1 message may be applied,
 * and whether a version 2 message is new, is for the caller to decide (bus.ts, replay-guard.ts).
 */
export function decodeEnvelope(data: Uint8Array, secret: string): DecodedEnvelope {
  let outer: unknown = readOuter(data);
  if (outer === null) {
    try {
      outer = packr.unpack(data);
    } catch (err) {
      throw decodeError(`bus message is not MessagePack: ${(err as Error).message}`);
    }
  }
  if (!Array.isArray(outer)) throw decodeError('bus message is not an array');
  let header: EnvelopeHeader;
  let body: unknown;
  const version = outer[0] as unknown;
  if (version === WIRE_VERSION) {
    if (outer.length !== 7)
      throw decodeError('a version 2 bus message is not a [2, sender, epoch, seq, time, commands, signature] array');
    const [, sender, rawEpoch, rawSeq, rawTime, commands, signature] = outer as unknown[];
    if (typeof sender !== 'string') throw decodeError('bus message has a sender that is not a string');
    const epoch = count(rawEpoch);
    const seq = count(rawSeq);
    const time = count(rawTime);
    if (epoch === null || seq === null || time === null)
      throw decodeError('bus message has an epoch, seq or time that is not a non-negative integer');
    if (!(commands instanceof Uint8Array)) throw decodeError('bus message has a commands field that is not bin');
    header = { sender, epoch, seq, time };
    body = commands;
    if (secret !== '')
      checkSignature(signature, () => signV2(secret, header, Buffer.from(sender, 'utf8'), commands), sender);
  } else if (version === LEGACY_WIRE_VERSION) {
    if (outer.length !== 4)
      throw decodeError('a version 1 bus message is not a [1, sender, commands, signature] array');
    const [, sender, commands, signature] = outer as unknown[];
    if (typeof sender !== 'string' || !(commands instanceof Uint8Array))
      throw decodeError('bus message has a bad sender or commands field');
    header = { sender, epoch: 0, seq: 0, time: 0 };
    body = commands;
    if (secret !== '') checkSignature(signature, () => signV1(secret, sender, commands), sender);
  } else {
    throw decodeError(
      `bus message has version ${String(version).slice(0, 20)}; this node reads ${LEGACY_WIRE_VERSION} and ${WIRE_VERSION}`,
    );
  }
  let commands: unknown;
  try {
    commands = packr.unpack(body as Uint8Array);
  } catch (err) {
    throw decodeError(`bus message commands are not MessagePack: ${(err as Error).message}`);
  }
  if (!Array.isArray(commands)) throw decodeError('bus message commands are not an array');
  for (const cmd of commands) {
    if (
      cmd === null ||
      typeof cmd !== 'object' ||
      Array.isArray(cmd) ||
      !Number.isInteger((cmd as { op?: unknown }).op)
    ) {
      throw decodeError('bus message holds a command that is not a map with an integer op');
    }
  }
  if (version === WIRE_VERSION && header.seq === 0 && commands.length > 0) {
    throw decodeError('bus message with commands has seq 0 (only messages without commands may be unsequenced)');
  }
  return { version: version as number, ...header, commands: commands as Command[] };
}

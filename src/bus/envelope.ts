/**
 * The broker message format (docs/wire-format.md is the contract):
 *
 *   MessagePack array [version, sender, commands, signature]
 *     version    1
 *     sender     instance tag of the publishing process (string)
 *     commands   bin: the MessagePack encoding of an array of command maps
 *     signature  bin: HMAC-SHA256(secret, sender UTF-8 bytes ++ commands bytes), or nil unsigned
 *
 * The commands are kept as bytes inside the outer array so the signature covers exactly the
 * bytes that were sent, whatever MessagePack library the publisher used.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { Command } from './commands.js';
import { ErrorCodes, GatewireError } from '../errors.js';

export const WIRE_VERSION = 1;

// Plain MessagePack (no msgpackr records extension) so any language can read and write it.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

export interface DecodedEnvelope {
  sender: string;
  commands: Command[];
}

function sign(secret: string, sender: string, body: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(sender).update(body).digest();
}

/**
 * The outer array is written directly (it is always the same four fields), in the shortest
 * MessagePack form of each, which is what docs/wire-format.md shows byte for byte; only the
 * commands go through the MessagePack encoder. One pass, and the body is copied once.
 */
export function encodeEnvelope(sender: string, commands: readonly Command[], secret: string): Buffer {
  const body = packr.pack(commands);
  const signature = secret === '' ? null : sign(secret, sender, body);
  const head = senderHead(sender);
  const binHead = body.length < 0x100 ? 2 : body.length < 0x10000 ? 3 : 5;
  const out = Buffer.allocUnsafe(2 + head.length + binHead + body.length + (signature === null ? 1 : 2 + signature.length));
  out[0] = 0x94; // fixarray of 4
  out[1] = WIRE_VERSION; // positive fixint
  let at = 2 + head.copy(out, 2);
  at = writeBinHead(out, at, body.length);
  at += body.copy(out, at);
  if (signature === null) out[at] = 0xc0;
  else signature.copy(out, writeBinHead(out, at, signature.length));
  return out;
}

/** `str` header and UTF-8 bytes of the sender (a process publishes under one name: cached). */
let lastSender = '';
let lastSenderHead = Buffer.alloc(0);
function senderHead(sender: string): Buffer {
  if (sender === lastSender && lastSenderHead.length > 0) return lastSenderHead;
  const bytes = Buffer.from(sender, 'utf8');
  const n = bytes.length;
  const header =
    n < 32 ? Buffer.from([0xa0 | n]) : n < 0x100 ? Buffer.from([0xd9, n]) : n < 0x10000 ? Buffer.from([0xda, n >> 8, n & 0xff]) : Buffer.from([0xdb, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
  lastSender = sender;
  lastSenderHead = Buffer.concat([header, bytes]);
  return lastSenderHead;
}

function writeBinHead(out: Buffer, at: number, length: number): number {
  if (length < 0x100) {
    out[at] = 0xc4;
    out[at + 1] = length;
    return at + 2;
  }
  if (length < 0x10000) {
    out[at] = 0xc5;
    out.writeUInt16BE(length, at + 1);
    return at + 3;
  }
  out[at] = 0xc6;
  out.writeUInt32BE(length, at + 1);
  return at + 5;
}

/**
 * Reads the outer array when it is in the plain form every gatewire process and the usual
 * MessagePack libraries write (fixarray 4, fixint version, str sender, bin commands, bin or nil
 * signature, nothing after); null for anything else, which then goes through the full decoder.
 */
function readOuter(data: Uint8Array): unknown[] | null {
  const n = data.length;
  if (n < 5 || data[0] !== 0x94 || data[1]! > 0x7f) return null;
  const version = data[1]!;
  let at = 2;
  // sender: str
  const s = data[at]!;
  let length: number;
  if ((s & 0xe0) === 0xa0) {
    length = s & 0x1f;
    at += 1;
  } else if (s === 0xd9 && at + 1 < n) {
    length = data[at + 1]!;
    at += 2;
  } else if (s === 0xda && at + 2 < n) {
    length = (data[at + 1]! << 8) | data[at + 2]!;
    at += 3;
  } else {
    return null;
  }
  if (at + length > n) return null;
  const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const sender = buffer.toString('utf8', at, at + length);
  at += length;
  const body = readBin(buffer, at);
  if (body === null) return null;
  at = body.end;
  let signature: Buffer | null = null;
  if (data[at] === 0xc0) {
    at += 1;
  } else {
    const sig = readBin(buffer, at);
    if (sig === null) return null;
    signature = sig.bytes;
    at = sig.end;
  }
  return at === n ? [version, sender, body.bytes, signature] : null;
}

function readBin(data: Buffer, at: number): { bytes: Buffer; end: number } | null {
  const n = data.length;
  if (at >= n) return null;
  const t = data[at]!;
  let length: number;
  if (t === 0xc4 && at + 1 < n) {
    length = data[at + 1]!;
    at += 2;
  } else if (t === 0xc5 && at + 2 < n) {
    length = data.readUInt16BE(at + 1);
    at += 3;
  } else if (t === 0xc6 && at + 4 < n) {
    length = data.readUInt32BE(at + 1);
    at += 5;
  } else {
    return null;
  }
  if (at + length > n) return null;
  return { bytes: data.subarray(at, at + length), end: at + length };
}

/** Throws GatewireError BUS_DECODE or BUS_SIGNATURE; never anything else. */
export function decodeEnvelope(data: Uint8Array, secret: string): DecodedEnvelope {
  let outer: unknown = readOuter(data);
  if (outer === null) {
    try {
      outer = packr.unpack(data);
    } catch (err) {
      throw new GatewireError(ErrorCodes.BUS_DECODE, `bus message is not MessagePack: ${(err as Error).message}`);
    }
  }
  if (!Array.isArray(outer) || outer.length !== 4) {
    throw new GatewireError(ErrorCodes.BUS_DECODE, 'bus message is not a [version, sender, commands, signature] array');
  }
  const [version, sender, body, signature] = outer as unknown[];
  if (version !== WIRE_VERSION) {
    throw new GatewireError(ErrorCodes.BUS_DECODE, `bus message has version ${String(version)}; this node reads ${WIRE_VERSION}`);
  }
  if (typeof sender !== 'string' || !(body instanceof Uint8Array)) {
    throw new GatewireError(ErrorCodes.BUS_DECODE, 'bus message has a bad sender or commands field');
  }
  if (secret !== '') {
    if (!(signature instanceof Uint8Array)) {
      throw new GatewireError(ErrorCodes.BUS_SIGNATURE, `unsigned bus message from ${sender}`);
    }
    const expected = sign(secret, sender, body);
    if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      throw new GatewireError(ErrorCodes.BUS_SIGNATURE, `wrongly signed bus message from ${sender}`);
    }
  }
  let commands: unknown;
  try {
    commands = packr.unpack(body);
  } catch (err) {
    throw new GatewireError(ErrorCodes.BUS_DECODE, `bus message commands are not MessagePack: ${(err as Error).message}`);
  }
  if (!Array.isArray(commands)) throw new GatewireError(ErrorCodes.BUS_DECODE, 'bus message commands are not an array');
  for (const cmd of commands) {
    if (cmd === null || typeof cmd !== 'object' || Array.isArray(cmd) || !Number.isInteger((cmd as { op?: unknown }).op)) {
      throw new GatewireError(ErrorCodes.BUS_DECODE, 'bus message holds a command that is not a map with an integer op');
    }
  }
  return { sender, commands: commands as Command[] };
}

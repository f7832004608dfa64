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

export function encodeEnvelope(sender: string, commands: readonly Command[], secret: string): Buffer {
  const body = packr.pack(commands);
  const signature = secret === '' ? null : sign(secret, sender, body);
  return packr.pack([WIRE_VERSION, sender, body, signature]);
}

/** Throws GatewireError BUS_DECODE or BUS_SIGNATURE; never anything else. */
export function decodeEnvelope(data: Uint8Array, secret: string): DecodedEnvelope {
  let outer: unknown;
  try {
    outer = packr.unpack(data);
  } catch (err) {
    throw new GatewireError(ErrorCodes.BUS_DECODE, `bus message is not MessagePack: ${(err as Error).message}`);
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
    if (cmd === null || typeof cmd !== 'object' || typeof (cmd as { op?: unknown }).op !== 'number') {
      throw new GatewireError(ErrorCodes.BUS_DECODE, 'bus message holds a command without a numeric op');
    }
  }
  return { sender, commands: commands as Command[] };
}

/**
 * How many bytes a command takes in a broker message: an upper bound that costs next to nothing
 * (no encoding), used to cut batches below bus.maxMessageBytes and to refuse a command that
 * could never fit. Where the bound is not tight enough to decide, exactCommandBytes encodes.
 *
 * The bound: a string of n UTF-16 units is at most 3n bytes of UTF-8 (a surrogate pair, 2 units,
 * is 4 bytes) plus a 5-byte header; bytes are their length plus 5; a map key and an integer at
 * most 9; a session at most 3 bytes per character of its JSON (each JSON token of k characters
 * packs into at most 3k bytes: a number "1.5" is a 9-byte float).
 */
import { Packr } from 'msgpackr';
import { Op, type Command, type Payload } from './commands.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

/** Map header, op and the short field names of any command. */
const FIXED = 32;

export function payloadBytes(data: Payload | undefined): number {
  if (data === undefined) return 0;
  return typeof data === 'string' ? 3 * data.length + 5 : data.length + 5;
}

export function stringBytes(value: string): number {
  return 3 * value.length + 5;
}

export function listBytes(values: readonly string[] | undefined): number {
  if (values === undefined) return 0;
  let sum = 5;
  for (const value of values) sum += 3 * value.length + 5;
  return sum;
}

function jsonBytes(value: unknown): number {
  try {
    return 3 * (JSON.stringify(value)?.length ?? 4) + 16;
  } catch {
    return Number.POSITIVE_INFINITY; // not JSON-able: exactCommandBytes decides
  }
}

/** Upper bound of the command's MessagePack size. */
export function commandBytes(cmd: Command): number {
  switch (cmd.op) {
    case Op.SEND_TO_CLIENTS:
      return FIXED + listBytes(cmd.c) + payloadBytes(cmd.d) + 9;
    case Op.SEND_TO_UIDS:
      return FIXED + listBytes(cmd.u) + payloadBytes(cmd.d);
    case Op.SEND_TO_GROUPS:
      return FIXED + listBytes(cmd.g) + payloadBytes(cmd.d) + listBytes(cmd.x) + 9;
    case Op.SEND_TO_ALL:
      return FIXED + payloadBytes(cmd.d) + listBytes(cmd.x);
    case Op.CLOSE_CLIENT:
      return FIXED + stringBytes(cmd.c) + payloadBytes(cmd.d);
    case Op.CLOSE_UID:
      return FIXED + stringBytes(cmd.u) + payloadBytes(cmd.d);
    case Op.SET_SESSION:
    case Op.UPDATE_SESSION:
      return FIXED + 64 + stringBytes(cmd.c) + jsonBytes(cmd.s);
    case Op.QUERY:
      return FIXED + 64 + listBytes(cmd.a);
    case Op.REPLY:
      return FIXED + 64 + stringBytes(cmd.t) + (cmd.e === undefined ? 0 : stringBytes(cmd.e)) + jsonBytes(cmd.v);
    default:
      return FIXED + 64 + jsonBytes(cmd);
  }
}

/** The command's exact MessagePack size (encodes it). */
export function exactCommandBytes(cmd: Command): number {
  return packr.pack(cmd).length;
}

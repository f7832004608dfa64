/**
 * The fast path of decoding (envelope.ts): the outer array read directly when it is in the plain
 * form every gatewire process and the usual MessagePack libraries write, without a general
 * MessagePack decoder; anything else returns null and goes through the full decoder.
 */
import { LEGACY_WIRE_VERSION, WIRE_VERSION } from './wire-version.js';

/** MessagePack heads with the length in 1, 2 or 4 bytes; str32 (-1: none) is not in the plain form. */
type SizedMarkers = readonly [one: number, two: number, four: number];
const STR_MARKERS: SizedMarkers = [0xd9, 0xda, -1];
const BIN_MARKERS: SizedMarkers = [0xc4, 0xc5, 0xc6];

/** A cursor over the outer array in its plain form; any surprise makes the caller fall back. */
class OuterReader {
  at = 0;
  constructor(readonly data: Buffer) {}

  str(): string | null {
    const s = this.data[this.at];
    if (s === undefined) return null;
    const start = (s & 0xe0) === 0xa0 ? this.body(this.at + 1, s & 0x1f) : this.sized(STR_MARKERS);
    return start === null ? null : this.data.toString('utf8', start, this.at);
  }

  uint(): number | null {
    const data = this.data;
    const n = data.length;
    const at = this.at;
    const t = data[at];
    if (t === undefined) return null;
    if (t < 0x80) {
      this.at = at + 1;
      return t;
    }
    if (t === 0xcc && at + 1 < n) {
      this.at = at + 2;
      return data[at + 1]!;
    }
    if (t === 0xcd && at + 2 < n) {
      this.at = at + 3;
      return data.readUInt16BE(at + 1);
    }
    if (t === 0xce && at + 4 < n) {
      this.at = at + 5;
      return data.readUInt32BE(at + 1);
    }
    // uint64, or int64 as some encoders write any 64-bit value: exact up to 2^53 only
    if ((t === 0xcf || t === 0xd3) && at + 8 < n) {
      const high = data.readUInt32BE(at + 1);
      if (high > 0x1fffff) return null;
      this.at = at + 9;
      return high * 0x100000000 + data.readUInt32BE(at + 5);
    }
    return null;
  }

  bin(): Buffer | null {
    const start = this.sized(BIN_MARKERS);
    return start === null ? null : this.data.subarray(start, this.at);
  }

  /**
   * A body after a head of `markers` with its length in 1, 2 or 4 bytes: its start, with `at`
   * moved past it; null for another head or a body cut short.
   */
  private sized(markers: SizedMarkers): number | null {
    const data = this.data;
    const n = data.length;
    const at = this.at;
    const t = data[at];
    if (t === markers[0] && at + 1 < n) return this.body(at + 2, data[at + 1]!);
    if (t === markers[1] && at + 2 < n) return this.body(at + 3, data.readUInt16BE(at + 1));
    if (t === markers[2] && at + 4 < n) return this.body(at + 5, data.readUInt32BE(at + 1));
    return null;
  }

  /** A body of `length` bytes at `start`: its start, with `at` moved past it; null if cut short. */
  private body(start: number, length: number): number | null {
    if (start + length > this.data.length) return null;
    this.at = start + length;
    return start;
  }

  /** bin or nil (nil: undefined returned as null signature) */
  signature(): Buffer | null | undefined {
    if (this.data[this.at] === 0xc0) {
      this.at += 1;
      return null;
    }
    const bytes = this.bin();
    return bytes === null ? undefined : bytes;
  }
}

/**
 * Reads the outer array when it is in the plain form every gatewire process and the usual
 * MessagePack libraries write (fixarray, fixint version, str sender, uint fields, bin commands,
 * bin or nil signature, nothing after); null for anything else, which then goes through the full
 * decoder.
 */
export function readOuter(data: Uint8Array): unknown[] | null {
  if (data.length < 5) return null;
  const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const reader = new OuterReader(buffer);
  if (buffer[0] === 0x97 && buffer[1] === WIRE_VERSION) {
    reader.at = 2;
    const sender = reader.str();
    const epoch = sender === null ? null : reader.uint();
    const seq = epoch === null ? null : reader.uint();
    const time = seq === null ? null : reader.uint();
    const body = time === null ? null : reader.bin();
    const signature = body === null ? undefined : reader.signature();
    if (signature === undefined || reader.at !== buffer.length) return null;
    return [WIRE_VERSION, sender, epoch, seq, time, body, signature];
  }
  if (buffer[0] === 0x94 && buffer[1] === LEGACY_WIRE_VERSION) {
    reader.at = 2;
    const sender = reader.str();
    const body = sender === null ? null : reader.bin();
    const signature = body === null ? undefined : reader.signature();
    if (signature === undefined || reader.at !== buffer.length) return null;
    return [LEGACY_WIRE_VERSION, sender, body, signature];
  }
  return null;
}

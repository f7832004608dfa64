/**
 * WebSocket frames as the bench's raw-socket clients (load-client.ts, v1-client.ts) write and
 * read them: masked client frames out, the header of unmasked server frames in, with no
 * allocation on the read path.
 */
import { randomBytes } from 'node:crypto';

/** A masked client frame (RFC 6455 §5.3), payload below 64 KiB. */
export function clientFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const header = n < 126 ? 2 : 4;
  if (n > 0xffff) throw new RangeError('bench client frames are short');
  const frame = Buffer.allocUnsafe(header + 4 + n);
  frame[0] = 0x80 | opcode;
  if (n < 126) frame[1] = 0x80 | n;
  else {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(n, 2);
  }
  const mask = randomBytes(4);
  mask.copy(frame, header);
  for (let i = 0; i < n; i++) frame[header + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/**
 * The length of the server frame header at chunk[i] (2, or +2 or +8 for longer payloads; server
 * frames are unmasked), or 0 when not all of it has arrived (`length`: the bytes read).
 */
export function headerLengthAt(chunk: Buffer, i: number, length: number): number {
  if (length - i < 2) return 0;
  const b1 = chunk[i + 1]! & 0x7f;
  const headerLength = b1 < 126 ? 2 : b1 === 126 ? 4 : 10;
  return length - i < headerLength ? 0 : headerLength;
}

/** The payload length the complete header at chunk[i] gives. */
export function payloadLengthAt(chunk: Buffer, i: number): number {
  const b1 = chunk[i + 1]! & 0x7f;
  if (b1 < 126) return b1;
  if (b1 === 126) return chunk.readUInt16BE(i + 2);
  return chunk.readUInt32BE(i + 2) * 2 ** 32 + chunk.readUInt32BE(i + 6);
}

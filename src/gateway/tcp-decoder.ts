/**
 * Splits a TCP byte stream into messages.
 *   text:  newline-delimited; a trailing "\r" is dropped; each line is a UTF-8 string.
 *   frame: a 4-byte big-endian payload length, then that many bytes (delivered as bytes).
 * A message longer than maxPayload (or a line that grows past it without a newline) is an
 * error: the gateway closes the connection.
 */
import type { Payload } from '../bus/commands.js';
import type { TcpProtocol } from './listen-url.js';
import { ErrorCodes, GatewireError } from '../errors.js';

export class TcpDecoder {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(
    private readonly protocol: TcpProtocol,
    private readonly maxPayload: number,
  ) {}

  /** Returns the complete messages in `chunk` (with what was buffered before). Throws on abuse. */
  push(chunk: Buffer): Payload[] {
    const data = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    return this.protocol === 'text' ? this.lines(data) : this.frames(data);
  }

  private lines(data: Buffer): Payload[] {
    const out: Payload[] = [];
    let start = 0;
    for (;;) {
      const end = data.indexOf(0x0a, start);
      if (end === -1) break;
      let lineEnd = end;
      if (lineEnd > start && data[lineEnd - 1] === 0x0d) lineEnd -= 1;
      if (lineEnd - start > this.maxPayload) throw tooLarge(lineEnd - start, this.maxPayload);
      out.push(data.toString('utf8', start, lineEnd));
      start = end + 1;
    }
    const rest = data.length - start;
    if (rest > this.maxPayload) throw tooLarge(rest, this.maxPayload);
    this.buffered = rest === 0 ? Buffer.alloc(0) : Buffer.from(data.subarray(start));
    return out;
  }

  private frames(data: Buffer): Payload[] {
    const out: Payload[] = [];
    let offset = 0;
    while (data.length - offset >= 4) {
      const length = data.readUInt32BE(offset);
      if (length > this.maxPayload) throw tooLarge(length, this.maxPayload);
      if (data.length - offset - 4 < length) break;
      out.push(Buffer.from(data.subarray(offset + 4, offset + 4 + length)));
      offset += 4 + length;
    }
    this.buffered = offset === data.length ? Buffer.alloc(0) : Buffer.from(data.subarray(offset));
    return out;
  }
}

function tooLarge(size: number, max: number): GatewireError {
  return new GatewireError(ErrorCodes.PAYLOAD_TOO_LARGE, `message of ${size} bytes exceeds gateway.maxPayload (${max})`);
}

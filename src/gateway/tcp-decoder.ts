/**
 * Splits a TCP byte stream into messages.
 *   text:  newline-delimited; a trailing "\r" is dropped; each line is a UTF-8 string.
 *   frame: a 4-byte big-endian payload length, then that many bytes (delivered as bytes).
 * A message longer than maxPayload (or a line that grows past it without a newline) is an
 * error: push() still returns the complete messages that came before it (so what a client gets
 * delivered does not depend on how its bytes were cut into chunks), sets `error`, and reads
 * nothing more; the gateway then closes the connection.
 */
import type { Payload } from '../protocol/commands.js';
import type { TcpProtocol } from './listen-url.js';
import { ErrorCodes, GatewireError } from '../errors.js';

export class TcpDecoder {
  private buffered: Buffer = Buffer.alloc(0);
  /** set once the stream broke the limit; nothing is decoded after it */
  error: GatewireError | null = null;

  constructor(
    private readonly protocol: TcpProtocol,
    private readonly maxPayload: number,
  ) {}

  /**
   * Returns the complete messages in `chunk` (with what was buffered before) up to the first one
   * past maxPayload, if any; that one sets `error`.
   */
  push(chunk: Buffer): Payload[] {
    if (this.error !== null) return [];
    const data = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const out: Payload[] = [];
    try {
      if (this.protocol === 'text') this.lines(data, out);
      else this.frames(data, out);
    } catch (err) {
      this.error = err as GatewireError;
      this.buffered = Buffer.alloc(0);
    }
    return out;
  }

  private lines(data: Buffer, out: Payload[]): void {
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
  }

  private frames(data: Buffer, out: Payload[]): void {
    let offset = 0;
    while (data.length - offset >= 4) {
      const length = data.readUInt32BE(offset);
      if (length > this.maxPayload) throw tooLarge(length, this.maxPayload);
      if (data.length - offset - 4 < length) break;
      out.push(Buffer.from(data.subarray(offset + 4, offset + 4 + length)));
      offset += 4 + length;
    }
    this.buffered = offset === data.length ? Buffer.alloc(0) : Buffer.from(data.subarray(offset));
  }
}

function tooLarge(size: number, max: number): GatewireError {
  return new GatewireError(
    ErrorCodes.PAYLOAD_TOO_LARGE,
    `message of ${size} bytes exceeds gateway.maxPayload (${max})`,
  );
}

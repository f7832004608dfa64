/**
 * One message on its way to clients. Its bytes are framed once per wire format (WebSocket,
 * TCP text, TCP frame) on first use and the same buffer is written to every client: a
 * broadcast to 10,000 clients frames once, not 10,000 times.
 */
import type { Payload } from '../protocol/commands.js';
import { CONTROL_MARK, needsEscape } from '../protocol/client-protocol.js';

const WS_OPCODE_TEXT = 0x1;
const WS_OPCODE_BINARY = 0x2;

export class OutgoingMessage {
  readonly binary: boolean;
  private bytesCache: Buffer | undefined;
  private wsCache: Buffer | undefined;
  private textCache: Buffer | undefined;
  private frameCache: Buffer | undefined;
  private lengthCache: number | undefined;
  private v1Cache: Buffer | undefined;

  constructor(readonly data: Payload) {
    this.binary = typeof data !== 'string';
  }

  get bytes(): Buffer {
    if (this.bytesCache === undefined) {
      const data = this.data;
      this.bytesCache =
        typeof data === 'string'
          ? Buffer.from(data, 'utf8')
          : Buffer.isBuffer(data)
            ? data
            : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    }
    return this.bytesCache;
  }

  /** Payload length in bytes (for text, without encoding it to a buffer of its own). */
  get length(): number {
    if (this.lengthCache === undefined) {
      const data = this.data;
      this.lengthCache = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.byteLength;
    }
    return this.lengthCache;
  }

  /** An unmasked, unfragmented server-to-client WebSocket frame (RFC 6455 §5.2). */
  get wsFrame(): Buffer {
    if (this.wsCache === undefined) {
      const length = this.length;
      const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
      const frame = this.framed(headerLength, 0);
      frame[0] = 0x80 | (this.binary ? WS_OPCODE_BINARY : WS_OPCODE_TEXT);
      if (length < 126) {
        frame[1] = length;
      } else if (length < 65536) {
        frame[1] = 126;
        frame.writeUInt16BE(length, 2);
      } else {
        frame[1] = 127;
        frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
        frame.writeUInt32BE(length >>> 0, 6);
      }
      this.wsCache = frame;
    }
    return this.wsCache;
  }

  /**
   * The frame for a gatewire.v1 client (docs/client-protocol.md): the same frame as for any
   * WebSocket client, except text that starts with U+0000, which gets a second one (the escape).
   */
  get v1Frame(): Buffer {
    if (!needsEscape(this.data)) return this.wsFrame;
    this.v1Cache ??= new OutgoingMessage(CONTROL_MARK + (this.data as string)).wsFrame;
    return this.v1Cache;
  }

  /** TCP text protocol: the bytes and a newline. */
  get textLine(): Buffer {
    if (this.textCache === undefined) {
      const line = this.framed(0, 1);
      line[line.length - 1] = 0x0a;
      this.textCache = line;
    }
    return this.textCache;
  }

  /** TCP frame protocol: a 4-byte big-endian payload length, then the bytes. */
  get lengthPrefixed(): Buffer {
    if (this.frameCache === undefined) {
      const frame = this.framed(4, 0);
      frame.writeUInt32BE(this.length, 0);
      this.frameCache = frame;
    }
    return this.frameCache;
  }

  /**
   * A buffer with room for `head` bytes, the payload, and `tail` bytes; text is encoded straight
   * into it (one allocation and one pass, where Buffer.from then copy would take two of each).
   */
  private framed(head: number, tail: number): Buffer {
    const length = this.length;
    const frame = Buffer.allocUnsafe(head + length + tail);
    const data = this.data;
    if (typeof data === 'string' && this.bytesCache === undefined) frame.write(data, head, length, 'utf8');
    else this.bytes.copy(frame, head);
    return frame;
  }
}

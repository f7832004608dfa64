/**
 * WebSocket at the byte level, for hostile-input tests: a real HTTP upgrade over a raw TCP socket,
 * then whatever bytes the test writes (any frame, well-formed or not), and a reader of the
 * server's frames that reports how the server ended the connection.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';

export interface FrameSpec {
  fin?: boolean;
  /** RSV1..RSV3 as a 3-bit number (RSV1 = 4) */
  rsv?: number;
  opcode: number;
  payload?: Buffer;
  /** client frames must be masked; false sends an unmasked frame. @default true */
  mask?: boolean;
  /** the length field as written: 'auto' (shortest), '16' (126 + 2 bytes) or '64' (127 + 8 bytes) */
  lengthForm?: 'auto' | '16' | '64';
  /** the length written in the header instead of the payload's (the payload is sent as given) */
  declaredLength?: number;
  /** the 8-byte length written as two 32-bit halves (for values past 2^53) */
  declaredLength64?: [number, number];
}

/** Builds one frame as a client would (masked unless asked otherwise). */
export function wsFrame(spec: FrameSpec): Buffer {
  const payload = spec.payload ?? Buffer.alloc(0);
  const masked = spec.mask ?? true;
  const length = spec.declaredLength ?? payload.length;
  const form = spec.declaredLength64 ? '64' : (spec.lengthForm ?? 'auto');
  const parts: Buffer[] = [];
  const first = ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 7) << 4) | (spec.opcode & 0x0f);
  const maskBit = masked ? 0x80 : 0;
  if (form === '64' || (form === 'auto' && length > 0xffff)) {
    const header = Buffer.alloc(10);
    header[0] = first;
    header[1] = maskBit | 127;
    const [hi, lo] = spec.declaredLength64 ?? [Math.floor(length / 2 ** 32), length >>> 0];
    header.writeUInt32BE(hi >>> 0, 2);
    header.writeUInt32BE(lo >>> 0, 6);
    parts.push(header);
  } else if (form === '16' || (form === 'auto' && length > 125)) {
    const header = Buffer.alloc(4);
    header[0] = first;
    header[1] = maskBit | 126;
    header.writeUInt16BE(length & 0xffff, 2);
    parts.push(header);
  } else {
    parts.push(Buffer.from([first, maskBit | length]));
  }
  if (masked) {
    const key = randomBytes(4);
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
    parts.push(key, body);
  } else {
    parts.push(payload);
  }
  return Buffer.concat(parts);
}

export type Outcome =
  /** the server sent a close frame (code null: without a status code) */
  | { kind: 'close'; code: number | null }
  /** the server ended the connection without a close frame */
  | { kind: 'dropped' }
  /** nothing happened within the wait; the client ended the connection itself */
  | { kind: 'open' };

export class RawWs {
  private buffer: Buffer = Buffer.alloc(0);
  private result: Outcome | null = null;
  private readonly settled: Promise<void>;
  private settle!: () => void;
  /** data frames the server sent (text or binary), as received */
  readonly messages: Buffer[] = [];

  private constructor(
    readonly socket: net.Socket,
    leftover: Buffer,
  ) {
    this.settled = new Promise((resolve) => (this.settle = resolve));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      this.result ??= { kind: 'dropped' };
      this.settle();
    });
    socket.on('error', () => undefined);
    if (leftover.length > 0) this.onData(leftover);
  }

  /** Opens a TCP connection and completes a real upgrade to `path`. */
  static connect(port: number, path = '/ws', host = '127.0.0.1', timeoutMs = 10_000): Promise<RawWs> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host);
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => fail(new Error('upgrade timed out')), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        socket.setNoDelay(true);
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onData);
        socket.off('error', fail);
        clearTimeout(timer);
        const status = head.subarray(0, head.indexOf('\r\n')).toString();
        if (!status.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          reject(new Error(`upgrade refused: ${status}`));
          return;
        }
        resolve(new RawWs(socket, head.subarray(end + 4)));
      };
      socket.on('data', onData);
    });
  }

  send(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /**
   * How the server ended it: waits `waitMs` for a close frame or a drop; if neither came, the
   * client ends the connection (outcome 'open') and waits for it to close (bounded).
   */
  async outcome(waitMs: number): Promise<Outcome> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.settled, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
    if (this.result === null) {
      this.result = { kind: 'open' };
      this.socket.end();
      const hard = setTimeout(() => this.socket.destroy(), 5000);
      await this.settled;
      clearTimeout(hard);
    }
    return this.result;
  }

  /** Waits until the server sent a text or binary message equal to `text`; false if it ended first or `ms` passed. */
  async echo(text: string, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.messages.some((m) => m.toString() === text)) {
      if (this.result !== null || Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return;
      let length = b[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) return;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) return;
        length = b.readUInt32BE(2) * 2 ** 32 + b.readUInt32BE(6);
        offset = 10;
      }
      if (b.length < offset + length) return;
      const opcode = b[0]! & 0x0f;
      const payload = b.subarray(offset, offset + length);
      this.buffer = b.subarray(offset + length);
      if (opcode === 0x8) {
        this.result ??= { kind: 'close', code: payload.length >= 2 ? payload.readUInt16BE(0) : null };
        // The close handshake is not completed on purpose: the server must not wait on us.
        this.socket.destroy();
        this.settle();
        return;
      }
      if (opcode === 0x1 || opcode === 0x2) this.messages.push(Buffer.from(payload));
    }
  }
}

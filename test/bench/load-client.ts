/**
 * The load client: many WebSocket connections on raw TCP sockets, cheap enough that the client
 * side does not dominate a 2-core machine. It does the HTTP upgrade itself and then reads only
 * frame headers; payload bytes are skipped, except the first few when a message must be
 * classified (engine.io packet type) or its send-time stamp read (latency runs).
 *
 * Two dialects on the same code:
 *   ws   plain WebSocket (gatewire): every text or binary frame is one message.
 *   sio  engine.io v4 over WebSocket (Socket.IO): `GET /socket.io/?EIO=4&transport=websocket`,
 *        open packet `0{...}`, the client sends `40` to join the default namespace and waits for
 *        `40{...}`, answers ping `2` with pong `3`; an event `42[...]` is one message.
 *
 * Both answer WebSocket pings with pongs, so heartbeats never cut a connection.
 *
 * Reads go into one buffer shared by every connection (net.connect's `onread`), parsed at once
 * and never kept: no Buffer and no stream event per read, so the client costs both systems as
 * little of the shared CPU as possible (the few bytes a frame split across reads leaves are copied).
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { monoMicros } from './protocol.js';
import { clientFrame, headerLengthAt, payloadLengthAt } from './ws-frame.js';

export type Dialect = 'ws' | 'sio';

/** Bytes of each payload kept for inspection (engine.io type and the `@<µs>@` stamp). */
const CAPTURE = 40;

/** What all connections of one pool count together. */
export class Tally {
  messages = 0;
  /** latency samples in µs, when recording */
  latencies: number[] = [];
  recordLatency = false;
  private target = Number.POSITIVE_INFINITY;
  private reached: (() => void) | null = null;

  /** Resolves once `messages` reaches `count` (true), or after `timeoutMs` (false). */
  waitFor(count: number, timeoutMs: number): Promise<boolean> {
    if (this.messages >= count) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.reached = null;
        this.target = Number.POSITIVE_INFINITY;
        resolve(false);
      }, timeoutMs);
      this.target = count;
      this.reached = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  /** Called after each read: cheap when no target is near. */
  check(): void {
    if (this.messages >= this.target && this.reached !== null) {
      const done = this.reached;
      this.reached = null;
      this.target = Number.POSITIVE_INFINITY;
      done();
    }
  }
}

/** Where every connection's reads land; parsed before the next read (see the header). */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

const SIO_JOIN = Buffer.from('40');
const SIO_PONG = Buffer.from('3');
const CRLFCRLF = Buffer.from('\r\n\r\n');

export class LoadConnection {
  /** data messages received (ws frames; sio `42` events) */
  messages = 0;
  closed = false;
  private handshaking = true;
  private head: Buffer = Buffer.alloc(0);
  /** header bytes of a frame split across reads */
  private partial: Buffer | null = null;
  /** payload bytes of the current frame still to come */
  private remaining = 0;
  private opcode = 0;
  private readonly capture = Buffer.allocUnsafe(CAPTURE);
  private captured = 0;
  private payloadLength = 0;
  private onReady: ((err?: Error) => void) | null = null;

  constructor(
    readonly socket: net.Socket,
    private readonly dialect: Dialect,
    private readonly tally: Tally,
  ) {}

  /** Connects, upgrades, and (sio) joins the default namespace. */
  static open(port: number, path: string, dialect: Dialect, tally: Tally, timeoutMs = 15000): Promise<LoadConnection> {
    return new Promise((resolve, reject) => {
      let conn!: LoadConnection;
      const socket = net.connect({
        host: '127.0.0.1',
        port,
        onread: {
          buffer: READ_BUFFER,
          callback: (bytes: number, buffer: Uint8Array) => {
            conn.read(buffer as Buffer, bytes);
            return true;
          },
        },
      });
      socket.setNoDelay(true);
      conn = new LoadConnection(socket, dialect, tally);
      const timer = setTimeout(() => fail(new Error(`no WebSocket handshake within ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        conn.onReady = null;
        socket.destroy();
        reject(err);
      };
      conn.onReady = (err) => {
        clearTimeout(timer);
        if (err) fail(err);
        else resolve(conn);
      };
      socket.on('error', (err) => {
        if (conn.onReady) conn.onReady(err);
      });
      socket.on('close', () => {
        conn.closed = true;
        if (conn.onReady) conn.onReady(new Error('closed during the handshake'));
      });
      socket.on('connect', () => {
        const key = randomBytes(16).toString('base64');
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private ready(err?: Error): void {
    const done = this.onReady;
    this.onReady = null;
    done?.(err);
  }

  /** `bytes` bytes were read into `buffer` (shared: nothing of it may be kept). */
  private read(buffer: Buffer, bytes: number): void {
    let chunk = buffer.subarray(0, bytes);
    if (this.handshaking) {
      this.head = Buffer.concat([this.head, chunk]);
      const end = this.head.indexOf(CRLFCRLF);
      if (end < 0) return;
      const status = this.head.toString('latin1', 0, this.head.indexOf('\r\n'));
      if (!status.startsWith('HTTP/1.1 101')) {
        this.ready(new Error(`upgrade refused: ${status}`));
        return;
      }
      const rest = this.head.subarray(end + 4);
      this.head = Buffer.alloc(0);
      this.handshaking = false;
      if (this.dialect === 'ws') this.ready();
      if (rest.length === 0) return;
      chunk = rest;
    }
    this.frames(chunk);
    this.tally.check();
  }

  /** Walks the frames in `chunk`, reading headers and skipping payloads. */
  private frames(chunk: Buffer): void {
    let i = 0;
    const length = chunk.length;
    if (this.partial !== null) {
      chunk = Buffer.concat([this.partial, chunk]);
      this.partial = null;
      return this.frames(chunk);
    }
    while (i < length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, length - i);
        if (this.captured < CAPTURE) {
          const keep = Math.min(take, CAPTURE - this.captured);
          chunk.copy(this.capture, this.captured, i, i + keep);
          this.captured += keep;
        }
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.message();
        continue;
      }
      const headerLength = headerLengthAt(chunk, i, length);
      if (headerLength === 0) {
        this.partial = Buffer.from(chunk.subarray(i));
        return;
      }
      this.opcode = chunk[i]! & 0x0f;
      this.payloadLength = payloadLengthAt(chunk, i);
      i += headerLength;
      this.remaining = this.payloadLength;
      this.captured = 0;
      if (this.remaining === 0) this.message();
    }
  }

  /** One whole frame was read. */
  private message(): void {
    const opcode = this.opcode;
    if (opcode === 0x1 || opcode === 0x2) {
      if (this.dialect === 'ws') {
        this.counted();
        return;
      }
      // engine.io: the first byte is the packet type, the second the socket.io packet type.
      const type = this.capture[0];
      if (type === 0x34 /* 4 message */) {
        const inner = this.capture[1];
        if (inner === 0x32 /* 2 event */) this.counted();
        else if (inner === 0x30 /* 0 connect */) this.ready();
      } else if (type === 0x32 /* 2 ping */) {
        this.socket.write(clientFrame(0x1, SIO_PONG));
      } else if (type === 0x30 /* 0 open */) {
        this.socket.write(clientFrame(0x1, SIO_JOIN));
      }
      return;
    }
    if (opcode === 0x9) {
      this.socket.write(
        clientFrame(0xa, Buffer.from(this.capture.subarray(0, Math.min(this.captured, this.payloadLength)))),
      );
    } else if (opcode === 0x8) {
      this.socket.end();
    }
  }

  private counted(): void {
    this.messages += 1;
    const tally = this.tally;
    tally.messages += 1;
    if (tally.recordLatency) {
      const stamp = readStamp(this.capture, Math.min(this.captured, CAPTURE));
      if (stamp >= 0) tally.latencies.push(monoMicros() - stamp);
    }
  }
}

/** The number between the first two `@` of the captured bytes, or -1. */
function readStamp(bytes: Buffer, length: number): number {
  let i = bytes.indexOf(0x40);
  if (i < 0 || i >= length) return -1;
  let value = 0;
  for (i += 1; i < length; i++) {
    const c = bytes[i]!;
    if (c === 0x40) return value;
    if (c < 0x30 || c > 0x39) return -1;
    value = value * 10 + (c - 0x30);
  }
  return -1;
}

/** A set of connections to one server, all counting into one tally. */
export class LoadPool {
  readonly tally = new Tally();
  readonly connections: LoadConnection[] = [];

  constructor(
    readonly port: number,
    readonly dialect: Dialect,
  ) {}

  /** The request path of connection `i` (its uid, when `uidPrefix` is given). */
  path(uid: string | null): string {
    const query = uid === null ? '' : `uid=${encodeURIComponent(uid)}`;
    return this.dialect === 'ws'
      ? `/ws${query === '' ? '' : `?${query}`}`
      : `/socket.io/?EIO=4&transport=websocket${query === '' ? '' : `&${query}`}`;
  }

  /**
   * Opens `count` more connections, at most `concurrency` handshakes at a time. With
   * `uidPrefix`, the i-th of them asks for uid `${uidPrefix}${uidOffset + i}`.
   */
  async open(
    count: number,
    options: { uidPrefix?: string; uidOffset?: number; concurrency?: number } = {},
  ): Promise<void> {
    const concurrency = options.concurrency ?? 100;
    const offset = options.uidOffset ?? 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        const i = next++;
        const uid = options.uidPrefix === undefined ? null : `${options.uidPrefix}${offset + i}`;
        this.connections.push(await LoadConnection.open(this.port, this.path(uid), this.dialect, this.tally));
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  }

  /** Fewest messages any connection has counted. */
  minMessages(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const c of this.connections) if (c.messages < min) min = c.messages;
    return this.connections.length === 0 ? 0 : min;
  }

  closedCount(): number {
    return this.connections.filter((c) => c.closed).length;
  }

  close(): void {
    for (const c of this.connections) c.close();
  }
}

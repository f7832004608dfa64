/**
 * A lean gatewire.v1 client for the reconnect storm (docs/client-protocol.md): raw TCP sockets,
 * its own upgrade with `Sec-WebSocket-Protocol: gatewire.v1`, the hello (with token and seq on a
 * resume), the welcome, cumulative acks (one at once after each welcome, then at most every
 * 100 ms while messages arrive), and answers to pings (control and frame). It keeps a session
 * across connections: `cut()` drops the socket without a close frame, `resume(port)` opens a new
 * one and resumes.
 *
 * Every message is a numbered push `#<k>#…` (protocol.ts numberedPayload): k must be the previous
 * one plus 1, so a client counts what it got in order, what came twice (or late), and what a gap
 * skipped. As in load-client.ts, every socket reads into one shared buffer (`onread`), only frame
 * headers, the first bytes of a message and the whole of a (small) control are looked at.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { monoMicros } from './protocol.js';
import { clientFrame, headerLengthAt, payloadLengthAt } from './ws-frame.js';

const SUBPROTOCOL = 'gatewire.v1';
/** Bytes of a message kept to read its number. */
const CAPTURE = 24;
/** A control larger than this is a protocol error here (a welcome is about 200 bytes). */
const MAX_CONTROL = 4096;
const ACK_INTERVAL_MS = 100;
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);
const CRLFCRLF = Buffer.from('\r\n\r\n');

function controlFrame(control: object): Buffer {
  return clientFrame(0x1, Buffer.from(`\u0000${JSON.stringify(control)}`));
}

/** What the connections of one pool count together. */
export class V1Tally {
  /** messages received (every one, repeats included) */
  messages = 0;
  /** messages whose number was not above the last one (came twice, or late) */
  repeats = 0;
  /** numbers skipped by a gap (lost, unless they come later, which counts them as repeats) */
  skipped = 0;
  /** welcomes since the last `resetWelcomes`, by `resumed` */
  resumedWelcomes = 0;
  freshWelcomes = 0;
  /** when the last of `welcomeTarget` welcomes arrived (µs, monotonic) */
  welcomesDoneAt = 0;
  welcomeTarget = Number.POSITIVE_INFINITY;
  /** connections that reached their `caughtUp` target, and when the last did */
  caughtUp = 0;
  caughtUpTarget = Number.POSITIVE_INFINITY;
  caughtUpAt = 0;
  /** connections that closed without being cut (the server closed them) */
  closedByServer = 0;

  resetWelcomes(target: number): void {
    this.resumedWelcomes = 0;
    this.freshWelcomes = 0;
    this.welcomesDoneAt = 0;
    this.welcomeTarget = target;
  }

  welcome(resumed: boolean): void {
    if (resumed) this.resumedWelcomes += 1;
    else this.freshWelcomes += 1;
    if (this.resumedWelcomes + this.freshWelcomes === this.welcomeTarget) this.welcomesDoneAt = monoMicros();
  }
}

export class V1Connection {
  /** the server's messages received in this session (the `seq` of a resume) */
  received = 0;
  /** highest push number seen: the in-order count while nothing is lost */
  got = 0;
  /** `got` at which this connection counts as caught up (see V1Tally.caughtUp) */
  target = Number.POSITIVE_INFINITY;
  token: string | null = null;
  clientId = '';
  resumed: boolean | null = null;
  /** when the last welcome arrived (µs, monotonic) */
  welcomedAt = 0;
  socket: net.Socket | null = null;
  private acked = 0;
  private welcomed = false;
  private handshaking = true;
  private head: Buffer = Buffer.alloc(0);
  private partial: Buffer | null = null;
  private remaining = 0;
  private opcode = 0;
  private payloadLength = 0;
  private control = false;
  private body: Buffer = Buffer.allocUnsafe(MAX_CONTROL);
  private captured = 0;
  private onReady: ((err?: Error) => void) | null = null;

  constructor(
    readonly path: string,
    private readonly tally: V1Tally,
  ) {}

  /** Connects, upgrades with the subprotocol and says hello (resuming when it has a token); resolves at the welcome. */
  connect(port: number, timeoutMs = 30000): Promise<void> {
    this.handshaking = true;
    this.welcomed = false;
    this.head = Buffer.alloc(0);
    this.partial = null;
    this.remaining = 0;
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: '127.0.0.1',
        port,
        onread: {
          buffer: READ_BUFFER,
          callback: (bytes: number, buffer: Uint8Array) => {
            if (this.socket === socket) this.read(buffer as Buffer, bytes);
            return true;
          },
        },
      });
      socket.setNoDelay(true);
      this.socket = socket;
      const timer = setTimeout(() => fail(new Error(`no welcome within ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        this.onReady = null;
        socket.destroy();
        reject(err);
      };
      this.onReady = (err) => {
        clearTimeout(timer);
        if (err) fail(err);
        else resolve();
      };
      socket.on('error', (err) => {
        if (this.socket === socket && this.onReady) this.onReady(err);
      });
      socket.on('close', () => {
        if (this.socket !== socket) return;
        this.socket = null;
        if (this.onReady) this.onReady(new Error('closed before the welcome'));
        else this.tally.closedByServer += 1;
      });
      socket.on('connect', () => {
        const key = randomBytes(16).toString('base64');
        socket.write(
          `GET ${this.path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`,
        );
      });
    });
  }

  /** Drops the connection without a close frame (FIN, no WebSocket close); the session stays. */
  cut(): void {
    const socket = this.socket;
    this.socket = null;
    socket?.destroy();
  }

  /** A cumulative ack, if messages arrived since the last one. */
  ackIfNeeded(): void {
    if (this.welcomed && this.received > this.acked && this.socket !== null) this.sendAck();
  }

  private sendAck(): void {
    this.acked = this.received;
    this.socket!.write(controlFrame({ t: 'ack', n: this.received }));
  }

  private read(buffer: Buffer, bytes: number): void {
    let chunk = buffer.subarray(0, bytes);
    if (this.handshaking) {
      this.head = Buffer.concat([this.head, chunk]);
      const end = this.head.indexOf(CRLFCRLF);
      if (end < 0) return;
      const head = this.head.toString('latin1', 0, end);
      if (!head.startsWith('HTTP/1.1 101')) {
        this.onReady?.(new Error(`upgrade refused: ${head.slice(0, head.indexOf('\r\n'))}`));
        return;
      }
      if (!/\r\nsec-websocket-protocol: *gatewire\.v1/i.test(head)) {
        this.onReady?.(new Error('the server did not take the gatewire.v1 subprotocol'));
        return;
      }
      const rest = this.head.subarray(end + 4);
      this.head = Buffer.alloc(0);
      this.handshaking = false;
      const hello = this.token === null ? { t: 'hello' } : { t: 'hello', token: this.token, seq: this.received };
      this.socket!.write(controlFrame(hello));
      if (rest.length === 0) return;
      chunk = rest;
    }
    this.frames(chunk);
  }

  private frames(chunk: Buffer): void {
    if (this.partial !== null) {
      chunk = Buffer.concat([this.partial, chunk]);
      this.partial = null;
    }
    const length = chunk.length;
    let i = 0;
    while (i < length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, length - i);
        // Text that starts with U+0000 then anything but U+0000 is a control: kept whole until
        // its second byte says it is not one (a message starting with U+0000 is escaped by a second).
        const limit = this.control || this.captured < 2 ? MAX_CONTROL : CAPTURE;
        if (this.captured < limit) {
          const keep = Math.min(take, limit - this.captured);
          chunk.copy(this.body, this.captured, i, i + keep);
          this.captured += keep;
          if (!this.control && this.captured >= 2 && this.opcode === 0x1 && this.body[0] === 0 && this.body[1] !== 0)
            this.control = true;
        }
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.frame();
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
      this.control = false;
      if (this.remaining === 0) this.frame();
    }
  }

  /** One whole frame was read. */
  private frame(): void {
    const opcode = this.opcode;
    if (opcode === 0x1 && this.control) {
      if (this.payloadLength > MAX_CONTROL) throw new Error('a control larger than the bench client reads');
      this.onControl(JSON.parse(this.body.toString('utf8', 1, this.payloadLength)) as Record<string, unknown>);
    } else if (opcode === 0x1 || opcode === 0x2) {
      this.onMessage();
    } else if (opcode === 0x9) {
      this.socket?.write(clientFrame(0xa, Buffer.from(this.body.subarray(0, Math.min(this.captured, 125)))));
    } else if (opcode === 0x8) {
      this.socket?.end();
    }
  }

  private onControl(control: Record<string, unknown>): void {
    switch (control['t']) {
      case 'welcome': {
        const resumed = control['resumed'] === true;
        if (!resumed && this.token !== null) {
          // A new session: the numbering of the server's messages starts again.
          this.received = 0;
        }
        this.token = control['token'] as string | null;
        this.clientId = control['clientId'] as string;
        this.resumed = resumed;
        this.welcomedAt = monoMicros();
        this.welcomed = true;
        this.sendAck();
        this.tally.welcome(resumed);
        const ready = this.onReady;
        this.onReady = null;
        ready?.();
        return;
      }
      case 'ping':
        this.socket?.write(controlFrame({ t: 'pong' }));
        return;
      default:
        // ack, pong, reply: nothing to do here
        return;
    }
  }

  /** A push `#<k>#…`: counted, and checked against the last number. */
  private onMessage(): void {
    this.received += 1;
    const tally = this.tally;
    tally.messages += 1;
    const k = readNumber(this.body, Math.min(this.captured, CAPTURE));
    if (k <= this.got) {
      tally.repeats += 1;
      return;
    }
    if (k > this.got + 1) tally.skipped += k - this.got - 1;
    const before = this.got;
    this.got = k;
    if (before < this.target && k >= this.target) {
      tally.caughtUp += 1;
      if (tally.caughtUp === tally.caughtUpTarget) tally.caughtUpAt = monoMicros();
    }
  }
}

/** The number between the first two `#`, or -1 (a message that is not a numbered push). */
function readNumber(bytes: Buffer, length: number): number {
  if (length < 3 || bytes[0] !== 0x23) return -1;
  let value = 0;
  for (let i = 1; i < length; i++) {
    const c = bytes[i]!;
    if (c === 0x23) return value;
    if (c < 0x30 || c > 0x39) return -1;
    value = value * 10 + (c - 0x30);
  }
  return -1;
}

/** The connections of a storm, with one ack timer for all. */
export class V1Pool {
  readonly tally = new V1Tally();
  readonly connections: V1Connection[] = [];
  private readonly ackTimer: NodeJS.Timeout;

  constructor() {
    this.ackTimer = setInterval(() => {
      for (const c of this.connections) c.ackIfNeeded();
    }, ACK_INTERVAL_MS);
  }

  add(path: string): V1Connection {
    const c = new V1Connection(path, this.tally);
    this.connections.push(c);
    return c;
  }

  /** Connects (or resumes) `list` at `port(i)`, at most `concurrency` handshakes at a time. */
  async connect(
    list: V1Connection[],
    port: (c: V1Connection, i: number) => number,
    concurrency: number,
  ): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < list.length) {
        const i = next++;
        await list[i]!.connect(port(list[i]!, i));
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker));
  }

  /** Sets each connection's caught-up target (`target(i)` for connection i) and clears the count. */
  setTargets(target: (i: number) => number): void {
    const tally = this.tally;
    tally.caughtUp = 0;
    tally.caughtUpAt = 0;
    tally.caughtUpTarget = this.connections.length;
    this.connections.forEach((c, i) => {
      c.target = target(i);
      if (c.got >= c.target) tally.caughtUp += 1;
    });
    if (tally.caughtUp === tally.caughtUpTarget) tally.caughtUpAt = monoMicros();
  }

  close(): void {
    clearInterval(this.ackTimer);
    for (const c of this.connections) c.cut();
  }
}

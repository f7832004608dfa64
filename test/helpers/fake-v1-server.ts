/**
 * A small in-process `gatewire.v1` server (docs/client-protocol.md) for the client library's
 * tests: it answers `hello` with `welcome`, counts both ways, keeps what it sent for a resume,
 * acknowledges, answers requests, and can drop connections without a close frame.
 */
import { EventEmitter, once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { GatewireClient, type GatewireClientOptions, type ReceivedData } from '../../src/client/gatewire-client.js';

/** A counted message of the client as the server read it. */
export type Got = string | Uint8Array | { req: number | string; d?: string; b?: string };

export interface FakeSession {
  clientId: string;
  tokens: string[];
  /** the server's counted frames (index i is number i + 1) */
  sent: (string | Uint8Array)[];
  /** the client's counted messages, in the order applied */
  got: Got[];
  /** the client's latest ack */
  acked: number;
  socket: WebSocket | null;
}

export interface FakeOptions {
  /** `welcome.heartbeat` (the fake sends no pings). @default 0 */
  heartbeat?: number;
  /** resume sessions (else every hello gets a new session, reason 'expired'). @default true */
  resume?: boolean;
  /** acknowledge each client message at once. @default true */
  ack?: boolean;
  /** answer hello (false: the client never gets a welcome). @default true */
  welcome?: boolean;
  /** answer the client's pings. @default true */
  pong?: boolean;
  /** terminate the first n connections at once */
  refuseFirst?: number;
  /** a counted client message for which this is true is "lost in flight": the connection drops */
  lose?: (got: Got, session: FakeSession) => boolean;
  /** the reply to a request: a value, a thrown Error (reply ok: false), or undefined (no reply) */
  onRequest?: (got: Got, session: FakeSession) => string | Uint8Array | undefined;
}

const NUL = '\u0000';
let nextId = 0;

export class FakeV1Server extends EventEmitter {
  readonly sessions: FakeSession[] = [];
  /** every hello, in order */
  readonly hellos: { token?: string; seq?: number }[] = [];
  /** every frame the clients sent, raw (text or bytes) */
  readonly frames: (string | Uint8Array)[] = [];
  private connections = 0;

  private constructor(
    private readonly wss: WebSocketServer,
    readonly options: FakeOptions,
  ) {
    super();
    wss.on('connection', (socket) => this.accept(socket));
  }

  static async start(options: FakeOptions = {}): Promise<FakeV1Server> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => [...p][0] ?? false });
    await once(wss, 'listening');
    return new FakeV1Server(wss, options);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}/`;
  }

  /** Sends a counted message (kept for a resume; only stored while the client is away). */
  push(session: FakeSession, data: string | Uint8Array): void {
    const frame = typeof data === 'string' && data.startsWith(NUL) ? NUL + data : data;
    session.sent.push(frame);
    session.socket?.send(frame);
  }

  reply(session: FakeSession, id: number | string, result: string | Uint8Array | Error): void {
    const body =
      result instanceof Error
        ? { ok: false, error: result.message }
        : typeof result === 'string'
          ? { ok: true, d: result }
          : { ok: true, b: Buffer.from(result).toString('base64') };
    const frame = NUL + JSON.stringify({ t: 'reply', id, ...body });
    session.sent.push(frame);
    session.socket?.send(frame);
  }

  control(session: FakeSession, control: Record<string, unknown>): void {
    session.socket?.send(NUL + JSON.stringify(control));
  }

  /** Drops every connection without a close frame. */
  dropAll(): void {
    for (const client of this.wss.clients) client.terminate();
  }

  closeAll(code: number, reason = ''): void {
    for (const client of this.wss.clients) client.close(code, reason);
  }

  async stop(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }

  private accept(socket: WebSocket): void {
    if (this.connections++ < (this.options.refuseFirst ?? 0)) return void socket.terminate();
    let session: FakeSession | null = null;
    let dead = false;
    socket.on('close', (code) => {
      if (session?.socket === socket) session.socket = null;
      this.emit('disconnect', code);
    });
    socket.on('message', (raw: Buffer, isBinary: boolean) => {
      if (dead) return;
      const data = isBinary ? new Uint8Array(raw) : raw.toString();
      this.frames.push(data);
      if (typeof data === 'string' && data.startsWith(NUL) && !data.startsWith(NUL + NUL)) {
        const control = JSON.parse(data.slice(1)) as Record<string, unknown>;
        if (control.t === 'hello') session = this.hello(socket, control);
        else if (session) dead = this.control_(session, control, socket);
        this.emit('control', control);
        return;
      }
      if (!session) throw new Error('a message before the hello');
      const got = typeof data === 'string' ? (data.startsWith(NUL) ? data.slice(1) : data) : data;
      dead = this.counted(session, got, socket);
    });
  }

  private hello(socket: WebSocket, hello: Record<string, unknown>): FakeSession | null {
    this.hellos.push({ token: hello.token as string | undefined, seq: hello.seq as number | undefined });
    this.emit('hello', hello);
    if (this.options.welcome === false) return null;
    const token = hello.token as string | undefined;
    const old = this.options.resume === false ? undefined : this.sessions.find((s) => s.tokens.includes(token ?? ''));
    const session: FakeSession = old ?? {
      clientId: `fake${(nextId++).toString().padStart(9, '0')}`,
      tokens: [],
      sent: [],
      got: [],
      acked: 0,
      socket: null,
    };
    if (!old) this.sessions.push(session);
    session.socket?.terminate();
    session.socket = socket;
    const newToken = `${session.clientId}.t${session.tokens.length}`;
    session.tokens.push(newToken);
    const welcome: Record<string, unknown> = {
      t: 'welcome',
      clientId: session.clientId,
      token: newToken,
      resumed: !!old,
      received: session.got.length,
      window: 60,
      heartbeat: this.options.heartbeat ?? 0,
    };
    if (token !== undefined && !old) welcome.reason = 'expired';
    socket.send(NUL + JSON.stringify(welcome));
    for (const frame of session.sent.slice(Number(hello.seq ?? 0))) socket.send(frame);
    this.emit('session', session);
    return session;
  }

  /** Returns true when the connection is to be taken for dropped. */
  private control_(session: FakeSession, control: Record<string, unknown>, socket: WebSocket): boolean {
    if (control.t === 'ack') {
      session.acked = control.n as number;
      this.emit('ack', control.n);
    } else if (control.t === 'ping' && this.options.pong !== false) {
      socket.send(NUL + JSON.stringify({ t: 'pong' }));
    } else if (control.t === 'req') {
      const got: Got = { req: control.id as number, d: control.d as string, b: control.b as string };
      if (got.d === undefined) delete got.d;
      if (got.b === undefined) delete got.b;
      if (this.counted(session, got, socket)) return true;
      let result: string | Uint8Array | Error | undefined;
      try {
        result = this.options.onRequest?.(got, session);
      } catch (err) {
        result = err as Error;
      }
      if (result !== undefined) this.reply(session, got.req, result);
    }
    return false;
  }

  private counted(session: FakeSession, got: Got, socket: WebSocket): boolean {
    if (this.options.lose?.(got, session)) {
      socket.terminate();
      return true;
    }
    session.got.push(got);
    if (this.options.ack !== false) socket.send(NUL + JSON.stringify({ t: 'ack', n: session.got.length }));
    this.emit('message', got, session);
    return false;
  }
}

type Emitter = {
  on(event: string, listener: (value: never) => void): unknown;
  off(event: string, listener: (value: never) => void): unknown;
  once(event: string, listener: (value: never) => void): unknown;
};

/** Resolves with the next `event` of `emitter` (a FakeV1Server, a GatewireClient, a ws socket). */
export function next<T = unknown>(emitter: object, event: string): Promise<T> {
  return new Promise<T>((resolve) => (emitter as Emitter).once(event, resolve as (value: never) => void));
}

/** Resolves once `check()` holds, testing it after each `event` of `emitter`. */
export function until(emitter: object, event: string, check: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (check()) return resolve();
    const listener = (): void => {
      if (!check()) return;
      (emitter as Emitter).off(event, listener);
      resolve();
    };
    (emitter as Emitter).on(event, listener);
  });
}

/**
 * A fake server and a client on it (ws sockets recorded). The cleanup closes both and waits until
 * every socket is closed: a ws close timer left running would outlive the test, or be cleared by
 * the next test's fake clearTimeout.
 */
export async function clientOnFake(t: TestContext, fakeOptions: FakeOptions = {}, options: GatewireClientOptions = {}) {
  const fake = await FakeV1Server.start(fakeOptions);
  const sockets: WebSocket[] = [];
  class Recording extends WebSocket {
    constructor(url: string, protocols: string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  const client = new GatewireClient(fake.url, { WebSocket: Recording, random: () => 0, ...options });
  const got: ReceivedData[] = [];
  const errors: Error[] = [];
  client.on('message', (data) => got.push(data));
  client.on('error', (err) => errors.push(err));
  const allClosed = () =>
    Promise.all(sockets.map((socket) => (socket.readyState === WebSocket.CLOSED ? null : next(socket, 'close'))));
  t.after(async () => {
    client.close();
    await fake.stop();
    await allClosed();
  });
  return { fake, client, got, errors, sockets, allClosed };
}

/** An assert.rejects/throws check of a coded error. */
export const codeOf = (code: string) => (err: unknown) => (err as { code?: string }).code === code;

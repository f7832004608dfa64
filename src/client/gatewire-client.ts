/**
 * `gatewire/client`: the client side of the `gatewire.v1` subprotocol (docs/client-protocol.md)
 * for browsers and Node. One session outlives its connections: the client counts the server's
 * messages, acknowledges them, reconnects with backoff after a drop, resumes with its token and
 * resends what the server did not get, so that every message goes through once, in order.
 *
 * It imports nothing outside src/client/ and uses no Node API: the compiled files can be served
 * to a browser as they are. In Node pass a WebSocket class, e.g. `{ WebSocket }` from 'ws'.
 */
import { ClientEvents, codedError, toError, type OpenEvent } from './events.js';
import { controlFrame, frameBytes, fromBase64, isClientData, messageFrame, readFrame, requestFrame } from './frames.js';
import type { ClientData, Frame, ReceivedData, ServerControl } from './frames.js';
import { LinkWatch } from './link-watch.js';
import { backoffDelay, ClientErrorCodes, PROTOCOL, RESUMABLE_CLOSE_CODES, resolveOptions } from './options.js';
import type { ClientState, GatewireClientOptions, ResolvedOptions, WebSocketConstructor } from './options.js';
import type { WebSocketLike } from './options.js';

export type { ClientData, ReceivedData } from './frames.js';
export { PROTOCOL, ClientErrorCodes } from './options.js';
export type { WebSocketLike, WebSocketConstructor, GatewireClientOptions, ClientState } from './options.js';
export type { OpenEvent, ReconnectingEvent, CloseEvent, GatewireClientEvents, Listener } from './events.js';

/** A counted message of the client: `n` is its number once it went out in this session (else 0). */
interface Held {
  n: number;
  frame: Frame;
  bytes: number;
  requestId?: number;
}

interface PendingRequest {
  resolve: (value: ReceivedData) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  /** its `req` went out in the current session (lost if the session is not resumed) */
  sent: boolean;
}

type Timer = ReturnType<typeof setTimeout> | null;
const noop = (): void => {};

export class GatewireClient extends ClientEvents {
  /** 'connecting' (first connection), 'open' (welcome received), 'reconnecting', 'closed' (for good) */
  state: ClientState = 'connecting';
  /** the clientId of the last welcome; null before the first and after close */
  clientId: string | null = null;

  private readonly url: string;
  private readonly WebSocketClass: WebSocketConstructor;
  private readonly options: ResolvedOptions;
  private readonly heartbeatTimeoutMs: number | undefined;
  private socket: WebSocketLike | null = null;
  /** the current socket had its welcome */
  private ready = false;
  private token: string | null = null;
  /** how many counted messages of the server this session has received */
  private received = 0;
  private acked = 0;
  /** how many counted messages of the client this session has numbered */
  private numbered = 0;
  private unacked: Held[] = [];
  private queue: Held[] = [];
  private heldBytes = 0;
  private readonly pending = new Map<number, PendingRequest>();
  private nextRequestId = 1;
  private attempt = 0;
  private retryTimer: Timer = null;
  private helloTimer: Timer = null;
  private ackTimer: Timer = null;
  private readonly linkWatch = new LinkWatch(
    (why) => this.drop(why),
    () => this.write(controlFrame({ t: 'ping' })),
  );

  constructor(url: string | URL, options: GatewireClientOptions = {}) {
    super();
    this.url = String(url);
    const resolved = resolveOptions(options);
    this.WebSocketClass = resolved.WebSocket;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs;
    this.options = resolved;
    this.connect();
  }

  /**
   * Sends a message: text as a text frame, bytes as a binary frame. While disconnected it waits in
   * the queue; it goes out once, in order, across drops and resumes. Throws GW_CLIENT_QUEUE_FULL
   * when the client already holds maxQueuedMessages messages or maxQueuedBytes bytes.
   */
  send(data: ClientData): void {
    this.check(data);
    this.hold(messageFrame(data));
  }

  /**
   * Sends a request (a counted `req` control) and resolves with the reply of the server's handler.
   * Rejects with GW_CLIENT_TIMEOUT, GW_CLIENT_REQUEST_FAILED (the handler threw: its message),
   * GW_CLIENT_NOT_RECOVERED (the session was lost with it), GW_CLIENT_QUEUE_FULL or GW_CLIENT_CLOSED.
   */
  request(data: ClientData, options: { timeoutMs?: number } = {}): Promise<ReceivedData> {
    return new Promise((resolve, reject) => {
      this.check(data);
      const id = this.nextRequestId++;
      const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(codedError(ClientErrorCodes.TIMEOUT, `gatewire request ${id}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, sent: false });
      try {
        this.hold(requestFrame(id, data), id);
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        throw err;
      }
    });
  }

  /** Ends the session (a close frame with `code`, 1000 by default): no reconnect, no timer left. */
  close(code = 1000, reason = ''): void {
    if (this.state === 'closed') return;
    const socket = this.detach();
    try {
      socket?.close(code, reason);
    } catch (err) {
      this.emit('error', toError(err));
    }
    this.finish(code, reason);
  }

  private check(data: ClientData): void {
    if (this.state === 'closed') throw codedError(ClientErrorCodes.CLOSED, 'the gatewire client is closed');
    if (!isClientData(data)) {
      const message = 'gatewire: data must be a string, a Uint8Array or an ArrayBuffer';
      throw Object.assign(new TypeError(message), { code: ClientErrorCodes.INVALID_ARGUMENT });
    }
  }

  private hold(frame: Frame, requestId?: number): void {
    const bytes = frameBytes(frame);
    const count = this.unacked.length + this.queue.length;
    if (count + 1 > this.options.maxQueuedMessages || this.heldBytes + bytes > this.options.maxQueuedBytes) {
      throw codedError(
        ClientErrorCodes.QUEUE_FULL,
        `the gatewire client holds ${count} messages (${this.heldBytes} bytes) not yet acknowledged by the server`,
      );
    }
    const held: Held = { n: 0, frame, bytes, requestId };
    this.heldBytes += bytes;
    if (this.ready) this.transmit(held);
    else this.queue.push(held);
  }

  /** Numbers a held message in this session and writes it. */
  private transmit(held: Held): void {
    held.n = ++this.numbered;
    this.unacked.push(held);
    if (held.requestId !== undefined) {
      const request = this.pending.get(held.requestId);
      if (request) request.sent = true;
    }
    this.write(held.frame);
  }

  private write(frame: Frame): void {
    try {
      this.socket?.send(frame);
    } catch (err) {
      this.emit('error', toError(err));
    }
  }

  private connect(): void {
    this.ready = false;
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketClass(this.url, [PROTOCOL]);
      socket.binaryType = 'arraybuffer';
    } catch (err) {
      queueMicrotask(() => this.emit('error', toError(err)));
      this.reconnect();
      return;
    }
    this.socket = socket;
    const guarded =
      <E>(handle: (event: E) => void) =>
      (event: E): void => {
        if (socket !== this.socket) return;
        try {
          handle(event);
        } catch (err) {
          this.emit('error', toError(err));
        }
      };
    socket.onopen = guarded(() => this.hello());
    socket.onmessage = guarded((event: { data: unknown }) => this.frame(event.data));
    socket.onerror = guarded((event: { message?: unknown }) => {
      const detail = typeof event?.message === 'string' ? `: ${event.message}` : '';
      this.emit('error', new Error(`gatewire WebSocket error${detail}`));
    });
    socket.onclose = guarded((event: { code?: number; reason?: string }) => this.socketClosed(event));
    this.helloTimer = setTimeout(() => {
      this.helloTimer = null;
      this.drop(`no welcome within ${this.options.helloTimeoutMs} ms`);
    }, this.options.helloTimeoutMs);
  }

  private hello(): void {
    const hello: Record<string, unknown> = { t: 'hello' };
    if (this.token !== null) Object.assign(hello, { token: this.token, seq: this.received });
    this.write(controlFrame(hello));
  }

  private frame(data: unknown): void {
    this.linkWatch.heard();
    const incoming = readFrame(data);
    if (incoming.kind === 'invalid') return this.emit('error', new Error(`gatewire: ignored ${incoming.why}`));
    if (incoming.kind === 'control') return this.control(incoming.control);
    if (!this.ready) return this.emit('error', new Error('gatewire: ignored a message before the welcome'));
    this.counted();
    this.emit('message', incoming.data);
  }

  private control(control: ServerControl): void {
    switch (control.t) {
      case 'welcome':
        return this.welcome(control);
      case 'ack':
        if (this.ready && typeof control.n === 'number') this.forget(control.n);
        return;
      case 'reply':
        if (this.ready) this.reply(control);
        return;
      case 'ping':
        return this.write(controlFrame({ t: 'pong' }));
      default:
        return; // pong, or a control of a later version
    }
  }

  private welcome(welcome: ServerControl): void {
    if (this.ready) return;
    if (typeof welcome.clientId !== 'string') return this.drop('a welcome without a clientId');
    this.clearTimer('helloTimer');
    this.ready = true;
    this.attempt = 0;
    this.state = 'open';
    this.clientId = welcome.clientId;
    this.token = typeof welcome.token === 'string' ? welcome.token : null;
    if (welcome.resumed === true) {
      this.forget(Math.max(0, Math.min(Number(welcome.received) || 0, this.numbered)));
    } else {
      this.newSession();
    }
    this.ack();
    for (const held of this.unacked) this.write(held.frame);
    const queued = this.queue;
    this.queue = [];
    for (const held of queued) this.transmit(held);
    this.linkWatch.start(Number(welcome.heartbeat) || 0, this.heartbeatTimeoutMs, this.options.pingIntervalMs);
    const open: OpenEvent = { clientId: welcome.clientId, resumed: welcome.resumed === true };
    if (typeof welcome.previousClientId === 'string') open.previousClientId = welcome.previousClientId;
    if (typeof welcome.reason === 'string') open.reason = welcome.reason;
    this.emit('open', open);
  }

  /** A session that was not resumed: numbering restarts, what was sent in the old one is lost. */
  private newSession(): void {
    for (const [id, request] of this.pending) {
      if (!request.sent) continue;
      this.pending.delete(id);
      clearTimeout(request.timer);
      request.reject(
        codedError(ClientErrorCodes.NOT_RECOVERED, `gatewire request ${id}: the session was lost before its reply`),
      );
    }
    for (const held of this.unacked) this.heldBytes -= held.bytes;
    this.unacked = [];
    this.received = 0;
    this.numbered = 0;
  }

  private reply(reply: ServerControl): void {
    this.counted();
    const request = typeof reply.id === 'number' ? this.pending.get(reply.id) : undefined;
    if (!request) return; // timed out, or not ours
    this.pending.delete(reply.id as number);
    clearTimeout(request.timer);
    if (reply.ok === true) {
      request.resolve(typeof reply.b === 'string' ? fromBase64(reply.b) : (reply.d ?? ''));
    } else {
      const message = typeof reply.error === 'string' ? reply.error : 'the request failed';
      request.reject(codedError(ClientErrorCodes.REQUEST_FAILED, message));
    }
  }

  /** A counted message of the server arrived: acknowledge it within ackIntervalMs. */
  private counted(): void {
    this.received++;
    if (this.ackTimer !== null) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      if (this.ready && this.received !== this.acked) this.ack();
    }, this.options.ackIntervalMs);
  }

  private ack(): void {
    this.clearTimer('ackTimer');
    this.acked = this.received;
    this.write(controlFrame({ t: 'ack', n: this.received }));
  }

  /** The server has the client's first `n` messages: forget them. */
  private forget(n: number): void {
    let count = 0;
    while (count < this.unacked.length && this.unacked[count]!.n <= n) this.heldBytes -= this.unacked[count++]!.bytes;
    if (count > 0) this.unacked.splice(0, count);
  }

  private socketClosed(event: { code?: number; reason?: string }): void {
    const code = typeof event.code === 'number' ? event.code : 1006;
    const reason = typeof event.reason === 'string' ? event.reason : '';
    this.detach();
    if (RESUMABLE_CLOSE_CODES.has(code)) this.reconnect();
    else this.finish(code, reason);
  }

  /** Takes the link for dead: drops the socket at once and reconnects. */
  private drop(why: string): void {
    const socket = this.detach();
    this.emit('error', new Error(`gatewire: ${why}; reconnecting`));
    try {
      if (typeof socket?.terminate === 'function') socket.terminate();
      else socket?.close(4000, why.slice(0, 100));
    } catch {
      // the socket is gone either way
    }
    this.reconnect();
  }

  private reconnect(): void {
    if (this.state === 'closed') return;
    this.state = 'reconnecting';
    this.attempt++;
    const delayMs = backoffDelay(this.attempt, this.options);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delayMs);
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
  }

  /** Forgets the current socket (its events are ignored from now on) and stops its timers. */
  private detach(): WebSocketLike | null {
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    this.clearTimer('helloTimer');
    this.clearTimer('ackTimer');
    this.linkWatch.stop();
    if (socket) {
      // a no-op rather than null: ws throws an 'error' event that has no listener
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = noop;
    }
    return socket;
  }

  /** Closed for good: nothing is retried, every request rejects, no timer is left. */
  private finish(code: number, reason: string): void {
    this.detach();
    this.clearTimer('retryTimer');
    this.state = 'closed';
    this.clientId = null;
    for (const [id, request] of this.pending) {
      clearTimeout(request.timer);
      request.reject(codedError(ClientErrorCodes.CLOSED, `gatewire request ${id}: the client closed (${code})`));
    }
    this.pending.clear();
    this.unacked = [];
    this.queue = [];
    this.heldBytes = 0;
    this.emit('close', { code, reason });
  }

  private clearTimer(name: 'retryTimer' | 'helloTimer' | 'ackTimer'): void {
    const timer = this[name];
    if (timer !== null) clearTimeout(timer);
    this[name] = null;
  }
}

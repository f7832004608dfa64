/**
 * gatewire.v1 connections (docs/client-protocol.md): the hello that opens or resumes a session,
 * the controls (acks, requests, pings), suspension when the link drops, and a resume at this
 * gateway, which keeps the clientId. A resume of a session held by another gateway is a takeover
 * through the bus (takeover.ts). Defaults: hello within 10 s; acks at most every 100 ms.
 */
import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import type { Logger } from 'pino';
import type { Payload } from '../protocol/commands.js';
import {
  controlText,
  isControlText,
  newResumeToken,
  parseClientControl,
  requestData,
  sameToken,
  tokenClientId,
  unescapeText,
  type ClientControl,
  type NotResumedReason,
  type Welcome,
} from '../protocol/client-protocol.js';
import { ownerOf } from '../protocol/identity.js';
import { CloseCode, type Client, type ClientRequestInfo } from './client.js';
import type { ClientRegistry } from './client-registry.js';
import { OutgoingMessage } from './outgoing-message.js';
import { ResumeState, type KeptMessage } from './resume-state.js';

const HELLO_TIMEOUT_MS = 10000;
const ACK_INTERVAL_MS = 100;

export interface ResumeOptions {
  /** gateway.resumeWindow, seconds (0: a drop ends the session) */
  resumeWindow: number;
  /** gateway.resumeBufferSize, bytes kept per session */
  resumeBufferSize: number;
  /** gateway.pingInterval, seconds (told to the client) */
  pingInterval: number;
}

/** Resumes a session held by another gateway (takeover.ts). */
export interface SessionMover {
  resumeElsewhere(
    ws: WebSocket,
    socket: Socket,
    request: ClientRequestInfo,
    identity: string | null,
    oldId: string,
    token: string,
    seq: number,
  ): Promise<void>;
}

/** What the resumable sessions need from their gateway (gateway.ts). */
export interface SessionHost {
  readonly registry: ClientRegistry;
  /** A new client for a socket (counted, in the registry); `id` for a session taken over. */
  newWsClient(socket: Socket, ws: WebSocket, request: ClientRequestInfo | null): Client;
  /** A message from the client (limits, then the message event). */
  received(client: Client, data: Payload): void;
  /** Client events for the worker. */
  emit(client: Client, type: 'connect' | 'websocketConnect'): void;
  emitResume(client: Client, previousClientId: string): void;
  emitRequest(client: Client, requestId: number | string, data: Payload): void;
  /** The session ends: onClose, and the client is forgotten. */
  end(client: Client): void;
  /** The session moved to another gateway: forgotten without onClose. */
  released(client: Client): void;
  /** A WebSocket error on a client's socket (counted and logged as for any client). */
  wsError(client: Client, err: Error): void;
}

export class ResumableSessions {
  /** sessions resumed here, and taken over from other gateways */
  resumed = 0;
  takenOver = 0;
  /** hellos with a token that got a fresh session instead, by reason */
  readonly notResumed: Record<string, number> = {};
  private readonly needAck = new Set<Client>();
  private ackTimer: NodeJS.Timeout | undefined;
  takeover: SessionMover | null = null;

  constructor(
    private readonly host: SessionHost,
    readonly options: ResumeOptions,
    readonly instance: string,
    private readonly log: Logger,
  ) {}

  /** A new gatewire.v1 socket: nothing happens until its hello. */
  accept(ws: WebSocket, socket: Socket, request: ClientRequestInfo, identity: string | null): void {
    const timer = setTimeout(() => ws.close(CloseCode.PROTOCOL_ERROR, 'expected a hello'), HELLO_TIMEOUT_MS);
    timer.unref();
    ws.on('error', (err) => this.log.debug({ err: err.message }, 'WebSocket error before the hello'));
    ws.once('close', () => clearTimeout(timer));
    ws.once('message', (data: RawData, isBinary: boolean) => {
      clearTimeout(timer);
      const text = isBinary ? '' : rawText(data);
      const hello = isControlText(text) ? parseClientControl(text) : null;
      if (hello === null || hello.t !== 'hello') {
        ws.close(CloseCode.PROTOCOL_ERROR, 'expected a hello');
        return;
      }
      if (hello.token === undefined) {
        this.fresh(ws, socket, request, identity, undefined);
        return;
      }
      void this.resume(ws, socket, request, identity, hello.token, hello.seq ?? 0).catch((err: unknown) => {
        this.log.warn({ err }, 'resume failed');
        ws.terminate();
      });
    });
  }

  /** A new session: onConnect and onWebSocketConnect as for any client. */
  fresh(
    ws: WebSocket,
    socket: Socket,
    request: ClientRequestInfo,
    identity: string | null,
    reason: NotResumedReason | undefined,
  ): void {
    this.freshFor(this.host.newWsClient(socket, ws, request), ws, identity, reason);
  }

  /** A new session for a client made already (a takeover that did not succeed). */
  freshFor(client: Client, ws: WebSocket, identity: string | null, reason: NotResumedReason | undefined): void {
    if (reason !== undefined) this.notResumed[reason] = (this.notResumed[reason] ?? 0) + 1;
    // The connection ended while a takeover was tried: there is no session to start.
    if (ws.readyState !== ws.OPEN) {
      this.host.released(client);
      return;
    }
    const token = this.options.resumeWindow > 0 ? newResumeToken(client.id) : null;
    client.resume = new ResumeState(this.options.resumeBufferSize, identity, client.id, token);
    this.attach(client, ws);
    this.welcome(client, { resumed: false, reason });
    this.host.emit(client, 'connect');
    this.host.emit(client, 'websocketConnect');
    client.request = null;
  }

  private async resume(
    ws: WebSocket,
    socket: Socket,
    request: ClientRequestInfo,
    identity: string | null,
    token: string,
    seq: number,
  ): Promise<void> {
    const oldId = tokenClientId(token);
    if (this.options.resumeWindow === 0 || oldId === null) {
      this.fresh(ws, socket, request, identity, 'expired');
      return;
    }
    if (ownerOf(oldId) !== this.instance) {
      if (this.takeover === null) this.fresh(ws, socket, request, identity, 'unreachable');
      else await this.takeover.resumeElsewhere(ws, socket, request, identity, oldId, token, seq);
      return;
    }
    const client = this.host.registry.get(oldId);
    const verdict = client === undefined ? 'expired' : this.check(client, token, identity, seq);
    if (verdict !== null) {
      if (verdict === 'overflow' && client !== undefined) this.host.end(client);
      this.fresh(ws, socket, request, identity, verdict);
      return;
    }
    const resume = client!.resume!;
    const missed = resume.since(seq)!;
    if (client!.attached) this.dropSocket(client!);
    clearTimeout(resume.expiry);
    client!.socket = socket;
    client!.remoteAddress = socket.remoteAddress ?? '';
    client!.remotePort = socket.remotePort ?? 0;
    client!.missedPings = 0;
    resume.previousToken = token;
    resume.token = newResumeToken(client!.id);
    this.attach(client!, ws);
    this.welcome(client!, { resumed: true });
    this.replay(client!, missed);
    this.resumed += 1;
  }

  /** Why the session cannot be resumed with this hello, or null if it can. */
  check(client: Client, token: string, identity: string | null, seq: number): NotResumedReason | null {
    const resume = client.resume;
    if (resume === null || client.closed || resume.handingTo !== null) return 'expired';
    if (!sameToken(resume.token, token) && !sameToken(resume.previousToken, token)) return 'refused';
    if (resume.identity !== identity) return 'refused';
    if (resume.since(seq) === null) return 'overflow';
    return null;
  }

  /** The session takes this socket: its messages, controls and close are the session's. */
  attach(client: Client, ws: WebSocket): void {
    const resume = client.resume!;
    // The socket's events count only while it is the session's (a resume may replace it).
    const link = ++resume.link;
    client.transport = { kind: 'ws', ws };
    client.attached = true;
    client.onDetachedClose = (c) => this.host.end(c);
    // Ends the session after the push that overflowed is delivered to the others it was for.
    client.onDetachedOverflow = (c) => queueMicrotask(() => this.overflowWhileSuspended(c));
    ws.on('error', (err) => this.host.wsError(client, err));
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (resume.link !== link) return;
      if (isBinary) {
        this.counted(client);
        this.host.received(client, toBuffer(data));
        return;
      }
      const text = rawText(data);
      if (!isControlText(text)) {
        this.counted(client);
        this.host.received(client, unescapeText(text));
        return;
      }
      const control = parseClientControl(text);
      if (control === null || !this.control(client, control)) {
        this.log.debug({ clientId: client.id }, 'protocol error: an unknown or misplaced control');
        ws.close(CloseCode.PROTOCOL_ERROR, 'bad control');
      }
    });
    ws.on('pong', () => {
      client.missedPings = 0;
    });
    ws.on('close', (code: number) => {
      if (resume.link === link) this.lost(client, code);
    });
  }

  /** A control from the client; false for a protocol error. */
  private control(client: Client, control: ClientControl): boolean {
    const resume = client.resume!;
    client.missedPings = 0;
    switch (control.t) {
      case 'ack':
        return resume.ack(control.n);
      case 'req':
        this.counted(client);
        this.host.emitRequest(client, control.id, requestData(control));
        return true;
      case 'ping':
        this.sendControl(client, { t: 'pong' });
        return true;
      case 'pong':
        return true;
      case 'hello':
        return false;
    }
  }

  /** A counted message from the client: the server's ack follows within ACK_INTERVAL_MS. */
  private counted(client: Client): void {
    client.resume!.received += 1;
    this.needAck.add(client);
    if (this.ackTimer === undefined) {
      this.ackTimer = setTimeout(() => this.sendAcks(), ACK_INTERVAL_MS);
      this.ackTimer.unref();
    }
  }

  private sendAcks(): void {
    this.ackTimer = undefined;
    for (const client of this.needAck) this.sendControl(client, { t: 'ack', n: client.resume!.received });
    this.needAck.clear();
  }

  /** An uncounted control (welcome, ack, ping, pong), in order with the messages. */
  sendControl(client: Client, control: object): void {
    client.queueFrame(new OutgoingMessage(controlText(control)).wsFrame);
  }

  /** A counted control (a reply): kept for a resume like a message. */
  sendCountedControl(client: Client, control: object): void {
    const message = new OutgoingMessage(controlText(control));
    client.resume!.record({ message, control: true, sender: '', seq: 0 });
    if (client.attached && client.resume!.holding === null) client.queueFrame(message.wsFrame);
    else if (client.resume!.overflowed) this.overflowWhileSuspended(client);
  }

  welcome(client: Client, fields: { resumed: boolean; reason?: NotResumedReason; previousClientId?: string }): void {
    const resume = client.resume!;
    const welcome: Welcome = {
      t: 'welcome',
      clientId: client.id,
      token: resume.token,
      resumed: fields.resumed,
      received: resume.received,
      window: this.options.resumeWindow,
      heartbeat: this.options.pingInterval,
    };
    if (fields.reason !== undefined) welcome.reason = fields.reason;
    if (fields.previousClientId !== undefined) welcome.previousClientId = fields.previousClientId;
    this.sendControl(client, welcome);
  }

  /** Writes kept messages again, in order (after a resume's welcome). */
  replay(client: Client, messages: KeptMessage[]): void {
    for (const kept of messages) client.queueFrame(kept.control ? kept.message.wsFrame : kept.message.v1Frame);
  }

  /**
   * The socket closed. A close by the client (1000) or by the server ends the session; any other
   * end suspends it for resumeWindow seconds, when the window allows and nothing was lost.
   */
  private lost(client: Client, code: number): void {
    const resume = client.resume!;
    this.needAck.delete(client);
    if (client.closed || code === CloseCode.NORMAL || this.options.resumeWindow === 0 || resume.overflowed) {
      this.host.end(client);
      return;
    }
    this.suspend(client);
  }

  /** No socket; pushes are kept (bounded) until the client resumes or the window ends. */
  suspend(client: Client): void {
    client.detach();
    const resume = client.resume!;
    clearTimeout(resume.expiry);
    resume.expiry = setTimeout(() => this.expire(client), this.options.resumeWindow * 1000);
    resume.expiry.unref();
  }

  /** Kept pushes passed the bound while the session waits: nothing left to recover, it ends. */
  overflowWhileSuspended(client: Client): void {
    if (!client.attached && client.resume?.handingTo === null) this.expire(client);
  }

  private expire(client: Client): void {
    if (this.host.registry.get(client.id) !== client || client.attached) return;
    this.log.debug({ clientId: client.id }, 'resume window passed; the session ends');
    this.host.end(client);
  }

  /**
   * The session leaves its socket without ending (a resume here or elsewhere took it, or the
   * gateway shuts down): the socket's events no longer count, and it is cut, or closed with
   * `code` (then cut after 2 s if the peer does not finish the close).
   */
  dropSocket(client: Client, code?: number): void {
    const old = client.transport.kind === 'ws' ? client.transport.ws : null;
    if (code !== undefined) client.flush();
    client.resume!.link += 1;
    client.detach();
    if (old === null) return;
    if (code === undefined) {
      old.terminate();
      return;
    }
    old.close(code, 'server shutting down');
    setTimeout(() => old.terminate(), 2000).unref();
  }

  /** Shutdown: every attached session is closed with 1001 and waits, suspended, to be taken over. */
  suspendAll(): Client[] {
    const sessions: Client[] = [];
    for (const client of this.host.registry.clients.values()) {
      if (client.resume === null || client.closed) continue;
      sessions.push(client);
      if (!client.attached) continue;
      this.dropSocket(client, CloseCode.GOING_AWAY);
      this.suspend(client);
    }
    return sessions;
  }

  stop(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.needAck.clear();
  }
}

/** A ws message's bytes as one Buffer. */
export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function rawText(data: RawData): string {
  return toBuffer(data).toString('utf8');
}

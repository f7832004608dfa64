/**
 * The gateway role: holds client connections, applies the commands addressed to them, answers
 * queries about them, runs the heartbeat and the limits, and hands client events to the worker.
 * It runs no business code.
 */
import fs from 'node:fs';
import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import type { Logger } from 'pino';
import { Op, type Command, type Payload, type Query, type SendToAll, type SendToClients, type SendToGroups, type SendToUids, type Session } from '../protocol/commands.js';
import { ClientIdGenerator, ownerOf } from '../protocol/identity.js';
import { Client, CloseCode, type ClientRequestInfo } from './client.js';
import { ClientRegistry, type RouteHolder } from './client-registry.js';
import { OutgoingMessage } from './outgoing-message.js';
import { WriteScheduler } from './write-scheduler.js';
import { parseListenUrl, type TcpProtocol } from './listen-url.js';
import type { AuthorizationRequest, Authorizer, ConnectionAcceptor, Listener } from './listener.js';
import { WsListener } from './ws-listener.js';
import { TcpListener } from './tcp-listener.js';
import { TcpDecoder } from './tcp-decoder.js';
import type { ClientEvent, EventSink } from '../protocol/client-event.js';
import { errorMessage } from '../errors.js';
import type { CommandTarget } from '../cluster/command-dispatcher.js';

/** Clients checked and pinged per event-loop turn by the heartbeat. */
const HEARTBEAT_SLICE = 256;

/** What a gateway is told (the gateway.* keys of the configuration; docs/operations.md, Tuning). */
export interface GatewayOptions {
  /** listener URLs (listen-url.ts) */
  listen: string[];
  pingInterval: number;
  pingNotResponseLimit: number;
  pingData: string;
  maxPayload: number;
  sendBufferSize: number;
  maxMessagesPerSecond: number;
  staticDir: string;
  tls: { key: string; cert: string };
}

export interface GatewayCounters {
  connectionsOpened: number;
  connectionsClosed: number;
  messagesIn: number;
  messagesOut: number;
  /** disconnects and rejections by reason */
  drops: Record<string, number>;
}

export class Gateway implements ConnectionAcceptor, CommandTarget {
  readonly registry: ClientRegistry;
  readonly counters: GatewayCounters = { connectionsOpened: 0, connectionsClosed: 0, messagesIn: 0, messagesOut: 0, drops: {} };
  private readonly scheduler = new WriteScheduler();
  /** the message of the last send, reused by a next send of the same data (messageOf) */
  private lastMessage: OutgoingMessage | null = null;
  /**
   * The latest split sendToGroup (SendToGroups.k) of each sender and the clients it reached: its
   * parts arrive one after another, and a client in groups of two parts gets the payload once.
   */
  private readonly splitSends = new Map<string, { k: number; reached: Set<Client>; at: number }>();
  private readonly ids: ClientIdGenerator;
  private listeners: Listener[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private rateWindow: NodeJS.Timeout | undefined;
  private sink: EventSink | null = null;
  private accepting = false;

  constructor(
    private readonly config: GatewayOptions,
    private readonly instance: string,
    routes: RouteHolder,
    private readonly authorizer: Authorizer | null,
    private readonly log: Logger,
  ) {
    this.registry = new ClientRegistry(routes);
    this.ids = new ClientIdGenerator(instance);
  }

  /** Where client events go (the worker in this process, or the bus to remote workers). */
  setEventSink(sink: EventSink): void {
    this.sink = sink;
  }

  /** The listeners' real URLs (ports resolved), once started. */
  get urls(): string[] {
    return this.listeners.map((l) => l.url);
  }

  async start(): Promise<void> {
    const tls = this.loadTls();
    for (const url of this.config.listen) {
      const spec = parseListenUrl(url);
      const listener =
        spec.kind === 'ws'
          ? new WsListener(
              { ...spec, maxPayload: this.config.maxPayload, tls, staticDir: this.config.staticDir },
              this,
              this.log,
            )
          : new TcpListener({ ...spec, tls }, this, this.log);
      await listener.start();
      this.listeners.push(listener);
      this.log.info({ url: listener.url }, 'listening');
    }
    this.accepting = true;
    const { pingInterval } = this.config;
    if (pingInterval > 0) {
      this.heartbeat = setInterval(() => this.beat(), pingInterval * 1000);
      this.heartbeat.unref();
    }
    if (this.config.maxMessagesPerSecond > 0) {
      this.rateWindow = setInterval(() => {
        for (const client of this.registry.clients.values()) client.messagesThisSecond = 0;
      }, 1000);
      this.rateWindow.unref();
    }
  }

  /** Stops accepting new connections. */
  async stopAccepting(): Promise<void> {
    this.accepting = false;
    await Promise.all(this.listeners.map((l) => l.stop()));
  }

  /** Shutdown: stop accepting, flush, close every client with 1001 (TCP: end). */
  async stop(): Promise<void> {
    await this.stopAccepting();
    clearInterval(this.heartbeat);
    clearInterval(this.rateWindow);
    this.scheduler.flushAll();
    const closing = [...this.registry.clients.values()].map(
      (client) =>
        new Promise<void>((resolve) => {
          client.socket.once('close', () => resolve());
          client.close(undefined, CloseCode.GOING_AWAY, 'server shutting down');
          // A peer that does not complete the close handshake is cut after 2 s.
          setTimeout(() => {
            client.destroy();
            resolve();
          }, 2000).unref();
        }),
    );
    await Promise.all(closing);
  }

  // ---- accepting connections (ConnectionAcceptor) -------------------------------------

  async authorize(request: AuthorizationRequest): Promise<true | number> {
    if (!this.accepting) return 503;
    if (this.authorizer === null) return true;
    const verdict = await this.authorizer(request);
    if (verdict === true) return true;
    if (verdict === false) return 401;
    if (typeof verdict === 'number' && verdict >= 400 && verdict <= 599) return verdict;
    this.log.error({ verdict }, 'authorization hook returned neither a boolean nor an HTTP status; rejecting');
    return 500;
  }

  acceptWebSocket(ws: WebSocket, socket: Socket, request: ClientRequestInfo): void {
    const client = this.newClient(socket, { kind: 'ws', ws }, request);
    ws.on('error', (err) => {
      const code = (err as { code?: string }).code;
      // Both close with 1009: a message past maxPayload, or a frame length past 2^53 - 1.
      const tooBig = code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH';
      this.drop(tooBig ? 'max_payload' : 'protocol_error');
      this.log.debug({ clientId: client.id, err: err.message, code }, 'WebSocket protocol error');
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const payload: Payload = isBinary ? toBuffer(data) : toBuffer(data).toString('utf8');
      this.received(client, payload);
    });
    ws.on('pong', () => {
      client.missedPings = 0;
    });
    ws.on('ping', () => {
      client.missedPings = 0;
    });
    ws.on('close', () => this.closed(client));
    this.emit(client, 'connect');
    this.emit(client, 'websocketConnect');
    // The event holds the request now; the client need not keep every header for its lifetime.
    client.request = null;
  }

  acceptTcp(socket: Socket, protocol: TcpProtocol): void {
    const client = this.newClient(socket, { kind: 'tcp', protocol }, null);
    const decoder = new TcpDecoder(protocol, this.config.maxPayload);
    socket.on('data', (chunk: Buffer) => {
      // The messages complete before an oversized one are delivered, then the client is closed.
      for (const message of decoder.push(chunk)) {
        if (client.closed) break;
        this.received(client, message);
      }
      if (decoder.error !== null && !client.closed) {
        this.drop('max_payload');
        this.log.info({ clientId: client.id, err: errorMessage(decoder.error) }, 'closing TCP client');
        client.destroy();
      }
    });
    socket.on('close', () => this.closed(client));
    this.emit(client, 'connect');
  }

  private newClient(
    socket: Socket,
    transport: Client['transport'],
    request: ClientRequestInfo | null,
  ): Client {
    const client = new Client(
      this.ids.next(),
      socket,
      transport,
      socket.remoteAddress ?? '',
      socket.remotePort ?? 0,
      request,
      this.scheduler,
      this.config.sendBufferSize,
      (c) => {
        this.drop('send_buffer');
        this.log.warn({ clientId: c.id, buffered: c.bufferedBytes }, 'client stopped reading; disconnecting');
        c.destroy();
      },
    );
    this.registry.add(client);
    this.counters.connectionsOpened += 1;
    return client;
  }

  private received(client: Client, data: Payload): void {
    // A client being closed (rate limit, closeClient) may still have frames in flight: they are
    // not events any more, and a rate-limited client is counted and logged once.
    if (client.closed) return;
    client.missedPings = 0;
    const limit = this.config.maxMessagesPerSecond;
    if (limit > 0 && ++client.messagesThisSecond > limit) {
      this.drop('rate_limit');
      this.log.info({ clientId: client.id, limit }, 'client exceeded gateway.maxMessagesPerSecond');
      client.close(undefined, CloseCode.POLICY, 'rate limit exceeded');
      if (client.transport.kind === 'tcp') client.destroy();
      return;
    }
    this.counters.messagesIn += 1;
    this.emit(client, 'message', data);
  }

  private closed(client: Client): void {
    if (!this.registry.clients.has(client.id)) return;
    client.closed = true;
    this.scheduler.forget(client);
    this.counters.connectionsClosed += 1;
    // The close event carries the session as it was; then the client is forgotten.
    this.emit(client, 'close');
    this.registry.remove(client);
  }

  private emit(client: Client, type: ClientEvent['type'], data?: Payload): void {
    if (this.sink === null) return;
    const base = {
      clientId: client.id,
      gateway: this.instance,
      remoteAddress: client.remoteAddress,
      remotePort: client.remotePort,
      session: client.session,
      sessionVersion: client.sessionVersion,
    };
    let event: ClientEvent;
    if (type === 'message') event = { ...base, type, data: data! };
    else if (type === 'websocketConnect') event = { ...base, type, request: client.request! };
    else event = { ...base, type };
    this.sink.dispatch(event);
  }

  /**
   * One heartbeat period: every client is checked and pinged, HEARTBEAT_SLICE clients per turn
   * of the event loop, so a gateway with many clients does not stall pushes while it pings.
   */
  private beat(): void {
    const limit = this.config.pingNotResponseLimit;
    const ping = this.config.pingData === '' ? null : new OutgoingMessage(this.config.pingData);
    const clients = [...this.registry.clients.values()];
    const slice = (start: number): void => {
      const end = Math.min(clients.length, start + HEARTBEAT_SLICE);
      for (let i = start; i < end; i++) {
        const client = clients[i]!;
        if (client.closed) continue;
        if (limit > 0) {
          if (client.missedPings >= limit) {
            this.drop('heartbeat');
            this.log.info({ clientId: client.id }, 'no sign of life within the heartbeat limit; disconnecting');
            client.destroy();
            continue;
          }
          client.missedPings += 1;
        }
        if (client.transport.kind === 'ws') client.transport.ws.ping();
        if (ping !== null) client.send(ping);
      }
      if (end < clients.length) setImmediate(() => slice(end));
    };
    slice(0);
  }


  private drop(reason: string): void {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + 1;
  }

  private loadTls(): { key: Buffer; cert: Buffer } | undefined {
    const { key, cert } = this.config.tls;
    if (key === '' && cert === '') return undefined;
    return { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
  }

  // ---- commands and queries -----------------------------------------------------------

  /** Whether this gateway holds the client (per-client commands are for the owner only). */
  owns(clientId: string): boolean {
    return ownerOf(clientId) === this.instance;
  }

  client(clientId: string): Client | undefined {
    return this.registry.get(clientId);
  }

  /**
   * The message for `data`, framed once: the last one is reused when the next send carries the
   * same text (one notification pushed to many users arrives as one command per uid in direct
   * mode, each with its own decoded copy of the data).
   */
  private messageOf(data: Payload): OutgoingMessage {
    // Text only: strings cannot change, while bytes may be changed by their owner between sends
    // (an in-process publisher's Buffer), and the frame is a copy of what they were.
    if (typeof data !== 'string') return new OutgoingMessage(data);
    const last = this.lastMessage;
    if (last !== null && last.data === data) return last;
    const message = new OutgoingMessage(data);
    this.lastMessage = message;
    return message;
  }

  /**
   * Delivers a send to the clients it names that this gateway holds; synchronous, with no promise
   * per command (the hot path: the dispatcher calls it directly). Each message is framed once.
   */
  push(cmd: SendToClients | SendToAll | SendToUids | SendToGroups, sender = ''): void {
    switch (cmd.op) {
      case Op.SEND_TO_CLIENTS: {
        let message: OutgoingMessage | undefined;
        for (const id of cmd.c) {
          const client = this.registry.get(id);
          if (client === undefined) continue;
          message ??= this.messageOf(cmd.d);
          this.deliver(client, message);
        }
        return;
      }
      case Op.SEND_TO_ALL: {
        const exclude = cmd.x && cmd.x.length > 0 ? new Set(cmd.x) : null;
        const message = new OutgoingMessage(cmd.d);
        for (const client of this.registry.clients.values()) {
          if (exclude === null || !exclude.has(client.id)) this.deliver(client, message);
        }
        return;
      }
      case Op.SEND_TO_UIDS: {
        let message: OutgoingMessage | undefined;
        for (const uid of cmd.u) {
          const holders = this.registry.uids.get(uid);
          if (holders === undefined) continue;
          message ??= this.messageOf(cmd.d);
          for (const client of holders) this.deliver(client, message);
        }
        return;
      }
      case Op.SEND_TO_GROUPS: {
        const exclude = cmd.x && cmd.x.length > 0 ? new Set(cmd.x) : null;
        let message: OutgoingMessage | undefined;
        // A client in several of the groups gets the message once, also across the parts of a
        // split call.
        const seen = cmd.k !== undefined ? this.reachedBy(sender, cmd.k) : cmd.g.length > 1 ? new Set<Client>() : null;
        for (const group of cmd.g) {
          const members = this.registry.groups.get(group);
          if (members === undefined) continue;
          message ??= this.messageOf(cmd.d);
          for (const client of members) {
            if (exclude !== null && exclude.has(client.id)) continue;
            if (seen !== null) {
              if (seen.has(client)) continue;
              seen.add(client);
            }
            this.deliver(client, message);
          }
        }
        return;
      }
    }
  }

  /** The clients already reached by split call `k` of `sender` (a new call starts afresh). */
  private reachedBy(sender: string, k: number): Set<Client> {
    const now = Date.now();
    const state = this.splitSends.get(sender);
    if (state !== undefined && state.k === k) return state.reached;
    // Calls of senders gone quiet are forgotten (they hold client references).
    for (const [name, old] of this.splitSends) if (now - old.at > 60000) this.splitSends.delete(name);
    const fresh = { k, reached: new Set<Client>(), at: now };
    this.splitSends.set(sender, fresh);
    return fresh.reached;
  }

  /**
   * Applies a command that arrived on the bus (or from this process). Session writes resolve to
   * the session's new version (null for a client that is gone); the rest to undefined.
   */
  async apply(cmd: Command): Promise<number | null | void> {
    switch (cmd.op) {
      case Op.SEND_TO_CLIENTS:
      case Op.SEND_TO_ALL:
      case Op.SEND_TO_UIDS:
      case Op.SEND_TO_GROUPS:
        this.push(cmd);
        return;
      case Op.CLOSE_CLIENT:
        this.registry.get(cmd.c)?.close(cmd.d);
        return;
      case Op.DESTROY_CLIENT:
        this.registry.get(cmd.c)?.destroy();
        return;
      case Op.CLOSE_UID:
        for (const client of [...(this.registry.uids.get(cmd.u) ?? [])]) client.close(cmd.d);
        return;
      case Op.UNGROUP:
        this.registry.ungroup(cmd.g);
        return;
      case Op.BIND_UID: {
        const client = this.registry.get(cmd.c);
        if (client) await this.registry.bindUid(client, cmd.u);
        return;
      }
      case Op.UNBIND_UID: {
        // As in GatewayWorker, the uid argument is not checked: the client's uid is unbound.
        const client = this.registry.get(cmd.c);
        if (client) this.registry.unbindUid(client);
        return;
      }
      case Op.JOIN_GROUP: {
        const client = this.registry.get(cmd.c);
        if (client) await this.registry.joinGroup(client, cmd.g);
        return;
      }
      case Op.LEAVE_GROUP: {
        const client = this.registry.get(cmd.c);
        if (client) this.registry.leaveGroup(client, cmd.g);
        return;
      }
      case Op.SET_SESSION: {
        const client = this.registry.get(cmd.c);
        if (!client) return null;
        replaceSession(client.session, copySession(cmd.s));
        return ++client.sessionVersion;
      }
      case Op.UPDATE_SESSION: {
        const client = this.registry.get(cmd.c);
        if (!client) return null;
        replaceSession(client.session, mergeSession(client.session, copySession(cmd.s)));
        return ++client.sessionVersion;
      }
      default:
        return;
    }
  }

  private deliver(client: Client, message: OutgoingMessage): void {
    this.counters.messagesOut += 1;
    client.send(message);
  }

  /** Answers a query with what this gateway holds (docs/wire-format.md lists the kinds). */
  answer(query: Pick<Query, 'q' | 'a'>): unknown {
    const registry = this.registry;
    const group = query.a[0] ?? '';
    const members = (): Iterable<Client> =>
      group === '' ? registry.clients.values() : (registry.groups.get(group) ?? []);
    switch (query.q) {
      case 'client': {
        const client = registry.get(group);
        if (client === undefined || client.closed) return null;
        return { uid: client.uid, session: copySession(client.session), groups: [...client.groups], v: client.sessionVersion };
      }
      case 'uids': {
        const out: Record<string, string[]> = {};
        for (const uid of query.a) {
          const holders = registry.uids.get(uid);
          if (holders) out[uid] = [...holders].map((c) => c.id);
        }
        return out;
      }
      case 'clients':
        return [...members()].map((c) => c.id);
      case 'sessions': {
        const out: Record<string, Session> = {};
        for (const c of members()) out[c.id] = copySession(c.session);
        return out;
      }
      case 'uidList': {
        if (group === '') return [...registry.uids.keys()];
        const uids = new Set<string>();
        for (const c of members()) if (c.uid !== null) uids.add(c.uid);
        return [...uids];
      }
      case 'count':
        return group === '' ? registry.size : (registry.groups.get(group)?.size ?? 0);
      case 'groups':
        return [...registry.groups.keys()];
      default:
        return null;
    }
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * Sessions change in place: events already queued for the worker hold this same object, so each
 * sees the session as the previous event left it.
 */
function replaceSession(target: Session, source: Session): void {
  for (const key of Object.keys(target)) delete target[key];
  Object.assign(target, source);
}

/**
 * The gateway owns every session: what comes in and what goes out is a copy (JSON, as on the
 * wire), so a caller in the same process never shares nested objects with the stored session.
 */
function copySession(session: Session): Session {
  return JSON.parse(JSON.stringify(session)) as Session;
}

/** GatewayWorker merges with array_replace_recursive: nested plain objects merge, the rest replaces. */
export function mergeSession(base: Session, update: Session): Session {
  const out: Session = { ...base };
  for (const [key, value] of Object.entries(update)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? mergeSession(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Session {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array);
}

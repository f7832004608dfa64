/**
 * The gateway role: holds client connections, applies the commands addressed to them, answers
 * queries about them, runs the heartbeat and the limits, and hands client events to the worker.
 * It runs no business code.
 *
 * Folder gateway/ (layer 3: imports protocol, transport, cluster, events): listeners
 * (ws-listener.ts, tcp-listener.ts) -> Gateway (accept, limits, drop-reason.ts) -> Client;
 * bus commands -> client-commands.ts / delivery.ts / queries.ts -> clients; client events ->
 * the EventSink (the worker, or the event producer).
 */
import fs from 'node:fs';
import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import type { Logger } from 'pino';
import {
  Op,
  type ClientReply,
  type Command,
  type Payload,
  type Query,
  type SendToAll,
  type SendToClients,
  type SendToGroups,
  type SendToUids,
} from '../protocol/commands.js';
import { ClientIdGenerator, ownerOf } from '../protocol/identity.js';
import { Client, CloseCode, type ClientRequestInfo } from './client.js';
import { ClientRegistry, type RouteHolder } from './client-registry.js';
import { WriteScheduler } from './write-scheduler.js';
import { parseListenUrl, type TcpProtocol } from './listen-url.js';
import {
  isIdentity,
  type Admission,
  type AuthorizationRequest,
  type Authorizer,
  type ConnectionAcceptor,
  type Listener,
} from './listener.js';
import { WsListener } from './ws-listener.js';
import { TcpListener } from './tcp-listener.js';
import { TcpDecoder } from './tcp-decoder.js';
import type { EventSink } from '../protocol/client-event.js';
import { errorMessage, type ErrorCode } from '../errors.js';
import { DROP_CODES, DropReason } from './drop-reason.js';
import { Delivery } from './delivery.js';
import { heartbeat } from './heartbeat.js';
import { applyCommand } from './client-commands.js';
import { answerQuery } from './queries.js';
import type { CommandTarget } from '../cluster/command-dispatcher.js';
import { SUBPROTOCOL, replyControl } from '../protocol/client-protocol.js';
import { ResumableSessions, toBuffer, type SessionHost } from './resumable.js';
import { Takeover, type SessionCluster } from './takeover.js';
import { SessionDrain, closeRawClients } from './shutdown-drain.js';
import { ClientEvents } from './client-events.js';
import type { GatewayCounters, GatewayOptions } from './gateway-options.js';

export type { GatewayCounters, GatewayOptions } from './gateway-options.js';

export class Gateway implements ConnectionAcceptor, CommandTarget, SessionHost {
  readonly registry: ClientRegistry;
  readonly counters: GatewayCounters = {
    connectionsOpened: 0,
    connectionsClosed: 0,
    messagesIn: 0,
    messagesOut: 0,
    drops: {},
  };
  private readonly scheduler = new WriteScheduler();
  private readonly delivery: Delivery;
  private readonly ids: ClientIdGenerator;
  private listeners: Listener[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private rateWindow: NodeJS.Timeout | undefined;
  private readonly events: ClientEvents;
  private accepting = false;
  /** gatewire.v1 connections and their sessions */
  readonly sessions: ResumableSessions;
  /** sessions moving between this gateway and others (null: no cluster to move through) */
  private readonly takeover: Takeover | null = null;
  private readonly drain = new SessionDrain();

  constructor(
    private readonly config: GatewayOptions,
    private readonly instance: string,
    routes: RouteHolder,
    private readonly authorizer: Authorizer | null,
    private readonly log: Logger,
    /** how sessions move between gateways (null: a resume elsewhere starts a new session) */
    cluster: SessionCluster | null = null,
  ) {
    this.registry = new ClientRegistry(routes);
    this.delivery = new Delivery(this.registry, () => {
      this.counters.messagesOut += 1;
    });
    this.ids = new ClientIdGenerator(instance);
    this.events = new ClientEvents(instance);
    this.sessions = new ResumableSessions(
      this,
      {
        resumeWindow: config.resumeWindow ?? 0,
        resumeBufferSize: config.resumeBufferSize ?? 1048576,
        pingInterval: config.pingInterval,
      },
      instance,
      log,
    );
    if (cluster !== null) {
      this.takeover = new Takeover(this.sessions, this, cluster, log);
      this.sessions.takeover = this.takeover;
    }
  }

  /** Where client events go (the worker in this process, or the bus to remote workers). */
  setEventSink(sink: EventSink): void {
    this.events.sink = sink;
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
      this.heartbeat = setInterval(
        () => heartbeat(this.registry, this.config, () => this.drop(DropReason.HEARTBEAT), this.log),
        pingInterval * 1000,
      );
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

  /**
   * Shutdown: stop accepting, flush, close every client with 1001 (TCP: end). gatewire.v1
   * sessions are closed with 1001 too but kept: their clients come back at another gateway, which
   * takes them over from this one (takeover.ts), for at most `drainMs`; the ones still here then
   * end (onClose).
   */
  async stop(drainMs = 0): Promise<void> {
    await this.stopAccepting();
    clearInterval(this.heartbeat);
    clearInterval(this.rateWindow);
    this.scheduler.flushAll();
    const sessions = this.sessions.suspendAll();
    await closeRawClients([...this.registry.clients.values()].filter((client) => client.resume === null));
    const held = (): Client[] => [...this.registry.clients.values()].filter((c) => c.resume !== null);
    if (sessions.length > 0 && drainMs > 0) {
      this.log.info({ sessions: sessions.length, drainMs }, 'waiting for sessions to move to other gateways');
      await this.drain.wait(() => held().length, drainMs);
    }
    for (const client of held()) this.closed(client);
    this.sessions.stop();
  }

  /** A session moved to another gateway (takeover.ts): forgotten here without onClose. */
  released(client: Client): void {
    this.registry.remove(client);
    client.closed = true;
    this.drain.changed();
  }

  // ---- accepting connections (ConnectionAcceptor) -------------------------------------

  async authorize(request: AuthorizationRequest): Promise<Admission> {
    if (!this.accepting) return 503;
    if (this.authorizer === null) return true;
    const verdict = await this.authorizer(request);
    if (verdict === true) return true;
    if (isIdentity(verdict)) return { identity: verdict.identity };
    if (verdict === false) return 401;
    if (typeof verdict === 'number' && verdict >= 400 && verdict <= 599) return verdict;
    this.log.error({ verdict }, 'authorization hook returned neither a boolean nor an HTTP status; rejecting');
    return 500;
  }

  acceptWebSocket(ws: WebSocket, socket: Socket, request: ClientRequestInfo, identity: string | null = null): void {
    if (ws.protocol === SUBPROTOCOL) {
      this.sessions.accept(ws, socket, request, identity);
      return;
    }
    const client = this.newClient(socket, { kind: 'ws', ws }, request);
    ws.on('error', (err) => this.wsError(client, err));
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
        const code = this.drop(DropReason.MAX_PAYLOAD);
        this.log.info({ clientId: client.id, err: errorMessage(decoder.error), code }, 'closing TCP client');
        client.destroy();
      }
    });
    socket.on('close', () => this.closed(client));
    this.emit(client, 'connect');
  }

  /** A WebSocket error on a client's socket: counted and logged (ws closes the socket). */
  wsError(client: Client, err: Error): void {
    const code = (err as { code?: string }).code;
    // Both close with 1009: a message past maxPayload, or a frame length past 2^53 - 1.
    const tooBig = code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH';
    const reason = tooBig ? DropReason.MAX_PAYLOAD : DropReason.PROTOCOL_ERROR;
    this.log.debug(
      { clientId: client.id, err: err.message, code: this.drop(reason), wsCode: code },
      'WebSocket protocol error',
    );
  }

  /** A gatewire.v1 client (its session is set by resumable.ts). */
  newWsClient(socket: Socket, ws: WebSocket, request: ClientRequestInfo | null): Client {
    return this.newClient(socket, { kind: 'ws', ws }, request);
  }

  private newClient(socket: Socket, transport: Client['transport'], request: ClientRequestInfo | null): Client {
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
        const code = this.drop(DropReason.SEND_BUFFER);
        this.log.warn({ clientId: c.id, buffered: c.bufferedBytes, code }, 'client stopped reading; disconnecting');
        // A session's link is cut, the session kept (its client may resume from what it has).
        if (c.resume !== null) c.cut();
        else c.destroy();
      },
    );
    this.registry.add(client);
    this.counters.connectionsOpened += 1;
    return client;
  }

  received(client: Client, data: Payload): void {
    // A client being closed (rate limit, closeClient) may still have frames in flight: they are
    // not events any more, and a rate-limited client is counted and logged once.
    if (client.closed) return;
    client.missedPings = 0;
    const limit = this.config.maxMessagesPerSecond;
    if (limit > 0 && ++client.messagesThisSecond > limit) {
      const code = this.drop(DropReason.RATE_LIMIT);
      this.log.info({ clientId: client.id, limit, code }, 'client exceeded gateway.maxMessagesPerSecond');
      client.close(undefined, CloseCode.POLICY, 'rate limit exceeded');
      if (client.transport.kind === 'tcp') client.destroy();
      return;
    }
    this.counters.messagesIn += 1;
    this.emit(client, 'message', data);
  }

  /** A session ends (resumable.ts): as a closed connection. */
  end(client: Client): void {
    this.closed(client);
  }

  private closed(client: Client): void {
    if (!this.registry.clients.has(client.id)) return;
    client.closed = true;
    this.scheduler.forget(client);
    this.counters.connectionsClosed += 1;
    // The close event carries the session as it was; then the client is forgotten.
    this.emit(client, 'close');
    this.registry.remove(client);
    if (client.resume !== null) clearTimeout(client.resume.expiry);
    this.drain.changed();
  }

  emit(client: Client, type: 'connect' | 'websocketConnect' | 'message' | 'close', data?: Payload): void {
    this.events.emit(client, type, data);
  }

  emitResume(client: Client, previousClientId: string): void {
    this.events.resume(client, previousClientId);
  }

  emitRequest(client: Client, requestId: number | string, data: Payload): void {
    this.counters.messagesIn += 1;
    this.events.request(client, requestId, data);
  }

  /** Counts a disconnect; returns its code, for the log line. */
  private drop(reason: DropReason): ErrorCode {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + 1;
    return DROP_CODES[reason];
  }

  private loadTls(): { key: Buffer; cert: Buffer } | undefined {
    const { key, cert } = this.config.tls;
    if (key === '' && cert === '') return undefined;
    return { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
  }

  // ---- commands and queries (CommandTarget) --------------------------------------------

  /** Delivers a send to the clients it names that this gateway holds (delivery.ts). */
  push(cmd: SendToClients | SendToAll | SendToUids | SendToGroups, sender = '', seq = 0): void {
    this.delivery.push(cmd, sender, seq);
    const takeover = this.takeover;
    if (cmd.op === Op.SEND_TO_CLIENTS && takeover?.forwarding) {
      takeover.forwardSends(
        cmd.c.filter((id) => !this.registry.clients.has(id)),
        cmd.d,
      );
    }
  }

  /**
   * Applies a command that arrived on the bus (or from this process). Session writes resolve to
   * the session's new version (null for a client that is gone); the rest to undefined.
   */
  apply(cmd: Command): Promise<number | null | void> {
    if (cmd.op === Op.CLIENT_REPLY) {
      this.replyToClient(cmd);
      return Promise.resolve();
    }
    return applyCommand(this.registry, cmd, (send) => this.delivery.push(send));
  }

  /** Answers a query with what this gateway holds. */
  answer(query: Pick<Query, 'q' | 'a'>): unknown {
    const takeover = this.takeover;
    if (query.q === 'takeover') return takeover?.answerTakeover(query.a) ?? { ok: false, reason: 'unreachable' };
    if (query.q === 'release') return takeover?.answerRelease(query.a) ?? [{ ok: false }];
    return answerQuery(this.registry, query);
  }

  /** A worker's answer to a gatewire.v1 client's request. */
  private replyToClient(cmd: ClientReply): void {
    const client = this.registry.get(cmd.c);
    if (client?.resume == null) {
      this.takeover?.forwardReply(cmd);
      return;
    }
    const ok = cmd.ok === 1;
    this.sessions.sendCountedControl(client, replyControl(cmd.i, ok, ok ? (cmd.d ?? '') : (cmd.e ?? 'failed')));
  }

  /** Whether this gateway holds the client (per-client commands are for the owner only). */
  owns(clientId: string): boolean {
    return ownerOf(clientId) === this.instance;
  }

  client(clientId: string): Client | undefined {
    return this.registry.get(clientId);
  }
}

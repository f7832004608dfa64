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
import type {
  Command,
  Payload,
  Query,
  SendToAll,
  SendToClients,
  SendToGroups,
  SendToUids,
} from '../protocol/commands.js';
import { ClientIdGenerator, ownerOf } from '../protocol/identity.js';
import { Client, CloseCode, type ClientRequestInfo } from './client.js';
import { ClientRegistry, type RouteHolder } from './client-registry.js';
import { WriteScheduler } from './write-scheduler.js';
import { parseListenUrl, type TcpProtocol } from './listen-url.js';
import type { AuthorizationRequest, Authorizer, ConnectionAcceptor, Listener } from './listener.js';
import { WsListener } from './ws-listener.js';
import { TcpListener } from './tcp-listener.js';
import { TcpDecoder } from './tcp-decoder.js';
import type { ClientEvent, EventSink } from '../protocol/client-event.js';
import { errorMessage, type ErrorCode } from '../errors.js';
import { DROP_CODES, DropReason } from './drop-reason.js';
import { Delivery } from './delivery.js';
import { heartbeat } from './heartbeat.js';
import { applyCommand } from './client-commands.js';
import { answerQuery } from './queries.js';
import type { CommandTarget } from '../cluster/command-dispatcher.js';

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
  /** disconnected clients by reason (a DropReason) */
  drops: Record<string, number>;
}

export class Gateway implements ConnectionAcceptor, CommandTarget {
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
    this.delivery = new Delivery(this.registry, () => {
      this.counters.messagesOut += 1;
    });
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
      const reason = tooBig ? DropReason.MAX_PAYLOAD : DropReason.PROTOCOL_ERROR;
      this.log.debug(
        { clientId: client.id, err: err.message, code: this.drop(reason), wsCode: code },
        'WebSocket protocol error',
      );
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
        const code = this.drop(DropReason.MAX_PAYLOAD);
        this.log.info({ clientId: client.id, err: errorMessage(decoder.error), code }, 'closing TCP client');
        client.destroy();
      }
    });
    socket.on('close', () => this.closed(client));
    this.emit(client, 'connect');
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
      const code = this.drop(DropReason.RATE_LIMIT);
      this.log.info({ clientId: client.id, limit, code }, 'client exceeded gateway.maxMessagesPerSecond');
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
  push(cmd: SendToClients | SendToAll | SendToUids | SendToGroups, sender = ''): void {
    this.delivery.push(cmd, sender);
  }

  /**
   * Applies a command that arrived on the bus (or from this process). Session writes resolve to
   * the session's new version (null for a client that is gone); the rest to undefined.
   */
  apply(cmd: Command): Promise<number | null | void> {
    return applyCommand(this.registry, cmd, (send) => this.delivery.push(send));
  }

  /** Answers a query with what this gateway holds. */
  answer(query: Pick<Query, 'q' | 'a'>): unknown {
    return answerQuery(this.registry, query);
  }

  /** Whether this gateway holds the client (per-client commands are for the owner only). */
  owns(clientId: string): boolean {
    return ownerOf(clientId) === this.instance;
  }

  client(clientId: string): Client | undefined {
    return this.registry.get(clientId);
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

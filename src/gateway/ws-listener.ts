/**
 * ws:// and wss:// listeners: an HTTP(S) server that upgrades requests on one path (and serves
 * gateway.staticDir on the others). The authorization hook runs before the upgrade, so a
 * rejected client gets a plain HTTP 401/403 and never becomes a client.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import { listen, urlAuthority, verdictOf, type ConnectionAcceptor, type Listener } from './listener.js';
import { serveStatic } from './static-files.js';
import { SUBPROTOCOL } from '../protocol/client-protocol.js';

export interface WsListenerOptions {
  secure: boolean;
  host: string;
  port: number;
  path: string;
  maxPayload: number;
  tls?: { key: Buffer; cert: Buffer };
  staticDir: string;
}

export class WsListener implements Listener {
  private readonly server: http.Server | https.Server;
  private readonly wss: WebSocketServer;
  private boundPort = 0;

  constructor(
    private readonly options: WsListenerOptions,
    private readonly acceptor: ConnectionAcceptor,
    private readonly log: Logger,
  ) {
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void =>
      serveStatic(options.staticDir, req, res);
    this.server = options.secure ? https.createServer({ ...options.tls }, onRequest) : http.createServer(onRequest);
    this.server.on('upgrade', (req, socket, head) => void this.upgrade(req, socket, head));
    this.server.on('clientError', (err, socket) => {
      this.log.debug({ err: err.message }, 'bad HTTP request');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    this.server.on('error', (err) => this.log.error({ err }, 'listener error'));
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxPayload,
      // Compression would make every write asynchronous and per-client; frames are built once.
      perMessageDeflate: false,
      clientTracking: false,
      // A client that offers gatewire.v1 speaks it (docs/client-protocol.md); others stay raw.
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.wss.on('error', (err) => this.log.error({ err }, 'WebSocket server error'));
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `${this.options.secure ? 'wss' : 'ws'}://${urlAuthority(this.options.host, this.boundPort)}${this.options.path}`;
  }

  async start(): Promise<void> {
    this.boundPort = await listen(this.server, this.options.port, this.options.host);
  }

  /**
   * Stops accepting. The listening socket closes at once; the server's close callback would wait
   * for every upgraded connection to end, so it is not awaited: the gateway closes its clients.
   */
  async stop(): Promise<void> {
    if (!this.server.listening) return;
    this.server.close();
    this.server.closeIdleConnections();
  }

  /**
   * One handler for every socket. A closure made inside upgrade() would share that function's
   * context, which the upgrade callback fills with the request: the socket's listener would then
   * keep the whole IncomingMessage (headers, raw headers, head buffer) alive for the life of the
   * connection, about 1 KB each.
   */
  private readonly onUpgradeSocketError = (err: Error): void => {
    this.log.debug({ err: err.message }, 'socket error during upgrade');
  };

  private async upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', this.onUpgradeSocketError);
    const url = new URL(req.url ?? '/', 'http://gateway');
    if (url.pathname !== this.options.path) {
      reject(socket, 404);
      return;
    }
    const net = socket as Socket;
    const query = Object.fromEntries(url.searchParams);
    const verdict = await verdictOf(
      this.acceptor,
      {
        transport: 'ws',
        remoteAddress: net.remoteAddress ?? '',
        remotePort: net.remotePort ?? 0,
        url: req.url ?? '/',
        origin: req.headers.origin,
        headers: req.headers,
        query,
      },
      this.log,
      'authorization hook failed; rejecting the upgrade',
    );
    if (typeof verdict === 'number') {
      reject(socket, verdict);
      return;
    }
    if (socket.destroyed) return;
    const identity = verdict === true ? null : verdict.identity;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.acceptor.acceptWebSocket(ws, net, { url: req.url ?? '/', headers: req.headers, query }, identity);
    });
  }
}

function reject(socket: Duplex, status: number): void {
  const text = http.STATUS_CODES[status] ?? 'Rejected';
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  } else {
    socket.destroy();
  }
}

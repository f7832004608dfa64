/**
 * tcp:// and tls:// listeners with the text (newline) or frame (length-prefixed) protocol.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { listen, urlAuthority, verdictOf, type ConnectionAcceptor, type Listener } from './listener.js';
import type { TcpProtocol } from './listen-url.js';

export interface TcpListenerOptions {
  secure: boolean;
  host: string;
  port: number;
  protocol: TcpProtocol;
  tls?: { key: Buffer; cert: Buffer };
}

export class TcpListener implements Listener {
  private readonly server: net.Server;
  private boundPort = 0;

  constructor(
    private readonly options: TcpListenerOptions,
    private readonly acceptor: ConnectionAcceptor,
    private readonly log: Logger,
  ) {
    const onConnection = (socket: net.Socket): void => void this.connection(socket);
    this.server = options.secure ? tls.createServer({ ...options.tls }, onConnection) : net.createServer(onConnection);
    this.server.on('error', (err) => this.log.error({ err }, 'listener error'));
    if (options.secure) {
      this.server.on('tlsClientError', (err) => this.log.debug({ err: err.message }, 'TLS handshake failed'));
    }
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const authority = urlAuthority(this.options.host, this.boundPort);
    return `${this.options.secure ? 'tls' : 'tcp'}://${authority}?protocol=${this.options.protocol}`;
  }

  async start(): Promise<void> {
    this.boundPort = await listen(this.server, this.options.port, this.options.host);
  }

  /** Stops accepting at once; open connections stay (the gateway closes its clients). */
  async stop(): Promise<void> {
    if (this.server.listening) this.server.close();
  }

  private async connection(socket: net.Socket): Promise<void> {
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'TCP client socket error'));
    socket.setNoDelay(true);
    // Nothing is read until the authorization hook said yes.
    socket.pause();
    const verdict = await verdictOf(
      this.acceptor,
      { transport: 'tcp', remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 },
      this.log,
      'authorization hook failed; closing the connection',
    );
    if (typeof verdict === 'number' || socket.destroyed) {
      socket.destroy();
      return;
    }
    this.acceptor.acceptTcp(socket, this.options.protocol);
    socket.resume();
  }
}

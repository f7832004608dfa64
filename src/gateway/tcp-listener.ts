/**
 * tcp:// and tls:// listeners with the text (newline) or frame (length-prefixed) protocol.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { ConnectionAcceptor, Listener } from './listener.js';
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
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    return `${this.options.secure ? 'tls' : 'tcp'}://${host}:${this.boundPort}?protocol=${this.options.protocol}`;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        const address = this.server.address();
        this.boundPort = typeof address === 'object' && address !== null ? address.port : this.options.port;
        resolve();
      });
    });
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
    let verdict: true | number;
    try {
      verdict = await this.acceptor.authorize({
        transport: 'tcp',
        remoteAddress: socket.remoteAddress ?? '',
        remotePort: socket.remotePort ?? 0,
      });
    } catch (err) {
      this.log.error({ err }, 'authorization hook failed; closing the connection');
      verdict = 500;
    }
    if (verdict !== true || socket.destroyed) {
      socket.destroy();
      return;
    }
    this.acceptor.acceptTcp(socket, this.options.protocol);
    socket.resume();
  }
}

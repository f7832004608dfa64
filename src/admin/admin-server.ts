/**
 * The admin port (admin.listen): /metrics (Prometheus), /healthz (the process is alive) and
 * /readyz (ready only while the node runs and its bus is connected).
 */
import http from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { GatewireNode } from '../node.js';

export class AdminServer {
  private server: http.Server | null = null;
  private boundPort = 0;

  constructor(
    private readonly listen: string,
    private readonly node: GatewireNode,
    private readonly registry: Registry,
    private readonly log: Logger,
  ) {}

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.listen);
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.on('error', (err) => this.log.error({ err }, 'admin server error'));
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    this.boundPort = typeof address === 'object' && address !== null ? address.port : port;
    this.server = server;
    this.log.info({ url: `http://${host}:${this.boundPort}/metrics` }, 'admin server listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const ready = this.node.running && this.node.bus.isConnected;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
      return;
    }
    if (path === '/metrics') {
      try {
        const body = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
      } catch (err) {
        this.log.error({ err }, 'metrics failed');
        res.writeHead(500).end();
      }
      return;
    }
    res.writeHead(404).end();
  }
}

function parseHostPort(value: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(value);
  if (!match) throw new TypeError(`admin.listen must be host:port, got ${JSON.stringify(value)}`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port: Number(match[2]) };
}

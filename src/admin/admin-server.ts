/**
 * The admin port (admin.listen): /metrics (Prometheus), /healthz (the process is alive),
 * /readyz (ready only while the node runs and its bus is connected), and the dashboard: its page
 * at / and the JSON it polls under /api/ (dashboard-api.ts, dashboard-page.ts).
 *
 * With admin.token set, every endpoint but /healthz and /readyz needs `Authorization: Bearer
 * <token>` (401 with `WWW-Authenticate: Bearer` otherwise, unknown paths included, so nothing is
 * learnt without the token); the probes stay open because orchestrators call them without
 * credentials and they tell nothing but up/ready, and so does the dashboard's page (/), which
holds no data: it asks for the token and sends it on its requests to /api/. Without a token, an admin server on an address
 * beyond loopback logs a warning at start.
 *
 * Folder admin/ (layer 5, the top: may import any layer; nothing below imports it): this
 * server, metrics.ts and the dashboard. Flow: the node starts it first; scrapes read the node's counters
 * through MetricsSource and ReadinessSource.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Dashboard } from './dashboard-api.js';
import { DASHBOARD_CSP, DASHBOARD_PAGE } from './dashboard-page.js';

/** What readiness reads (a GatewireNode): the node runs and its bus is connected. */
export interface ReadinessSource {
  readonly running: boolean;
  readonly bus: { readonly isConnected: boolean };
}
import { isLoopbackHost, parseHostPort } from '../config/host-port.js';

export interface AdminOptions {
  /** admin.listen: host:port */
  listen: string;
  /** admin.token; '' leaves every endpoint open */
  token: string;
}

/** Paths answered without the token: liveness and readiness probes, the dashboard's page (no data). */
const OPEN_PATHS = new Set(['/healthz', '/readyz', '/']);

function digest(text: string): Buffer {
  return crypto.createHash('sha256').update(text, 'utf8').digest();
}

export class AdminServer {
  private server: http.Server | null = null;
  private boundPort = 0;
  /**
   * SHA-256 of admin.token: requests are compared digest to digest, so the comparison takes the
   * same time whatever the candidate's length or how much of it matches.
   */
  private readonly tokenDigest: Buffer | null;

  constructor(
    private readonly options: AdminOptions,
    private readonly node: ReadinessSource,
    private readonly registry: Registry,
    private readonly log: Logger,
    /** the dashboard's data; null: no dashboard (/ and /api/ answer 404) */
    private readonly dashboard: Dashboard | null = null,
  ) {
    this.tokenDigest = options.token === '' ? null : digest(options.token);
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.options.listen);
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
    this.dashboard?.start();
    this.log.info(
      { url: `http://${host}:${this.boundPort}/metrics`, authentication: this.tokenDigest !== null },
      'admin server listening',
    );
    if (this.tokenDigest === null && !isLoopbackHost(host)) {
      this.log.warn(
        { listen: this.options.listen, host },
        'the admin server listens beyond this machine without admin.token: anyone who reaches it reads /metrics; set admin.token, or listen on 127.0.0.1',
      );
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.dashboard?.stop();
    if (server === null) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (!OPEN_PATHS.has(path) && !this.authorized(req)) {
      res
        .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="gatewire admin"' })
        .end('unauthorized: send Authorization: Bearer <admin.token>\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const ready = this.node.running && this.node.bus.isConnected;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
      return;
    }
    if (this.dashboard !== null && (path === '/' || path.startsWith('/api/'))) {
      this.serveDashboard(path, res, this.dashboard);
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

  private serveDashboard(path: string, res: http.ServerResponse, dashboard: Dashboard): void {
    if (path === '/') {
      res
        .writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'content-security-policy': DASHBOARD_CSP,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'x-frame-options': 'DENY',
          'referrer-policy': 'no-referrer',
        })
        .end(DASHBOARD_PAGE);
      return;
    }
    let body: unknown;
    if (path === '/api/cluster') body = dashboard.cluster();
    else if (path === '/api/stats') body = dashboard.stats();
    else if (path === '/api/warnings') body = dashboard.warningList();
    else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
  }

  /** No token configured, or the request carries it as a Bearer credential. */
  private authorized(req: http.IncomingMessage): boolean {
    if (this.tokenDigest === null) return true;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (match === null) return false;
    return crypto.timingSafeEqual(digest(match[1]!), this.tokenDigest);
  }
}

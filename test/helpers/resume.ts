/**
 * Shared setup of the resumable-session tests (test/e2e/resume*.test.ts, rolling-restart):
 *
 *   - GatewayProxy: a load balancer in front of the gateways. New connections go to the first of
 *     its targets that accepts (round robin over them), so a retarget sends the next connection of
 *     a client to another node, and a gateway that stopped listening is skipped. It can cut its
 *     connections (both sides dropped without a close frame), stall them (nothing passes, nothing
 *     closes), drop only the client's side of a stalled one (the server's side stays open and
 *     silent), and refuse new connections for a while.
 *   - Recorder: a handler that records every callback (connect, close, resume) with its ids.
 *   - Received: what one library client received, and the checks "1..n once, in order".
 */
import net from 'node:net';
import { WebSocket } from 'ws';
import { GatewireClient, type GatewireClientOptions, type OpenEvent } from '../../src/client/gatewire-client.js';
import type { EventHandler } from '../../src/worker/handler.js';
import { closeServer, listenLocal, waitFor } from './nodes.js';

/** One proxied connection. */
class Link {
  upstream: net.Socket | null = null;
  stalled = false;
  private ended = false;

  constructor(
    readonly client: net.Socket,
    private readonly onEnd: (link: Link) => void,
  ) {
    client.on('error', () => undefined);
    client.on('close', () => {
      if (!this.stalled) this.destroy();
    });
  }

  connected(upstream: net.Socket): void {
    this.upstream = upstream;
    upstream.on('close', () => {
      if (!this.stalled) this.destroy();
    });
    if (this.stalled) return;
    this.client.pipe(upstream);
    upstream.pipe(this.client);
    this.client.resume();
  }

  stall(): void {
    this.stalled = true;
    if (this.upstream === null) return;
    this.client.unpipe(this.upstream);
    this.upstream.unpipe(this.client);
    this.client.pause();
    // The server's side keeps reading (into nothing) so that its close is seen; nothing is forwarded.
    // unpipe() paused it, and a 'data' listener does not resume a paused stream: resume() does.
    this.upstream.on('data', () => undefined);
    this.upstream.resume();
  }

  /** Drops the client's side only (the client sees its connection end; the server sees nothing). */
  dropClient(): void {
    this.client.destroy();
  }

  destroy(): void {
    if (this.ended) return;
    this.ended = true;
    this.client.destroy();
    this.upstream?.destroy();
    this.onEnd(this);
  }
}

/**
 * After the test: the client closes (its close frame passes before the proxy goes: a dropped link
 * would keep the session), then the proxy.
 */
export function closeAfter(
  t: { after: (fn: () => Promise<void>) => void },
  proxy: GatewayProxy,
  client: () => TestClient | null,
): void {
  t.after(async () => {
    client()?.close();
    await waitFor(() => proxy.flowing === 0, 2000, 'the client closed').catch(() => undefined);
    await proxy.close();
  });
}

export class GatewayProxy {
  private server: net.Server | null = null;
  private readonly links = new Set<Link>();
  private next = 0;
  private refusing = false;
  port = 0;
  /** connections accepted, and when the last one was */
  accepted = 0;
  lastAcceptAt = 0;

  /** `targets`: the gateways' ws ports, tried in turn. */
  constructor(private targets: number[]) {}

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** New connections go to these ports from now on (open ones stay where they are). */
  retarget(...ports: number[]): void {
    this.targets = ports;
    this.next = 0;
  }

  async start(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    this.port = await listenLocal(server, this.port);
    this.server = server;
  }

  /** Connections open now (stalled ones included). */
  get open(): number {
    return this.links.size;
  }

  /** Connections open now that are not stalled (a client's close passes through these). */
  get flowing(): number {
    return [...this.links].filter((l) => !l.stalled).length;
  }

  private accept(socket: net.Socket): void {
    if (this.refusing) {
      socket.destroy();
      return;
    }
    this.accepted += 1;
    this.lastAcceptAt = Date.now();
    socket.pause();
    const link = new Link(socket, (l) => this.links.delete(l));
    this.links.add(link);
    const targets = [...this.targets];
    const start = this.next++;
    const attempt = (i: number): void => {
      if (i >= targets.length) {
        link.destroy();
        return;
      }
      const port = targets[(start + i) % targets.length]!;
      const upstream = net.connect(port, '127.0.0.1');
      upstream.once('error', () => attempt(i + 1));
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        upstream.on('error', () => undefined);
        link.connected(upstream);
      });
    };
    attempt(0);
  }

  /** Drops every connection open now, both sides, without a close frame (new ones are accepted). */
  cut(): void {
    for (const link of [...this.links]) link.destroy();
  }

  /** Stops forwarding on the connections open now, closing nothing (new ones flow). */
  stall(): void {
    for (const link of this.links) link.stall();
  }

  /** Drops the client's side of the stalled connections: the server's sides stay open, silent. */
  dropStalledClients(): void {
    for (const link of this.links) if (link.stalled) link.dropClient();
  }

  /** Refuses (resets) new connections until accept() is called. */
  refuse(): void {
    this.refusing = true;
  }

  acceptAgain(): void {
    this.refusing = false;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const link of [...this.links]) link.destroy();
    if (server) await closeServer(server);
  }
}

export interface Callback {
  type: 'connect' | 'websocketConnect' | 'close' | 'resume';
  clientId: string;
  previousClientId?: string;
}

/**
 * Records the callbacks of every node it serves. `onWebSocketConnect` binds the client to the
 * uid and groups in its URL's query (?uid=…&g1=…&g2=…) and writes { user: uid } to its session,
 * when the query names them.
 */
export class Recorder {
  readonly calls: Callback[] = [];

  readonly handler: EventHandler = {
    onMessage() {},
    onConnect: (clientId) => {
      this.calls.push({ type: 'connect', clientId });
    },
    onWebSocketConnect: async (clientId, { query }, ctx) => {
      this.calls.push({ type: 'websocketConnect', clientId });
      const uid = typeof query.uid === 'string' ? query.uid : '';
      if (uid === '') return;
      await ctx.gateway.bindUid(clientId, uid);
      for (const key of ['g1', 'g2']) {
        const group = query[key];
        if (typeof group === 'string') await ctx.gateway.joinGroup(clientId, group);
      }
      ctx.session.user = uid;
    },
    onClose: (clientId) => {
      this.calls.push({ type: 'close', clientId });
    },
    onResume: (clientId, { previousClientId }) => {
      this.calls.push({ type: 'resume', clientId, previousClientId });
    },
  };

  of(type: Callback['type'], clientId?: string): Callback[] {
    return this.calls.filter((c) => c.type === type && (clientId === undefined || c.clientId === clientId));
  }
}

/** A library client (ws in Node) with what it received and every 'open' it saw. */
export class TestClient {
  readonly client: GatewireClient;
  readonly texts: string[] = [];
  readonly opens: (OpenEvent & { at: number })[] = [];
  readonly errors: Error[] = [];
  reconnectingAt = 0;
  /** 'reconnecting' events seen */
  reconnects = 0;

  constructor(url: string, options: GatewireClientOptions = {}) {
    this.client = new GatewireClient(url, { WebSocket, minDelayMs: 20, maxDelayMs: 100, ...options });
    this.client.on('message', (data) => this.texts.push(typeof data === 'string' ? data : 'bytes'));
    this.client.on('open', (open) => this.opens.push({ ...open, at: Date.now() }));
    this.client.on('error', (err) => this.errors.push(err));
    this.client.on('reconnecting', () => {
      this.reconnects += 1;
      if (this.reconnectingAt === 0) this.reconnectingAt = Date.now();
    });
  }

  get clientId(): string {
    const id = this.client.clientId;
    if (id === null) throw new Error('the client has no clientId');
    return id;
  }

  /** The resume token the client holds now (what a thief would steal). */
  get token(): string {
    return (this.client as unknown as { token: string }).token;
  }

  /**
   * Waits for the `count`-th 'open' and returns it. A timeout says what the client went through
   * (its state, reconnects and errors): no reconnect, reconnects that failed, or a connection
   * whose welcome never came each point elsewhere.
   */
  async opened(count: number, timeoutMs = 10000): Promise<OpenEvent & { at: number }> {
    try {
      await waitFor(() => this.opens.length >= count, timeoutMs, `'open' #${count}`);
    } catch (err) {
      const errors = this.errors.map((e) => e.message).join(' | ') || 'none';
      const detail = `state ${this.client.state}, ${this.opens.length} opens, ${this.reconnects} reconnects, errors: ${errors}`;
      throw new Error(`${(err as Error).message} (${detail})`, { cause: err });
    }
    return this.opens[count - 1]!;
  }

  /** The numbered messages ("<n>" or "<prefix><n>") received, in order. */
  numbers(prefix = ''): number[] {
    return this.texts
      .filter((t) => t.startsWith(prefix) && /^\d+$/.test(t.slice(prefix.length)))
      .map((t) => Number(t.slice(prefix.length)));
  }

  close(): void {
    this.client.close();
  }
}

/**
 * How a received stream of numbers compares with 1..n: repeats, missing ones, and whether it is
 * in order. `exact` is true when it is exactly 1..n.
 */
export function checkStream(
  got: number[],
  n: number,
): { exact: boolean; repeats: number; missing: number; inOrder: boolean; firstDisorder: string } {
  const seen = new Set<number>();
  let repeats = 0;
  let inOrder = true;
  let firstDisorder = '';
  for (let i = 0; i < got.length; i++) {
    if (seen.has(got[i]!)) repeats += 1;
    seen.add(got[i]!);
    if (i > 0 && got[i]! <= got[i - 1]! && inOrder) {
      inOrder = false;
      firstDisorder = `at ${i}: ${got.slice(Math.max(0, i - 6), i + 6).join(',')}`;
    }
  }
  let missing = 0;
  for (let k = 1; k <= n; k++) if (!seen.has(k)) missing += 1;
  const exact = got.length === n && got.every((v, i) => v === i + 1);
  return { exact, repeats, missing, inOrder, firstDisorder };
}

/** A raw gatewire.v1 connection (ws, no library): sends a hello, returns the welcome. */
export async function rawHello(
  url: string,
  hello: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<{ ws: WebSocket; welcome: Record<string, unknown> }> {
  const ws = new WebSocket(url, ['gatewire.v1']);
  ws.on('error', () => undefined);
  const welcome = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no welcome within ${timeoutMs} ms`)), timeoutMs);
    ws.once('open', () => ws.send(`\u0000${JSON.stringify({ t: 'hello', ...hello })}`));
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      if (!text.startsWith('\u0000')) return;
      const control = JSON.parse(text.slice(1)) as Record<string, unknown>;
      if (control.t !== 'welcome') return;
      clearTimeout(timer);
      resolve(control);
    });
    ws.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`closed (${code}) before the welcome`));
    });
  });
  return { ws, welcome };
}

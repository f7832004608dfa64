/**
 * RabbitMQ helpers for the AMQP bus tests: read the broker's bindings and connections through
 * rabbitmqctl, break a node's connection, publish raw bytes, and clean up a test's exchanges and
 * queues. Every test uses its own exchange prefix (uniqueName), so tests never share broker state.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import amqp, { type Channel } from 'amqplib';
import type { ConfigInput } from '../../src/config/load.js';
import type { BusMode } from '../../src/config/formats.js';
import { AMQP_URL, closeServer, listenLocal } from './nodes.js';

/** Runs rabbitmqctl (quiet) and returns its stdout; fails after 60 s. */
export function rabbitmqctl(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('rabbitmqctl', ['-q', ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Bus configuration values for an AMQP test. */
export function amqpValues(prefix: string, mode: BusMode, extra: ConfigInput['bus'] = {}): ConfigInput {
  return { bus: { kind: 'amqp', mode, ...extra, amqp: { url: AMQP_URL, exchange: prefix, ...(extra.amqp ?? {}) } } };
}

export interface Binding {
  source: string;
  destination: string;
  routingKey: string;
}

/** Runs rabbitmqctl against one broker: `rabbitmqctl` for the shared one, PrivateRabbit.ctl for a private one. */
export type Ctl = (...args: string[]) => Promise<string>;

/** The bindings whose source is `exchange`, as the broker (the shared one unless `ctl` names another) lists them. */
export async function listBindings(exchange: string, ctl: Ctl = rabbitmqctl): Promise<Binding[]> {
  const out = await ctl('list_bindings', 'source_name', 'destination_name', 'routing_key', '--formatter', 'json');
  const rows = JSON.parse(out) as { source_name: string; destination_name: string; routing_key: string }[];
  return rows
    .filter((r) => r.source_name === exchange)
    .map((r) => ({ source: r.source_name, destination: r.destination_name, routingKey: r.routing_key }));
}

/** The routing keys bound from `exchange` to `queue`, sorted. */
export async function boundKeys(exchange: string, queue: string, ctl: Ctl = rabbitmqctl): Promise<string[]> {
  return (await listBindings(exchange, ctl))
    .filter((b) => b.destination === queue)
    .map((b) => b.routingKey)
    .sort();
}

/**
 * Erlang pids of the connections whose client property connection_name is one of `names`
 * (the JSON formatter prints pids in a form close_connection does not accept, so this reads the
 * tab-separated listing).
 */
export async function connectionPids(names: string[]): Promise<string[]> {
  const out = await rabbitmqctl('--no-table-headers', 'list_connections', 'pid', 'client_properties');
  const pids: string[] = [];
  for (const line of out.split('\n')) {
    if (names.some((name) => line.includes(`{"connection_name","${name}"}`))) pids.push(line.split('\t')[0]!);
  }
  return pids;
}

/**
 * Closes the broker connections named `names` (rabbitmqctl close_connection, all at once) and
 * returns how many were closed.
 */
export async function closeConnections(names: string[], reason = 'gatewire fault test'): Promise<number> {
  const pids = await connectionPids(names);
  await Promise.all(pids.map((pid) => rabbitmqctl('close_connection', pid, reason)));
  return pids.length;
}

/** Publishes raw bytes to an exchange and waits for the broker's confirm. */
export async function publishRaw(exchange: string, routingKey: string, body: Buffer): Promise<void> {
  const connection = await amqp.connect(AMQP_URL);
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => undefined);
    channel.publish(exchange, routingKey, body);
    await channel.waitForConfirms();
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** The names of the queues of vhost / on the shared broker. */
export async function listQueueNames(): Promise<string[]> {
  const out = await rabbitmqctl('--no-table-headers', 'list_queues', 'name');
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/**
 * Deletes what a test's exchange prefix created on the shared broker: both exchanges
 * (<prefix>.fanout, <prefix>.direct) and every queue named <prefix>.… — the node queues
 * (<prefix>.<mode>.node.<instance>), which a cleanly stopped node leaves to expire (x-expires)
 * and a killed one leaves for as long, and the durable event queues of split roles
 * (<prefix>.events.<P>.<p>), which nothing ever deletes. Call it once the test's processes are
 * stopped. An object already gone is fine; a broker that cannot be reached fails the call.
 */
export async function cleanupAmqp(prefix: string, url = AMQP_URL): Promise<void> {
  // rabbitmqctl lists the local node's queues: `url` must name that broker (the benchmarks may
  // point it at another address of it).
  const queues = (await listQueueNames()).filter((name) => name.startsWith(`${prefix}.`));
  const connection = await amqp.connect(url);
  connection.on('error', () => undefined);
  try {
    // A failed delete closes its channel: each object gets a channel of its own.
    const attempt = async (run: (channel: Channel) => Promise<unknown>): Promise<void> => {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      await run(channel).catch(() => undefined);
      await channel.close().catch(() => undefined);
    };
    for (const queue of queues) await attempt((channel) => channel.deleteQueue(queue));
    for (const mode of ['fanout', 'direct']) await attempt((channel) => channel.deleteExchange(`${prefix}.${mode}`));
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** The old name of cleanupAmqp (it deletes the queues too), for the callers that still use it. */
export const deleteExchanges = cleanupAmqp;

/**
 * A TCP proxy in front of RabbitMQ, so a test can break the link for the processes that use it
 * only, without touching anybody else's connections:
 *   - cut(): drop every proxied connection and refuse new ones (the broker is unreachable);
 *     restore() listens again on the same port;
 *   - stall(): stop forwarding in both directions without closing anything (a black hole: no
 *     data, no FIN, no RST passes; new connections are accepted and held the same way), so only
 *     the AMQP heartbeat can tell the link is dead; heal() forwards again: held connections go
 *     on, and a side that closed meanwhile closes its peer then.
 */
export class BrokerProxy {
  private server: net.Server | null = null;
  private readonly links = new Set<ProxyLink>();
  private stalled = false;
  port = 0;
  /** connections accepted since start */
  accepted = 0;

  constructor(private readonly target = { host: '127.0.0.1', port: Number(new URL(AMQP_URL).port || 5672) }) {}

  /** amqp URL through the proxy (same credentials and vhost as AMQP_URL); `query` is appended. */
  get url(): string {
    return this.urlWith();
  }

  /** The proxy URL with query parameters, e.g. { heartbeat: '1' }. */
  urlWith(query: Record<string, string> = {}): string {
    const url = new URL(AMQP_URL);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    return url.toString();
  }

  /** Proxied connections open now. */
  get open(): number {
    return this.links.size;
  }

  async start(): Promise<void> {
    const server = net.createServer((client) => {
      this.accepted += 1;
      const link = new ProxyLink(client, net.connect(this.target.port, this.target.host), () =>
        this.links.delete(link),
      );
      this.links.add(link);
      if (this.stalled) link.stall();
      else link.flow();
    });
    this.port = await listenLocal(server, this.port);
    this.server = server;
  }

  /** Drops every proxied connection and stops listening: connects are refused. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.stalled = false;
    for (const link of this.links) link.destroy();
    if (server) await closeServer(server);
  }

  /** Listens again on the same port. */
  async restore(): Promise<void> {
    await this.start();
  }

  /** Stops forwarding on every connection, present and future, without closing any. */
  stall(): void {
    this.stalled = true;
    for (const link of this.links) link.stall();
  }

  /** Forwards again (see the class comment). */
  heal(): void {
    this.stalled = false;
    for (const link of [...this.links]) link.flow();
  }

  async close(): Promise<void> {
    await this.cut();
  }
}

/** One proxied connection: client <-> upstream, forwarding or stalled. */
class ProxyLink {
  private stalled = false;
  private flowing = false;
  private ended = false;
  /** a side closed while stalled: the other is closed on heal (a black hole passes no FIN) */
  private closedWhileStalled = false;

  constructor(
    private readonly client: net.Socket,
    private readonly upstream: net.Socket,
    private readonly onEnd: () => void,
  ) {
    for (const socket of [client, upstream]) {
      socket.on('error', () => undefined);
      socket.on('close', () => {
        if (this.stalled) this.closedWhileStalled = true;
        else this.destroy();
      });
    }
  }

  flow(): void {
    if (this.flowing) return;
    this.flowing = true;
    this.stalled = false;
    if (this.closedWhileStalled) {
      this.destroy();
      return;
    }
    this.client.pipe(this.upstream);
    this.upstream.pipe(this.client);
    this.client.resume();
    this.upstream.resume();
  }

  stall(): void {
    this.flowing = false;
    this.stalled = true;
    this.client.unpipe(this.upstream);
    this.upstream.unpipe(this.client);
    this.client.pause();
    this.upstream.pause();
  }

  destroy(): void {
    if (this.ended) return;
    this.ended = true;
    this.stalled = false;
    this.client.destroy();
    this.upstream.destroy();
    this.onEnd();
  }
}

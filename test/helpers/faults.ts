/**
 * Shared setup of the fault tests (test/reliability): a scope that closes what a test opened and
 * deletes what it made on the brokers, in t.after; nodes started together that see each other;
 * a node whose log lines are kept; clients placed on uids and groups; the clock of a bus's
 * outages and the wait for its reconnect; the fields of a version 2 envelope.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { Packr } from 'msgpackr';
import type { Redis } from 'ioredis';
import { createNode, type GatewireNode } from '../../src/node.js';
import { TOKENS } from '../../src/di/tokens.js';
import type { ConfigInput } from '../../src/config/load.js';
import type { Publisher } from '../../src/publisher.js';
import type { Bus } from '../../src/transport/bus.js';
import { startNode, testConfig, uniqueName, waitFor, waitForMembership, type StartOptions } from './nodes.js';
import { BrokerProxy, cleanupAmqp } from './amqp.js';
import { cleanupRedis } from './cleanup.js';
import { Opened, connectWs, idHandler, type Connected } from '../e2e/support.js';
import { RedisRelay, redisAdmin, redisValues } from '../reliability/redis-support.js';
import type { WsTestClient } from './clients.js';

/** The part of a test context the scopes use. */
export interface Teardown {
  after(fn: () => Promise<void>): void;
}

type Hook = () => unknown;

/**
 * What one test opened, closed in t.after in this order: the `first` hooks (bring a broken link
 * back, so nothing waits for it), the publishers, the nodes and clients (`opened`), then the
 * `last` hooks (relays, admin connections, deleting the test's broker objects), each in the
 * order added. Every step runs even when one before it failed; the first failure is thrown.
 */
export class FaultScope {
  readonly opened = new Opened();
  private readonly firstHooks: Hook[] = [];
  private readonly publishers: Publisher[] = [];
  private readonly lastHooks: Hook[] = [];

  constructor(t: Teardown) {
    t.after(() => this.close());
  }

  first(hook: Hook): void {
    this.firstHooks.push(hook);
  }

  last(hook: Hook): void {
    this.lastHooks.push(hook);
  }

  /** A `last` hook that runs before those added so far (a connection closed before the cleanup). */
  protected beforeCleanup(hook: Hook): void {
    this.lastHooks.unshift(hook);
  }

  publisher<P extends Publisher>(publisher: P): P {
    this.publishers.push(publisher);
    return publisher;
  }

  node(node: GatewireNode): GatewireNode {
    return this.opened.node(node);
  }

  private async close(): Promise<void> {
    const steps: Hook[] = [
      ...this.firstHooks,
      ...this.publishers.map((p) => () => p.close()),
      () => this.opened.closeAll(),
      ...this.lastHooks,
    ];
    let failure: unknown;
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }
}

/**
 * A scope on the shared Redis under a fresh prefix (uniqueName(`name`)), whose keys are deleted
 * last. `admin` is a connection for the test itself, opened at first use and closed after the
 * nodes; startRelay() starts a RedisRelay in front of Redis, stopped after the nodes.
 */
export class RedisScope extends FaultScope {
  readonly prefix: string;
  private adminConnection: Redis | undefined;

  constructor(t: Teardown, name = 'gwredis') {
    super(t);
    const prefix = (this.prefix = uniqueName(name));
    this.last(() => cleanupRedis(prefix));
  }

  get admin(): Redis {
    if (this.adminConnection === undefined) {
      const admin = (this.adminConnection = redisAdmin());
      this.beforeCleanup(() => admin.disconnect());
    }
    return this.adminConnection;
  }

  async startRelay(): Promise<RedisRelay> {
    const relay = new RedisRelay();
    this.beforeCleanup(() => relay.stop());
    await relay.start();
    return relay;
  }

  /**
   * Two nodes on this prefix in direct mode that see each other, `relayed` reaching Redis through
   * a started relay (with `bus` added to its bus values), `direct` straight, and a client of each.
   */
  async relayedPair(bus: NonNullable<ConfigInput['bus']> = {}): Promise<{
    relay: RedisRelay;
    relayed: GatewireNode;
    direct: GatewireNode;
    onRelayed: Connected<WsTestClient>;
    onDirect: Connected<WsTestClient>;
  }> {
    const relay = await this.startRelay();
    const through = redisValues('direct', this.prefix, { bus: { ...bus, redis: { url: relay.url } } });
    const relayed = this.node(await startNode(through, { handler: idHandler() }));
    const direct = this.node(await startNode(redisValues('direct', this.prefix), { handler: idHandler() }));
    await waitForMembership([relayed, direct], 2);
    const onRelayed = await connectWs(this.opened, relayed);
    const onDirect = await connectWs(this.opened, direct);
    return { relay, relayed, direct, onRelayed, onDirect };
  }
}

/**
 * A scope on the shared RabbitMQ under a fresh exchange prefix (uniqueName(`name`)), whose
 * exchanges and queues are deleted last. startProxy() starts a BrokerProxy in front of RabbitMQ:
 * first of all it forwards and listens again (a cut proxy would keep everyone retrying), and it
 * is closed after the nodes.
 */
export class AmqpScope extends FaultScope {
  readonly prefix: string;

  constructor(t: Teardown, name: string) {
    super(t);
    const prefix = (this.prefix = uniqueName(name));
    this.last(() => cleanupAmqp(prefix));
  }

  async startProxy(): Promise<BrokerProxy> {
    const proxy = new BrokerProxy();
    this.first(async () => {
      proxy.heal();
      await proxy.restore().catch(() => undefined);
    });
    this.beforeCleanup(() => proxy.close());
    await proxy.start();
    return proxy;
  }
}

/**
 * `count` nodes on `values` (idHandler unless `options` names a handler), closed with `opened`,
 * once every one of them sees them all.
 */
export async function startNodes(
  opened: Opened,
  values: ConfigInput,
  count: number,
  options: StartOptions = {},
): Promise<GatewireNode[]> {
  const nodes: GatewireNode[] = [];
  for (let i = 0; i < count; i++)
    nodes.push(opened.node(await startNode(values, { handler: idHandler(), ...options })));
  await waitForMembership(nodes, count);
  return nodes;
}

export type LogLine = Record<string, unknown>;

/** A logger at `level` whose lines are parsed and collected in `lines`. */
export function collectingLogger(lines: LogLine[], level = 'warn'): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return pino({ level }, sink);
}

/** A node (idHandler, closed with `opened`) whose log lines from warn up are collected in `lines`. */
export async function loggedNode(opened: Opened, values: ConfigInput, lines: LogLine[]): Promise<GatewireNode> {
  const node = opened.node(
    await createNode({
      config: testConfig(values),
      handler: idHandler(),
      configure: (container) => container.rebind(TOKENS.Logger).toConstantValue(collectingLogger(lines)),
    }),
  );
  await node.start();
  return node;
}

/** Where clients go: uid or group name -> its clients. */
export interface Placement {
  uids?: Record<string, Connected[]>;
  groups?: Record<string, Connected[]>;
}

/**
 * Binds every uid to its clients, then adds every group's members, one call at a time, through
 * `via`'s API, or each client's own node's when `via` is not given.
 */
export async function place(placement: Placement, via?: { api: GatewireNode['api'] }): Promise<void> {
  for (const [uid, clients] of Object.entries(placement.uids ?? {}))
    for (const c of clients) await (via ?? c.node).api.bindUid(c.id, uid);
  for (const [group, clients] of Object.entries(placement.groups ?? {}))
    for (const c of clients) await (via ?? c.node).api.joinGroup(c.id, group);
}

/** When a bus went down and came back, each time. */
export interface OutageClock {
  down: number[];
  up: number[];
}

export function outageClock(bus: Bus): OutageClock {
  const clock: OutageClock = { down: [], up: [] };
  bus.on('disconnected', () => clock.down.push(Date.now()));
  bus.on('connected', () => clock.up.push(Date.now()));
  return clock;
}

/** Each bus's reconnect count now, for waitReconnected. */
export function reconnectCounts(buses: Bus[]): number[] {
  return buses.map((bus) => bus.stats.reconnects);
}

/** Waits until every bus is connected again, each with more reconnects than `before` says. */
export async function waitReconnected(buses: Bus[], before: number[], timeoutMs: number, what: string): Promise<void> {
  await waitFor(() => buses.every((bus, i) => bus.isConnected && bus.stats.reconnects > before[i]!), timeoutMs, what);
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

/** The fields of a version 2 envelope: version, sender, epoch, seq, time, commands, signature. */
export type EnvelopeFields = [number, string, number, number, number, Buffer, Buffer];

export function envelopeFields(envelope: Buffer): EnvelopeFields {
  return packr.unpack(envelope) as EnvelopeFields;
}

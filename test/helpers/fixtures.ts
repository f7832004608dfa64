/**
 * Shared fixtures of the broker-backed tests: opening what a test needs and closing it (and its
 * broker objects) after it, N nodes on one bus, clients connected in a row, a handler that tells each client its id, connect helpers that
 * return the client with its id, and an inbox reader that shows "nothing else arrived" without
 * timing (a marker pushed after the messages under test; one node applies commands in order, so
 * once the marker is in, anything pushed before it is in too).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { ConfigInput } from '../../src/config/load.js';
import type { BusMode } from '../../src/config/formats.js';
import type { Redis } from 'ioredis';
import type { GatewireNode } from '../../src/node.js';
import type { EventHandler } from '../../src/worker/handler.js';
import { redisAdmin, redisValues } from '../reliability/redis-support.js';
import { cleanupAmqp, cleanupRedis } from './cleanup.js';
import {
  AMQP_URL,
  sleep,
  startNode,
  tcpPort,
  uniqueName,
  waitFor,
  waitForMembership,
  wsUrl,
  type StartOptions,
} from './nodes.js';
import { TcpTestClient, WsTestClient } from './clients.js';
import type WebSocket from 'ws';

export type AnyClient = WsTestClient | TcpTestClient;

export interface Connected<C extends AnyClient = AnyClient> {
  client: C;
  id: string;
  node: GatewireNode;
}

/** Sends "id:<clientId>" to every new client; `extra` adds or overrides callbacks. */
export function idHandler(extra: Partial<EventHandler> = {}): EventHandler {
  return {
    onMessage() {},
    ...extra,
    async onConnect(clientId, ctx) {
      await ctx.gateway.sendToClient(clientId, `id:${clientId}`);
      await extra.onConnect?.(clientId, ctx);
    },
  };
}

/** Everything every test opened, closed by closeAll() in t.after. */
export class Opened {
  private readonly clients: AnyClient[] = [];
  private readonly nodes: GatewireNode[] = [];

  client<C extends AnyClient>(client: C): C {
    this.clients.push(client);
    return client;
  }

  node(node: GatewireNode): GatewireNode {
    this.nodes.push(node);
    return node;
  }

  async closeAll(): Promise<void> {
    for (const c of this.clients) {
      if (c instanceof WsTestClient) c.ws.terminate();
      else c.socket.destroy();
    }
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}

async function readId(client: AnyClient): Promise<string> {
  const first = await client.nextText();
  assert.match(first, /^id:[0-9a-z]{13,32}$/);
  return first.slice(3);
}

export async function connectWs(
  opened: Opened,
  node: GatewireNode,
  options: WebSocket.ClientOptions = {},
): Promise<Connected<WsTestClient>> {
  const client = opened.client(await WsTestClient.connect(wsUrl(node), options));
  return { client, id: await readId(client), node };
}

export async function connectTcp(
  opened: Opened,
  node: GatewireNode,
  protocol: 'text' | 'frame' = 'text',
): Promise<Connected<TcpTestClient>> {
  const client = opened.client(await TcpTestClient.connect(tcpPort(node, protocol), protocol));
  return { client, id: await readId(client), node };
}

const readUpTo = new WeakMap<AnyClient, number>();

/**
 * Pushes a fresh marker to each target (from `via`) and returns, per target, the messages that
 * arrived since the last inbox() call for it, up to the marker.
 */
export async function inbox(via: GatewireNode, ...targets: Connected[]): Promise<string[][]> {
  const marker = `marker-${Math.random().toString(36).slice(2)}`;
  await Promise.all(targets.map((t) => via.api.sendToClient(t.id, marker)));
  return Promise.all(
    targets.map(async (t) => {
      await t.client.waitForText(marker);
      const texts = t.client.texts();
      const end = texts.lastIndexOf(marker);
      // Skip the id greeting, which every client got first.
      const start = readUpTo.get(t.client) ?? 1;
      readUpTo.set(t.client, end + 1);
      return texts.slice(start, end);
    }),
  );
}

export function sorted<T>(list: readonly T[]): T[] {
  return [...list].sort();
}

/**
 * An Opened closed after the test `t`; `cleanups` run after that, in order, once the nodes are
 * stopped (deleting the test's broker objects: cleanupAmqp, cleanupRedis, a connection's end).
 */
export function openFor(t: TestContext, ...cleanups: (() => unknown)[]): Opened {
  const opened = new Opened();
  t.after(async () => {
    await opened.closeAll();
    for (const cleanup of cleanups) await cleanup();
  });
  return opened;
}

/**
 * Starts `count` nodes on the same configuration `values`, each greeting its clients with their
 * id (or with `options.handler`); with more than one, waits until each sees all as gateways.
 */
export async function startNodes(
  opened: Opened,
  count: number,
  values: ConfigInput = {},
  options: StartOptions = { handler: idHandler() },
): Promise<GatewireNode[]> {
  const nodes: GatewireNode[] = [];
  for (let i = 0; i < count; i++) nodes.push(opened.node(await startNode(values, options)));
  if (count > 1) await waitForMembership(nodes, count);
  return nodes;
}

/** One node on `values` (see startNodes) and an Opened for the test `t`, both closed after it. */
export async function oneNode(
  t: TestContext,
  values: ConfigInput = {},
  options?: StartOptions,
): Promise<{ opened: Opened; node: GatewireNode; api: GatewireNode['api'] }> {
  const opened = openFor(t);
  const [node] = await startNodes(opened, 1, values, options);
  return { opened, node: node!, api: node!.api };
}

/** Two nodes on `values` that see each other (see startNodes). */
export async function startPair(
  opened: Opened,
  values: ConfigInput = {},
  options?: StartOptions,
): Promise<[GatewireNode, GatewireNode]> {
  return (await startNodes(opened, 2, values, options)) as [GatewireNode, GatewireNode];
}

export type ClientKind = 'ws' | 'tcp' | 'frame';
type ClientOf<K extends ClientKind> = K extends 'ws' ? Connected<WsTestClient> : Connected<TcpTestClient>;

/** Connects one client per kind to `node`, one after the other (ids read from the greeting). */
export async function connectEach<const K extends readonly ClientKind[]>(
  opened: Opened,
  node: GatewireNode,
  kinds: K,
): Promise<{ -readonly [I in keyof K]: ClientOf<K[I]> }> {
  const out: Connected[] = [];
  for (const kind of kinds)
    out.push(
      kind === 'ws' ? await connectWs(opened, node) : await connectTcp(opened, node, kind === 'tcp' ? 'text' : kind),
    );
  return out as { -readonly [I in keyof K]: ClientOf<K[I]> };
}

/** Writes `value` as JSON to `dir`/`name` (a configuration file for a `gatewire` process) and returns its path. */
export function writeJson(dir: string, name: string, value: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

/** The environment that puts a `gatewire` process on RabbitMQ `exchange` (the given mode), logging warnings. */
export function amqpCliEnv(exchange: string, mode: 'direct' | 'fanout' = 'direct'): Record<string, string> {
  return {
    GATEWIRE_BUS__KIND: 'amqp',
    GATEWIRE_BUS__MODE: mode,
    GATEWIRE_BUS__AMQP__URL: AMQP_URL,
    GATEWIRE_BUS__AMQP__EXCHANGE: exchange,
    GATEWIRE_LOG__LEVEL: 'warn',
  };
}

/**
 * A Redis test's fixture: a fresh prefix, an Opened and an admin connection (PUBSUB, PUBLISH,
 * reads); after the test the nodes stop, the admin disconnects and the prefix's keys go.
 */
export function redisFixture(t: TestContext, name = 'gwredis'): { opened: Opened; admin: Redis; prefix: string } {
  const prefix = uniqueName(name);
  const admin = redisAdmin();
  const opened = openFor(
    t,
    () => admin.disconnect(),
    () => cleanupRedis(prefix),
  );
  return { opened, admin, prefix };
}

/** An AMQP test's fixture: a fresh prefix (exchange names) and an Opened; after the test the nodes stop and the prefix's exchanges and queues go. */
export function amqpFixture(t: TestContext, name = 'gwamqp'): { opened: Opened; prefix: string } {
  const prefix = uniqueName(name);
  return { opened: openFor(t, () => cleanupAmqp(prefix)), prefix };
}

/** Nodes on Redis in `mode` under `prefix` (see startNodes); `extra` adds configuration. */
export function startRedisNodes(
  opened: Opened,
  count: number,
  mode: BusMode,
  prefix: string,
  extra: ConfigInput = {},
): Promise<GatewireNode[]> {
  return startNodes(opened, count, redisValues(mode, prefix, extra));
}

/** One client of NumberedSenders: it sends "1", "2", … and its handler answers "handled <n>". */
export interface NumberedSender {
  client: WsTestClient;
  sent: number;
}

/**
 * Clients that keep sending numbered messages (to a worker running test/fixtures/numbered-handler)
 * at a steady pace while a test stops, kills or reloads workers, and waits on what they got back.
 */
export class NumberedSenders {
  private sending = false;
  private loops: Promise<void>[] = [];

  private constructor(readonly clients: NumberedSender[]) {}

  /** Connects `count` ws clients, spread over `urls` in turn, each greeted with its id. */
  static async connect(urls: string[], count: number): Promise<NumberedSenders> {
    const clients: NumberedSender[] = [];
    for (let i = 0; i < count; i++)
      clients.push({ client: await WsTestClient.connect(urls[i % urls.length]!), sent: 0 });
    for (const c of clients) assert.match(await c.client.nextText(15000), /^id:/);
    return new NumberedSenders(clients);
  }

  /** Every client sends one message per `everyMs`, their first ones spread over `spreadMs` (pacing, not waiting). */
  start(everyMs: number, spreadMs = everyMs): void {
    this.sending = true;
    this.loops = this.clients.map(async (c, i) => {
      await sleep((i * spreadMs) / this.clients.length);
      while (this.sending) {
        c.sent += 1;
        c.client.send(String(c.sent));
        await sleep(everyMs);
      }
    });
  }

  async stop(): Promise<void> {
    this.sending = false;
    await Promise.all(this.loops);
  }

  total(): number {
    return this.clients.reduce((sum, c) => sum + c.sent, 0);
  }

  /** The numbers handled for `c`, in the order the answers arrived. */
  static handled(c: NumberedSender): number[] {
    return c.client
      .texts()
      .filter((text) => text.startsWith('handled '))
      .map((text) => Number(text.slice(8)));
  }

  /** Waits until every client got "handled <n>" for n = `number(client)`. */
  async untilHandled(number: (c: NumberedSender) => number, timeoutMs: number, what: string): Promise<void> {
    for (const c of this.clients) {
      const n = number(c);
      await c.client.until(() => c.client.texts().includes(`handled ${n}`), timeoutMs, `${what}: handled ${n}`);
    }
  }

  /** Waits until every client sent `more` messages past what it had sent when this was called. */
  async untilSentMore(more: number, timeoutMs: number): Promise<void> {
    const from = this.clients.map((c) => c.sent);
    await waitFor(
      () => this.clients.every((c, i) => c.sent >= from[i]! + more),
      timeoutMs,
      `${more} more sent by each`,
    );
  }
}

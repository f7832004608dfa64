/**
 * Support for the Redis bus tests: an admin connection to the real Redis, the bus configuration
 * on a fresh prefix, finding and killing exactly one node's connections by their names, and a TCP
 * relay in front of Redis that a test can take down and bring back (Redis unreachable for one
 * node only, without touching the server other tests use).
 */
import { Redis } from 'ioredis';
import type { ConfigInput } from '../../src/config/load.js';
import type { BusMode } from '../../src/config/formats.js';
import { REDIS_URL, freePort, uniqueName } from '../helpers/nodes.js';
import { BrokerProxy } from '../helpers/amqp.js';

/** A connection for the test itself (reads PUBSUB, kills clients), named so it is never killed. */
export function redisAdmin(): Redis {
  const admin = new Redis(REDIS_URL, { connectionName: 'gwtest-admin', lazyConnect: false });
  admin.on('error', () => undefined);
  return admin;
}

export function redisValues(mode: BusMode, prefix = uniqueName('gwredis'), extra: ConfigInput = {}): ConfigInput {
  return {
    ...extra,
    bus: { ...extra.bus, kind: 'redis', mode, redis: { url: REDIS_URL, prefix, ...extra.bus?.redis } },
  };
}

export interface RedisClientInfo {
  id: string;
  name: string;
  /** channels subscribed */
  sub: number;
}

/** Connections whose CLIENT SETNAME is gatewire:<instance>:<role> for one of the instances. */
export async function connectionsOf(
  admin: Redis,
  instances: string[],
  role?: 'pub' | 'sub',
): Promise<RedisClientInfo[]> {
  const list = (await admin.client('LIST')) as string;
  const out: RedisClientInfo[] = [];
  for (const line of list.split('\n')) {
    const fields = new Map<string, string>();
    for (const part of line.trim().split(' ')) {
      const eq = part.indexOf('=');
      if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1));
    }
    const name = fields.get('name') ?? '';
    const match = /^gatewire:([0-9a-z]+):(pub|sub)$/.exec(name);
    if (match === null || !instances.includes(match[1]!)) continue;
    if (role !== undefined && match[2] !== role) continue;
    out.push({ id: fields.get('id')!, name, sub: Number(fields.get('sub') ?? 0) });
  }
  return out;
}

/** Kills the given connections in one MULTI, so they drop at the same moment. Returns how many. */
export async function killConnections(admin: Redis, clients: RedisClientInfo[]): Promise<number> {
  if (clients.length === 0) return 0;
  const multi = admin.multi();
  for (const c of clients) multi.client('KILL', 'ID', c.id);
  const results = (await multi.exec()) ?? [];
  let killed = 0;
  for (const [err, n] of results) if (!err) killed += Number(n);
  return killed;
}

/**
 * A TCP relay to Redis on a fixed local port (a BrokerProxy aimed at Redis); stop() cuts every
 * relayed connection and refuses new ones (the port stays reserved for start()).
 */
export class RedisRelay extends BrokerProxy {
  constructor(target = new URL(REDIS_URL)) {
    super({ host: target.hostname, port: Number(target.port || 6379) });
  }

  override get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    await this.cut();
  }
}

/** A local port nothing listens on. */
export const closedPort = freePort;

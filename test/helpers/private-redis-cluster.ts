/**
 * A private Redis Cluster for tests (DESIGN §5: never the shared Redis): 6 redis-server processes
 * (PrivateRedis, test/helpers/private-broker.ts) on free loopback ports, each with its own folder
 * and nodes.conf, cluster bus on its own free port (cluster-port), joined by
 * `redis-cli --cluster create … --cluster-replicas 1`: 3 masters with one replica each. A small
 * cluster-node-timeout (1000 ms) lets a replica take over a killed master within a few seconds.
 * stop() ends and removes everything; the exit hooks of private-broker.ts kill what is left if
 * the test process dies first.
 */
import { execFile } from 'node:child_process';
import { Redis } from 'ioredis';
import { PrivateRedis, freePorts } from './private-broker.js';
import { keySlot } from '../../src/transport/redis/channels.js';

/** ms without an answer after which the cluster takes a node for failed. @default 1000 */
export const CLUSTER_NODE_TIMEOUT_MS = 1000;

export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: 'master' | 'replica';
  /** slot ranges [start, end] of a master */
  slots: [number, number][];
  failed: boolean;
}

export class PrivateRedisCluster {
  private constructor(readonly nodes: PrivateRedis[]) {}

  /** The seed URLs (every node), for bus.redis.url. */
  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  static async start(count = 6, replicas = 1): Promise<PrivateRedisCluster> {
    const ports = await freePorts(2 * count);
    const nodes: PrivateRedis[] = [];
    try {
      for (let i = 0; i < count; i++) {
        nodes.push(
          await PrivateRedis.start({
            port: ports[i]!,
            args: [
              '--cluster-enabled',
              'yes',
              '--cluster-config-file',
              'nodes.conf',
              '--cluster-node-timeout',
              String(CLUSTER_NODE_TIMEOUT_MS),
              '--cluster-port',
              String(ports[count + i]!),
              // A replica syncs at once (the default waits 5 s for more replicas to share a sync).
              '--repl-diskless-sync-delay',
              '0',
            ],
          }),
        );
      }
      const cluster = new PrivateRedisCluster(nodes);
      await run('redis-cli', [
        '--cluster',
        'create',
        ...nodes.map((node) => `127.0.0.1:${node.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ]);
      await cluster.waitUntilOk();
      return cluster;
    } catch (err) {
      await Promise.all(nodes.map((node) => node.stop()));
      throw err;
    }
  }

  /**
   * Waits until every running node reports cluster_state:ok, 3 live masters own slots, and every
   * running replica's link to its master is up (WAIT counts only replicas in sync).
   */
  async waitUntilOk(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let ok = true;
      for (const node of this.nodes) {
        if (!node.running) continue;
        const info = await command(node.port, ['CLUSTER', 'INFO']).catch(() => '');
        if (!/cluster_state:ok/.test(String(info))) ok = false;
        const replication = String(await command(node.port, ['INFO', 'replication']).catch(() => ''));
        if (/role:slave/.test(replication) && !/master_link_status:up/.test(replication)) ok = false;
      }
      if (ok) {
        const masters = (await this.topology()).filter((n) => n.role === 'master' && !n.failed && n.slots.length > 0);
        if (masters.length === 3) return;
      }
      if (Date.now() > deadline) throw new Error(`the private Redis Cluster is not ok after ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** CLUSTER NODES as seen by a running node. */
  async topology(): Promise<ClusterNodeInfo[]> {
    const live = this.nodes.find((node) => node.running);
    if (live === undefined) throw new Error('no node of the private cluster is running');
    const text = String(await command(live.port, ['CLUSTER', 'NODES']));
    return text
      .trim()
      .split('\n')
      .map((line) => {
        const parts = line.split(' ');
        const flags = parts[2]!.split(',');
        const slots: [number, number][] = [];
        for (const range of parts.slice(8)) {
          if (range.startsWith('[')) continue; // a slot being migrated
          const [start, end] = range.split('-');
          slots.push([Number(start), Number(end ?? start)]);
        }
        return {
          id: parts[0]!,
          port: Number(parts[1]!.split('@')[0]!.split(':').pop()),
          role: flags.includes('master') ? 'master' : 'replica',
          slots,
          failed: flags.includes('fail') || flags.includes('fail?'),
        } satisfies ClusterNodeInfo;
      });
  }

  /** The port of the live master that owns a slot. */
  async masterOfSlot(slot: number): Promise<number> {
    const owner = (await this.topology()).find(
      (n) => n.role === 'master' && !n.failed && n.slots.some(([start, end]) => slot >= start && slot <= end),
    );
    if (owner === undefined) throw new Error(`no live master owns slot ${slot}`);
    return owner.port;
  }

  /** The port of the live master that owns a key's (or a channel's) slot. */
  masterOfKey(key: string): Promise<number> {
    return this.masterOfSlot(keySlot(key));
  }

  /** The ports of the live masters. */
  async masters(): Promise<number[]> {
    return (await this.topology())
      .filter((n) => n.role === 'master' && !n.failed && n.slots.length > 0)
      .map((n) => n.port);
  }

  node(port: number): PrivateRedis {
    const node = this.nodes.find((each) => each.port === port);
    if (node === undefined) throw new Error(`no node on port ${port}`);
    return node;
  }

  /** kill -9 of the node on `port` (its folder and nodes.conf kept, for restart()). */
  async kill9(port: number): Promise<void> {
    await this.node(port).kill9();
  }

  /** Starts a killed node again: it rejoins the cluster (a killed master comes back as a replica). */
  async restart(port: number): Promise<void> {
    await this.node(port).restart();
  }

  /** A plain connection to one node (the caller closes it). */
  connect(port: number): Redis {
    const redis = new Redis(port, '127.0.0.1', { connectionName: 'gwtest-cluster', maxRetriesPerRequest: 2 });
    redis.on('error', () => undefined);
    return redis;
  }

  /** Stops every node and removes its folder. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

/** One command on one node, through a short-lived connection. */
export async function command(port: number, args: (string | Buffer)[]): Promise<unknown> {
  const redis = new Redis(port, '127.0.0.1', {
    connectionName: 'gwtest-cluster',
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
    connectTimeout: 2000,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await redis.call(String(args[0]!), ...args.slice(1));
  } finally {
    redis.disconnect();
  }
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

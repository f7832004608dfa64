/**
 * A private 3-node RabbitMQ cluster on loopback for the cluster tests (DESIGN §5: faults only on
 * brokers a test started itself). Each node is a PrivateRabbit (private-broker.ts): its own node
 * name, AMQP and distribution ports, data folder and env file; the three share one random Erlang
 * cookie, which is what lets them (and rabbitmqctl) talk to each other and nothing else talk to
 * them. The nodes boot in parallel (the boot is most of the time), then the second and third
 * join the first: `rabbitmqctl -n <node> stop_app`, `join_cluster <first>`, `start_app`.
 *
 * kill(i) SIGKILLs one node (kill -9, its peers see it vanish); stop() stops whatever still runs
 * and removes every folder. Nodes still running when the process exits are killed by
 * PrivateRabbit's own exit hooks.
 */
import { randomBytes } from 'node:crypto';
import { PrivateRabbit, type PrivateRabbitOptions } from './private-broker.js';

export class PrivateRabbitCluster {
  /** ms from the first spawn to the cluster formed */
  startupMs = 0;

  private constructor(readonly nodes: PrivateRabbit[]) {}

  /** The AMQP URLs of the nodes, in order (amqp://guest:guest@127.0.0.1:<port>). */
  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** The URLs as bus.amqp.url takes them: comma-separated. */
  get url(): string {
    return this.urls.join(',');
  }

  /** Starts `size` nodes (default 3) in parallel and clusters them with the first. */
  static async start(size = 3, options: PrivateRabbitOptions = {}): Promise<PrivateRabbitCluster> {
    const started = Date.now();
    const cookie = randomBytes(16).toString('hex').toUpperCase();
    const booted = await Promise.allSettled(
      Array.from({ length: size }, () => PrivateRabbit.start({ ...options, cookie })),
    );
    const nodes = booted.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const cluster = new PrivateRabbitCluster(nodes);
    try {
      const failed = booted.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
      const first = nodes[0]!;
      // One join at a time: two nodes joining at once can race on the cluster's schema.
      for (const node of nodes.slice(1)) {
        await node.ctl('stop_app');
        await node.ctl('join_cluster', first.nodeName);
        await node.startApp();
      }
      const status = await first.ctl('cluster_status', '--formatter', 'json');
      const running = (JSON.parse(status) as { running_nodes?: string[] }).running_nodes ?? [];
      if (running.length !== size) throw new Error(`cluster formed with ${running.length} of ${size} nodes: ${status}`);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    cluster.startupMs = Date.now() - started;
    return cluster;
  }

  /** kill -9 of node `index` (its folder stays until stop()). */
  async kill(index: number): Promise<void> {
    await this.nodes[index]!.kill();
  }

  /** The index of the node named `nodeName` (rabbit@… as rabbitmqctl prints it), or -1. */
  indexOf(nodeName: string): number {
    return this.nodes.findIndex((node) => node.nodeName === nodeName);
  }

  /** The first node still running (for rabbitmqctl after a kill). */
  live(): PrivateRabbit {
    const node = this.nodes.find((n) => n.running);
    if (node === undefined) throw new Error('no node of the cluster is running');
    return node;
  }

  /** Stops every node (in parallel) and removes their folders. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

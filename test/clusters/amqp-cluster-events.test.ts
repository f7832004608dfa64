/**
 * Split roles on a private 3-node RabbitMQ cluster (private-rabbit-cluster.ts): a worker-only
 * node and a gateway-only node, bus.amqp.url the three broker nodes (so the event partitions are
 * quorum queues), clients sending numbered messages steadily; then kill -9 of the broker node
 * leading the partition queues. The worker declares the partitions first, so they are led by the
 * broker node of its event connection; the gateway is started again (a new instance tag, a new
 * place in the URL list) until its event connection is on that node too, so the kill takes the
 * queues' leader, the worker's connection and the gateway's at once.
 *
 * "Accepted" here: confirmed by the broker. The gateway refuses nothing (its dropped count stays
 * 0: checked), so every message a client sent must be handled by the worker exactly once, in the
 * client's order (the numbered handler answers "handled <n>" and "ORDER" on a gap).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PrivateRabbitCluster } from '../helpers/private-rabbit-cluster.js';
import { startNode, uniqueName, waitFor } from '../helpers/nodes.js';
import { wsUrl } from '../helpers/nodes.js';
import { NumberedSenders } from '../helpers/fixtures.js';
import numberedHandler from '../fixtures/numbered-handler.js';
import type { GatewireNode } from '../../src/node.js';
import type { ConfigInput } from '../../src/config/load.js';

const CLIENTS = 24;
const PARTITIONS = 4;

let cluster: PrivateRabbitCluster | undefined;

before(
  async () => {
    cluster = await PrivateRabbitCluster.start(3);
    console.log(`[amqp cluster events] 3 RabbitMQ nodes started and clustered in ${cluster.startupMs} ms`);
  },
  { timeout: 180_000 },
);

after(async () => {
  await cluster?.stop();
});

/** name -> [type, leader] of the queues whose names start with `prefix`. */
async function queues(c: PrivateRabbitCluster, prefix: string): Promise<Map<string, string[]>> {
  const out = await c.live().ctl('list_queues', 'name', 'type', 'leader', '--no-table-headers');
  const rows = out.split('\n').map((line) => line.split('\t'));
  return new Map(rows.filter((cells) => cells[0]!.startsWith(prefix)).map((cells) => [cells[0]!, cells.slice(1)]));
}

/** The broker node of the connection named `name` (client_properties' connection_name). */
async function nodeOfConnection(c: PrivateRabbitCluster, name: string): Promise<string | undefined> {
  const out = await c.live().ctl('list_connections', 'pid', 'client_properties', '--no-table-headers');
  const line = out.split('\n').find((row) => row.includes(`"${name}"`));
  return /<([^.>]+@[^.>]+)\./.exec(line ?? '')?.[1];
}

test(
  'kill -9 of the broker node leading the event partitions: every event handled once, in order',
  { timeout: 120_000 },
  async () => {
    const c = cluster!;
    const exchange = uniqueName('gwclu-ev');
    const base: ConfigInput = {
      bus: { kind: 'amqp', mode: 'direct', amqp: { url: c.url, exchange } },
      cluster: { announceInterval: 200, nodeTimeout: 5000 },
      worker: { partitions: PARTITIONS },
    };
    let worker: GatewireNode | undefined;
    let gateway: GatewireNode | undefined;
    let senders: NumberedSenders | undefined;
    try {
      worker = await startNode({ ...base, node: { roles: ['worker'] } }, { handler: numberedHandler });
      const leaders = await queues(c, `${exchange}.events.`);
      assert.equal(leaders.size, PARTITIONS, 'the worker declared every partition');
      for (const [name, [type]] of leaders) assert.equal(type, 'quorum', `${name} is a quorum queue`);
      const leader = [...leaders.values()][0]![1]!;
      assert.ok(
        [...leaders.values()].every(([, node]) => node === leader),
        'one broker node leads the partitions',
      );
      const workerNode = await nodeOfConnection(c, `gatewire-worker-${worker.identity.instance}`);
      // The gateway's event connection on the leader too (1 chance in 3 per start).
      let starts = 0;
      let gatewayNode: string | undefined;
      for (; starts < 12;) {
        starts += 1;
        gateway = await startNode({ ...base, node: { roles: ['gateway'] } });
        gatewayNode = await nodeOfConnection(c, `gatewire-events-${gateway.identity.instance}`);
        if (gatewayNode === leader) break;
        await gateway.stop();
        gateway = undefined;
      }
      assert.ok(gateway !== undefined, `a gateway with its event connection on ${leader} within 12 starts`);
      const producer = gateway.eventProducer!;
      const consumer = worker.eventConsumer!;

      senders = await NumberedSenders.connect([wsUrl(gateway)], CLIENTS);
      const { clients } = senders;
      senders.start(40, 40);
      await senders.untilHandled(() => 5, 20000, 'before the kill');
      const sentAtKill = senders.total();
      const killedAt = Date.now();
      await c.kill(c.indexOf(leader));
      // Recovery: every client has a message sent after the kill handled.
      const sentAfter = clients.map((cl) => cl.sent + 1);
      await senders.untilHandled((cl) => sentAfter[clients.indexOf(cl)]!, 30000, 'after the kill');
      const recoveryMs = Date.now() - killedAt;
      await senders.untilSentMore(5, 10000);
      await senders.stop();

      let handledTotal = 0;
      for (const cl of clients) {
        await cl.client.until(() => cl.client.texts().includes(`handled ${cl.sent}`), 30000, `handled ${cl.sent}`);
        // Let a late repeat show (none expected).
        const handled = NumberedSenders.handled(cl);
        handledTotal += handled.length;
        assert.deepEqual(
          handled,
          Array.from({ length: cl.sent }, (_, i) => i + 1),
          'every message handled once, in order',
        );
        assert.deepEqual(
          cl.client.texts().filter((text) => text.startsWith('ORDER')),
          [],
          'the worker saw each client in order',
        );
      }
      await waitFor(() => producer.published >= senders!.total() + CLIENTS, 10000, 'every event confirmed');
      assert.equal(producer.dropped, 0, 'the gateway dropped no event');
      const after = await queues(c, `${exchange}.events.`);
      const newLeaders = [...new Set([...after.values()].map(([, node]) => node))].join(', ');
      console.log(
        `[amqp cluster events] kill -9 of ${leader} (leader of ${PARTITIONS} partitions; worker's event connection ` +
          `on ${workerNode}, gateway's on ${gatewayNode} after ${starts} start(s)): ${CLIENTS} clients, ` +
          `${senders.total()} messages (${senders.total() - sentAtKill} sent after the kill), ` +
          `${handledTotal} handled, 0 lost, 0 twice, in order; recovery ${recoveryMs} ms; new leader(s) ${newLeaders}; ` +
          `gateway: ${producer.published} events confirmed (connects included), ${producer.dropped} dropped, ` +
          `${producer.retried} nacks retried, ${producer.reconnected} reconnect(s); worker: ${consumer.repeats} repeats ` +
          `skipped, ${consumer.reconnected} reconnect(s), ${consumer.resubscribed} partition(s) subscribed again`,
      );
    } finally {
      await senders?.stop();
      for (const cl of senders?.clients ?? []) cl.client.close();
      await gateway?.stop();
      await worker?.stop();
    }
  },
);

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
 *
 * First (on the whole cluster), a full quorum partition: its nacks are told from a lost leader's
 * (the gateway drops what does not fit, without reconnecting), also on a gateway whose channel
 * the queue never served (checkQueue's count against x-max-length).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PrivateRabbitCluster } from '../helpers/private-rabbit-cluster.js';
import { startNode, uniqueName, waitFor } from '../helpers/nodes.js';
import { wsUrl } from '../helpers/nodes.js';
import { NumberedSenders } from '../helpers/fixtures.js';
import { WsTestClient } from '../helpers/clients.js';
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
  'a full quorum partition: events past x-max-length dropped at once, no reconnects',
  { timeout: 60_000 },
  async () => {
    const c = cluster!;
    const exchange = uniqueName('gwclu-full');
    const base: ConfigInput = {
      bus: { kind: 'amqp', mode: 'direct', amqp: { url: c.url, exchange } },
      worker: { partitions: 1, maxPendingEvents: 20 },
      node: { roles: ['gateway'] },
    };
    const settled = (gateway: GatewireNode): number =>
      gateway.eventProducer!.published + gateway.eventProducer!.dropped;
    const first = await startNode(base);
    let second: GatewireNode | undefined;
    const clients: WsTestClient[] = [];
    try {
      const client = await WsTestClient.connect(wsUrl(first));
      clients.push(client);
      // A burst: onConnect and 30 messages (no worker runs: nothing is consumed). 3.10 applies a
      // quorum queue's bound with a lag, so a burst may go past it (measured: 30 of 30 kept).
      for (let i = 1; i <= 30; i++) client.send(String(i));
      await waitFor(() => settled(first) >= 31, 20000, 'the burst settled');
      const a = first.eventProducer!;
      const kept = a.published;
      assert.ok(kept >= 20, `at least the bound kept (${kept})`);
      // Then one at a time: each refused, none retried.
      for (let i = 31; i <= 35; i++) {
        const before = settled(first);
        client.send(String(i));
        await waitFor(() => settled(first) > before, 10000, `message ${i} settled`);
      }
      assert.equal(a.published, kept, 'nothing more kept once full');
      assert.deepEqual([a.retried, a.reconnected], [0, 0], "the full queue's nacks are not retried");
      // A new gateway: its channel never had this queue confirm an event (checkQueue decides).
      second = await startNode(base);
      const other = await WsTestClient.connect(wsUrl(second));
      clients.push(other);
      for (let i = 1; i <= 5; i++) other.send(String(i));
      await waitFor(() => settled(second!) >= 6, 20000, "the second gateway's events settled");
      const b = second.eventProducer!;
      // (a client's connect may make more than one event: counted as they come)
      assert.ok(b.dropped >= 6, `every event refused (${b.dropped})`);
      assert.deepEqual([b.published, b.retried, b.reconnected], [0, 0, 0], 'full: refused at once, none retried');
      const listed = await queues(c, `${exchange}.events.`);
      assert.equal(listed.get(`${exchange}.events.1.0`)?.[0], 'quorum', 'the partition is a quorum queue');
      console.log(
        `[amqp cluster events] full quorum partition (bound 20): a burst of ${settled(first) - 5} events, ${kept} ` +
          `kept; then 5 + ${b.dropped} refused at once (0 nacks retried, 0 reconnects)`,
      );
    } finally {
      for (const cl of clients) cl.close();
      await first.stop();
      await second?.stop();
    }
  },
);

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

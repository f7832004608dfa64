/**
 * A Redis Cluster shard failover under pushes (bus.redis.cluster, direct mode), on a private
 * 3-master cluster with one replica each; one cluster for the file.
 *
 * First the cost of WAIT (bus.redis.waitReplicas 0 against 1) is measured and printed: awaited
 * pushes one after the other (latency), then many at once (throughput). Nothing is asserted on it.
 *
 * Then two gateway nodes, six WebSocket clients (three per node, each with its own uid, one per
 * node in a group) and a publisher; the publisher and node 1 push continuously to the uids and
 * the group. The master that owns the publisher's lane (so its publish calls, and every node's
 * subscriptions on that lane) is killed with SIGKILL; its replica is promoted; the killed node is
 * started again and rejoins as a replica (until then WAIT cannot be satisfied on that shard and
 * calls reject with GW_ERR_BUS_NOT_REPLICATED: not accepted). Afterwards every push the API
 * accepted reached its client exactly once, in order per sender and stream; nothing arrived
 * twice; the recovery time and the losses are printed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewayApi } from '../../src/api/gateway-api.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import { keySlot } from '../../src/transport/redis/channels.js';
import { redisOf } from '../helpers/transports.js';
import { sleep, testConfig, uniqueName, waitFor } from '../helpers/nodes.js';
import { connectWs } from '../e2e/support.js';
import { FaultScope, startNodes } from '../helpers/faults.js';
import { connectTargets, tallyDeliveries, type DeliveryTarget } from '../helpers/deliveries.js';
import { PrivateRedisCluster, command } from '../helpers/private-redis-cluster.js';

let cluster: PrivateRedisCluster;

before(async () => {
  cluster = await PrivateRedisCluster.start();
});

after(async () => {
  await cluster?.stop();
});

function clusterValues(prefix: string, waitReplicas = -1): ConfigInput {
  return {
    bus: {
      kind: 'redis',
      mode: 'direct',
      redis: { url: cluster.urls.join(','), cluster: true, prefix, waitReplicas },
    },
  };
}

describe('redis cluster: the cost of WAIT', () => {
  test('pushes with bus.redis.waitReplicas 0 and 1 (printed)', async (t) => {
    const scope = new FaultScope(t);
    const prefix = uniqueName('gwwait');
    const [node] = await startNodes(scope.opened, clusterValues(prefix), 1);
    const conn = await connectWs(scope.opened, node!);
    await node!.api.bindUid(conn.id, 'cost');
    // Two publishers on the same prefix, one per setting, measured in turns (5 rounds each).
    const publishers = new Map<number, Publisher>();
    for (const waitReplicas of [0, 1]) {
      const publisher = scope.publisher(await createPublisher(testConfig(clusterValues(prefix, waitReplicas))));
      await publisher.waitForGateways(1);
      // Warm-up (connections, scripts loaded, JIT), not measured.
      await Promise.all(Array.from({ length: 2000 }, (_, i) => publisher.api.sendToUid('cost', `w${i}`)));
      publishers.set(waitReplicas, publisher);
    }
    const SEQUENTIAL = 300;
    const CONCURRENT = 5000;
    const latency = new Map<number, number[]>([
      [0, []],
      [1, []],
    ]);
    const rate = new Map<number, number[]>([
      [0, []],
      [1, []],
    ]);
    let sent = 4000;
    for (let round = 0; round < 5; round++) {
      for (const [waitReplicas, publisher] of publishers) {
        let start = performance.now();
        for (let i = 0; i < SEQUENTIAL; i++) await publisher.api.sendToUid('cost', `s${i}`);
        latency.get(waitReplicas)!.push((performance.now() - start) / SEQUENTIAL);
        start = performance.now();
        await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => publisher.api.sendToUid('cost', `c${i}`)));
        rate.get(waitReplicas)!.push(CONCURRENT / ((performance.now() - start) / 1000));
        sent += SEQUENTIAL + CONCURRENT;
        await conn.client.until(() => conn.client.texts().length >= 1 + sent, 20_000, 'all pushes');
      }
    }
    const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    console.log(
      'redis cluster WAIT cost (median of 5 rounds): ' +
        [0, 1]
          .map(
            (w) =>
              `waitReplicas ${w}: ${median(latency.get(w)!).toFixed(3)} ms per awaited push, ${Math.round(median(rate.get(w)!))} pushes/s when 5000 are sent at once`,
          )
          .join('; '),
    );
    for (const publisher of publishers.values()) assert.equal(redisOf(publisher.bus).redisStats.notReplicated, 0);
  });
});

describe('redis cluster: WAIT not met', () => {
  test('a push that fewer replicas than bus.redis.waitReplicas confirm rejects with GW_ERR_BUS_NOT_REPLICATED', async (t) => {
    const scope = new FaultScope(t);
    const prefix = uniqueName('gwwait');
    const [node] = await startNodes(scope.opened, clusterValues(prefix), 1);
    // Each master has one replica: 2 can never confirm.
    const values = clusterValues(prefix, 2);
    values.bus!.redis!.waitTimeout = 100;
    const publisher = scope.publisher(await createPublisher(testConfig(values)));
    await publisher.waitForGateways(1);
    const conn = await connectWs(scope.opened, node!);
    await node!.api.bindUid(conn.id, 'w');
    await assert.rejects(publisher.api.sendToUid('w', 'not replicated'), { code: 'GW_ERR_BUS_NOT_REPLICATED' });
    assert.equal(redisOf(publisher.bus).redisStats.notReplicated, 1);
    // Published all the same (refused as accepted, not withdrawn): it may arrive.
    await conn.client.waitForText('not replicated');
  });
});

describe("redis cluster: a lane's slot moved to another master", () => {
  test('subscribers follow the slot (SUNSUBSCRIBE -> rebuild); every accepted push arrives once, in order', async (t) => {
    const scope = new FaultScope(t);
    const values = clusterValues(uniqueName('gwmove'));
    const [node] = await startNodes(scope.opened, values, 1);
    const publisher = scope.publisher(await createPublisher(testConfig(values)));
    await publisher.waitForGateways(1);
    const conn = await connectWs(scope.opened, node!);
    await node!.api.bindUid(conn.id, 'mover');
    const texts = (): string[] => conn.client.texts().slice(1);

    const accepted: string[] = [];
    let running = true;
    t.after(() => {
      running = false;
    });
    const pump = (async () => {
      for (let i = 0; running; i++) {
        await publisher.api.sendToUid('mover', `m${i}`).then(
          () => accepted.push(`m${i}`),
          () => undefined,
        );
        await sleep(2);
      }
    })();
    await waitFor(() => texts().length >= 50, 10_000, 'pushes flowing');

    // Move the publisher's lane slot (its log and ack keys with it) to another master.
    const bus = redisOf(publisher.bus);
    const slot = keySlot(bus.channel('x'));
    const topology = await cluster.topology();
    const from = topology.find(
      (n) => n.role === 'master' && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b),
    )!;
    const to = topology.find((n) => n.role === 'master' && !n.failed && n.slots.length > 0 && n.id !== from.id)!;
    const recoveries = bus.redisStats.recoveries + redisOf(node!.bus).redisStats.recoveries;
    await command(to.port, ['CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', from.id]);
    await command(from.port, ['CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', to.id]);
    for (;;) {
      const keys = (await command(from.port, ['CLUSTER', 'GETKEYSINSLOT', String(slot), '100'])) as string[];
      if (keys.length === 0) break;
      await command(from.port, ['MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys]);
    }
    for (const master of topology.filter((n) => n.role === 'master' && !n.failed && n.slots.length > 0)) {
      await command(master.port, ['CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id]);
    }
    const movedAt = Date.now();
    await waitFor(async () => (await cluster.masterOfSlot(slot)) === to.port, 10_000, 'the slot to move');
    const after = accepted.length;
    await waitFor(
      () => accepted.length >= after + 50 && texts().includes(accepted[after + 49]!),
      20_000,
      'pushes after the move',
    );
    running = false;
    await pump;
    await waitFor(() => accepted.every((x) => texts().includes(x)), 10_000, 'every accepted push').catch(
      () => undefined,
    );

    const got = texts();
    const lost = accepted.filter((x) => !got.includes(x)).length;
    const duplicates = got.length - new Set(got).size;
    const order = got.map((x) => Number(x.slice(1)));
    const outOfOrder = order.filter((x, i) => i > 0 && x < order[i - 1]!).length;
    const recovered = bus.redisStats.recoveries + redisOf(node!.bus).redisStats.recoveries - recoveries;
    console.log(
      `redis cluster slot move: slot ${slot} :${from.port} -> :${to.port}; accepted ${accepted.length}, received ${got.length}, ` +
        `lost ${lost}, duplicates ${duplicates}, out of order ${outOfOrder}; subscriber rebuilds ${recovered}; ` +
        `pushes flowing again ${Date.now() - movedAt} ms after the move (upper bound)`,
    );
    assert.equal(lost, 0);
    assert.equal(duplicates, 0);
    assert.equal(outOfOrder, 0);
    // The node subscribed on that slot was told (SUNSUBSCRIBE) and rebuilt its subscriber.
    assert.ok(redisOf(node!.bus).redisStats.recoveries >= 1, 'the node rebuilt its subscriber');
  });
});

type Target = DeliveryTarget;

describe('redis cluster: a master killed while pushes flow', () => {
  test('its replica takes over; every accepted push arrives exactly once, in order', async (t) => {
    const scope = new FaultScope(t);
    const values = clusterValues(uniqueName('gwfail'));
    const nodes = await startNodes(scope.opened, values, 2);
    const publisher = scope.publisher(await createPublisher(testConfig(values)));
    await publisher.waitForGateways(2);
    const buses = [...nodes.map((n) => n.bus), publisher.bus];

    const targets: Target[] = await connectTargets(scope.opened, nodes);
    const mixed = targets.filter((_, i) => i % 3 === 0);

    // ---- traffic ----------------------------------------------------------------------------
    const senders: { name: string; api: GatewayApi }[] = [
      { name: 'node1', api: nodes[1]!.api },
      { name: 'publisher', api: publisher.api },
    ];
    let seq = 0;
    let accepted = 0;
    const rejected: string[] = [];
    const settled: Promise<void>[] = [];
    const issued = new Set<string>();
    const push = (send: () => Promise<void>, text: string, to: Target[], s: number): void => {
      issued.add(text);
      settled.push(
        send().then(
          () => {
            accepted += 1;
            for (const target of to) target.expected.push({ text, seq: s });
          },
          (err: Error & { code?: string }) => {
            rejected.push(`${err.code ?? ''} ${err.message}`);
          },
        ),
      );
    };
    let running = true;
    const pump = async (sender: { name: string; api: GatewayApi }): Promise<void> => {
      // Each sender goes round every client (one shared counter would split them by parity).
      let round = 0;
      while (running) {
        const s = ++seq;
        const target = targets[round++ % targets.length]!;
        const text = `${sender.name}:u:${s}`;
        push(() => sender.api.sendToUid(target.uid, text), text, [target], s);
        if (s % 4 === 0) {
          const gtext = `${sender.name}:g:${s}`;
          push(() => sender.api.sendToGroup('mixed', gtext), gtext, mixed, s);
        }
        await sleep(3);
      }
    };
    const pumps = senders.map((s) => pump(s));
    // A failed wait below must not leave the pumps running.
    t.after(() => {
      running = false;
    });
    /** PHASE more pushes issued, and every client got one of the publisher's issued after `after`. */
    const flowingSince = (after: number, what: string, timeoutMs = 10_000): Promise<void> =>
      waitFor(
        () =>
          seq >= after + 200 &&
          targets.every((target) =>
            target.expected.some(
              (e) => e.seq > after && e.text.startsWith('publisher:') && target.arrivals.has(e.text),
            ),
          ),
        timeoutMs,
        what,
      ).catch((err: Error) => {
        const accepted = targets.map((x) => x.expected.filter((e) => e.seq > after).length);
        const arrived = targets.map((x) => x.expected.filter((e) => e.seq > after && x.arrivals.has(e.text)).length);
        throw new Error(
          `${err.message} (seq ${seq}; accepted per client ${accepted}; arrived ${arrived}; rejected ${rejected.length}: ${rejected.slice(0, 3).join(' | ')})`,
        );
      });

    // ---- the fault: kill -9 of the master of the publisher's lane ----------------------------
    await flowingSince(0, 'pushes flowing to every client');
    const lane = keySlot(redisOf(publisher.bus).channel('x'));
    const victim = await cluster.masterOfKey(redisOf(publisher.bus).channel('x'));
    const seqAtKill = seq;
    const killAt = Date.now();
    await cluster.kill9(victim);
    let promotedAt = 0;
    await waitFor(
      async () => {
        const owner = await cluster.masterOfSlot(lane).catch(() => victim);
        if (owner === victim) return false;
        promotedAt = Date.now();
        return true;
      },
      30_000,
      'a replica to take over the killed master',
    );
    // The killed node comes back as a replica of the promoted one (WAIT can be met again).
    await cluster.restart(victim);
    await cluster.waitUntilOk();
    const rejoinedAt = Date.now();
    await flowingSince(seq, 'pushes after the failover reaching every client', 30_000);
    running = false;
    await Promise.all(pumps);
    await Promise.all(settled);

    await waitFor(
      () => targets.every((target) => target.expected.every((e) => target.arrivals.has(e.text))),
      15_000,
      'every accepted push to arrive',
    ).catch((err: Error) => console.log(err.message));

    // ---- what arrived ---------------------------------------------------------------------------
    const { received, lost, duplicates, unknown, outOfOrder } = tallyDeliveries(
      targets,
      senders.map((sender) => sender.name),
      issued,
    );
    const publisherAfterKill = (target: Target): number[] =>
      target.expected
        .filter((e) => e.seq > seqAtKill && target.arrivals.has(e.text) && e.text.startsWith('publisher:'))
        .map((e) => target.arrivals.get(e.text)!);
    const firstAgain = Math.min(...targets.flatMap(publisherAfterKill)) - killAt;
    const allReachable = Math.max(...targets.map((target) => Math.min(...publisherAfterKill(target)))) - killAt;
    const expected = targets.reduce((sum, x) => sum + x.expected.length, 0);
    const stats = buses.map((b) => redisOf(b).redisStats);
    console.log(
      `redis cluster failover: killed master :${victim}; replica promoted after ${promotedAt - killAt} ms, ` +
        `killed node back as a replica after ${rejoinedAt - killAt} ms; first publisher push issued after the kill delivered ` +
        `${firstAgain} ms after the kill, every client reached by one ${allReachable} ms after; issued ${issued.size}, ` +
        `accepted ${accepted}, rejected ${rejected.length} (${[...new Set(rejected.map((r) => r.split(' ')[0]))].join(', ')}), ` +
        `expected deliveries ${expected}, received ${received}, lost ${lost}, duplicates ${duplicates}; ` +
        `recoveries ${stats.reduce((s, x) => s + x.recoveries, 0)}, replayed ${stats.reduce((s, x) => s + x.replayed, 0)}, ` +
        `gaps ${stats.reduce((s, x) => s + x.gaps, 0)}`,
    );
    assert.equal(lost, 0, 'every accepted push arrived');
    assert.equal(duplicates, 0);
    assert.equal(unknown, 0);
    assert.deepEqual(outOfOrder, [], 'pushes from one sender on one stream arrive in the order sent');
    // What was refused was refused for want of a replica, nothing else.
    assert.deepEqual(
      rejected.filter((r) => !r.startsWith('GW_ERR_BUS_NOT_REPLICATED')),
      [],
    );
    assert.equal(
      stats.reduce((s, x) => s + x.gaps, 0),
      0,
    );
    // The publisher's pushes went on after the failover.
    assert.ok(Number.isFinite(allReachable));
  });
});

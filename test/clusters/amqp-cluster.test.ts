/**
 * The RabbitMQ bus on a private 3-node RabbitMQ cluster (private-rabbit-cluster.ts), one cluster
 * for the whole file (its boot is most of the file's time):
 *   - the conformance suite (suite.ts) in fanout and direct mode, bus.amqp.url the three nodes;
 *   - then kill -9 of the broker node hosting a gatewire node's queue while two publishers (one
 *     on another broker node, one on the killed one) push to uids and groups held by that
 *     gatewire node (amqp-cluster-faults.ts): with the default
 *     queue type (quorum, several URLs given), every accepted push is delivered once and in order
 *     and every uid and group is reachable again; with classic queues (second run, on the two
 *     nodes left) only what classic guarantees is asserted (reachable again, nothing twice, in
 *     order) and what it lost is printed. The fault runs go last: each kills one node for good.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { conformanceSuite } from '../conformance/suite.js';
import { PrivateRabbitCluster } from '../helpers/private-rabbit-cluster.js';
import { killUnderPushes } from './amqp-cluster-faults.js';
import { uniqueName } from '../helpers/nodes.js';

let cluster: PrivateRabbitCluster | undefined;

before(
  async () => {
    cluster = await PrivateRabbitCluster.start(3);
    console.log(`[amqp cluster] 3 RabbitMQ nodes started and clustered in ${cluster.startupMs} ms`);
  },
  { timeout: 180_000 },
);

after(async () => {
  await cluster?.stop();
});

function running(): PrivateRabbitCluster {
  if (cluster === undefined) throw new Error('the cluster did not start');
  return cluster;
}

conformanceSuite('amqp fanout on a 3-node RabbitMQ cluster', () => ({
  bus: { kind: 'amqp', mode: 'fanout', amqp: { url: running().url, exchange: uniqueName('gwclu') } },
}));
conformanceSuite('amqp direct on a 3-node RabbitMQ cluster', () => ({
  bus: { kind: 'amqp', mode: 'direct', amqp: { url: running().url, exchange: uniqueName('gwclu') } },
}));

describe('kill -9 of the RabbitMQ node hosting a node queue, pushes flowing', () => {
  test('default queue type (quorum with several URLs): reachable again, no accepted push lost, once, in order', async () => {
    const result = await killUnderPushes(running(), 'auto');
    assert.equal(result.queueType, 'quorum', 'several URLs make quorum the default');
    assert.ok(result.recoveryMs !== null, `every uid and group reachable again within 30 s (${result.summary})`);
    assert.deepEqual(result.lost, [], `no accepted push lost (${result.summary})`);
    assert.deepEqual(result.duplicates, [], 'each push delivered once');
    assert.deepEqual(result.disorders, [], 'per-publisher order kept');
    assert.ok(result.accepted > 0 && result.acceptedAfterKill > 0, 'pushes were accepted before and after the kill');
  });

  test('classic queues: reachable again, nothing twice, in order (losses printed)', async () => {
    const result = await killUnderPushes(running(), 'classic');
    assert.equal(result.queueType, 'classic');
    assert.ok(result.recoveryMs !== null, `every uid and group reachable again within 30 s (${result.summary})`);
    assert.deepEqual(result.duplicates, [], 'each push delivered at most once');
    assert.deepEqual(result.disorders, [], 'per-publisher order kept among what arrived');
  });
});

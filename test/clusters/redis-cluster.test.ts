/**
 * The conformance suite (test/conformance/suite.ts) on a private 3-master Redis Cluster (one
 * replica each), in both modes (and direct without the replay log), with bus.redis.cluster=true;
 * ONE cluster for the whole file.
 *
 * The spread check: while the suites run, every master is asked every 100 ms which sharded
 * channels it holds (PUBSUB SHARDCHANNELS <prefix>), and the distinct channels each master ever
 * held are counted; each of the 3 masters must have held at least 20% of all the channels of the
 * run. Each master's share of the replay logs (keys) is counted too, by CLUSTER KEYSLOT.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { conformanceSuite } from '../conformance/suite.js';
import { uniqueName } from '../helpers/nodes.js';
import { PrivateRedisCluster, command } from '../helpers/private-redis-cluster.js';
import { FaultScope, startNodes } from '../helpers/faults.js';
import { redisOf } from '../helpers/transports.js';
import { foreignEnvelope } from '../helpers/envelopes.js';
import { connectWs } from '../e2e/support.js';

let cluster: PrivateRedisCluster;
let masters: number[] = [];
const prefixes = { direct: uniqueName('gwcl'), fanout: uniqueName('gwcl') };
/** per master port: the distinct channels it was seen holding */
const seen = new Map<number, Set<string>>();
let sampler: NodeJS.Timeout | null = null;
let sampling = Promise.resolve();

async function sample(): Promise<void> {
  for (const port of masters) {
    for (const prefix of Object.values(prefixes)) {
      const channels = (await command(port, ['PUBSUB', 'SHARDCHANNELS', `{${prefix}:*`]).catch(() => [])) as string[];
      for (const channel of channels) seen.get(port)!.add(channel);
    }
  }
}

before(async () => {
  cluster = await PrivateRedisCluster.start();
  masters = await cluster.masters();
  for (const port of masters) seen.set(port, new Set());
  sampler = setInterval(() => {
    sampling = sampling.then(sample);
  }, 100);
});

after(async () => {
  if (sampler !== null) clearInterval(sampler);
  await sampling;
  await cluster?.stop();
});

const busOf = (mode: 'direct' | 'fanout') => () => ({
  bus: {
    kind: 'redis' as const,
    mode,
    redis: { url: cluster.urls.join(','), cluster: true, prefix: prefixes[mode] },
  },
});

conformanceSuite('redis cluster direct', busOf('direct'));
conformanceSuite('redis cluster fanout', busOf('fanout'));
// Without the replay log (bus.redis.replayWindow 0): a pipeline of plain SPUBLISH per call.
conformanceSuite('redis cluster direct, no replay log', () => {
  const values = busOf('direct')();
  return { bus: { ...values.bus, redis: { ...values.bus.redis, prefix: uniqueName('gwcl'), replayWindow: 0 } } };
});

describe('redis cluster: spread over the masters', () => {
  test('each of the 3 masters held at least 20% of the channels of the run', async () => {
    await sampling;
    await sample();
    const all = new Set<string>();
    for (const channels of seen.values()) for (const channel of channels) all.add(channel);
    const shares = masters.map((port) => ({
      port,
      channels: seen.get(port)!.size,
      share: seen.get(port)!.size / all.size,
    }));
    console.log(`channels of the run: ${all.size}; per master: ${JSON.stringify(shares)}`);
    assert.equal(masters.length, 3);
    assert.ok(all.size >= 30, `only ${all.size} channels seen`);
    for (const { port, share } of shares) assert.ok(share >= 0.2, `master ${port} held ${(share * 100).toFixed(1)}%`);
    // No channel is held by two masters: each lives in its slot's shard only.
    const total = shares.reduce((sum, s) => sum + s.channels, 0);
    assert.equal(total, all.size);
  });

  test("the replay logs spread too: each master holds some of the lanes' logs", async () => {
    const perMaster = new Map<number, number>(masters.map((port) => [port, 0]));
    for (const port of masters) {
      const keys = (await command(port, ['KEYS', `{${prefixes.direct}:*}:log`])) as string[];
      for (const key of keys) {
        const slot = Number(await command(port, ['CLUSTER', 'KEYSLOT', key]));
        assert.equal(await cluster.masterOfSlot(slot), port, `${key} on its slot's master`);
        perMaster.set(port, perMaster.get(port)! + 1);
      }
    }
    console.log(`replay logs per master: ${JSON.stringify([...perMaster])}`);
    const total = [...perMaster.values()].reduce((a, b) => a + b, 0);
    assert.ok(total > 0, 'no replay log found');
  });
});

describe('redis cluster: probe', () => {
  test("a node's subscriber is seen through PUBSUB SHARDNUMSUB on the shard of its channel", async (t) => {
    const scope = new FaultScope(t);
    const values = busOf('direct')();
    values.bus.redis.prefix = uniqueName('gwprobe');
    const [a, b] = await startNodes(scope.opened, values, 2);
    assert.equal(await redisOf(b!.bus).probe(a!.bus.instance), 'present');
    assert.equal(await redisOf(b!.bus).probe('n0nexistent'), 'absent');
    await a!.stop();
    assert.equal(await redisOf(b!.bus).probe(a!.bus.instance), 'absent');
  });
});

/**
 * docs/cluster-redis.md, "Names on a cluster", followed with Redis commands alone, as a program in
 * another language would: the lane tag `{<prefix>:l<n>-<j>}` is found with CLUSTER KEYSLOT (the
 * first j whose slot falls in the n-th sixteenth of the slots), and a plain signed envelope is
 * SPUBLISHed on `<tag>:<routing key>` at the master that owns the slot.
 */
describe('redis cluster: a foreign program pushes with SPUBLISH', () => {
  test('to a uid, a group and everyone, on two lanes, to clients on two nodes', async (t) => {
    const scope = new FaultScope(t);
    const secret = 'cluster-foreign-secret';
    const prefix = uniqueName('gwforeign');
    const values = { bus: { ...busOf('direct')().bus, secret } };
    values.bus.redis.prefix = prefix;
    const [a, b] = await startNodes(scope.opened, values, 2);
    const alice = await connectWs(scope.opened, a!);
    const bob = await connectWs(scope.opened, b!);
    await a!.api.bindUid(alice.id, 'alice');
    await b!.api.bindUid(bob.id, 'bob');
    await b!.api.joinGroup(bob.id, 'room');

    const laneTag = async (n: number): Promise<string> => {
      for (let j = 0; j < 1600; j++) {
        const tag = `{${prefix}:l${n}-${j}}`;
        const slot = Number(await command(masters[0]!, ['CLUSTER', 'KEYSLOT', tag]));
        if (slot >= n * 1024 && slot < (n + 1) * 1024) return tag;
      }
      throw new Error(`no tag for lane ${n}`);
    };
    const spublish = async (sender: string, tag: string, key: string, commands: unknown[]): Promise<number> => {
      const channel = `${tag}:${key}`;
      const port = await cluster.masterOfKey(channel);
      return Number(await command(port, ['SPUBLISH', channel, foreignEnvelope(sender, commands, secret)]));
    };
    // Two senders on two lanes (any lane reaches every subscriber: nodes subscribe their keys on
    // every lane); one sender keeps to one lane, so that its commands arrive in the order sent.
    const [lane3, lane12] = [await laneTag(3), await laneTag(12)];
    assert.equal(await spublish('cron-job-7', lane3, 'u.alice', [{ op: 14, u: ['alice'], d: 'to alice' }]), 1);
    assert.equal(await spublish('cron-job-8', lane12, 'g.room', [{ op: 22, g: ['room'], d: 'to the room' }]), 1);
    assert.equal(await spublish('cron-job-7', lane3, 'all', [{ op: 6, d: 'to everyone' }]), 2);
    assert.equal(await spublish('cron-job-7', lane3, 'u.nobody', [{ op: 14, u: ['nobody'], d: 'to nobody' }]), 0);
    await alice.client.waitForText('to everyone');
    await bob.client.waitForText('to everyone');
    await bob.client.waitForText('to the room');
    assert.deepEqual(alice.client.texts().slice(1), ['to alice', 'to everyone']);
    assert.deepEqual(bob.client.texts().slice(1).sort(), ['to everyone', 'to the room']);
  });
});

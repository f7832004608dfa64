/**
 * Redis direct mode, read from Redis itself: a uid's (or group's) channel is subscribed only while
 * some node holds a client bound to it (PUBSUB CHANNELS / NUMSUB), and reads never subscribe.
 *
 * "Still subscribed" is shown without timing: after the step under test, the same node binds a
 * probe uid; its SUBSCRIBE goes out on the same connection after any UNSUBSCRIBE the step could
 * have caused, so once the probe's bind resolved, that UNSUBSCRIBE would be visible.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GatewireNode } from '../../src/node.js';
import { bucketOf } from '../../src/transport/bus.js';
import type { ConfigInput } from '../../src/config/load.js';
import { waitFor } from '../helpers/nodes.js';
import {
  Opened,
  connectEach,
  connectWs,
  redisFixture,
  sorted,
  startRedisNodes,
  type Connected,
} from '../helpers/fixtures.js';

const LISTEN = { gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'] } };

/** Two Redis direct-mode nodes under `prefix` with ws and tcp listeners. */
async function twoNodes(
  opened: Opened,
  prefix: string,
  extra: ConfigInput = {},
): Promise<[GatewireNode, GatewireNode]> {
  return (await startRedisNodes(opened, 2, 'direct', prefix, { ...LISTEN, ...extra })) as [GatewireNode, GatewireNode];
}

test('redis direct: a uid channel exists only while some node holds a client bound to that uid', async (t) => {
  const { opened, admin, prefix } = redisFixture(t, 'gwsubs');
  const [a, b] = await twoNodes(opened, prefix);
  const channel = `${prefix}:u.alice`;
  const numsub = async (): Promise<number> => Number(((await admin.pubsub('NUMSUB', channel)) as [string, number])[1]);
  const channels = async (): Promise<string[]> => sorted((await admin.pubsub('CHANNELS', `${prefix}:*`)) as string[]);
  let probes = 0;
  /** Binds a probe uid on `node`: once it resolves, every earlier (un)subscribe of that node is done. */
  const settle = async (node: GatewireNode, client: Connected): Promise<void> => {
    await node.api.bindUid(client.id, `probe${++probes}`);
  };

  // Only the node channels and the broadcast channel to begin with.
  assert.deepEqual(
    await channels(),
    sorted([`${prefix}:all`, `${prefix}:n.${a.bus.instance}`, `${prefix}:n.${b.bus.instance}`]),
  );

  const [a1, a2, aProbe] = await connectEach(opened, a, ['ws', 'tcp', 'ws']);
  const [b1, bProbe] = await connectEach(opened, b, ['ws', 'ws']);

  // bindUid resolves once Redis confirmed the SUBSCRIBE: no waiting needed.
  await b.api.bindUid(a1.id, 'alice');
  assert.ok((await channels()).includes(channel));
  assert.equal(await numsub(), 1);

  // A second client with the same uid on the same node: still one subscription.
  await a.api.bindUid(a2.id, 'alice');
  assert.equal(await numsub(), 1);

  // A client with that uid on the other node: that node subscribes too.
  await a.api.bindUid(b1.id, 'alice');
  assert.equal(await numsub(), 2);

  // Unbinding one of node a's two clients: node a keeps the channel.
  await b.api.unbindUid(a1.id, 'alice');
  await settle(a, aProbe);
  assert.equal(await numsub(), 2);

  // Closing node a's last client with the uid: node a unsubscribes (in the background).
  a2.client.close();
  await waitFor(async () => (await numsub()) === 1, 5000, 'node a to unsubscribe u.alice');
  assert.ok((await channels()).includes(channel));

  // The last holder anywhere goes: the channel is gone from Redis.
  b1.client.close();
  await waitFor(async () => !(await channels()).includes(channel), 5000, 'u.alice to disappear');
  await settle(b, bProbe);
  assert.equal(await numsub(), 0);
});

test('redis direct: a group channel exists only while some node holds a member', async (t) => {
  const { opened, admin, prefix } = redisFixture(t, 'gwsubs');
  const [a, b] = await twoNodes(opened, prefix);
  const channel = `${prefix}:g.room`;
  const numsub = async (): Promise<number> => Number(((await admin.pubsub('NUMSUB', channel)) as [string, number])[1]);
  const [aProbe, a1, a2] = await connectEach(opened, a, ['ws', 'ws', 'ws']);
  const b1 = (await connectEach(opened, b, ['tcp']))[0];
  // Each join resolves once Redis confirmed any SUBSCRIBE it caused: node a subscribes on its
  // first member (asked from node b) and not again on its second; node b on its member.
  const joins: [GatewireNode, string, number][] = [
    [b, a1.id, 1],
    [a, a2.id, 1],
    [a, b1.id, 2],
  ];
  for (const [via, id, subscribers] of joins) {
    await via.api.joinGroup(id, 'room');
    assert.equal(await numsub(), subscribers);
  }

  await a.api.leaveGroup(a1.id, 'room');
  await a.api.bindUid(aProbe.id, 'probe');
  assert.equal(await numsub(), 2);

  await b.api.leaveGroup(a2.id, 'room');
  await waitFor(async () => (await numsub()) === 1, 5000, 'node a to unsubscribe g.room');

  // ungroup empties the group everywhere: the last subscription goes.
  await a.api.ungroup('room');
  await waitFor(async () => (await numsub()) === 0, 5000, 'g.room to disappear');
});

test('redis direct: reads and pushes to uids and groups nobody holds never subscribe anything', async (t) => {
  const { opened, admin, prefix } = redisFixture(t, 'gwsubs');
  const [a, b] = await twoNodes(opened, prefix);
  const client = await connectWs(opened, a);
  const other = await connectWs(opened, b);
  const before = sorted((await admin.pubsub('CHANNELS', `${prefix}:*`)) as string[]);

  for (const node of [a, b]) {
    assert.equal(await node.api.isUidOnline('bob'), false);
    assert.deepEqual(await node.api.getClientIdByUid('bob'), []);
    assert.equal(await node.api.getClientCountByGroup('nobody'), 0);
    assert.deepEqual(await node.api.getClientIdListByGroup('nobody'), []);
    assert.deepEqual(await node.api.getUidListByGroup('nobody'), []);
    assert.equal(await node.api.getUidByClientId(client.id), null);
    await node.api.sendToUid('bob', 'hello bob');
    await node.api.sendToGroup('nobody', 'hello nobody');
  }
  // Settle both nodes (a subscribe after the reads goes out after anything they could have sent).
  await a.api.bindUid(client.id, 'probe');
  await b.api.bindUid(other.id, 'probe-b');
  const after = sorted((await admin.pubsub('CHANNELS', `${prefix}:*`)) as string[]);
  assert.deepEqual(after, sorted([...before, `${prefix}:u.probe`, `${prefix}:u.probe-b`]));
});

test('redis direct with bus.uidBuckets: uids share bucket channels, held while any uid of the bucket is', async (t) => {
  const { opened, admin, prefix } = redisFixture(t, 'gwsubs');
  const [a] = await twoNodes(opened, prefix, { bus: { uidBuckets: 8 } });
  const c1 = await connectWs(opened, a);
  await a.api.bindUid(c1.id, 'alice');
  const channel = `${prefix}:ub.${bucketOf('alice', 8)}`;
  assert.ok(((await admin.pubsub('CHANNELS', `${prefix}:ub.*`)) as string[]).includes(channel));
  assert.deepEqual((await admin.pubsub('CHANNELS', `${prefix}:u.*`)) as string[], []);
  c1.client.close();
  await waitFor(
    async () => ((await admin.pubsub('CHANNELS', `${prefix}:ub.*`)) as string[]).length === 0,
    5000,
    'bucket channel to go',
  );
});

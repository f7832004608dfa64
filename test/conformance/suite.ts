/**
 * The conformance suite: one set of cases run against every bus (local, amqp fanout/direct,
 * redis fanout/direct). Three nodes, each with its own bus connection, a publisher, and real
 * ws and tcp clients. A per-bus file calls conformanceSuite() with its bus configuration.
 *
 * "X is not delivered" is shown without timing: the same publisher then sends a marker to the
 * same client; commands from one publisher to one client arrive in order, so once the marker
 * is in, anything sent before it would be too.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import type { EventHandler } from '../../src/worker/handler.js';
import { startNode, tcpPort, testConfig, mergeValues, waitFor, waitForMembership, wsUrl } from '../helpers/nodes.js';
import { TcpTestClient, WsTestClient } from '../helpers/clients.js';
import { cleanupBus } from '../helpers/cleanup.js';

/** Tells every client its id on connect: "id:<clientId>". */
const idHandler: EventHandler = {
  async onConnect(clientId, { gateway }) {
    await gateway.sendToClient(clientId, `id:${clientId}`);
  },
  onMessage() {},
};

type AnyClient = WsTestClient | TcpTestClient;

export function conformanceSuite(name: string, busValues: () => ConfigInput): void {
  describe(`conformance: ${name}`, () => {
    let nodes: GatewireNode[] = [];
    let publisher: Publisher;
    const clients: AnyClient[] = [];
    let values: ConfigInput | undefined;

    before(async () => {
      values = mergeValues(busValues(), {
        gateway: {
          listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text', 'tcp://127.0.0.1:0?protocol=frame'],
        },
      });
      nodes = [];
      for (let i = 0; i < 3; i++)
        nodes.push(await startNode(mergeValues(values, { node: { id: `node${i}` } }), { handler: idHandler }));
      publisher = await createPublisher(testConfig(values));
      await waitForMembership(nodes, 3);
      await publisher.waitForGateways(3);
    });

    after(async () => {
      for (const c of clients) c.close();
      await publisher?.close();
      await Promise.all(nodes.map((n) => n.stop()));
      // What the bus left on the broker (exchanges, node queues, Redis keys) goes too.
      if (values !== undefined) await cleanupBus(values);
    });

    /** Connects a client to node i and returns it with its id. */
    async function connect(
      i: number,
      kind: 'ws' | 'text' | 'frame' = 'ws',
    ): Promise<{ client: AnyClient; id: string }> {
      const node = nodes[i]!;
      const client =
        kind === 'ws'
          ? await WsTestClient.connect(wsUrl(node))
          : await TcpTestClient.connect(tcpPort(node, kind), kind);
      clients.push(client);
      const first = await client.nextText();
      assert.match(first, /^id:[0-9a-z]+$/);
      return { client, id: first.slice(3) };
    }

    /** Connects one client per [node index, kind], one after the other. */
    async function connectAll(
      ...specs: [number, ('ws' | 'text' | 'frame')?][]
    ): Promise<{ client: AnyClient; id: string }[]> {
      const out: { client: AnyClient; id: string }[] = [];
      for (const [i, kind] of specs) out.push(await connect(i, kind));
      return out;
    }

    /** Waits until each of `targets` got `text`. */
    async function allGot(text: string, ...targets: { client: AnyClient }[]): Promise<void> {
      for (const t of targets) await t.client.waitForText(text);
    }

    /** Sends a marker from the publisher and waits for it: everything sent before has arrived. */
    async function settle(...targets: { client: AnyClient; id: string }[]): Promise<void> {
      const marker = `marker-${Math.random().toString(36).slice(2)}`;
      await Promise.all(targets.map((t) => publisher.api.sendToClient(t.id, marker)));
      await Promise.all(targets.map((t) => t.client.waitForText(marker)));
    }

    test('sendToClient reaches a client on another node, from a node and from a publisher', async () => {
      const c = await connect(2);
      await nodes[0]!.api.sendToClient(c.id, 'from node0');
      await publisher.api.sendToClient(c.id, 'from publisher');
      await c.client.waitForText('from node0');
      await c.client.waitForText('from publisher');
    });

    test('sendToUid reaches every client of the uid on every node', async () => {
      const [a, b, other] = await connectAll([1], [2, 'text'], [0]);
      await nodes[1]!.api.bindUid(a.id, 'u-many');
      await nodes[0]!.api.bindUid(b.id, 'u-many');
      await nodes[0]!.api.bindUid(other.id, 'u-other');
      await publisher.api.sendToUid('u-many', 'to u-many');
      await nodes[2]!.api.sendToUid(['u-other', 'u-many'], 'to both uids');
      await allGot('to u-many', a, b);
      await allGot('to both uids', a, b, other);
      await settle(other);
      assert.ok(!other.client.texts().includes('to u-many'));
    });

    test('bindUid then an immediate sendToUid from another node arrives', async () => {
      for (let round = 0; round < 5; round++) {
        const c = await connect(round % 3);
        const uid = `fresh-${round}-${Math.random().toString(36).slice(2)}`;
        await nodes[(round + 1) % 3]!.api.bindUid(c.id, uid);
        await nodes[(round + 2) % 3]!.api.sendToUid(uid, `hello ${uid}`);
        await c.client.waitForText(`hello ${uid}`);
      }
    });

    test('joinGroup then an immediate sendToGroup from another node arrives', async () => {
      const c = await connect(0);
      const group = `fresh-group-${Math.random().toString(36).slice(2)}`;
      await nodes[1]!.api.joinGroup(c.id, group);
      await nodes[2]!.api.sendToGroup(group, 'group hello');
      await c.client.waitForText('group hello');
    });

    test('sendToGroup with exclude, across nodes; a client in two groups gets one copy', async () => {
      const [a, b, c] = await connectAll([0], [1], [2, 'frame']);
      for (const x of [a, b, c]) await publisher.api.joinGroup(x.id, 'room');
      await publisher.api.joinGroup(a.id, 'room2');
      await nodes[0]!.api.sendToGroup('room', 'room without b', { exclude: b.id });
      await nodes[1]!.api.sendToGroup(['room', 'room2'], 'rooms once');
      await allGot('room without b', a, c);
      await allGot('rooms once', a, b, c);
      await settle(a, b);
      assert.ok(!b.client.texts().includes('room without b'));
      assert.equal(a.client.texts().filter((t) => t === 'rooms once').length, 1);
    });

    test('sendToAll: everyone, a list of clientIds, and exclude', async () => {
      const [a, b, c] = await connectAll([0], [1, 'text'], [2]);
      await publisher.api.sendToAll('everyone');
      for (const x of [a, b, c]) await x.client.waitForText('everyone');
      await nodes[2]!.api.sendToAll('only a and c', { clientIds: [a.id, c.id] });
      await nodes[0]!.api.sendToAll('all but c', { exclude: [c.id] });
      await a.client.waitForText('only a and c');
      await c.client.waitForText('only a and c');
      await a.client.waitForText('all but c');
      await b.client.waitForText('all but c');
      await settle(b, c);
      assert.ok(!b.client.texts().includes('only a and c'));
      assert.ok(!c.client.texts().includes('all but c'));
    });

    test('unbindUid, leaveGroup and ungroup stop delivery', async () => {
      const [a, b] = await connectAll([1], [2]);
      await nodes[0]!.api.bindUid(a.id, 'u-unbind');
      await nodes[0]!.api.joinGroup(a.id, 'g-leave');
      await nodes[0]!.api.joinGroup(b.id, 'g-ungroup');
      await publisher.api.sendToUid('u-unbind', 'uid before');
      await publisher.api.sendToGroup('g-leave', 'group before');
      await a.client.waitForText('uid before');
      await a.client.waitForText('group before');
      await nodes[2]!.api.unbindUid(a.id, 'u-unbind');
      await nodes[2]!.api.leaveGroup(a.id, 'g-leave');
      await nodes[1]!.api.ungroup('g-ungroup');
      await publisher.api.sendToUid('u-unbind', 'uid after');
      await publisher.api.sendToGroup('g-leave', 'group after');
      await publisher.api.sendToGroup('g-ungroup', 'ungrouped after');
      await settle(a, b);
      assert.ok(!a.client.texts().includes('uid after'));
      assert.ok(!a.client.texts().includes('group after'));
      assert.ok(!b.client.texts().includes('ungrouped after'));
      assert.equal(await publisher.api.isUidOnline('u-unbind'), false);
      assert.equal(await publisher.api.getClientCountByGroup('g-ungroup'), 0);
    });

    test('closeClient sends its data then closes; destroyClient and closeUid close clients on other nodes', async () => {
      const [a, b, c] = await connectAll([1], [2, 'text'], [0]);
      await nodes[0]!.api.sendToClient(a.id, 'before close');
      await nodes[0]!.api.closeClient(a.id, 'goodbye');
      await a.client.waitClosed();
      const texts = a.client.texts();
      assert.deepEqual(texts.slice(-2), ['before close', 'goodbye']);
      await nodes[1]!.api.destroyClient(b.id);
      await b.client.waitClosed();
      await publisher.api.bindUid(c.id, 'u-close');
      await nodes[2]!.api.closeUid('u-close', 'uid closed');
      await c.client.waitClosed();
      assert.equal(c.client.texts().at(-1), 'uid closed');
      assert.equal(await publisher.api.isOnline(a.id), false);
    });

    test('queries are exact across nodes', async () => {
      // Start from a clean slate: close every client of earlier cases.
      for (const c of clients.splice(0)) c.close();
      await waitForCount(0);
      const [a, b, c, d] = await connectAll([0], [1, 'text'], [2], [2]);
      // One after the other, as a caller would: every call resolved before the queries.
      for (const [id, uid] of [
        [a.id, 'q-u1'],
        [b.id, 'q-u2'],
        [c.id, 'q-u2'],
      ])
        await publisher.api.bindUid(id!, uid!);
      for (const [id, group] of [
        [a.id, 'q-g'],
        [c.id, 'q-g'],
        [d.id, 'q-g2'],
      ])
        await publisher.api.joinGroup(id!, group!);
      await publisher.api.setSession(c.id, { name: 'c' });
      for (const api of [nodes[0]!.api, nodes[2]!.api, publisher.api]) {
        assert.equal(await api.getAllClientCount(), 4);
        assert.deepEqual((await api.getAllClientIdList()).sort(), [a.id, b.id, c.id, d.id].sort());
        assert.deepEqual((await api.getAllUidList()).sort(), ['q-u1', 'q-u2']);
        assert.equal(await api.getAllUidCount(), 2);
        assert.deepEqual((await api.getAllGroupIdList()).sort(), ['q-g', 'q-g2']);
        assert.equal(await api.getClientCountByGroup('q-g'), 2);
        assert.deepEqual((await api.getClientIdListByGroup('q-g')).sort(), [a.id, c.id].sort());
        assert.deepEqual((await api.getUidListByGroup('q-g')).sort(), ['q-u1', 'q-u2']);
        assert.equal(await api.getUidCountByGroup('q-g'), 2);
        assert.deepEqual(await api.getClientSessionsByGroup('q-g'), { [a.id]: {}, [c.id]: { name: 'c' } });
        const sessions = await api.getAllClientSessions();
        assert.deepEqual(Object.keys(sessions).sort(), [a.id, b.id, c.id, d.id].sort());
        assert.deepEqual((await api.getClientIdByUid('q-u2')).sort(), [b.id, c.id].sort());
        assert.equal(await api.isUidOnline('q-u1'), true);
        assert.equal(await api.isUidOnline('nobody'), false);
        assert.deepEqual(await api.isUidsOnline(['q-u1', 'nobody']), { 'q-u1': true, nobody: false });
        assert.equal(await api.getUidByClientId(b.id), 'q-u2');
        assert.equal(await api.isOnline(d.id), true);
      }
    });

    test('sessions set on one node are read and merged from others', async () => {
      const c = await connect(1);
      await nodes[0]!.api.setSession(c.id, { user: { name: 'ann', role: 'admin' }, n: 1 });
      await nodes[2]!.api.updateSession(c.id, { user: { role: 'owner' }, m: 2 });
      assert.deepEqual(await publisher.api.getSession(c.id), { user: { name: 'ann', role: 'owner' }, n: 1, m: 2 });
      await publisher.api.setSession(c.id, { fresh: true });
      assert.deepEqual(await nodes[0]!.api.getSession(c.id), { fresh: true });
    });

    test('binary payloads stay binary and text stays text across nodes', async () => {
      const [ws, frame] = await connectAll([0], [1, 'frame']);
      const bytes = Buffer.from([0, 1, 2, 250, 251, 255, 0x0a, 0x0d]);
      await nodes[2]!.api.sendToClient(ws.id, bytes);
      await nodes[2]!.api.sendToClient(frame.id, bytes);
      await nodes[2]!.api.sendToClient(ws.id, 'plain text');
      const wsBinary = await ws.client.next();
      assert.equal(wsBinary.binary, true);
      assert.deepEqual(wsBinary.data, bytes);
      const wsText = await ws.client.next();
      assert.equal(wsText.binary, false);
      assert.equal(wsText.data, 'plain text');
      const framed = await frame.client.next();
      assert.deepEqual(framed.data, bytes);
    });

    test('1,000 pushes from one publisher to one client arrive in order', async () => {
      const c = await connect(2);
      await publisher.api.bindUid(c.id, 'ordered');
      const sends: Promise<void>[] = [];
      // Mixed routes (node key and uid key) must not reorder either.
      for (let i = 0; i < 1000; i++) {
        sends.push(
          i % 2 === 0 ? publisher.api.sendToClient(c.id, `n${i}`) : publisher.api.sendToUid('ordered', `n${i}`),
        );
      }
      await Promise.all(sends);
      await c.client.until(() => c.client.received.length >= 1001, 15000, '1,000 pushes');
      const got = c.client.texts().slice(1);
      assert.deepEqual(
        got,
        Array.from({ length: 1000 }, (_, i) => `n${i}`),
      );
    });

    async function waitForCount(n: number): Promise<void> {
      await waitFor(async () => (await publisher.api.getAllClientCount()) === n, 5000, `client count ${n}`);
    }
  });
}

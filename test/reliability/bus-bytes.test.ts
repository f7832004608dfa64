/**
 * Bytes on the bus grow linearly with the targets of a call. 4,000 uids are bound across 3 nodes
 * (direct mode, one key per uid); a publisher, whose connection to the broker runs through a
 * byte-counting relay, sends one 100-byte sendToUid to all of them, signed: at most
 * 4,000 × (100 + 400) bytes reach the broker (before: every message carried the whole list,
 * about 92 MB), and every client gets the payload exactly once. Then one sendToGroup to 100,000
 * groups, of which a few have members on the nodes (one client in two of them): each member gets
 * it once, and the time it took is printed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import {
  AMQP_URL,
  REDIS_URL,
  mergeValues,
  startNode,
  testConfig,
  uniqueName,
  waitFor,
  waitForMembership,
} from '../helpers/nodes.js';
import { amqpValues } from '../helpers/amqp.js';
import { cleanupBus } from '../helpers/cleanup.js';
import { redisValues } from './redis-support.js';
import { Opened, connectTcp, idHandler, type Connected } from '../e2e/support.js';
import type { TcpTestClient } from '../helpers/clients.js';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';

const UIDS = 4000;
const GROUPS = 100_000;
const PAYLOAD = 'x'.repeat(100);

/** A TCP relay to the broker that counts the bytes going to it. */
class CountingRelay {
  toBroker = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          this.sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.on('data', (chunk: Buffer) => {
        this.toBroker += chunk.length;
        upstream.write(chunk);
      });
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

interface Broker {
  name: string;
  values: () => ConfigInput;
  target: () => { host: string; port: number };
  /** the bus values of the publisher, through the relay on `port` */
  through: (values: ConfigInput, port: number) => ConfigInput;
}

const brokers: Broker[] = [
  {
    name: 'RabbitMQ direct',
    values: () => amqpValues(uniqueName('gw-bytes'), 'direct', { secret: 'bytes-secret' }),
    target: () => ({ host: '127.0.0.1', port: Number(new URL(AMQP_URL).port || 5672) }),
    through: (values, port) => {
      const url = new URL(AMQP_URL);
      url.port = String(port);
      return mergeValues(values, { bus: { amqp: { url: url.toString() } } });
    },
  },
  {
    name: 'Redis direct',
    values: () => redisValues('direct', undefined, { bus: { secret: 'bytes-secret' } }),
    target: () => ({ host: '127.0.0.1', port: Number(new URL(REDIS_URL).port || 6379) }),
    through: (values, port) => mergeValues(values, { bus: { redis: { url: `redis://127.0.0.1:${port}` } } }),
  },
];

describe('bytes on the bus are linear in the targets', () => {
  for (const broker of brokers) {
    test(
      `${broker.name}: sendToUid to 4,000 uids on 3 nodes, and sendToGroup to 100,000 groups`,
      { timeout: 300_000 },
      async (t) => {
        const values = broker.values();
        const opened = new Opened();
        const relay = new CountingRelay(broker.target());
        let publisher: Publisher | null = null;
        t.after(async () => {
          await publisher?.close();
          await relay.close();
          await opened.closeAll();
          await cleanupBus(values);
        });
        const nodes: GatewireNode[] = [];
        for (let i = 0; i < 3; i++) nodes.push(opened.node(await startNode(values, { handler: idHandler() })));
        await waitForMembership(nodes, 3);
        await relay.start();
        publisher = await createPublisher(testConfig(broker.through(values, relay.port)));
        const pub = publisher;
        assert.equal(await pub.waitForGateways(3, 10_000), 3);

        // 4,000 clients, one uid each, spread over the three nodes.
        const clients: Connected<TcpTestClient>[] = [];
        for (let start = 0; start < UIDS; start += 200) {
          const batch = await Promise.all(
            Array.from({ length: Math.min(200, UIDS - start) }, (_, j) =>
              connectTcp(opened, nodes[(start + j) % 3]!, 'text'),
            ),
          );
          clients.push(...batch);
        }
        await Promise.all(clients.map((c, i) => c.node.api.bindUid(c.id, `user-${i}`)));
        const uids = clients.map((_, i) => `user-${i}`);

        const before = relay.toBroker;
        await pub.api.sendToUid(uids, PAYLOAD);
        const bytes = relay.toBroker - before;
        await waitFor(
          () => clients.every((c) => c.client.texts().includes(PAYLOAD)),
          60_000,
          'every client got the payload',
        );

        // ---- 100,000 groups in one call; members in a few of them, one client in two ----
        const members = clients.slice(0, 6);
        const groups = Array.from({ length: GROUPS }, (_, i) => `group-${i}`);
        const joined = [0, 10_000, 50_000, 99_999, 99_998, 77_777];
        await Promise.all(members.map((m, i) => m.node.api.joinGroup(m.id, groups[joined[i]!]!)));
        // members[0] also in a group far from its first one: reached through two parts of the call
        await members[0]!.node.api.joinGroup(members[0]!.id, groups[88_888]!);
        const groupBytesBefore = relay.toBroker;
        const started = Date.now();
        await pub.api.sendToGroup(groups, 'to the groups');
        const groupMs = Date.now() - started;
        const groupBytes = relay.toBroker - groupBytesBefore;
        await waitFor(
          () => members.every((m) => m.client.texts().includes('to the groups')),
          30_000,
          'every member got it',
        );
        // A marker after it from the same publisher: nothing of the call is still on its way.
        await Promise.all(members.map((m) => pub.api.sendToClient(m.id, 'marker')));
        await waitFor(() => members.every((m) => m.client.texts().includes('marker')), 30_000, 'the marker');

        const copies = (c: Connected<TcpTestClient>, text: string): number =>
          c.client.texts().filter((x) => x === text).length;
        console.log(
          `[bus bytes ${broker.name}] signed: sendToUid to ${UIDS} uids on 3 nodes, ${PAYLOAD.length}-byte payload: ${bytes} bytes to the broker ` +
            `(${(bytes / UIDS).toFixed(0)} per uid; bound ${UIDS * 500}), ${pub.bus.stats.messagesPublished} messages published in all by the publisher\n` +
            `  sendToGroup to ${GROUPS} groups: ${groupMs} ms until the broker had it all, ${groupBytes} bytes (${(groupBytes / GROUPS).toFixed(0)} per group)`,
        );
        assert.ok(bytes <= UIDS * (100 + 400), `${bytes} bytes for ${UIDS} uids`);
        assert.ok(
          clients.every((c) => copies(c, PAYLOAD) === 1),
          'each client got the payload exactly once',
        );
        assert.ok(
          members.every((m) => copies(m, 'to the groups') === 1),
          'each member got it once, also the one in two groups',
        );
        assert.ok(groupBytes <= GROUPS * 400, `${groupBytes} bytes for ${GROUPS} groups`);
      },
    );
  }
});

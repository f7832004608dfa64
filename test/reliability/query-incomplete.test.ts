/**
 * Queries that miss answers say so, and a node that died is not waited for.
 *   - A node whose event loop is blocked for 3 s misses the query timeout: the answer from the
 *     others comes back counted as incomplete (requests.incomplete, the metric), and with
 *     { strict: true } the call rejects with GW_ERR_QUERY_INCOMPLETE naming the node (in direct
 *     mode isUidOnline asks no node: the holder directory answers it).
 *   - A SIGKILLed node (cluster.queryTimeout and cluster.nodeTimeout set to 20 s here, so neither
 *     can explain a quick answer) is found gone through the broker (no consumer on its queue, no
 *     subscriber on its channel): the first query after the kill ends without waiting for the
 *     timeout, later ones at once, and calls for its clients fail with GW_ERR_NODE_UNREACHABLE.
 *   - A SIGKILLed node's queue is bounded in bytes (bus.amqp.maxQueueBytes): the broker drops its
 *     oldest messages, and a live node counts them.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { ChildNode } from '../helpers/child-node.js';
import { WsTestClient } from '../helpers/clients.js';
import { AMQP_URL, startNode, uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, cleanupAmqp } from '../helpers/amqp.js';
import { cleanupBus } from '../helpers/cleanup.js';
import { redisValues } from './redis-support.js';
import { mergeValues } from '../helpers/nodes.js';
import amqp from 'amqplib';
import { nodeQueueName } from '../../src/transport/amqp/amqp-topology.js';
import { decodeEnvelope } from '../../src/protocol/envelope.js';
import { Op } from '../../src/protocol/commands.js';
import type { ConfigInput } from '../../src/config/load.js';
import { amqpBus, amqpOf } from '../helpers/transports.js';
import type { GatewireNode } from '../../src/node.js';

const buses: { name: string; values: () => ConfigInput }[] = [
  { name: 'RabbitMQ direct', values: () => amqpValues(uniqueName('gw-incomplete'), 'direct') },
  { name: 'RabbitMQ fanout', values: () => amqpValues(uniqueName('gw-incomplete-f'), 'fanout') },
  { name: 'Redis direct', values: () => redisValues('direct') },
  { name: 'Redis fanout', values: () => redisValues('fanout') },
];

const codeOf = (p: Promise<unknown>): Promise<{ code: string; missing?: string[] }> =>
  p.then(
    () => ({ code: 'resolved' }),
    (err: { code?: string; missing?: string[] }) => ({ code: String(err.code), missing: err.missing }),
  );

async function clientsOn(child: ChildNode, count: number, opened: WsTestClient[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const client = await WsTestClient.connect(child.url('ws'));
    opened.push(client);
    ids.push((await client.nextText()).slice(3));
  }
  return ids;
}

describe('incomplete queries', () => {
  for (const bus of buses) {
    test(`${bus.name}: a blocked node is reported missing (strict rejects, naming it); a SIGKILLed one is found gone through the broker, not waited for`, async (t) => {
      const base = bus.values();
      const clients: WsTestClient[] = [];
      const children: ChildNode[] = [];
      let asker: GatewireNode | null = null;
      t.after(async () => {
        for (const c of clients) c.ws.terminate();
        for (const child of children) await child.kill();
        await asker?.stop();
        await cleanupBus(base);
      });

      // ---- a node blocked for 3 s (queryTimeout 2 s) ----
      const slow = await ChildNode.start({ values: base, label: 'slow node' });
      children.push(slow);
      asker = await startNode(base);
      const a = asker;
      await waitFor(() => a.membership.isLive(slow.instance), 10_000, 'the asker sees the slow node');
      const slowIds = await clientsOn(slow, 5, clients);
      await a.api.bindUid(slowIds[0]!, 'on-the-slow-node');
      assert.equal(await a.api.getAllClientCount({ strict: true }), 5);
      // In direct mode the asker keeps a holder directory: isUidOnline is answered from it,
      // without asking any node (so no node can be missing from its answer).
      const direct = a.directory !== null;
      if (direct) await waitFor(() => a.directory!.routing, 10_000, "the asker's directory routing");

      const incompleteBefore = a.requests.incomplete;
      const blocked = slow.block(3000);
      // Blocked once it falls silent: an announcement (every 200 ms) is overdue by half an interval.
      const lastSeen = (): number => a.membership.list().find((m) => m.instance === slow.instance)?.lastSeen ?? 0;
      await waitFor(() => Date.now() - lastSeen() > 300, 800, 'the slow node to fall silent (blocked)');
      const [lenient, strict, uidStrict] = await Promise.all([
        a.api.getAllClientCount(),
        codeOf(a.api.getAllClientCount({ strict: true })),
        codeOf(a.api.isUidOnline('on-the-slow-node', { strict: true })),
      ]);
      await blocked;
      assert.equal(lenient, 0, 'without strict: the answer of the nodes that answered');
      assert.deepEqual(strict, { code: 'GW_ERR_QUERY_INCOMPLETE', missing: [slow.instance] });
      if (direct) assert.deepEqual(uidStrict, { code: 'resolved' }, 'isUidOnline: from the directory, no query');
      else assert.deepEqual(uidStrict, { code: 'GW_ERR_QUERY_INCOMPLETE', missing: [slow.instance] });
      assert.equal(a.requests.incomplete - incompleteBefore, direct ? 2 : 3, 'each incomplete query counted');
      assert.ok(!a.membership.isSuspect(slow.instance), 'a slow node keeps its consumer: not taken for gone');
      await waitFor(() => a.membership.isLive(slow.instance), 5000, 'the slow node announces itself again');
      assert.equal(await a.api.getAllClientCount({ strict: true }), 5, 'complete again once it runs');
      await slow.kill();

      // ---- a node SIGKILLed, with timeouts far longer than what is measured ----
      const patient = mergeValues(base, { cluster: { queryTimeout: 20_000, nodeTimeout: 20_000 } });
      await asker.stop();
      asker = await startNode(patient);
      const p = asker;
      const victim = await ChildNode.start({ values: patient, label: 'victim node' });
      children.push(victim);
      await waitFor(() => p.membership.isLive(victim.instance), 10_000, 'the asker sees the victim');
      const victimIds = await clientsOn(victim, 3, clients);
      assert.equal(await p.api.getAllClientCount({ strict: true }), 3);
      const timeoutsBefore = p.requests.timeouts;

      await victim.kill('SIGKILL');
      const killedAt = Date.now();
      const first = await codeOf(p.api.getAllClientCount({ strict: true }));
      const firstMs = Date.now() - killedAt;
      const secondAt = Date.now();
      const second = await codeOf(p.api.getAllClientIdList({ strict: true }));
      const secondMs = Date.now() - secondAt;
      const bind = await codeOf(p.api.bindUid(victimIds[0]!, 'x'));
      assert.deepEqual(first, { code: 'GW_ERR_QUERY_INCOMPLETE', missing: [victim.instance] });
      assert.deepEqual(second, { code: 'GW_ERR_QUERY_INCOMPLETE', missing: [victim.instance] });
      assert.equal(p.requests.timeouts, timeoutsBefore, 'no query waited for cluster.queryTimeout');
      assert.ok(p.membership.isSuspect(victim.instance), 'found gone through the broker');
      assert.ok(
        p.membership.list().some((m) => m.instance === victim.instance),
        'still a member: its silence timeout (20 s) is not shortened',
      );
      assert.equal(bind.code, 'GW_ERR_NODE_UNREACHABLE');
      assert.equal(await p.api.getAllClientCount(), 0);
      console.log(
        `[incomplete ${bus.name}] blocked 3 s (queryTimeout 2 s): lenient count 0 of 5, strict -> ${strict.code} naming it, isUidOnline strict -> ${uidStrict.code}; ` +
          `SIGKILL (queryTimeout and nodeTimeout 20 s): first query ended ${firstMs} ms after the kill (${first.code}), the next in ${secondMs} ms; bindUid -> ${bind.code}`,
      );
    });
  }
});

/** The numbers of the pushes left in a queue, in queue order (read with basic.get, acked). */
async function keptPushes(queue: string): Promise<number[]> {
  const connection = await amqp.connect(AMQP_URL);
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createChannel();
    const out: number[] = [];
    for (;;) {
      const msg = await channel.get(queue, { noAck: true });
      if (msg === false) break;
      for (const cmd of decodeEnvelope(msg.content, '').commands)
        if (cmd.op === Op.SEND_TO_UIDS) out.push(Number(String(cmd.d).split(':')[0]));
    }
    return out;
  } finally {
    await connection.close().catch(() => undefined);
  }
}

function queueStats(name: string): Promise<{ messages: number; bytes: number; maxBytes: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      'rabbitmqctl',
      ['-q', 'list_queues', 'name', 'messages', 'message_bytes', 'arguments', '--formatter', 'json'],
      { timeout: 60_000 },
      (err, stdout) => {
        if (err) return reject(err);
        // arguments come as [name, type, value] triples
        const rows = JSON.parse(stdout) as {
          name: string;
          messages: number;
          message_bytes: number;
          arguments: [string, string, unknown][];
        }[];
        const row = rows.find((r) => r.name === name);
        if (row === undefined) return reject(new Error(`no queue ${name}`));
        const maxBytes = row.arguments.find(([key]) => key === 'x-max-length-bytes')?.[2];
        resolve({ messages: row.messages, bytes: row.message_bytes, maxBytes: Number(maxBytes) });
      },
    );
  });
}

test("RabbitMQ: a SIGKILLed node's queue is bounded in bytes; the oldest messages go, and a live node counts them", async (t) => {
  const prefix = uniqueName('gw-deadq');
  const values = mergeValues(amqpValues(prefix, 'direct'), { bus: { amqp: { maxQueueBytes: 64 * 1024 } } });
  const clients: WsTestClient[] = [];
  let dead: ChildNode | null = null;
  let live: GatewireNode | null = null;
  t.after(async () => {
    for (const c of clients) c.ws.terminate();
    await dead?.kill();
    await live?.stop();
    await cleanupAmqp(prefix);
  });
  dead = await ChildNode.start({ values, label: 'node to kill' });
  live = await startNode(values);
  const l = live;
  await waitFor(() => l.membership.isLive(dead!.instance), 10_000, 'the live node sees the other');
  const [id] = await clientsOn(dead, 1, clients);
  await l.api.bindUid(id!, 'on-the-dead-node');
  const queue = nodeQueueName(prefix, 'direct', dead.instance);
  await dead.kill('SIGKILL');

  const PUSHES = 200;
  const body = 'p'.repeat(1000);
  for (let i = 0; i < PUSHES; i++) await l.api.sendToUid('on-the-dead-node', `${i}:${body}`);
  const bus = l.bus;
  const amqp = amqpOf(bus);
  // The queue also gets announcements ('all'), so it holds more than the pushes: every message
  // routed to it is either kept or dropped, at least PUSHES of them.
  let stats = await queueStats(queue);
  await waitFor(
    async () => {
      stats = await queueStats(queue);
      return amqp.amqpStats.queueOverflowDropped + stats.messages >= PUSHES && stats.messages > 0;
    },
    20_000,
    'every push either kept or counted dropped',
  ).catch((err: Error) => {
    throw new Error(
      `${err.message}: kept ${stats.messages} (${stats.bytes} bytes), counted dropped ${amqp.amqpStats.queueOverflowDropped}`,
    );
  });
  assert.equal(stats.maxBytes, 64 * 1024);
  assert.ok(stats.bytes <= 64 * 1024, `${stats.bytes} bytes kept`);
  // The oldest went: the pushes still in the queue are the last ones, in order.
  const kept = await keptPushes(queue);
  assert.ok(kept.length > 0 && kept.length < PUSHES);
  assert.deepEqual(
    kept,
    Array.from({ length: kept.length }, (_, i) => PUSHES - kept.length + i),
    'a suffix of the pushes',
  );
  assert.ok(amqp.amqpStats.queueOverflowDropped >= PUSHES - kept.length, 'every dropped push counted');
  console.log(
    `[dead queue] bus.amqp.maxQueueBytes 64 KiB, ${PUSHES} pushes of ~1 KB to a SIGKILLed node's uid (and the cluster's announcements): the queue kept ${stats.messages} messages (${stats.bytes} bytes), ` +
      `the last ${kept.length} pushes among them; ${amqp.amqpStats.queueOverflowDropped} oldest dropped and counted by the live node`,
  );
});

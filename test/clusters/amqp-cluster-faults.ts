/**
 * One fault run on a private RabbitMQ cluster (amqp-cluster.test.ts): a gatewire node ("holder")
 * with CLIENTS clients, each bound to a uid and in one of GROUPS groups, and two publishers that
 * push to those uids and groups in turn at a steady pace: one connected to the other broker nodes
 * only (its pushes flow on into the cluster during the fault), one connected to the broker node
 * that is killed (it reconnects and sends again what was not confirmed). Once the pushes flow,
 * the broker node hosting the holder's queue (its home for a classic queue, its leader for a
 * quorum queue, as rabbitmqctl tells) is killed with SIGKILL. The pushes go on until every uid
 * and group got a push sent after the kill (or 30 s), then a marker per client closes the run,
 * and what arrived is compared with what the publishers' API accepted; order is checked per
 * publisher.
 */
import type { GatewireNode } from '../../src/node.js';
import type { Publisher } from '../../src/publisher.js';
import { createPublisher } from '../../src/publisher.js';
import type { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js';
import { mergeValues, sleep, startNode, testConfig, uniqueName, wsUrl } from '../helpers/nodes.js';
import type { ConfigInput } from '../../src/config/load.js';
import { WsTestClient } from '../helpers/clients.js';
import { idHandler } from '../helpers/fixtures.js';
import type { PrivateRabbitCluster } from '../helpers/private-rabbit-cluster.js';

const CLIENTS = 12;
const GROUPS = 3;
/** ms between two pushes (of either publisher; about 200 pushes/s on this machine) */
const PUSH_EVERY_MS = 4;
/** ms of pushes before the kill */
const BEFORE_KILL_MS = 1500;
/** ms the run waits for every uid and group to be reachable again */
const RECOVERY_BOUND_MS = 30_000;

export interface FaultResult {
  queueType: string;
  /** pushes whose promise resolved (the API accepted them), before and after the kill */
  accepted: number;
  acceptedAfterKill: number;
  rejected: number;
  /** deliveries expected from accepted pushes (a group push counts once per member) and made */
  expected: number;
  delivered: number;
  /** "client:seq" of accepted pushes that never arrived */
  lost: string[];
  duplicates: string[];
  disorders: string[];
  /** ms from the kill until the last uid or group got a push sent after the kill; null: not within the bound */
  recoveryMs: number | null;
  /** mandatory messages the publishers' broker returned, by kind */
  unroutable: Record<string, number>;
  summary: string;
}

interface Push {
  seq: number;
  /** client indexes it is for */
  to: number[];
  target: string;
  sentAt: number;
  accepted: boolean | null;
}

/** The broker node hosting `queue`: the leader of a quorum queue, the home of a classic one. */
async function hostOf(cluster: PrivateRabbitCluster, queue: string): Promise<string> {
  // Plain output: the JSON formatter hides the node of a pid.
  const out = await cluster.live().ctl('list_queues', 'name', 'type', 'leader', 'pid', '--no-table-headers');
  const row = out
    .split('\n')
    .map((line) => line.split('\t'))
    .find((cells) => cells[0] === queue);
  if (row === undefined) throw new Error(`queue ${queue} not listed: ${out.slice(0, 500)}`);
  const [, type, leader, pid] = row;
  const node = type === 'quorum' ? leader : /<([^.>]+@[^.>]+)\./.exec(pid ?? '')?.[1];
  if (node === undefined || node === '') throw new Error(`no host for ${queue}: ${row.join(' ')}`);
  return node;
}

/** The broker node the connection named `name` (its client-provided connection_name) is on. */
async function nodeOfConnection(cluster: PrivateRabbitCluster, name: string): Promise<string | undefined> {
  // list_connections' `name` is the address pair; the given name is in client_properties.
  const out = await cluster.live().ctl('list_connections', 'pid', 'client_properties', '--no-table-headers');
  const line = out.split('\n').find((row) => row.includes(`"${name}"`));
  return /<([^.>]+@[^.>]+)\./.exec(line ?? '')?.[1];
}

export async function killUnderPushes(
  cluster: PrivateRabbitCluster,
  queueType: 'auto' | 'classic' | 'quorum',
): Promise<FaultResult> {
  const exchange = uniqueName('gwclu-kill');
  // Every URL, also of nodes killed by an earlier run: a node skips the dead ones.
  const base = (url: string): ConfigInput => ({
    bus: { kind: 'amqp', mode: 'direct', amqp: { url, exchange, queueType } },
    // The production default: a peer silent this long is dead (the tests' 1500 ms would be stricter).
    cluster: { nodeTimeout: 5000 },
  });
  let holder: GatewireNode | undefined;
  const publishers: Publisher[] = [];
  const clients: WsTestClient[] = [];
  try {
    holder = await startNode(mergeValues(base(cluster.url), { node: { id: 'holder' } }), { handler: idHandler() });
    const transport = holder.bus.transport as AmqpTransport;
    const host = await hostOf(cluster, transport.queue);
    const hostIndex = cluster.indexOf(host);
    if (hostIndex < 0) throw new Error(`queue host ${host} is not a cluster node`);
    const others = cluster.nodes.filter((node, i) => i !== hostIndex && node.running).map((node) => node.url);
    publishers.push(await createPublisher(testConfig(base(others.join(',')))));
    // Where a process starts in the list is drawn from its instance tag: start publishers until
    // one is on the broker node to be killed (each has an even chance with two URLs).
    for (let tries = 0; publishers.length < 2; tries++) {
      const candidate = await createPublisher(testConfig(base(`${cluster.nodes[hostIndex]!.url},${others[0]!}`)));
      const on = await nodeOfConnection(cluster, (candidate.bus.transport as AmqpTransport).connectionName);
      if (on === host) publishers.push(candidate);
      else await candidate.close();
      if (tries >= 20) throw new Error(`no publisher landed on ${host} in 20 tries`);
    }
    for (const publisher of publishers) await publisher.waitForGateways(1, 10_000);

    const bySeq = new Map<number, Push>();
    const firstAfterKill = new Map<string, number>();
    let killAt = 0;
    // The holder's clients: client i has uid u<i> and is in group g<i % GROUPS>.
    const arrivals: { seq: number; at: number }[][] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const client = await WsTestClient.connect(wsUrl(holder));
      clients.push(client);
      const id = (await client.nextText()).slice(3);
      const got: { seq: number; at: number }[] = [];
      arrivals.push(got);
      client.ws.on('message', (data: Buffer) => {
        const text = data.toString('utf8');
        if (!text.startsWith('f:')) return;
        const seq = Number(text.slice(2));
        const at = Date.now();
        got.push({ seq, at });
        // Reachable again: the first push sent after the kill that reached its target.
        const push = bySeq.get(seq);
        if (killAt > 0 && push !== undefined && push.sentAt >= killAt && !firstAfterKill.has(push.target))
          firstAfterKill.set(push.target, at);
      });
      await holder.api.bindUid(id, `u${i}`);
      await holder.api.joinGroup(id, `g${i % GROUPS}`);
    }
    const members = (group: number): number[] =>
      Array.from({ length: CLIENTS }, (_, i) => i).filter((i) => i % GROUPS === group);

    const pushes: Push[] = [];
    let stop = false;

    const flow = (async () => {
      for (let seq = 0; !stop; seq++) {
        // Uids and groups in turn: every third push is for a group (each uid and group in turn).
        const group = seq % 3 === 2;
        const index = group ? Math.floor(seq / 3) % GROUPS : (seq - Math.floor(seq / 3)) % CLIENTS;
        const push: Push = {
          seq,
          to: group ? members(index) : [index],
          target: group ? `g${index}` : `u${index}`,
          sentAt: Date.now(),
          accepted: null,
        };
        pushes.push(push);
        bySeq.set(seq, push);
        // The two publishers in turn: seq % 2 names the publisher (order is checked per publisher).
        const api = publishers[seq % 2]!.api;
        const sent = group ? api.sendToGroup(push.target, `f:${seq}`) : api.sendToUid(push.target, `f:${seq}`);
        sent.then(
          () => (push.accepted = true),
          () => (push.accepted = false),
        );
        await sleep(PUSH_EVERY_MS);
      }
    })();

    await sleep(BEFORE_KILL_MS);
    killAt = Date.now();
    await cluster.kill(hostIndex);

    const targets = [
      ...Array.from({ length: CLIENTS }, (_, i) => `u${i}`),
      ...Array.from({ length: GROUPS }, (_, g) => `g${g}`),
    ];
    const recoveredAt = (): number | null =>
      targets.every((target) => firstAfterKill.has(target))
        ? Math.max(...targets.map((target) => firstAfterKill.get(target)!))
        : null;
    let recovered: number | null = null;
    const deadline = killAt + RECOVERY_BOUND_MS;
    while (recovered === null && Date.now() < deadline) {
      await sleep(100);
      recovered = recoveredAt();
    }
    await sleep(500);
    stop = true;
    await flow;

    // Settle: every promise resolved or rejected (bounded), then a marker per client drains the queue.
    const settleBy = Date.now() + 30_000;
    while (pushes.some((p) => p.accepted === null) && Date.now() < settleBy) await sleep(50);
    await Promise.all(
      clients.map(async (client, i) => {
        const marker = `end-${i}`;
        await publishers[0]!.api.sendToUid(`u${i}`, marker);
        await Promise.race([client.waitForText(marker), sleep(30_000)]);
      }),
    );

    const lost: string[] = [];
    const duplicates: string[] = [];
    const disorders: string[] = [];
    let expected = 0;
    let delivered = 0;
    for (let i = 0; i < CLIENTS; i++) {
      const seen = new Set<number>();
      const previous = [-1, -1];
      for (const { seq } of arrivals[i]!) {
        if (seen.has(seq)) duplicates.push(`${i}:${seq}`);
        else if (seq < previous[seq % 2]!) disorders.push(`${i}:${seq} after ${previous[seq % 2]}`);
        seen.add(seq);
        previous[seq % 2] = Math.max(previous[seq % 2]!, seq);
        delivered += 1;
      }
      for (const push of pushes) {
        if (push.accepted !== true || !push.to.includes(i)) continue;
        expected += 1;
        if (!seen.has(push.seq)) lost.push(`${i}:${push.seq}@${push.sentAt - killAt}ms`);
      }
    }
    const accepted = pushes.filter((p) => p.accepted === true).length;
    const acceptedAfterKill = pushes.filter((p) => p.accepted === true && p.sentAt >= killAt).length;
    const rejected = pushes.filter((p) => p.accepted === false).length;
    const recoveryMs = recovered === null ? null : recovered - killAt;
    const unroutable: Record<string, number> = {};
    for (const publisher of publishers)
      for (const [kind, count] of Object.entries((publisher.bus.transport as AmqpTransport).amqpStats.unroutable))
        unroutable[kind] = (unroutable[kind] ?? 0) + count;
    const type = transport.queueType;
    const summary =
      `${type} queue on ${host}: ${pushes.length} pushes (${accepted} accepted, ${acceptedAfterKill} of them after the kill, ` +
      `${rejected} rejected), ${expected} deliveries expected, ${delivered} made, ${lost.length} lost, ` +
      `${duplicates.length} twice, ${disorders.length} out of order; recovery ${recoveryMs ?? `> ${RECOVERY_BOUND_MS}`} ms; ` +
      `unroutable returns at the publishers ${JSON.stringify(unroutable)}; ` +
      `the holder dropped ${holder.bus.stats.duplicatesDropped} as repeats or out of order` +
      (lost.length > 0 ? `; lost (client:seq@sent after kill): ${lost.slice(0, 12).join(' ')}` : '') +
      (recovered === null ? `; not reached again: ${targets.filter((t) => !firstAfterKill.has(t)).join(' ')}` : '');
    console.log(`[amqp cluster kill -9] ${summary}`);
    return {
      queueType: type,
      accepted,
      acceptedAfterKill,
      rejected,
      expected,
      delivered,
      lost,
      duplicates: duplicates.slice(0, 20),
      disorders: disorders.slice(0, 20),
      recoveryMs,
      unroutable,
      summary,
    };
  } finally {
    for (const client of clients) client.ws.terminate();
    for (const publisher of publishers) await publisher.close().catch(() => undefined);
    await holder?.stop().catch(() => undefined);
  }
}

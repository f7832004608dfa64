/**
 * `npm run capacity -- --measure`: the per-operation costs of the model, measured on this
 * machine, written to docs/bench/capacity-costs.json.
 *
 * For each broker (a private one, ./broker.ts) and each mode: three nodes, P (issues, holds no
 * client), A (holds K clients, each bound to its uid) and B (holds K/4 other clients).
 *   idle       2 s with nothing happening: node and broker CPU per second
 *   login      K clients log in to A (100 handshakes in flight): A's CPU, broker CPU and wall time per login
 *   join       K/4 clients log in to B, each also joining a group: what a joinGroup adds
 *   memory     A's RSS after full GCs, before and after the K clients
 *   uid push   P pushes to A's uids at a fixed rate (distinct 64-byte payloads): P's CPU per push
 *              (publishUs), A's (uidDeliverUs), B's (passUs: fanout only), the broker's per copy
 *              (a fanout push is copied to the 3 nodes, a direct one to A), bus bytes each way
 *   broadcast  P broadcasts at 10/s: A's CPU per client frame (frameUs)
 *   recovery   the broker restarts; P pushes to every uid of A every 250 ms until each client got
 *              one: from the broker back to the last client reached. Fanout (one queue, one channel)
 *              gives the reconnect time, direct the rebind rate on top.
 * And once, on the local bus: the push loop's own CPU per push (taken out of publishUs), and with a
 * 1 s heartbeat the CPU of a heartbeat per idle connection. Per-message figures are scaled by the
 * pushes each bus message carried, so they mean one push a message (the model's --merge 1).
 * Every CPU figure is CPU time (process.cpuUsage in the nodes, /proc or INFO cpu for brokers), the
 * node's idle CPU over the same window subtracted, so other work on the machine does not count.
 */
import os from 'node:os';
import type { ConfigInput } from '../../../src/config/load.js';
import { LoadPool } from '../load-client.js';
import type { ServerStats } from '../protocol.js';
import { machine } from '../report.js';
import { Broker } from './broker.js';
import { ServerProcess, cpuBetween as cpuUs, startGatewireServer as startNode } from '../server-process.js';
import type { BusKind, BusMode, Coefficients, ModeCosts, ModeId } from './model.js';

export const PAYLOAD = 64;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface MeasureOptions {
  quick: boolean;
  log: (line: string) => void;
}

/** Bus configuration values of a measurement node. */
export function busValues(kind: BusKind, mode: BusMode, url: string, name: string): ConfigInput['bus'] {
  return kind === 'amqp'
    ? { kind, mode, uidBuckets: 0, amqp: { url, exchange: name } }
    : { kind, mode, uidBuckets: 0, redis: { url, prefix: name } };
}

export function nodeValues(bus: ConfigInput['bus'], pingInterval = 0): ConfigInput {
  // fatal: a broker restart is part of the measurement, its reconnect errors are expected.
  return { gateway: { listen: ['ws://127.0.0.1:0/ws'], pingInterval }, log: { level: 'fatal' }, bus };
}

/** CPU µs of each node and the broker, and bus bytes, over one step. */
export class Window {
  private constructor(
    private readonly nodes: ServerProcess[],
    private readonly broker: Broker | null,
    private readonly before: ServerStats[],
    private readonly brokerBefore: number,
    private readonly bytesBefore: { up: number; down: number },
    private readonly started: number,
    private readonly runner: NodeJS.CpuUsage,
  ) {}

  static async open(nodes: ServerProcess[], broker: Broker | null): Promise<Window> {
    const before = await Promise.all(nodes.map((n) => n.stats()));
    const brokerBefore = broker === null ? 0 : await broker.cpuUs();
    const bytes = broker === null ? { up: 0, down: 0 } : broker.proxy.bytes();
    return new Window(nodes, broker, before, brokerBefore, bytes, Date.now(), process.cpuUsage());
  }

  async close(): Promise<{
    nodesUs: number[];
    brokerUs: number;
    up: number;
    down: number;
    seconds: number;
    /** CPU µs of this process (the load clients) */
    runnerUs: number;
    before: ServerStats[];
    after: ServerStats[];
  }> {
    const runner = process.cpuUsage(this.runner);
    const after = await Promise.all(this.nodes.map((n) => n.stats()));
    const brokerUs = this.broker === null ? 0 : (await this.broker.cpuUs()) - this.brokerBefore;
    const bytes = this.broker === null ? { up: 0, down: 0 } : this.broker.proxy.bytes();
    return {
      nodesUs: after.map((a, i) => cpuUs(this.before[i]!, a)),
      brokerUs,
      up: bytes.up - this.bytesBefore.up,
      down: bytes.down - this.bytesBefore.down,
      seconds: (Date.now() - this.started) / 1000,
      runnerUs: runner.user + runner.system,
      before: this.before,
      after,
    };
  }
}

/** Polls until every node reports `counts` bound clients. */
export async function waitBound(nodes: ServerProcess[], counts: number[], timeoutMs = 120000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await Promise.all(nodes.map((n) => n.stats()));
    if (stats.every((s, i) => s.bound >= counts[i]!)) return;
    if (Date.now() > deadline)
      throw new Error(
        `bindings not done in ${timeoutMs} ms: ${stats.map((s, i) => `${s.bound}/${counts[i]}`).join(', ')}`,
      );
    await sleep(20);
  }
}

/** Waits until the pools' message counts stop moving for `quietMs` (at most `timeoutMs`). */
export async function settle(pools: LoadPool[], quietMs = 500, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  for (;;) {
    const now = pools.reduce((s, p) => s + p.tally.messages, 0);
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
    if (Date.now() > deadline) return;
    await sleep(20);
  }
}

/**
 * After a broker restart: pushes to uids `${uidPrefix}0` … `${uidPrefix}${count - 1}` (the
 * clients of `pools`) from `issuer` every 250 ms until each connection counted a message after
 * `upAt`. Returns ms from upAt to the last one reached.
 */
export async function recovery(
  issuer: ServerProcess,
  pools: LoadPool[],
  uidPrefix: string,
  count: number,
  upAt: number,
  timeoutMs = 120000,
): Promise<number> {
  const connections = pools.flatMap((p) => p.connections);
  const snapshot = connections.map((c) => c.messages);
  const reachedAt = new Array<number>(connections.length).fill(0);
  let left = connections.length;
  let nextProbe = 0;
  while (left > 0) {
    const now = Date.now();
    if (now - upAt > timeoutMs)
      throw new Error(`${left} clients not reachable ${timeoutMs} ms after the broker was back`);
    connections.forEach((c, i) => {
      if (reachedAt[i] === 0 && c.messages > snapshot[i]!) {
        reachedAt[i] = now;
        left -= 1;
      }
    });
    if (left > 0 && now >= nextProbe) {
      nextProbe = now + 250;
      void issuer.burst({ kind: 'uid', prefix: uidPrefix, count }, count).catch(() => undefined);
    }
    await sleep(10);
  }
  return Math.max(...reachedAt) - upAt;
}

interface ModeRaw {
  costs: ModeCosts;
  raw: Record<string, number>;
  nodeIdleUsPerSec: number;
  rssBaseMb: number;
  recoveryMs: number;
}

async function measureMode(
  broker: Broker,
  mode: BusMode,
  runId: string,
  opts: MeasureOptions,
  fanoutReconnectMs: number | null,
  loopUsPerPush: number,
): Promise<ModeRaw> {
  const K = opts.quick ? 500 : 2000;
  const KB = K / 4;
  // 1,000/s from one 1 ms timer: one push per event-loop turn, so each push is its own bus message
  // (the costly case; pushes issued in one turn travel merged and cost less, see docs/scaling.md).
  const rate = 1000;
  const seconds = opts.quick ? 1 : 3;
  const id = `${broker.kind}-${mode}` as ModeId;
  const name = `gwcap-${runId}-${mode}`;
  const values = nodeValues(busValues(broker.kind, mode, broker.url, name));
  const nodeOptions = { values, groupsPerConn: 0, groups: 1, groupPrefix: 'g' };
  const brokerIdle0 = await Window.open([], broker);
  await sleep(2000);
  const brokerAlone = await brokerIdle0.close();
  const nodes = [
    await startNode(nodeOptions, `${id} P`),
    await startNode(nodeOptions, `${id} A`),
    // B's clients also join a group each (groups of about 10): its logins give the cost of a join.
    await startNode({ ...nodeOptions, groupsPerConn: 1, groups: KB / 10 }, `${id} B`),
  ];
  const [P, A, B] = nodes as [ServerProcess, ServerProcess, ServerProcess];
  const pools: LoadPool[] = [];
  try {
    await sleep(1000);
    const idleW = await Window.open(nodes, broker);
    await sleep(2000);
    const idle = await idleW.close();
    const nodeIdle = idle.nodesUs[0]! / idle.seconds;
    const brokerIdleNode = Math.max(0, idle.brokerUs - brokerAlone.brokerUs) / idle.seconds / 3;
    const idleOf = (w: { seconds: number }): number => nodeIdle * w.seconds;

    const base = await A.gc();
    const poolA = new LoadPool(A.port, 'ws');
    const poolB = new LoadPool(B.port, 'ws');
    pools.push(poolA, poolB);
    const loginW = await Window.open(nodes, broker);
    await poolA.open(K, { uidPrefix: 'ua', concurrency: 100 });
    await waitBound([A], [K]);
    const login = await loginW.close();
    const loginUs = (login.nodesUs[1]! - idleOf(login)) / K;
    const brokerBindUs = Math.max(0, login.brokerUs - idle.brokerUs * (login.seconds / idle.seconds)) / K;
    opts.log(`  ${id}: ${K} logins in ${(login.seconds * 1000).toFixed(0)} ms, node ${loginUs.toFixed(0)} µs/login`);
    const joinW = await Window.open(nodes, broker);
    await poolB.open(KB, { uidPrefix: 'ub', concurrency: 100 });
    await waitBound([B], [KB]);
    const joins = await joinW.close();
    // A login with one join, less a login: what a joinGroup adds (CPU, and wall time at the same concurrency).
    const joinUs = Math.max(0, (joins.nodesUs[2]! - idleOf(joins)) / KB - loginUs);
    const joinsPerSec = 1 / Math.max(joins.seconds / KB - login.seconds / K, 1e-5);
    opts.log(
      `  ${id}: ${KB} logins with a group join in ${(joins.seconds * 1000).toFixed(0)} ms: +${joinUs.toFixed(0)} µs a join`,
    );
    await sleep(500);
    const held = await A.gc();
    const rssPerConnKb = (held.rss - base.rss) / K / 1024;

    // uid pushes: warm-up, then measured.
    const target = { kind: 'uid', prefix: 'ua', count: K } as const;
    await P.paced(target, rate, 500, PAYLOAD);
    await settle(pools);
    const n = rate * seconds;
    const pushW = await Window.open(nodes, broker);
    const baseA = poolA.tally.messages;
    const sent = await P.paced(target, rate, seconds * 1000, PAYLOAD);
    const arrived = await poolA.tally.waitFor(baseA + sent.issued, 30000);
    const push = await pushW.close();
    if (!arrived) throw new Error(`${id}: ${poolA.tally.messages - baseA} of ${sent.issued} pushes arrived`);
    const copies = mode === 'fanout' ? 3 : 1;
    // P's CPU less its push loop's own cost (measured on the local bus), and in fanout mode less
    // the copy of each push it receives itself (counted as a pass, as on every other node).
    const passOf = mode === 'fanout' ? Math.max(0, push.nodesUs[2]! - idleOf(push)) / n : 0;
    const publishUs = Math.max(0, (push.nodesUs[0]! - idleOf(push)) / n - loopUsPerPush - passOf);
    const uidDeliverUs = (push.nodesUs[1]! - idleOf(push)) / n;
    const passUs = passOf;
    const brokerCopyUs = Math.max(0, push.brokerUs - idle.brokerUs * (push.seconds / idle.seconds)) / (n * copies);
    // Push commands per bus message P published: 1 when each push went alone; more when the loop
    // fell behind and pushes of one turn travelled merged (fanout). The per-message coefficients
    // are scaled by it below, so they mean "a message carrying one push" (the model's --merge 1).
    const merged =
      (push.after[0]!.bus!.commandsPublished - push.before[0]!.bus!.commandsPublished) /
      Math.max(1, push.after[0]!.bus!.messagesPublished - push.before[0]!.bus!.messagesPublished);
    const M = Math.max(1, merged);
    opts.log(
      `  ${id}: ${n} uid pushes at ${rate}/s: P ${publishUs.toFixed(2)}, A ${uidDeliverUs.toFixed(2)}, B ${passUs.toFixed(2)} µs/push; broker ${brokerCopyUs.toFixed(2)} µs/copy; bus ${(push.up / n).toFixed(0)} B up, ${(push.down / n / copies).toFixed(0)} B down a copy; ${M.toFixed(2)} pushes a message`,
    );

    // broadcasts: every client of A and B gets each one.
    // 10 broadcasts/s × 2,000 clients keep A well under a core (about 10 µs a frame here).
    const bRate = opts.quick ? 50 : 10;
    await P.paced({ kind: 'all' }, bRate, 500, PAYLOAD);
    await settle(pools);
    const bcW = await Window.open(nodes, broker);
    const baseAll = poolA.tally.messages;
    const bSent = await P.paced({ kind: 'all' }, bRate, seconds * 1000, PAYLOAD);
    const bArrived = await poolA.tally.waitFor(baseAll + bSent.issued * K, 30000);
    const bc = await bcW.close();
    if (!bArrived) throw new Error(`${id}: broadcasts did not all arrive`);
    const frameUs = (bc.nodesUs[1]! - idleOf(bc)) / (bSent.issued * K);
    opts.log(`  ${id}: ${bSent.issued} broadcasts × ${K} clients: A ${frameUs.toFixed(3)} µs/frame`);
    await settle(pools);

    // recovery after a broker restart
    const upAt = await broker.restart();
    const recoveryMs = await recovery(P, [poolA], 'ua', K, upAt);
    opts.log(`  ${id}: broker restarted; all ${K} uids reachable ${recoveryMs} ms after it was back`);
    const reconnectMs = mode === 'fanout' ? recoveryMs : (fanoutReconnectMs ?? recoveryMs);
    const rebindsPerSec = mode === 'fanout' ? 0 : K / (Math.max(recoveryMs - reconnectMs, 50) / 1000);

    const costs: ModeCosts = {
      publishUs: publishUs * M,
      passUs: passUs * M,
      uidDeliverUs: (uidDeliverUs - frameUs) * M + frameUs,
      frameUs,
      loginUs,
      joinUs,
      joinsPerSecNode: joinsPerSec,
      brokerCopyUs: brokerCopyUs * M,
      brokerBindUs: mode === 'fanout' ? 0 : brokerBindUs,
      brokerIdleNodeUsPerSec: brokerIdleNode,
      loginsPerSecNode: K / login.seconds,
      reconnectMs,
      rebindsPerSec,
      busInBytesPerPush: (push.up / n - PAYLOAD) * M,
      busOutBytesPerCopy: (push.down / (n * copies) - PAYLOAD) * M,
      rssPerConnKb,
      clientLoginUs: login.runnerUs / K,
    };
    return {
      costs,
      nodeIdleUsPerSec: nodeIdle,
      rssBaseMb: base.rss / 2 ** 20,
      recoveryMs,
      raw: {
        clients: K,
        otherClients: KB,
        pushRate: rate,
        pushes: n,
        pushCpuUsP: push.nodesUs[0]!,
        pushCpuUsA: push.nodesUs[1]!,
        pushCpuUsB: push.nodesUs[2]!,
        pushBrokerUs: push.brokerUs,
        pushWindowS: push.seconds,
        pushBusBytesUp: push.up,
        pushBusBytesDown: push.down,
        pushCommandsPerMessage: merged,
        pushPublishUsPerPush: publishUs,
        pushPassUsPerPush: passUs,
        pushDeliverUsPerPush: uidDeliverUs,
        pushBrokerUsPerCopy: brokerCopyUs,
        broadcasts: bSent.issued,
        broadcastCpuUsA: bc.nodesUs[1]!,
        broadcastBrokerUs: bc.brokerUs,
        loginMs: login.seconds * 1000,
        loginRunnerUs: login.runnerUs,
        joinLoginMs: joins.seconds * 1000,
        joinLoginCpuUsB: joins.nodesUs[2]!,
        joinLoginBrokerUs: joins.brokerUs,
        broadcastRunnerUs: bc.runnerUs,
        pushRunnerUs: push.runnerUs,
        loginCpuUsA: login.nodesUs[1]!,
        loginBrokerUs: login.brokerUs,
        loginBusBytesUp: login.up,
        idleNodeUsPerSec: nodeIdle,
        idleBrokerUsPerSec: idle.brokerUs / idle.seconds,
        brokerAloneUsPerSec: brokerAlone.brokerUs / brokerAlone.seconds,
        recoveryMs,
      },
    };
  } finally {
    for (const p of pools) p.close();
    await Promise.all(nodes.map((n) => n.stop().catch(() => n.child.kill('SIGKILL'))));
  }
}

/** The heartbeat cost: a local-bus node, 1 s heartbeat, idle connections. */
async function measurePing(
  opts: MeasureOptions,
): Promise<{ pingUs: number; idleUsPerSec: number; loopUsPerPush: number; raw: Record<string, number> }> {
  const conns = opts.quick ? 1000 : 3000;
  const node = await startNode(
    { values: nodeValues({ kind: 'local' }, 1), groupsPerConn: 0, groups: 1, groupPrefix: 'g' },
    'heartbeat node',
  );
  const pool = new LoadPool(node.port, 'ws');
  try {
    await sleep(500);
    const idleW = await Window.open([node], null);
    await sleep(2000);
    const idle = await idleW.close();
    const idleUsPerSec = idle.nodesUs[0]! / idle.seconds;
    // The push loop's own cost (1 ms timer, payloads), to take out of the issuer's CPU: pushes at
    // 1,000/s for 3 s to a uid nobody holds, on the local bus (where such a push costs nearly nothing).
    const loopW = await Window.open([node], null);
    const loop = await node.paced({ kind: 'uid', prefix: 'nobody', count: 1 }, 1000, 3000, PAYLOAD);
    const loopR = await loopW.close();
    const loopUsPerPush = Math.max(0, loopR.nodesUs[0]! - idleUsPerSec * loopR.seconds) / loop.issued;
    opts.log(`  push loop on the local bus: ${loopUsPerPush.toFixed(1)} µs per push (taken out of publishUs)`);
    await pool.open(conns, { concurrency: 100 });
    await sleep(1500);
    const w = await Window.open([node], null);
    await sleep(3000);
    const r = await w.close();
    const pingUs = Math.max(0, r.nodesUs[0]! - idleUsPerSec * r.seconds) / (conns * r.seconds);
    opts.log(`  heartbeat: ${conns} idle connections, 1 s period: ${pingUs.toFixed(2)} µs per ping`);
    return {
      pingUs,
      idleUsPerSec,
      loopUsPerPush,
      raw: { conns, windowS: r.seconds, cpuUs: r.nodesUs[0]!, idleUsPerSec, loopUsPerPush },
    };
  } finally {
    pool.close();
    await node.stop().catch(() => node.child.kill('SIGKILL'));
  }
}

export async function measureAll(opts: MeasureOptions, command: string): Promise<Coefficients> {
  const runId = `${Date.now().toString(36)}${process.pid.toString(36)}`;
  const loadStart = os.loadavg()[0]!;
  const date = new Date().toISOString();
  opts.log(`measuring on ${os.cpus().length} cores, load ${loadStart.toFixed(2)}`);
  const ping = await measurePing(opts);
  const modes = {} as Record<ModeId, ModeCosts>;
  const raw: Record<string, unknown> = { heartbeat: ping.raw };
  const idles: number[] = [ping.idleUsPerSec];
  let rssBaseMb = 0;
  for (const kind of ['amqp', 'redis'] as const) {
    opts.log(`private ${kind === 'amqp' ? 'RabbitMQ' : 'Redis'}: starting`);
    const broker = await Broker.start(kind);
    try {
      let reconnect: number | null = null;
      for (const mode of ['fanout', 'direct'] as const) {
        const m = await measureMode(broker, mode, runId, opts, reconnect, ping.loopUsPerPush);
        if (mode === 'fanout') reconnect = m.recoveryMs;
        modes[`${kind}-${mode}`] = m.costs;
        raw[`${kind}-${mode}`] = { ...m.raw, loadAverage: os.loadavg()[0] };
        idles.push(m.nodeIdleUsPerSec);
        rssBaseMb = Math.max(rssBaseMb, m.rssBaseMb);
      }
    } finally {
      await broker.stop();
    }
  }
  idles.sort((a, b) => a - b);
  return {
    machine: machine(),
    date,
    command,
    load: { start: loadStart, end: os.loadavg()[0]! },
    payloadBytes: PAYLOAD,
    gateway: {
      pingUs: ping.pingUs,
      nodeIdleUsPerSec: idles[Math.floor(idles.length / 2)]!,
      rssBaseMb,
      loopUsPerPush: ping.loopUsPerPush,
    },
    modes,
    raw,
  };
}

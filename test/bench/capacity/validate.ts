/**
 * `npm run capacity -- --validate`: a measured 3-node run in each mode against the model's
 * prediction for the same parameters.
 *
 * Three nodes on a private broker (./broker.ts), each holding C/3 clients (uid u<n>, each in one
 * group of about 10 members picked by a hash, so groups spread over the nodes). All log in at
 * once; then each node issues a third of the push mix (sendToUid, sendToGroup, sendToAll paced
 * loops, distinct payloads) for a few seconds; then the broker restarts and every uid is probed
 * until reachable. Measured: each node's CPU, the broker's, bus bytes each way, client frames,
 * each node's RSS, login time, recovery time. Written to docs/bench/capacity-validation.json.
 */
import os from 'node:os';
import { LoadPool } from '../load-client.js';
import { machine } from '../report.js';
import { Broker } from './broker.js';
import { ServerProcess, startGatewireServer as startNode } from '../server-process.js';
import { PAYLOAD, Window, busValues, nodeValues, recovery, settle, waitBound } from './measure.js';
import {
  DEFAULT_PARAMS,
  modeId,
  predict,
  wsHeaderBytes,
  type Coefficients,
  type ModeId,
  type Params,
} from './model.js';
import { bytesPerSec, duration, modeLabel, num } from './format.js';

export interface Comparison {
  metric: string;
  /** with --merge 1 (each push its own bus message) */
  predicted: number;
  /** with --merge set to the commands per message this run showed */
  predictedMerged: number;
  measured: number;
  /** (predicted − measured) / measured, % */
  errorPct: number;
  errorMergedPct: number;
  unit: 'cores' | 'B/s' | 'frames/s' | 'MB' | 'ms';
}

export interface ModeValidation {
  mode: ModeId;
  comparisons: Comparison[];
  raw: Record<string, number>;
}

export function validationParams(quick: boolean): Params {
  return {
    ...DEFAULT_PARAMS,
    nodes: 3,
    connections: quick ? 600 : 1200,
    pushRate: 600,
    mix: { uid: 0.75, group: 0.2, all: 0.05 },
    groupsPerConn: 1,
    groupSize: 10,
    connsPerUid: 1,
    payload: PAYLOAD,
    loginRate: null,
    pingInterval: 25,
    // Three nodes, the broker and the load clients on this machine's cores.
    sharedCores: os.cpus().length,
    clientsShareCores: true,
  };
}

function compare(
  metric: string,
  predicted: number,
  predictedMerged: number,
  measured: number,
  unit: Comparison['unit'],
): Comparison {
  const error = (p: number): number => (measured === 0 ? NaN : ((p - measured) / measured) * 100);
  return {
    metric,
    predicted,
    predictedMerged,
    measured,
    unit,
    errorPct: error(predicted),
    errorMergedPct: error(predictedMerged),
  };
}

async function validateMode(
  broker: Broker,
  mode: 'fanout' | 'direct',
  params: Params,
  coeff: Coefficients,
  runId: string,
  seconds: number,
  loopCores: number,
  log: (line: string) => void,
): Promise<ModeValidation> {
  const id = modeId(broker.kind, mode);
  const N = params.nodes;
  const C = params.connections;
  const perNode = C / N;
  const groups = Math.round((C * params.groupsPerConn) / params.groupSize);
  const values = nodeValues(busValues(broker.kind, mode, broker.url, `gwcapv-${runId}-${mode}`), params.pingInterval);
  const options = { values, groupsPerConn: params.groupsPerConn, groups, groupPrefix: 'g' };
  const nodes: ServerProcess[] = [];
  for (let i = 0; i < N; i++) nodes.push(await startNode(options, `${id} node ${i + 1}`));
  const pools = nodes.map((n) => new LoadPool(n.port, 'ws'));
  try {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const base = await Promise.all(nodes.map((n) => n.gc()));
    const loginStart = Date.now();
    await Promise.all(
      pools.map((p, i) => p.open(perNode, { uidPrefix: 'u', uidOffset: i * perNode, concurrency: 100 })),
    );
    await waitBound(
      nodes,
      nodes.map(() => perNode),
    );
    const loginMs = Date.now() - loginStart;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const held = await Promise.all(nodes.map((n) => n.gc()));
    const rssMb = held.map((h) => h.rss / 2 ** 20);
    log(
      `  ${id}: ${C} logins in ${loginMs} ms; RSS ${rssMb.map((r) => num(r)).join(' / ')} MB (from ${num(base[0]!.rss / 2 ** 20)})`,
    );

    const run = (ms: number): Promise<unknown> =>
      Promise.all(nodes.map((n) => loops(n, params, groups, ms, 'u', '@g')));
    await run(500);
    await settle(pools);
    const frames0 = pools.reduce((s, p) => s + p.tally.messages, 0);
    const w = await Window.open(nodes, broker);
    await run(seconds * 1000);
    await settle(pools, 300);
    const r = await w.close();
    const frames = pools.reduce((s, p) => s + p.tally.messages, 0) - frames0;
    // Rates over the push time (the window adds the drain, a few hundred ms, whose work is the pushes').
    const perSec = (v: number): number => v / seconds;
    // Each node's CPU includes its push loops' own cost, which is not gatewire's: it is measured
    // alone on the local bus (pushLoops) and added to the prediction.
    const rawCores = r.nodesUs.map((us) => perSec(us) / 1e6);
    const nodeCores = rawCores;
    log(
      `  ${id}: nodes ${nodeCores.map((c) => num(c, 3)).join(' / ')} cores, broker ${num(perSec(r.brokerUs) / 1e6, 3)} cores, ${num(perSec(frames))} frames/s`,
    );

    // How many push commands each bus message carried (pushes of one turn travel merged).
    const published = (key: 'commandsPublished' | 'messagesPublished'): number =>
      r.after.reduce((sum, a, i) => sum + a.bus![key] - r.before[i]!.bus![key], 0);
    const commandsPerMessage = published('commandsPublished') / Math.max(1, published('messagesPublished'));
    log(`  ${id}: ${num(commandsPerMessage, 2)} commands per bus message published`);

    const upAt = await broker.restart();
    const recoveryMs = await recovery(nodes[0]!, pools, 'u', C, upAt);
    log(`  ${id}: broker restarted; every uid reachable ${recoveryMs} ms after it was back`);

    const p = predict(coeff, params, id);
    // The same with the merging this run showed (commands per bus message), as --merge would give.
    const pm = predict(coeff, { ...params, merge: Math.max(1, commandsPerMessage) }, id);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const clientBytes = (perSec(frames) * (PAYLOAD + wsHeaderBytes(PAYLOAD))) / N;
    const comparisons = [
      compare(
        `CPU of each node (mean; predicted + ${num(loopCores, 3)} cores of push loops)`,
        p.nodeCores + loopCores,
        pm.nodeCores + loopCores,
        mean(nodeCores),
        'cores',
      ),
      compare('CPU of the broker', p.brokerCores, pm.brokerCores, perSec(r.brokerUs) / 1e6, 'cores'),
      compare('bus, nodes → broker', p.busInBytesPerSec, pm.busInBytesPerSec, perSec(r.up), 'B/s'),
      compare('bus, broker → nodes', p.busOutBytesPerSec, pm.busOutBytesPerSec, perSec(r.down), 'B/s'),
      compare('client frames', p.framesPerSec, pm.framesPerSec, perSec(frames), 'frames/s'),
      compare('client bandwidth, each node', p.clientBytesPerSec / N, pm.clientBytesPerSec / N, clientBytes, 'B/s'),
      compare('RSS of each node (mean)', p.nodeRssMb, pm.nodeRssMb, mean(rssMb), 'MB'),
      compare('log in all connections', p.loginMs, pm.loginMs, loginMs, 'ms'),
      compare('recovery after a broker restart', p.recoveryMs, pm.recoveryMs, recoveryMs, 'ms'),
    ];
    return {
      mode: id,
      comparisons,
      raw: {
        seconds,
        windowS: r.seconds,
        frames,
        brokerUs: r.brokerUs,
        busUp: r.up,
        busDown: r.down,
        loginMs,
        recoveryMs,
        ...Object.fromEntries(r.nodesUs.map((us, i) => [`node${i + 1}CpuUs`, us])),
        loopCores,
        commandsPerMessage,
        rawNodeCoresMean: mean(rawCores),
        ...Object.fromEntries(rssMb.map((mb, i) => [`node${i + 1}RssMb`, mb])),
        loadAverage: os.loadavg()[0]!,
      },
    };
  } finally {
    for (const p of pools) p.close();
    await Promise.all(nodes.map((n) => n.stop().catch(() => n.child.kill('SIGKILL'))));
  }
}

/** The paced loops of one node: its third of each push kind, at once. */
function loops(
  node: ServerProcess,
  params: Params,
  groups: number,
  ms: number,
  uidPrefix: string,
  groupPrefix: string,
) {
  const N = params.nodes;
  const rates = {
    uid: (params.pushRate * params.mix.uid) / N,
    group: (params.pushRate * params.mix.group) / N,
    all: (params.pushRate * params.mix.all) / N,
  };
  return Promise.all([
    rates.uid > 0
      ? node.paced({ kind: 'uid', prefix: uidPrefix, count: params.connections }, rates.uid, ms, PAYLOAD)
      : null,
    rates.group > 0 ? node.paced({ kind: 'uid', prefix: groupPrefix, count: groups }, rates.group, ms, PAYLOAD) : null,
    rates.all > 0 ? node.paced({ kind: 'all' }, rates.all, ms, PAYLOAD) : null,
  ]);
}

/**
 * The CPU (cores) of one node's push loops themselves (1 ms timers, payloads): the same loops on a
 * local-bus node with no clients, where a push to nobody costs nearly nothing.
 */
async function pushLoops(params: Params, seconds: number): Promise<number> {
  const node = await startNode(
    { values: nodeValues({ kind: 'local' }), groupsPerConn: 0, groups: 1, groupPrefix: 'g' },
    'push loops alone',
  );
  try {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idleW = await Window.open([node], null);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idle = await idleW.close();
    const w = await Window.open([node], null);
    await loops(node, params, 10, seconds * 1000, 'nobody', '@nogroup');
    const r = await w.close();
    return Math.max(0, r.nodesUs[0]! / r.seconds - idle.nodesUs[0]! / idle.seconds) / 1e6;
  } finally {
    await node.stop().catch(() => node.child.kill('SIGKILL'));
  }
}

export async function validateAll(
  coeff: Coefficients,
  quick: boolean,
  log: (line: string) => void,
): Promise<{ params: Params; results: ModeValidation[]; info: Record<string, unknown> }> {
  const params = validationParams(quick);
  const seconds = quick ? 2 : 3;
  const runId = `${Date.now().toString(36)}${process.pid.toString(36)}`;
  const started = new Date().toISOString();
  const loadStart = os.loadavg()[0]!;
  const loopCores = await pushLoops(params, seconds);
  log(`push loops of one node alone, on the local bus: ${num(loopCores, 3)} cores (added to each node's prediction)`);
  const results: ModeValidation[] = [];
  for (const kind of ['amqp', 'redis'] as const) {
    log(`private ${kind === 'amqp' ? 'RabbitMQ' : 'Redis'}: starting`);
    const broker = await Broker.start(kind);
    try {
      for (const mode of ['fanout', 'direct'] as const)
        results.push(await validateMode(broker, mode, params, coeff, runId, seconds, loopCores, log));
    } finally {
      await broker.stop();
    }
  }
  return {
    params,
    results,
    info: {
      loopCores,
      date: started,
      machine: machine(),
      load: { start: loadStart, end: os.loadavg()[0]! },
    },
  };
}

function cell(value: number, unit: Comparison['unit']): string {
  if (unit === 'cores') return `${num(value, 3)} cores`;
  if (unit === 'B/s') return bytesPerSec(value);
  if (unit === 'frames/s') return `${num(value)}/s`;
  if (unit === 'MB') return `${num(value)} MB`;
  return duration(value);
}

function pct(value: number): string {
  return Number.isFinite(value) ? `${value >= 0 ? '+' : ''}${num(value)} %` : '—';
}

export function validationTable(results: ModeValidation[]): string {
  const lines = [
    '| mode | figure | predicted | error | predicted, merge as measured | error | measured |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const merge = `${num(r.raw.commandsPerMessage ?? 1, 2)}`;
    for (const c of r.comparisons)
      lines.push(
        `| ${modeLabel(r.mode)} | ${c.metric} | ${cell(c.predicted, c.unit)} | ${pct(c.errorPct)} | ${cell(c.predictedMerged, c.unit)} (merge ${merge}) | ${pct(c.errorMergedPct)} | ${cell(c.measured, c.unit)} |`,
      );
  }
  return lines.join('\n');
}

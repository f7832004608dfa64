/**
 * The capacity model (test/bench/capacity/model.ts, docs/scaling.md): the prediction arithmetic
 * on hand-made coefficients, and the command line, including the errors bad arguments give.
 * Pure: no broker, no process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_PARAMS,
  MODE_IDS,
  medianCosts,
  modesOf,
  parseArgs,
  parseMix,
  predict,
  reach,
  wsHeaderBytes,
  type Coefficients,
  type ModeCosts,
  type Params,
} from '../bench/capacity/model.js';
import { predictionTable } from '../bench/capacity/format.js';

/** Round figures, so every expected value below can be worked out by hand. */
const COSTS: ModeCosts = {
  publishUs: 10,
  passUs: 2,
  uidDeliverUs: 20,
  frameUs: 5,
  loginUs: 100,
  joinUs: 50,
  joinsPerSecNode: 2000,
  brokerCopyUs: 4,
  brokerBindUs: 50,
  brokerIdleNodeUsPerSec: 1000,
  loginsPerSecNode: 1000,
  reconnectMs: 1000,
  rebindsPerSec: 2000,
  busInBytesPerPush: 100,
  busOutBytesPerCopy: 50,
  rssPerConnKb: 10,
  clientLoginUs: 100,
};

const COEFF: Coefficients = {
  machine: { cpus: 2, cpuModel: 'test' },
  date: '2026-01-01T00:00:00.000Z',
  command: 'test',
  load: { start: 0, end: 0 },
  payloadBytes: 64,
  gateway: { pingUs: 25, nodeIdleUsPerSec: 5000, rssBaseMb: 80 },
  modes: {
    'amqp-fanout': COSTS,
    'amqp-direct': COSTS,
    'redis-fanout': COSTS,
    'redis-direct': COSTS,
  },
};

function params(over: Partial<Params> = {}): Params {
  return { ...DEFAULT_PARAMS, mix: { ...DEFAULT_PARAMS.mix }, ...over };
}

const close = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`);

test('reach: the share of nodes holding at least one of m members', () => {
  assert.equal(reach(0, 10), 0);
  assert.equal(reach(5, 1), 1);
  close(reach(1, 4), 0.25, 'one member on 4 nodes');
  close(reach(2, 2), 0.75, 'two members on 2 nodes');
  assert.ok(reach(1000, 20) > 0.9999);
});

test('wsHeaderBytes follows the WebSocket length encoding', () => {
  assert.equal(wsHeaderBytes(64), 2);
  assert.equal(wsHeaderBytes(125), 2);
  assert.equal(wsHeaderBytes(126), 4);
  assert.equal(wsHeaderBytes(65535), 4);
  assert.equal(wsHeaderBytes(65536), 10);
});

test('uid pushes in direct mode: one copy per push, to the node holding the uid', () => {
  // 4 nodes, 4,000 connections, 1,000 uid pushes/s, one connection per uid, no heartbeat.
  const p = predict(
    COEFF,
    params({ nodes: 4, connections: 4000, pushRate: 1000, mix: { uid: 1, group: 0, all: 0 }, pingInterval: 0 }),
    'amqp-direct',
  );
  // per node: publish 250/s × 10 µs; receive 1,000 × ¼ × (20 − 5); frames 1,000 × ¼ × 5; idle 5,000 µs/s
  close(p.nodeParts.publish, 0.0025, 'publish');
  close(p.nodeParts.receive, 0.00375, 'receive');
  close(p.nodeParts.frames, 0.00125, 'frames');
  close(p.nodeParts.heartbeats, 0, 'heartbeats');
  close(p.nodeCores, 0.0025 + 0.00375 + 0.00125 + 0.005, 'node');
  // broker: 1,000 copies/s × 4 µs + 4 nodes × 1,000 µs/s
  close(p.brokerCores, 0.008, 'broker');
  close(p.busInBytesPerSec, 1000 * (100 + 64), 'bus in');
  close(p.busOutBytesPerSec, 1000 * (50 + 64), 'bus out');
  close(p.framesPerSec, 1000, 'frames/s');
  close(p.clientBytesPerSec, 1000 * 66, 'client bytes');
  // 1,000 connections a node × 10 KB on 80 MB
  close(p.nodeRssMb, 80 + 10000 / 1024, 'rss');
  // keys: 4,000 uids × ¼ + 4,000/50 = 80 groups × (1 − ¾^50)
  close(p.keysPerNode, 1000 + 80 * reach(50, 4), 'keys');
});

test('fanout mode: every node gets a copy of every push and drops what it holds no target of', () => {
  const p = predict(
    COEFF,
    params({ nodes: 4, connections: 4000, pushRate: 1000, mix: { uid: 1, group: 0, all: 0 }, pingInterval: 0 }),
    'redis-fanout',
  );
  // receive: 1,000 × ¼ × 15 + 1,000 × ¾ × 2 (pass)
  close(p.nodeParts.receive, (3750 + 1500) / 1e6, 'receive');
  close(p.brokerCores, (4000 * 4 + 4000) / 1e6, 'broker: 4 copies a push');
  close(p.busOutBytesPerSec, 4000 * 114, 'bus out');
  assert.equal(p.keysPerNode, 0);
  // fanout binds nothing per uid: recovery is the reconnect alone
  assert.equal(p.recoveryMs, 1000);
});

test('merge: the per-message costs are shared by the pushes of one message, frames are not', () => {
  const base = { nodes: 4, connections: 4000, pushRate: 1000, mix: { uid: 1, group: 0, all: 0 }, pingInterval: 0 };
  const one = predict(COEFF, params(base), 'amqp-direct');
  const four = predict(COEFF, params({ ...base, merge: 4 }), 'amqp-direct');
  close(four.nodeParts.publish, one.nodeParts.publish / 4, 'publish');
  close(four.nodeParts.receive, one.nodeParts.receive / 4, 'receive');
  close(four.nodeParts.frames, one.nodeParts.frames, 'frames');
  close(four.brokerCores, (1000 * 4) / 4 / 1e6 + 0.004, 'broker');
  close(four.busInBytesPerSec, 1000 * (25 + 64), 'bus in');
  assert.throws(() => parseArgs(['--merge', '0.5']), /--merge must be at least 1/);
});

test('buckets bound the keys; pushes then reach every node of the bucket, which drops the others', () => {
  const base = {
    nodes: 10,
    connections: 100000,
    pushRate: 1000,
    groupsPerConn: 0,
    mix: { uid: 1, group: 0, all: 0 },
    pingInterval: 0,
  };
  const exact = predict(COEFF, params(base), 'amqp-direct');
  const bucketed = predict(COEFF, params({ ...base, uidBuckets: 64 }), 'amqp-direct');
  // 64 buckets of 1,562 connections: every node binds every bucket
  close(bucketed.keysPerNode, 64 * reach(100000 / 64, 10), 'keys');
  assert.ok(bucketed.keysPerNode <= 64);
  close(exact.keysPerNode, 10000, 'one key per uid');
  // every uid push is copied to the 10 nodes; 9 of them drop it at the fanout pass cost (2 µs)
  close(bucketed.brokerCores, (1000 * 10 * 4 + 10 * 1000) / 1e6, 'broker');
  close(bucketed.nodeParts.receive - exact.nodeParts.receive, (1000 * 0.9 * 2) / 1e6, 'passes');
  assert.ok(bucketed.recoveryMs < exact.recoveryMs);
  assert.throws(() => parseArgs(['--uid-buckets', '1.5']), /--uid-buckets must be a positive integer/);
});

test('broadcasts and groups: frames grow with members, heartbeats with connections', () => {
  const p = predict(
    COEFF,
    params({
      nodes: 2,
      connections: 1000,
      pushRate: 10,
      mix: { uid: 0, group: 0.5, all: 0.5 },
      groupSize: 10,
      pingInterval: 10,
    }),
    'amqp-direct',
  );
  // frames/s: 5 group pushes × 10 + 5 broadcasts × 1,000
  close(p.framesPerSec, 5050, 'frames');
  // per node frames: (5 × 10/2 + 5 × 1,000/2) × 5 µs
  close(p.nodeParts.frames, ((25 + 2500) * 5) / 1e6, 'frame CPU');
  // heartbeats: 500 connections a node / 10 s × 25 µs
  close(p.nodeParts.heartbeats, (50 * 25) / 1e6, 'heartbeats');
  // copies: groups reach 2 × (1 − ½^10) nodes, broadcasts both
  close(p.busOutBytesPerSec, (5 * 2 * reach(10, 2) + 5 * 2) * 114, 'bus out');
});

test('login: the slowest of the offered rate, node CPU, node logins, broker binds and broker CPU', () => {
  const base = { nodes: 10, connections: 100000, groupsPerConn: 0, mix: { uid: 1, group: 0, all: 0 } };
  // direct: 10 nodes × 10,000 keys through the broker at 1,000 binds/s = 100 s (node CPU 1 s,
  // each node's logins 10 s, broker CPU 100,000 × 50 µs = 5 s)
  const direct = predict(COEFF, params(base), 'amqp-direct');
  assert.equal(direct.loginBound, 'broker bind rate');
  close(direct.loginMs, 100000, 'login');
  close(direct.loginNodeCores, 0.01, 'node CPU while logging in');
  // recovery: reconnect + 100,000 keys at 2,000 rebinds/s
  close(direct.recoveryMs, 1000 + 50000, 'recovery');
  // Redis subscribes on each node's connection: each node's 10,000 logins at 1,000/s, and
  // recovery replays each node's 10,000 keys at 2,000/s in parallel
  const redis = predict(COEFF, params(base), 'redis-direct');
  assert.equal(redis.loginBound, 'node login rate');
  close(redis.loginMs, 10000, 'redis login');
  close(redis.recoveryMs, 1000 + 5000, 'redis recovery');
  // fanout binds nothing at the broker: each node's 10,000 logins at 1,000/s
  const fanout = predict(COEFF, params(base), 'amqp-fanout');
  assert.equal(fanout.loginBound, 'node login rate');
  close(fanout.loginMs, 10000, 'fanout login');
  // a group join a login: + 10,000 joins at 2,000/s a node
  const grouped = predict(COEFF, params({ ...base, groupsPerConn: 1 }), 'amqp-fanout');
  close(grouped.loginMs, 15000, 'fanout login with joins');
  // an offered rate below that bounds it instead
  const slow = predict(COEFF, params({ ...base, loginRate: 500 }), 'amqp-direct');
  assert.equal(slow.loginBound, 'offered rate');
  close(slow.loginMs, 200000, 'offered');
  // a costlier broker bounds it by its CPU, and recovery with it
  const costly = structuredClone(COEFF);
  costly.modes['amqp-direct'] = { ...COSTS, brokerBindUs: 4000 };
  const broker = predict(costly, params(base), 'amqp-direct');
  assert.equal(broker.loginBound, 'broker CPU');
  close(broker.loginMs, 400000, 'broker');
  close(broker.recoveryMs, 1000 + 400000, 'recovery');
  assert.ok(broker.warnings.some((w) => w.includes('bus.uidBuckets')));
  // on 1 shared core, clients included: 100,000 × (100 + 100 µs)
  const shared = predict(COEFF, params({ ...base, sharedCores: 1, clientsShareCores: true }), 'amqp-fanout');
  assert.equal(shared.loginBound, 'shared cores');
  close(shared.loginMs, 20000, 'shared');
});

test('limits: an overloaded node or Redis says what to do', () => {
  const p = predict(
    COEFF,
    params({ nodes: 2, connections: 1000, pushRate: 200000, mix: { uid: 1, group: 0, all: 0 } }),
    'redis-direct',
  );
  assert.ok(p.nodeCores > 0.7);
  assert.ok(p.warnings.some((w) => w.includes('add nodes')));
  assert.ok(p.warnings.some((w) => w.includes('Redis Cluster') || w.includes('bus.redis.cluster')));
});

test('a missing mode in the coefficients is a clear error', () => {
  const partial = { ...COEFF, modes: { 'amqp-fanout': COSTS } } as unknown as Coefficients;
  assert.throws(() => predict(partial, params(), 'redis-direct'), /no figures for redis-direct.*--measure/);
});

test('medianCosts keeps the median of each coefficient over repeated measurements', () => {
  const run = (publishUs: number, pingUs: number): Coefficients => ({
    ...COEFF,
    gateway: { ...COEFF.gateway, pingUs },
    modes: { ...COEFF.modes, 'amqp-direct': { ...COSTS, publishUs } },
  });
  const m = medianCosts([run(30, 5), run(10, 7), run(20, 6)]);
  assert.equal(m.modes['amqp-direct'].publishUs, 20);
  assert.equal(m.gateway.pingUs, 6);
  assert.equal(m.modes['redis-fanout'].publishUs, COSTS.publishUs);
  assert.equal(medianCosts([run(10, 1), run(20, 2)]).modes['amqp-direct'].publishUs, 15);
});

test('the table names every mode and every figure', () => {
  const ps = MODE_IDS.map((id) => predict(COEFF, params(), id));
  const table = predictionTable(params(), ps, COEFF);
  for (const label of ['amqp fanout', 'amqp direct', 'redis fanout', 'redis direct', 'CPU of each node', 'recovery'])
    assert.ok(table.includes(label), label);
});

test('parseArgs: the options of the issue', () => {
  const command = parseArgs([
    '--nodes',
    '20',
    '--connections',
    '100000',
    '--bus',
    'amqp',
    '--mode=direct',
    '--push-rate',
    '5000/s',
    '--mix',
    'uid=0.7,group=0.2,all=0.1',
    '--groups-per-conn',
    '2',
    '--login-rate',
    '2000',
  ]);
  assert.equal(command.kind, 'predict');
  if (command.kind !== 'predict') return;
  const p = command.params;
  assert.equal(p.nodes, 20);
  assert.equal(p.connections, 100000);
  assert.equal(p.bus, 'amqp');
  assert.equal(p.mode, 'direct');
  assert.equal(p.pushRate, 5000);
  assert.deepEqual(p.mix, { uid: 0.7, group: 0.2, all: 0.1 });
  assert.equal(p.groupsPerConn, 2);
  assert.equal(p.loginRate, 2000);
  assert.deepEqual(modesOf(p), ['amqp-direct']);
  // no --bus / --mode: all four
  const all = parseArgs([]);
  assert.ok(all.kind === 'predict' && modesOf(all.params).length === 4);
  assert.deepEqual(parseArgs(['--help']), { kind: 'help' });
  assert.deepEqual(parseArgs(['--measure', '--quick']), { kind: 'measure', out: null, quick: true, repeat: 1 });
  assert.deepEqual(parseArgs(['--measure', '--repeat', '3']), { kind: 'measure', out: null, quick: false, repeat: 3 });
  assert.deepEqual(parseArgs(['--validate']), { kind: 'validate', costsFile: null, quick: false });
});

test('parseArgs: bad arguments give a clear error', () => {
  const bad: [string[], RegExp][] = [
    [['--nodes', '0'], /--nodes must be a positive integer, got "0"/],
    [['--nodes', '2.5'], /--nodes must be a positive integer/],
    [['--connections'], /--connections needs a value/],
    [['--connections', 'many'], /--connections must be a positive integer, got "many"/],
    [['--bus', 'kafka'], /--bus must be amqp or redis, got "kafka"/],
    [['--mode', 'topic'], /--mode must be direct or fanout/],
    [['--push-rate', '-5'], /--push-rate must be a positive number/],
    [['--mix', 'uid=0.5,all=0.4'], /must add up to 1, they add up to 0.9/],
    [['--mix', 'uid=0.5,room=0.5'], /unknown push kind "room"/],
    [['--mix', 'uid=2'], /uid must be a share between 0 and 1/],
    [['--mix', 'uid=0.5,uid=0.5'], /uid given twice/],
    [['--groups-per-conn', '0'], /group pushes but --groups-per-conn is 0/],
    [['--frobnicate'], /unknown option "--frobnicate"/],
    [['--clients-share-cores'], /needs --shared-cores/],
    [['--measure', '--repeat', '0'], /--repeat must be a positive integer/],
  ];
  for (const [argv, message] of bad) assert.throws(() => parseArgs(argv), message, argv.join(' '));
  assert.deepEqual(parseMix('all=1'), { uid: 0, group: 0, all: 1 });
});

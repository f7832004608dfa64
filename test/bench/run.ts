/**
 * `npm run bench`: gatewire against Socket.IO 4.8, side by side, on this machine.
 *
 * Every server runs in its own child process and reports its own CPU time over IPC; the load
 * clients run here. Progress goes to stderr, one line per step; the table goes to stdout; the
 * results go to docs/bench/results.json and docs/bench/chart.svg.
 *
 *   npm run bench                              every scenario (about 5 minutes)
 *   npm run bench -- --only=broadcast,latency  some scenarios (results not written unless --write)
 *   npm run bench -- --quick                   smaller counts, to try the harness
 *   npm run bench -- --profile=/tmp/prof       gatewire servers profile each measured run into there
 *   npm run bench -- --gatewire-only           skip the Socket.IO rows (with --profile, to iterate)
 *   npm run bench -- --socketio-only           only the Socket.IO rows
 *   npm run bench -- --buses=amqp-fanout,amqp-direct-b64   some gatewire buses (kind-mode[-bN])
 *   npm run bench -- --latency-rate=5000       offered rate of the latency scenario (default 20,000/s)
 *   npm run bench -- --push-rounds=10          pushes per uid in scenario 3 (default 50: 100,000 pushes)
 *
 * On 2 cores or fewer the runner and every server run with --single-threaded-gc (node-flags.ts;
 * GATEWIRE_BENCH_GC=parallel for V8's default, GATEWIRE_BENCH_NODE_FLAGS for more flags).
 *
 * Brokers: RabbitMQ at GATEWIRE_BENCH_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672),
 * Redis at GATEWIRE_BENCH_REDIS_URL (default redis://127.0.0.1:6379); every exchange and channel
 * prefix is unique to the run, and what the servers left under them (exchanges, node queues,
 * Redis keys) is deleted when the run ends, however it ends: the brokers are left as found.
 * (The node queues are found with the local rabbitmqctl.) Loopback only.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildContainer } from '../../src/di/container.js';
import { TOKENS } from '../../src/di/tokens.js';
import { loadConfig } from '../../src/config/load.js';
import { killAllServers } from './server-process.js';
import { missingFlags, restartWithFlags } from './node-flags.js';
import { cleanupAmqp, cleanupRedis } from '../helpers/cleanup.js';
import { broadcastCrossNode, broadcastOneNode } from './scenarios/broadcast.js';
import { crossNodeLatency, crossNodePush } from './scenarios/push.js';
import { idleMemory } from './scenarios/memory.js';
import { directVsFanout } from './scenarios/modes.js';
import { reconnectStorm } from './scenarios/reconnect-storm.js';
import {
  errorText,
  prepareProfiles,
  type SystemKind,
  type BusChoice,
  type Context,
  type Row,
} from './scenarios/common.js';
import { SCENARIO_TITLES, markdownResults, resultsTable, targetsTable } from './table.js';
import { judge } from './targets.js';
import { cpuTimes, stealPercent, stealText } from './cpu-steal.js';
import { machine, updateDoc, writeChart, writeJson } from './report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const docsDir = path.resolve(here, '../../../docs/bench');

interface Args {
  only: Set<string> | null;
  systems: Set<SystemKind>;
  quick: boolean;
  profileDir?: string;
  write: boolean;
  latencyRate: number;
  pushRounds: number;
  /** bus choices to run, as kind-mode[-bN] (e.g. amqp-fanout, amqp-direct-b64); null: all */
  buses: Set<string> | null;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    only: null,
    systems: new Set(['gatewire', 'socketio']),
    quick: false,
    write: true,
    latencyRate: 20000,
    pushRounds: 50,
    buses: null,
  };
  let explicitWrite = false;
  for (const arg of argv) {
    const [key, value] = arg.split('=', 2) as [string, string | undefined];
    if (key === '--only') args.only = new Set((value ?? '').split(',').filter((s) => s !== ''));
    else if (key === '--quick') args.quick = true;
    else if (key === '--latency-rate') args.latencyRate = Number(value);
    else if (key === '--push-rounds') args.pushRounds = Number(value);
    else if (key === '--gatewire-only') args.systems = new Set(['gatewire']);
    else if (key === '--socketio-only') args.systems = new Set(['socketio']);
    else if (key === '--buses') args.buses = new Set((value ?? '').split(',').filter((s) => s !== ''));
    else if (key === '--profile') args.profileDir = path.resolve(value ?? 'bench-profiles');
    else if (key === '--write') explicitWrite = true;
    else if (key === '--no-write') args.write = false;
    else
      throw new Error(
        `unknown option ${arg}; options: --only=a,b --quick --gatewire-only --socketio-only --buses=a,b --latency-rate=N --push-rounds=N --profile[=dir] --write --no-write`,
      );
  }
  if (!Number.isInteger(args.pushRounds) || args.pushRounds < 1)
    throw new Error('--push-rounds must be a positive integer');
  if (!(args.latencyRate > 0)) throw new Error('--latency-rate must be a positive number');
  if (args.only !== null) {
    for (const s of args.only)
      if (!(s in SCENARIO_TITLES))
        throw new Error(`unknown scenario ${s}; scenarios: ${Object.keys(SCENARIO_TITLES).join(', ')}`);
  }
  // A partial or quick run does not overwrite the published results unless asked to.
  if (
    (args.only !== null ||
      args.quick ||
      args.systems.size < 2 ||
      args.buses !== null ||
      args.latencyRate !== 20000 ||
      args.pushRounds !== 50) &&
    !explicitWrite
  )
    args.write = false;
  return args;
}

/** A bus choice as --buses names it: kind-mode, plus -bN with uid buckets. */
function busId(bus: BusChoice): string {
  if (bus.kind === 'local') return 'local';
  return `${bus.kind}-${bus.mode}${bus.uidBuckets ? `-b${bus.uidBuckets}` : ''}`;
}

/** Whether this build has the bus (the DI module throws for a kind it does not know). */
function busAvailable(kind: 'amqp' | 'redis'): boolean {
  try {
    buildContainer(loadConfig({ env: {}, values: { bus: { kind }, log: { level: 'silent' } } })).get(TOKENS.Bus);
    return true;
  } catch {
    return false;
  }
}

/** Every bus name prefix a gatewire server of this run was given (Context.busNames), with its broker. */
const busNames = new Map<string, 'amqp' | 'redis'>();
const brokerUrls = {
  amqp: process.env.GATEWIRE_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  redis: process.env.GATEWIRE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
};

/**
 * Deletes what the run's gatewire servers left on the brokers: exchanges and node queues (which
 * a stopped node leaves to expire), Redis replay logs and call ids. Call once every server is gone.
 */
async function cleanupBrokers(): Promise<void> {
  const names = [...busNames];
  busNames.clear();
  for (const [name, kind] of names) {
    try {
      if (kind === 'amqp') await cleanupAmqp(name, brokerUrls.amqp);
      else await cleanupRedis(name, brokerUrls.redis);
    } catch (err) {
      process.stderr.write(
        `could not delete what ${name} left on ${kind === 'amqp' ? 'RabbitMQ' : 'Redis'}: ${errorText(err)}\n`,
      );
    }
  }
  if (names.length > 0)
    process.stderr.write(`deleted what the run left on the brokers (under ${names.length} bus name prefixes)\n`);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const log = (line: string): void => {
    const s = ((Date.now() - started) / 1000).toFixed(0).padStart(4);
    process.stderr.write(`[${s}s] ${line}\n`);
  };
  const ctx: Context = {
    log,
    runId: `${Date.now().toString(36)}${process.pid.toString(36)}`,
    busNames,
    amqpUrl: brokerUrls.amqp,
    redisUrl: brokerUrls.redis,
    profileDir: args.profileDir,
    quick: args.quick,
    pushRounds: args.pushRounds,
    systems: args.systems,
  };
  prepareProfiles(ctx);
  const m = machine();
  const cpuAtStart = cpuTimes();
  log(
    `gatewire bench: ${m.cpus} × ${m.cpuModel}, Node ${m.node}, load ${(m.loadAverage as number[]).join(' ')}${args.quick ? ' (quick)' : ''}`,
  );

  const brokerBuses: BusChoice[] = [];
  for (const kind of ['amqp', 'redis'] as const) {
    if (busAvailable(kind)) brokerBuses.push({ kind, mode: 'fanout' }, { kind, mode: 'direct' });
    else log(`bus.kind=${kind} is not in this build: its gatewire rows are skipped`);
  }

  // Direct mode also with bounded bucket keys (DESIGN §1): RabbitMQ 3.10 routes a message with
  // several keys (CC) in O(bindings × keys), so one key per uid caps AMQP direct mode; 64 bucket
  // keys keep the binding table small and let a message carry many uids.
  const chosen = (buses: BusChoice[]): BusChoice[] =>
    args.buses === null ? buses : buses.filter((b) => args.buses!.has(busId(b)));
  const withBuckets = (buses: BusChoice[]): BusChoice[] =>
    chosen([
      ...buses,
      ...buses
        .filter((b) => b.kind === 'amqp' && b.mode === 'direct')
        .map((b) => ({ ...b, uidBuckets: 64 }) as BusChoice),
    ]);
  const plan: { id: string; run: () => Promise<Row[]> }[] = [
    { id: 'broadcast', run: () => broadcastOneNode(ctx) },
    { id: 'crossBroadcast', run: () => broadcastCrossNode(ctx, chosen(brokerBuses)) },
    { id: 'crossPush', run: () => crossNodePush(ctx, withBuckets(brokerBuses), ['redis', 'redis-sharded']) },
    { id: 'idleMemory', run: () => idleMemory(ctx) },
    { id: 'latency', run: () => crossNodeLatency(ctx, withBuckets(brokerBuses), ['redis'], args.latencyRate) },
    { id: 'modes', run: () => directVsFanout(ctx, chosen(brokerBuses)) },
    {
      id: 'reconnectStorm',
      run: () => reconnectStorm(ctx, chosen(brokerBuses.filter((b) => b.kind !== 'local' && b.mode === 'direct'))),
    },
  ].filter((s) => args.only === null || args.only.has(s.id));

  const rows: Row[] = [];
  for (const [i, step] of plan.entries()) {
    log(`[${i + 1}/${plan.length}] ${SCENARIO_TITLES[step.id]}`);
    try {
      rows.push(...(await step.run()));
    } catch (err) {
      log(`  scenario failed: ${errorText(err)}`);
    }
  }

  const durationS = (Date.now() - started) / 1000;
  const steal = stealPercent(cpuAtStart, cpuTimes());
  const targets = judge(rows);
  process.stdout.write(`\n${resultsTable(rows)}\n\n${targetsTable(targets)}\n\n`);
  process.stdout.write(
    `${plan.length} scenarios in ${durationS.toFixed(0)} s on ${m.cpus} cores (${m.cpuModel}); ${stealText(steal)} over the run.\n`,
  );
  if (args.write) {
    const loadAtStart = (m.loadAverage as number[])[0]!;
    const info = {
      startedAt: new Date(started).toISOString(),
      durationS,
      loadAtStart,
      cpuStealPercent: steal,
      command: 'npm run bench',
      quick: args.quick,
    };
    const when = `${info.startedAt.slice(0, 16).replace('T', ' ')} UTC`;
    writeJson(path.join(docsDir, 'results.json'), info, rows, targets);
    writeChart(path.join(docsDir, 'chart.svg'), rows, `${when} · ${m.cpus} cores · Node ${m.node} · ${info.command}`);
    const end = machine();
    const heading =
      `Run of ${when}: \`${info.command}\`, ${durationS.toFixed(0)} s, ${m.cpus} × ${m.cpuModel}, Node ${m.node}; ` +
      `1-minute load average ${loadAtStart} at the start and ${(end.loadAverage as number[])[0]} at the end ` +
      `(the runner, servers and brokers themselves add about 2); ${stealText(steal)} over the run ` +
      '(CPU time the hypervisor gave to other guests; the latency rows give it for their own window).';
    const doc = path.resolve(docsDir, '..', 'benchmarks.md');
    const updated = updateDoc(doc, markdownResults(rows, targets, heading));
    process.stdout.write(
      `Wrote ${path.relative(process.cwd(), docsDir)}/results.json and chart.svg${updated ? ` and the results section of ${path.relative(process.cwd(), doc)}` : ''}.\n`,
    );
  } else {
    process.stdout.write('Results not written (partial or quick run; pass --write to write them).\n');
  }
  return rows.every((r) => r.complete) ? 0 : 1;
}

// Every child dies with the runner, whatever ends it; then what they left on the brokers goes.
async function finish(code: number): Promise<never> {
  killAllServers();
  await cleanupBrokers();
  process.exit(code);
}

// The load clients measure the latency here, so the runner takes the servers' flags too (node-flags.ts).
const missing = missingFlags();
if (missing.length > 0) {
  void restartWithFlags(missing).then((code) => process.exit(code));
} else {
  process.on('exit', killAllServers);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void finish(130));
  main().then(
    (code) => finish(code),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      return finish(2);
    },
  );
}

/**
 * What every scenario shares: the run context, the result rows, server start/stop around a
 * scenario, and the measurement of one burst (time from the command until every client counted
 * every message; CPU read from each server process itself).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ConfigInput } from '../../../src/config/load.js';
import { LoadPool } from '../load-client.js';
import { monoMicros, type ServerStats, type Target } from '../protocol.js';
import { ServerProcess, cpuBetween, type ServerSpec } from '../server-process.js';

export interface Context {
  /** one progress line on stderr */
  log(line: string): void;
  /** unique per run: exchange names and channel prefixes derive from it */
  runId: string;
  /** every bus name prefix a gatewire server of this run was given, deleted from the brokers at the end */
  busNames: Map<string, 'amqp' | 'redis'>;
  amqpUrl: string;
  redisUrl: string;
  /** folder for CPU profiles of the measured runs of the gatewire servers, when profiling */
  profileDir?: string;
  /** smaller counts, for trying the harness out */
  quick: boolean;
  /** scenario 3: pushes to each of the 2,000 uids. @default 50 */
  pushRounds: number;
  /** the systems to run (both, unless narrowed for profiling) */
  systems: Set<SystemKind>;
}

export type SystemKind = 'gatewire' | 'socketio';

/** One line of the table. */
export interface Row {
  /** scenario id: broadcast, crossBroadcast, crossPush, idleMemory, latency, modes, reconnectStorm */
  scenario: string;
  system: SystemKind;
  /** e.g. "gatewire, amqp direct" */
  label: string;
  /** false if the run timed out, failed, or could not run (then `note` says why) */
  complete: boolean;
  /** raw figures (units in the key names), written to results.json */
  metrics: Record<string, number>;
  /** what the table shows */
  result: string;
  cpu: string;
  detail: string;
  note?: string;
}

export type BusChoice =
  | { kind: 'local' }
  | { kind: 'amqp'; mode: 'fanout' | 'direct'; uidBuckets?: number }
  | { kind: 'redis'; mode: 'fanout' | 'direct'; uidBuckets?: number };

export function busLabel(bus: BusChoice): string {
  if (bus.kind === 'local') return 'local bus';
  return `${bus.kind} ${bus.mode}${bus.uidBuckets ? ` (${bus.uidBuckets} uid buckets)` : ''}`;
}

/** Configuration values of a benchmark gatewire node on `bus` (names unique to this run). */
export function gatewireValues(ctx: Context, bus: BusChoice, scenario: string): ConfigInput {
  const name = `gwbench-${ctx.runId}-${scenario}`;
  const values: ConfigInput = {
    gateway: { listen: ['ws://127.0.0.1:0/ws'] },
    log: { level: 'error' },
  };
  if (bus.kind !== 'local') ctx.busNames.set(name, bus.kind);
  if (bus.kind === 'local') values.bus = { kind: 'local' };
  else if (bus.kind === 'amqp')
    values.bus = {
      kind: 'amqp',
      mode: bus.mode,
      uidBuckets: bus.uidBuckets ?? 0,
      amqp: { url: ctx.amqpUrl, exchange: name },
    };
  else
    values.bus = {
      kind: 'redis',
      mode: bus.mode,
      uidBuckets: bus.uidBuckets ?? 0,
      redis: { url: ctx.redisUrl, prefix: name },
    };
  return values;
}

export function gatewireSpec(ctx: Context, bus: BusChoice, scenario: string): ServerSpec {
  return { system: 'gatewire', options: { values: gatewireValues(ctx, bus, scenario) } };
}

export type SocketIoAdapter = 'none' | 'redis' | 'redis-sharded';

export function socketIoSpec(ctx: Context, adapter: SocketIoAdapter, scenario: string): ServerSpec {
  return { system: 'socketio', options: { adapter, redisUrl: ctx.redisUrl, key: `siobench-${ctx.runId}-${scenario}` } };
}

export function socketIoLabel(adapter: SocketIoAdapter): string {
  return adapter === 'none'
    ? 'Socket.IO 4.8'
    : adapter === 'redis'
      ? 'Socket.IO 4.8 + redis-adapter'
      : 'Socket.IO 4.8 + redis-adapter sharded';
}

/** Starts the servers, runs `body`, and stops them (and closes the pools) whatever happens. */
export async function withServers<T>(
  ctx: Context,
  specs: { spec: ServerSpec; label: string }[],
  body: (servers: ServerProcess[], pools: LoadPool[]) => Promise<T>,
): Promise<T> {
  const servers: ServerProcess[] = [];
  const pools: LoadPool[] = [];
  try {
    for (const { spec, label } of specs) servers.push(await ServerProcess.start(spec, { label, system: spec.system }));
    return await body(servers, pools);
  } finally {
    for (const pool of pools) pool.close();
    await Promise.all(servers.map((s) => s.stop().catch(() => s.kill())));
  }
}

/** Polls until every server reports `bound` uid bindings (or fails after `timeoutMs`). */
export async function waitBound(servers: ServerProcess[], counts: number[], timeoutMs = 60000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await Promise.all(servers.map((s) => s.stats()));
    if (stats.every((s, i) => s.bound >= counts[i]!)) return;
    if (Date.now() > deadline) {
      throw new Error(
        `uid bindings not done within ${timeoutMs} ms: ${stats.map((s, i) => `${s.bound}/${counts[i]}`).join(', ')}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Waits until every gatewire node that keeps a holder directory routes by it: a node's directory
 * is complete a settle period (2 × cluster.announceInterval) after its start, once every peer's
 * state is in, and sends by key before. The throughput and latency figures are for the steady
 * state, as waitBound waits for the bindings.
 */
export async function waitDirectories(servers: ServerProcess[], timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await Promise.all(servers.map((s) => s.stats()));
    if (stats.every((s) => s.bus?.directory?.routing !== false)) return;
    if (Date.now() > deadline) throw new Error(`a node's holder directory did not route within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** "; the issuer's directory routed R of N sends" over a run, or '' where it keeps none. */
export function directoryShare(run: Pick<BurstMeasure, 'before' | 'after'>, index = 0): string {
  const before = run.before[index]?.bus?.directory;
  const after = run.after[index]?.bus?.directory;
  if (!before || !after) return '';
  const routed = after.routed - before.routed;
  const sends = routed + after.byKey - before.byKey;
  return `; the issuer's directory routed ${fmt(routed)} of ${fmt(sends)} sends`;
}

let profileCount = 0;

/** Creates the profile folder; a profile is written per measured run of each gatewire server. */
export function prepareProfiles(ctx: Context): string | undefined {
  if (ctx.profileDir !== undefined) fs.mkdirSync(ctx.profileDir, { recursive: true });
  return ctx.profileDir;
}

/** Starts the CPU profiler in the gatewire servers of `servers` (none without a folder). */
export async function startProfiles(dir: string | undefined, servers: ServerProcess[]): Promise<ServerProcess[]> {
  const profiled = dir === undefined ? [] : servers.filter((s) => s.system === 'gatewire');
  await Promise.all(profiled.map((s) => s.request({ type: 'profileStart' })));
  return profiled;
}

/** Stops them and writes one .cpuprofile per server, named after its label. */
export async function stopProfiles(dir: string | undefined, profiled: ServerProcess[]): Promise<void> {
  for (const s of profiled) {
    const file = path.join(dir!, `${s.label.replace(/[^\w.-]+/g, '_')}-${++profileCount}.cpuprofile`);
    await s.request({ type: 'profileStop', file });
  }
}

export interface BurstMeasure {
  /** every expected message arrived in time */
  complete: boolean;
  delivered: number;
  expected: number;
  /** from the command until the last message was counted */
  wallMs: number;
  /** CPU µs of each measured server over the run */
  serverCpuUs: number[];
  /** CPU µs of this process (the load clients) over the run */
  clientCpuUs: number;
  /** CPU µs of the broker processes (RabbitMQ, Redis) over the run; shared with anything else using them */
  brokerCpuUs: number;
  before: ServerStats[];
  after: ServerStats[];
}

let brokerPids: number[] | null = null;

/**
 * CPU µs used so far by the local brokers (beam.smp, redis-server), from /proc; 0 where /proc
 * cannot be read. Clock ticks are taken as 1/100 s (Linux on x86), so the resolution is 10 ms.
 */
export function brokerCpuUs(): number {
  if (brokerPids === null) {
    brokerPids = [];
    try {
      for (const entry of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        try {
          const comm = fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
          if (comm === 'beam.smp' || comm === 'redis-server') brokerPids.push(Number(entry));
        } catch {
          // gone, or not ours to read
        }
      }
    } catch {
      // no /proc
    }
  }
  let ticks = 0;
  for (const pid of brokerPids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the broker restarted: its time is lost for this run
    }
  }
  return ticks * 10000;
}

/**
 * One measured burst: `issuer` pushes `n` times at `target`; the clients of `pools` must count
 * `expected` messages in all. CPU is read from every server of `measured` before and after.
 */
export async function measureBurst(options: {
  /** profile the gatewire servers of `measured` into this folder */
  profileDir?: string;
  issuer: ServerProcess;
  measured: ServerProcess[];
  pools: LoadPool[];
  target: Target;
  n: number;
  chunk: number;
  size: number;
  expected: number;
  timeoutMs: number;
}): Promise<BurstMeasure> {
  const { issuer, measured, pools, expected } = options;
  const profiled = await startProfiles(options.profileDir, measured);
  const before = await Promise.all(measured.map((s) => s.stats()));
  const counted = (): number => pools.reduce((sum, p) => sum + p.tally.messages, 0);
  const base = counted();
  const clientCpu = process.cpuUsage();
  const broker = brokerCpuUs();
  const started = monoMicros();
  let finished = 0;
  const done = waitForAll(pools, expected, options.timeoutMs).then((ok) => {
    finished = monoMicros();
    return ok;
  });
  await issuer.burst(options.target, options.n, options.chunk, options.size);
  const complete = await done;
  const clientCpuUsed = process.cpuUsage(clientCpu);
  const brokerUsed = brokerCpuUs() - broker;
  const after = await Promise.all(measured.map((s) => s.stats()));
  await stopProfiles(options.profileDir, profiled);
  return {
    complete,
    delivered: counted() - base,
    expected,
    wallMs: ((complete ? finished : monoMicros()) - started) / 1000,
    serverCpuUs: measured.map((_, i) => cpuBetween(before[i]!, after[i]!)),
    clientCpuUs: clientCpuUsed.user + clientCpuUsed.system,
    brokerCpuUs: brokerUsed,
    before,
    after,
  };
}

/** Resolves true once the pools together counted `expected` more messages, false on timeout. */
function waitForAll(pools: LoadPool[], expected: number, timeoutMs: number): Promise<boolean> {
  if (pools.length === 1) return pools[0]!.tally.waitFor(pools[0]!.tally.messages + expected, timeoutMs);
  const targets = pools.map((p) => p.tally.messages);
  // Several pools: each must reach its share; the share is unknown, so poll the sum.
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const poll = (): void => {
      const sum = pools.reduce((s, p, i) => s + p.tally.messages - targets[i]!, 0);
      if (sum >= expected) resolve(true);
      else if (Date.now() > deadline) resolve(false);
      else setTimeout(poll, 1);
    };
    poll();
  });
}

/** The median run by `key` (runs sorted by it; the middle one is returned whole). */
export function medianBy<T>(runs: T[], key: (run: T) => number): T {
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

export function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** 1234567 -> "1,234,567"; small values keep `digits` decimals. */
export function fmt(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '—';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A row for a scenario that could not run. */
export function skippedRow(scenario: string, system: SystemKind, label: string, reason: string): Row {
  return {
    scenario,
    system,
    label,
    complete: false,
    metrics: {},
    result: 'not run',
    cpu: '',
    detail: '',
    note: reason,
  };
}

export function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.slice(0, 300);
}

/**
 * Runs `run` for each setup whose system is being measured, one after the other; a setup that
 * fails gives a skipped row of `scenario` (or of the setup's scenario) with the log saying why, and
 * the others still run.
 */
export async function rowsOf<S extends { system: SystemKind; label: string }>(
  ctx: Context,
  scenario: string | ((setup: S) => string),
  setups: S[],
  run: (setup: S) => Promise<Row>,
): Promise<Row[]> {
  const rows: Row[] = [];
  for (const setup of setups) {
    if (!ctx.systems.has(setup.system)) continue;
    try {
      rows.push(await run(setup));
    } catch (err) {
      ctx.log(`  ${setup.label}: FAILED: ${errorText(err)}`);
      const name = typeof scenario === 'string' ? scenario : scenario(setup);
      rows.push(skippedRow(name, setup.system, setup.label, errorText(err)));
    }
  }
  return rows;
}

/**
 * A burst of `n` pushes, one to each of `n` targets (1,000 per call, 60 s to arrive), after one
 * unmeasured warm-up burst of the same size, so every measured run has hot code. Returns the
 * options for measureBurst; throws if the warm-up did not all arrive.
 */
export async function warmedBurst(
  base: Pick<Parameters<typeof measureBurst>[0], 'issuer' | 'measured' | 'pools' | 'target' | 'size'>,
  n: number,
): Promise<Parameters<typeof measureBurst>[0]> {
  const options = { ...base, chunk: 1000, timeoutMs: 60000, n, expected: n };
  const warm = await measureBurst(options);
  if (!warm.complete) throw new Error(`warm-up: ${warm.delivered} of ${warm.expected} pushes arrived`);
  return options;
}

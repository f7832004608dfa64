/**
 * Scenarios 3 and 5: targeted push across nodes. One node holds 2,000 clients, each bound to
 * its own uid (gatewire: bindUid at connect; Socket.IO: a room per user); another node, with no
 * clients, pushes to them by uid.
 *   3. throughput: 100,000 pushes (50 to each uid; --push-rounds) in a loop that yields every
 *      1,000 calls. Long enough to measure sustained throughput: a burst of 20,000 lasts about
 *      50 ms on gatewire, where start-up effects (the first messages find every queue empty, so
 *      nothing coalesces yet) and timer granularity swing the result by a third between runs;
 *   5. latency: pushes at a fixed offered rate (20,000/s) for a few seconds; each payload carries
 *      its intended send time, and the clients read the latency from it.
 */
import { cpuTimes, stealPercent, stealText } from '../cpu-steal.js';
import { LoadPool } from '../load-client.js';
import type { ServerProcess, ServerSpec } from '../server-process.js';
import type { Target } from '../protocol.js';
import {
  busLabel,
  fmt,
  gatewireSpec,
  measureBurst,
  warmedBurst,
  medianBy,
  rowsOf,
  socketIoLabel,
  startProfiles,
  stopProfiles,
  socketIoSpec,
  sum,
  waitBound,
  waitDirectories,
  directoryShare,
  withServers,
} from './common.js';
import type { BurstMeasure, BusChoice, Context, Row, SocketIoAdapter } from './common.js';

const SIZE = 64;
const UIDS = 2000;

interface Setup {
  system: Row['system'];
  label: string;
  /** [issuer, holder] */
  specs: [ServerSpec, ServerSpec];
  tag: string;
}

function gatewireSetups(ctx: Context, buses: BusChoice[], scenario: string): Setup[] {
  return buses.map((bus) => {
    const tag = `${scenario}-${bus.kind}-${'mode' in bus ? bus.mode : ''}${'uidBuckets' in bus && bus.uidBuckets ? `-b${bus.uidBuckets}` : ''}`;
    return {
      system: 'gatewire',
      label: `gatewire, ${busLabel(bus)}`,
      specs: [gatewireSpec(ctx, bus, tag), gatewireSpec(ctx, bus, tag)],
      tag,
    };
  });
}

function socketIoSetups(ctx: Context, adapters: SocketIoAdapter[], scenario: string): Setup[] {
  return adapters.map((adapter) => {
    const tag = `${scenario}-${adapter}`;
    return {
      system: 'socketio',
      label: socketIoLabel(adapter),
      specs: [socketIoSpec(ctx, adapter, tag), socketIoSpec(ctx, adapter, tag)],
      tag,
    };
  });
}

/** Starts issuer and holder, connects `uids` clients with their uids to the holder, waits for the bindings. */
async function withUidClients<T>(
  ctx: Context,
  setup: Setup,
  uids: number,
  body: (servers: ServerProcess[], pool: LoadPool) => Promise<T>,
): Promise<T> {
  return withServers(
    ctx,
    [
      { spec: setup.specs[0], label: `${setup.label} (issuer)` },
      { spec: setup.specs[1], label: `${setup.label} (clients)` },
    ],
    async (servers, pools) => {
      const holder = servers[1]!;
      const pool = new LoadPool(holder.port, setup.system === 'gatewire' ? 'ws' : 'sio');
      pools.push(pool);
      await pool.open(uids, { uidPrefix: `${setup.tag}-u` });
      await waitBound([holder], [uids]);
      await waitDirectories(servers);
      return body(servers, pool);
    },
  );
}

/**
 * Runs `body` on every setup of `scenario` (its servers tagged `tag`), with UIDS clients bound to
 * their uids on the holder; the issuer pushes to them as `target`.
 */
function eachUidSetup(
  ctx: Context,
  buses: BusChoice[],
  adapters: SocketIoAdapter[],
  scenario: string,
  tag: string,
  body: (setup: Setup, servers: ServerProcess[], pool: LoadPool, issuer: ServerProcess, target: Target) => Promise<Row>,
): Promise<Row[]> {
  return rowsOf(ctx, scenario, [...gatewireSetups(ctx, buses, tag), ...socketIoSetups(ctx, adapters, tag)], (setup) =>
    withUidClients(ctx, setup, UIDS, (servers, pool) =>
      body(setup, servers, pool, servers[0]!, { kind: 'uid', prefix: `${setup.tag}-u`, count: UIDS }),
    ),
  );
}

/** Scenario 3: cross-node targeted push throughput. */
export async function crossNodePush(ctx: Context, buses: BusChoice[], adapters: SocketIoAdapter[]): Promise<Row[]> {
  const rounds = ctx.quick ? 2 : ctx.pushRounds;
  const reps = ctx.quick ? 1 : 3;
  return eachUidSetup(ctx, buses, adapters, 'crossPush', 'p3', async (setup, servers, pool, issuer, target) => {
    ctx.log(`  ${setup.label}: ${UIDS} clients bound to their uids; warm-up`);
    // Warm-up: one unmeasured run of the full size, so every run measured has hot code.
    const n = UIDS * rounds;
    const burst = await warmedBurst({ issuer, measured: servers, pools: [pool], target, size: SIZE }, n);
    const runs: BurstMeasure[] = [];
    for (let r = 0; r < reps; r++) {
      const run = await measureBurst({ ...burst, profileDir: ctx.profileDir });
      runs.push(run);
      ctx.log(
        `  ${setup.label}: run ${r + 1}/${reps}: ${fmt(run.delivered)} pushes in ${fmt(run.wallMs)} ms, CPU ms: ` +
          `issuer ${fmt(run.serverCpuUs[0]! / 1000)}, clients' node ${fmt(run.serverCpuUs[1]! / 1000)}, ` +
          `broker ${fmt(run.brokerCpuUs / 1000)}, load client ${fmt(run.clientCpuUs / 1000)}${run.complete ? '' : ' (INCOMPLETE)'}`,
      );
      if (!run.complete) break;
    }
    const run = medianBy(runs, (m) => m.delivered / m.wallMs);
    const rate = (run.delivered / run.wallMs) * 1000;
    const cpuPer = sum(run.serverCpuUs) / Math.max(1, run.delivered);
    const issuerCpu = run.serverCpuUs[0]! / 1000;
    const holderCpu = run.serverCpuUs[1]! / 1000;
    return {
      scenario: 'crossPush',
      system: setup.system,
      label: setup.label,
      complete: run.complete,
      metrics: {
        uids: UIDS,
        pushes: n,
        delivered: run.delivered,
        wallMs: run.wallMs,
        pushesPerSec: rate,
        serverCpuUsPerPush: cpuPer,
        issuerCpuMs: issuerCpu,
        holderCpuMs: holderCpu,
        clientCpuUsPerPush: run.clientCpuUs / Math.max(1, run.delivered),
        brokerCpuUsPerPush: run.brokerCpuUs / Math.max(1, run.delivered),
        runs: runs.length,
      },
      result: `${fmt(rate)} pushes/s`,
      cpu: `${fmt(cpuPer, 2)} µs/push`,
      detail:
        `${fmt(run.delivered)} in ${fmt(run.wallMs)} ms; CPU issuer ${fmt(issuerCpu)} ms + clients' node ${fmt(holderCpu)} ms` +
        `; broker ${fmt(run.brokerCpuUs / 1000)} ms, load client ${fmt(run.clientCpuUs / 1000)} ms${directoryShare(run)}`,
      note: run.complete ? undefined : `only ${fmt(run.delivered)} of ${fmt(n)} pushes arrived within 60 s`,
    } satisfies Row;
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Scenario 5: cross-node sendToUid latency at a fixed offered rate. */
export async function crossNodeLatency(
  ctx: Context,
  buses: BusChoice[],
  adapters: SocketIoAdapter[],
  rate = 20000,
): Promise<Row[]> {
  const durationMs = ctx.quick ? 1500 : 5000;
  // 3 s of warm-up at the offered rate: right after 2,000 binds, RabbitMQ was measured busy on a
  // whole core for about 1.1 s once pushes began, and the pushes of the first 1-1.5 s reached the
  // clients' node up to 100-550 ms late (both systems' first second is start-up, not the rate).
  const warmMs = ctx.quick ? 500 : 3000;
  return eachUidSetup(ctx, buses, adapters, 'latency', 'l5', async (setup, servers, pool, issuer, target) => {
    const tally = pool.tally;
    ctx.log(`  ${setup.label}: ${UIDS} clients bound; warm-up ${warmMs} ms at ${fmt(rate)}/s`);
    const warmIssued = (await issuer.paced(target, rate, warmMs, SIZE)).issued;
    await tally.waitFor(warmIssued, 20000);
    tally.messages = 0;
    tally.latencies = [];
    tally.recordLatency = true;
    const profiled = await startProfiles(ctx.profileDir, servers);
    const before = await Promise.all(servers.map((s) => s.stats()));
    const cpuBefore = cpuTimes();
    const paced = await issuer.paced(target, rate, durationMs, SIZE);
    const complete = await tally.waitFor(paced.issued, 20000);
    const steal = stealPercent(cpuBefore, cpuTimes());
    tally.recordLatency = false;
    const after = await Promise.all(servers.map((s) => s.stats()));
    await stopProfiles(ctx.profileDir, profiled);
    const cpuMs =
      sum(servers.map((_, i) => after[i]!.cpuUser - before[i]!.cpuUser + after[i]!.cpuSystem - before[i]!.cpuSystem)) /
      1000;
    const sorted = Float64Array.from(tally.latencies).sort();
    const ms = (us: number): number => us / 1000;
    const list = Array.from(sorted);
    const p50 = ms(percentile(list, 50));
    const p99 = ms(percentile(list, 99));
    const max = ms(list[list.length - 1] ?? Number.NaN);
    ctx.log(
      `  ${setup.label}: ${fmt(tally.messages)}/${fmt(paced.issued)} arrived; p50 ${fmt(p50, 2)} ms, p99 ${fmt(p99, 2)} ms, max ${fmt(max, 1)} ms; ${stealText(steal)}`,
    );
    return {
      scenario: 'latency',
      system: setup.system,
      label: setup.label,
      complete,
      metrics: {
        offeredPerSec: rate,
        durationMs,
        issued: paced.issued,
        delivered: tally.messages,
        p50Ms: p50,
        p90Ms: ms(percentile(list, 90)),
        p99Ms: p99,
        maxMs: max,
        senderMaxLagMs: paced.maxLagMs,
        serverCpuCoresUsed: cpuMs / durationMs,
        ...(steal === null ? {} : { cpuStealPercent: steal }),
      },
      result: `p50 ${fmt(p50, 2)} ms, p99 ${fmt(p99, 2)} ms`,
      cpu: `${fmt((cpuMs / durationMs) * 100)}% of a core`,
      detail: `${fmt(tally.messages)} of ${fmt(paced.issued)} arrived; max ${fmt(max, 1)} ms; send loop behind schedule by up to ${fmt(paced.maxLagMs, 1)} ms; ${stealText(steal)}${directoryShare({ before, after })}`,
      note: complete
        ? undefined
        : `only ${fmt(tally.messages)} of ${fmt(paced.issued)} pushes arrived within 20 s after the last`,
    } satisfies Row;
  });
}

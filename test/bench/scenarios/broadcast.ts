/**
 * Scenarios 1 and 2: broadcast. 1,000 clients, 1,000 broadcasts of 64 bytes, issued by a loop
 * in a server process on a command from the runner; the clock runs from the command until every
 * client counted every message.
 *   1. one node: the clients are on the node that broadcasts;
 *   2. cross-node: a node with no clients broadcasts, the clients are on another node.
 */
import { LoadPool } from '../load-client.js';
import {
  busLabel,
  fmt,
  gatewireSpec,
  measureBurst,
  medianBy,
  rowsOf,
  socketIoLabel,
  socketIoSpec,
  sum,
  withServers,
} from './common.js';
import type { BurstMeasure, BusChoice, Context, Row, SocketIoAdapter } from './common.js';
import type { ServerSpec } from '../server-process.js';

const SIZE = 64;

function counts(ctx: Context): { clients: number; broadcasts: number; warmup: number; reps: number } {
  return ctx.quick
    ? { clients: 200, broadcasts: 200, warmup: 20, reps: 1 }
    : { clients: 1000, broadcasts: 1000, warmup: 300, reps: 3 };
}

interface Setup {
  scenario: 'broadcast' | 'crossBroadcast';
  system: Row['system'];
  label: string;
  /** [holder] or [issuer, holder] */
  specs: ServerSpec[];
}

async function runOne(ctx: Context, setup: Setup): Promise<Row> {
  const { clients, broadcasts, warmup, reps } = counts(ctx);
  const cross = setup.specs.length === 2;
  return withServers(
    ctx,
    setup.specs.map((spec, i) => ({
      spec,
      label: `${setup.label}${cross ? (i === 0 ? ' (issuer)' : ' (clients)') : ''}`,
    })),
    async (servers, pools) => {
      const holder = servers[servers.length - 1]!;
      const issuer = servers[0]!;
      const pool = new LoadPool(holder.port, setup.system === 'gatewire' ? 'ws' : 'sio');
      pools.push(pool);
      await pool.open(clients);
      ctx.log(`  ${setup.label}: ${clients} clients connected; warm-up`);
      const common = {
        issuer,
        measured: servers,
        pools: [pool],
        target: { kind: 'all' } as const,
        size: SIZE,
        timeoutMs: 60000,
      };
      const warm = await measureBurst({ ...common, n: warmup, chunk: warmup, expected: warmup * clients });
      if (!warm.complete) throw new Error(`warm-up: ${warm.delivered} of ${warm.expected} messages arrived`);
      const runs: BurstMeasure[] = [];
      for (let r = 0; r < reps; r++) {
        const run = await measureBurst({
          ...common,
          profileDir: ctx.profileDir,
          n: broadcasts,
          chunk: broadcasts,
          expected: broadcasts * clients,
        });
        runs.push(run);
        ctx.log(
          `  ${setup.label}: run ${r + 1}/${reps}: ${fmt(run.delivered)} deliveries in ${fmt(run.wallMs)} ms` +
            `, server CPU ${fmt(sum(run.serverCpuUs) / 1000)} ms${run.complete ? '' : ' (INCOMPLETE)'}`,
        );
        if (!run.complete) break;
      }
      const run = medianBy(runs, (m) => m.delivered / m.wallMs);
      const rate = (run.delivered / run.wallMs) * 1000;
      const cpuPer = sum(run.serverCpuUs) / Math.max(1, run.delivered);
      const metrics: Record<string, number> = {
        clients,
        broadcasts,
        payloadBytes: SIZE,
        deliveries: run.delivered,
        wallMs: run.wallMs,
        deliveriesPerSec: rate,
        serverCpuUsPerDelivery: cpuPer,
        serverCpuMs: sum(run.serverCpuUs) / 1000,
        clientCpuUsPerDelivery: run.clientCpuUs / Math.max(1, run.delivered),
        runs: runs.length,
      };
      if (cross) {
        metrics.issuerCpuMs = run.serverCpuUs[0]! / 1000;
        metrics.holderCpuMs = run.serverCpuUs[1]! / 1000;
      }
      return {
        scenario: setup.scenario,
        system: setup.system,
        label: setup.label,
        complete: run.complete,
        metrics,
        result: `${fmt(rate)} deliveries/s`,
        cpu: `${fmt(cpuPer, 2)} µs/delivery`,
        detail:
          `${fmt(run.delivered)} in ${fmt(run.wallMs)} ms` +
          (cross
            ? `; CPU issuer ${fmt(metrics.issuerCpuMs!)} ms + clients' node ${fmt(metrics.holderCpuMs!)} ms`
            : '') +
          `; load client ${fmt(metrics.clientCpuUsPerDelivery!, 2)} µs/delivery`,
        note: run.complete
          ? undefined
          : `only ${fmt(run.delivered)} of ${fmt(run.expected)} messages arrived within 60 s`,
      };
    },
  );
}

/** Scenario 1: broadcast on one node. */
export async function broadcastOneNode(ctx: Context): Promise<Row[]> {
  const bus: BusChoice = { kind: 'local' };
  return runAll(ctx, [
    {
      scenario: 'broadcast',
      system: 'gatewire',
      label: `gatewire, ${busLabel(bus)}`,
      specs: [gatewireSpec(ctx, bus, 'b1')],
    },
    {
      scenario: 'broadcast',
      system: 'socketio',
      label: socketIoLabel('none'),
      specs: [socketIoSpec(ctx, 'none', 'b1')],
    },
  ]);
}

/** Scenario 2: broadcast issued on one node, clients on another. */
export async function broadcastCrossNode(ctx: Context, buses: BusChoice[]): Promise<Row[]> {
  const setups: Setup[] = buses.map((bus) => {
    const tag = `b2-${bus.kind}-${'mode' in bus ? bus.mode : ''}`;
    return {
      scenario: 'crossBroadcast',
      system: 'gatewire',
      label: `gatewire, ${busLabel(bus)}`,
      specs: [gatewireSpec(ctx, bus, tag), gatewireSpec(ctx, bus, tag)],
    };
  });
  const adapter: SocketIoAdapter = 'redis';
  setups.push({
    scenario: 'crossBroadcast',
    system: 'socketio',
    label: socketIoLabel(adapter),
    specs: [socketIoSpec(ctx, adapter, 'b2'), socketIoSpec(ctx, adapter, 'b2')],
  });
  return runAll(ctx, setups);
}

function runAll(ctx: Context, setups: Setup[]): Promise<Row[]> {
  return rowsOf(
    ctx,
    (setup) => setup.scenario,
    setups,
    (setup) => runOne(ctx, setup),
  );
}

/**
 * Scenario 6 (gatewire only): direct against fanout mode. Three nodes hold 1,000 clients each,
 * every client bound to its own uid; a fourth node with no clients pushes 10 times to each of
 * the 3,000 uids. Each node reports how many uid pushes its bus consumed (bus.stats
 * pushesConsumed: a send command counts once per uid it names, since adjacent sends of the same
 * data travel merged) and how many commands and broker messages carried them: in fanout mode
 * every node gets every push, in direct mode ideally only those for the uids it holds (one third).
 */
import { LoadPool } from '../load-client.js';
import type { Target } from '../protocol.js';
import {
  busLabel,
  errorText,
  fmt,
  gatewireSpec,
  measureBurst,
  warmedBurst,
  skippedRow,
  sum,
  waitBound,
  waitDirectories,
  withServers,
  type BusChoice,
  type Context,
  type Row,
} from './common.js';

const NODES = 3;
const SIZE = 64;

export async function directVsFanout(ctx: Context, buses: BusChoice[]): Promise<Row[]> {
  const perNode = ctx.quick ? 300 : 1000;
  const rounds = ctx.quick ? 2 : 10;
  const rows: Row[] = [];
  for (const bus of buses) {
    const tag = `m6-${bus.kind}-${'mode' in bus ? bus.mode : ''}`;
    const label = `gatewire, ${busLabel(bus)}, ${NODES} nodes`;
    try {
      rows.push(
        await withServers(
          ctx,
          [
            { spec: gatewireSpec(ctx, bus, tag), label: `${label} (issuer)` },
            ...Array.from({ length: NODES }, (_, k) => ({
              spec: gatewireSpec(ctx, bus, tag),
              label: `${label} (node ${k + 1})`,
            })),
          ],
          async (servers, pools) => {
            const [issuer, ...holders] = servers;
            const prefix = `${tag}-u`;
            for (const [k, holder] of holders.entries()) {
              const pool = new LoadPool(holder.port, 'ws');
              pools.push(pool);
              await pool.open(perNode, { uidPrefix: prefix, uidOffset: k * perNode });
            }
            await waitBound(
              holders,
              holders.map(() => perNode),
            );
            await waitDirectories(servers);
            ctx.log(`  ${label}: ${NODES} × ${perNode} clients bound; warm-up`);
            const uids = perNode * NODES;
            const target: Target = { kind: 'uid', prefix, count: uids };
            const n = uids * rounds;
            const burst = await warmedBurst({ issuer: issuer!, measured: holders, pools, target, size: SIZE }, n);
            const run = await measureBurst({ ...burst, profileDir: ctx.profileDir });
            const consumed = holders.map(
              (_, i) => run.after[i]!.bus!.pushesConsumed - run.before[i]!.bus!.pushesConsumed,
            );
            const commands = holders.map(
              (_, i) => run.after[i]!.bus!.commandsConsumed - run.before[i]!.bus!.commandsConsumed,
            );
            const messages = holders.map(
              (_, i) => run.after[i]!.bus!.messagesConsumed - run.before[i]!.bus!.messagesConsumed,
            );
            ctx.log(
              `  ${label}: ${fmt(n)} pushes; uid pushes consumed per node ${consumed.map((c) => fmt(c)).join(' / ')}`,
            );
            const metrics: Record<string, number> = {
              nodes: NODES,
              uids,
              pushes: n,
              delivered: run.delivered,
              wallMs: run.wallMs,
              pushesPerSec: (run.delivered / run.wallMs) * 1000,
              holdersCpuMs: sum(run.serverCpuUs) / 1000,
            };
            consumed.forEach((c, i) => (metrics[`node${i + 1}PushesConsumed`] = c));
            commands.forEach((c, i) => (metrics[`node${i + 1}CommandsConsumed`] = c));
            messages.forEach((m, i) => (metrics[`node${i + 1}MessagesConsumed`] = m));
            return {
              scenario: 'modes',
              system: 'gatewire',
              label,
              complete: run.complete,
              metrics,
              result: `${consumed.map((c) => fmt(c)).join(' / ')} uid pushes`,
              cpu: `${fmt(sum(run.serverCpuUs) / 1000)} ms (3 nodes)`,
              detail:
                `of ${fmt(n)} pushes; in commands ${commands.map((c) => fmt(c)).join(' / ')}; broker messages ` +
                `${messages.map((m) => fmt(m)).join(' / ')}; ${fmt(metrics.pushesPerSec!)} pushes/s`,
              note: run.complete ? undefined : `only ${fmt(run.delivered)} of ${fmt(n)} pushes arrived within 60 s`,
            } satisfies Row;
          },
        ),
      );
    } catch (err) {
      ctx.log(`  ${label}: FAILED: ${errorText(err)}`);
      rows.push(skippedRow('modes', 'gatewire', label, errorText(err)));
    }
  }
  return rows;
}

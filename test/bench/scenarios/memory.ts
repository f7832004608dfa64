/**
 * Scenario 4: idle memory. One node, 8,000 idle WebSocket connections (no uid, no room). RSS
 * and V8 heap are read after three forced full GCs, before the clients connect and after; the
 * difference divided by the connections is the cost of one connection. Kernel socket buffers
 * are not in RSS and are not counted.
 */
import { LoadPool } from '../load-client.js';
import {
  errorText,
  fmt,
  gatewireSpec,
  skippedRow,
  socketIoLabel,
  socketIoSpec,
  withServers,
  type Context,
  type Row,
} from './common.js';
import type { ServerSpec } from '../server-process.js';

export async function idleMemory(ctx: Context): Promise<Row[]> {
  const connections = ctx.quick ? 2000 : 8000;
  const setups: { system: Row['system']; label: string; spec: ServerSpec }[] = [
    { system: 'gatewire', label: 'gatewire', spec: gatewireSpec(ctx, { kind: 'local' }, 'm4') },
    { system: 'socketio', label: socketIoLabel('none'), spec: socketIoSpec(ctx, 'none', 'm4') },
  ];
  const rows: Row[] = [];
  for (const setup of setups) {
    if (!ctx.systems.has(setup.system)) continue;
    try {
      rows.push(
        await withServers(ctx, [{ spec: setup.spec, label: setup.label }], async ([server], pools) => {
          const before = await server!.gc();
          const pool = new LoadPool(server!.port, setup.system === 'gatewire' ? 'ws' : 'sio');
          pools.push(pool);
          await pool.open(connections, { concurrency: 200 });
          // Let connection bursts (handshake buffers, queued events) settle before measuring.
          await new Promise((resolve) => setTimeout(resolve, 1000));
          const after = await server!.gc();
          if (after.clients !== connections)
            throw new Error(`the server holds ${after.clients} of ${connections} clients`);
          const rssKb = (after.rss - before.rss) / connections / 1024;
          const heapKb = (after.heapUsed - before.heapUsed) / connections / 1024;
          const externalKb = (after.external - before.external) / connections / 1024;
          ctx.log(
            `  ${setup.label}: ${connections} idle connections: RSS ${fmt(rssKb, 1)} KB, heap ${fmt(heapKb, 1)} KB per connection`,
          );
          return {
            scenario: 'idleMemory',
            system: setup.system,
            label: setup.label,
            complete: true,
            metrics: {
              connections,
              rssKbPerConnection: rssKb,
              heapKbPerConnection: heapKb,
              externalKbPerConnection: externalKb,
              rssBaseMb: before.rss / 2 ** 20,
              rssMb: after.rss / 2 ** 20,
              heapUsedMb: after.heapUsed / 2 ** 20,
            },
            result: `${fmt(rssKb, 1)} KB RSS/conn`,
            cpu: '',
            detail: `heap ${fmt(heapKb, 1)} KB/conn; RSS ${fmt(before.rss / 2 ** 20)} → ${fmt(after.rss / 2 ** 20)} MB`,
          } satisfies Row;
        }),
      );
    } catch (err) {
      ctx.log(`  ${setup.label}: FAILED: ${errorText(err)}`);
      rows.push(skippedRow('idleMemory', setup.system, setup.label, errorText(err)));
    }
  }
  return rows;
}

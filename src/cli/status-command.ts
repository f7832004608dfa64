import { loadConfig } from '../config/load.js';
import { createPublisher } from '../publisher.js';
import type { MemberInfo } from '../cluster/membership.js';

export interface StatusArgs {
  config?: string;
  json?: boolean;
}

function uptime(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** The live cluster as a text table. */
export function formatStatus(members: MemberInfo[], now = Date.now()): string {
  const rows = [
    ['NODE', 'INSTANCE', 'ROLES', 'ADDRESS', 'CLIENTS', 'UIDS', 'GROUPS', 'UPTIME'],
    ...members
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((m) => [
        m.id,
        m.instance,
        m.roles.join(',') || '-',
        m.address || '-',
        String(m.clients),
        String(m.uids),
        String(m.groups),
        uptime(now - m.startedAt),
      ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * `gatewire status`: joins the bus as a publisher, listens to two rounds of announcements, and
 * prints every live node (from any machine that reaches the broker).
 */
export async function statusCommand(args: StatusArgs): Promise<void> {
  const config = loadConfig({ files: args.config ? [args.config] : [] });
  const publisher = await createPublisher(config);
  try {
    await new Promise((resolve) => setTimeout(resolve, config.cluster.announceInterval * 2 + 200));
    const members = publisher.membership.list().filter((m) => m.instance !== publisher.bus.instance);
    const totals = members.reduce((sum, m) => sum + m.clients, 0);
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ nodes: members, clients: totals }, null, 2)}\n`);
    } else {
      process.stdout.write(`${formatStatus(members)}\n${members.length} node(s), ${totals} client(s)\n`);
    }
  } finally {
    await publisher.close();
  }
}

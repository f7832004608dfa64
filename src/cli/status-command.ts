import { loadConfig } from '../config/load.js';
import { createPublisher } from '../publisher.js';
import type { MemberInfo } from '../cluster/membership.js';
import { Op } from '../protocol/commands.js';
import { WIRE_VERSION } from '../protocol/envelope.js';
import type { Publisher } from '../publisher.js';
import { TOKENS } from '../di/tokens.js';
import { logToStderr, requireSharedBus } from './cli-output.js';

export interface StatusArgs {
  config?: string;
  json?: boolean;
  verbose?: boolean;
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

/** How long status waits for more answers after the last one came; @default 300 ms */
const QUIET_MS = 300;

/**
 * Asks every node to announce itself now, and collects the answers: a node answers a newcomer's
 * announcement at once (membership.ts). It ends QUIET_MS after the last answer, and at the
 * latest after two announcement intervals (by then every live node has announced itself anyway).
 * The probe goes by no role, so it is not shown as a node; it leaves the cluster at close.
 */
async function collectMembers(publisher: Publisher, announceInterval: number): Promise<void> {
  const { bus, membership } = publisher;
  const limit = Date.now() + announceInterval * 2 + 200;
  await new Promise<void>((resolve) => {
    let quiet: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(quiet);
      clearTimeout(bound);
      membership.off('join', heard);
      resolve();
    };
    const heard = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(done, Math.max(0, Math.min(QUIET_MS, limit - Date.now())));
    };
    const bound = setTimeout(done, Math.max(0, limit - Date.now()));
    membership.on('join', heard);
    const now = Date.now();
    bus
      .publish({
        op: Op.ANNOUNCE,
        n: {
          i: bus.instance,
          n: 'gatewire-status',
          ro: [],
          ad: '',
          st: now,
          cc: 0,
          uc: 0,
          gc: 0,
          iv: announceInterval,
          wv: WIRE_VERSION,
        },
      })
      // Confirmed: the answers are on their way; without an answer within QUIET_MS nobody runs.
      .then(heard, (err: unknown) => {
        publisher.container
          .get(TOKENS.Logger)
          .warn({ err }, 'status could not ask the nodes; waiting for their own announcements');
      });
  });
}

/**
 * `gatewire status`: joins the bus as a publisher, asks the nodes to announce themselves, and
 * prints every live node (from any machine that reaches the broker).
 */
export async function statusCommand(args: StatusArgs): Promise<void> {
  const config = loadConfig({ files: args.config ? [args.config] : [] });
  requireSharedBus(config, 'status');
  const publisher = await createPublisher(config, logToStderr(config, args.verbose === true));
  let members: MemberInfo[];
  try {
    await collectMembers(publisher, config.cluster.announceInterval);
    // Other status commands' probes have no role: they are no nodes.
    members = publisher.membership.list().filter((m) => m.instance !== publisher.bus.instance && m.roles.length > 0);
    await publisher.bus.publish({ op: Op.LEAVE, i: publisher.bus.instance }).catch(() => undefined);
  } finally {
    await publisher.close();
  }
  const totals = members.reduce((sum, m) => sum + m.clients, 0);
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ nodes: members, clients: totals }, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatStatus(members)}\n${members.length} node(s), ${totals} client(s)\n`);
  }
}

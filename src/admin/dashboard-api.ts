/**
 * What the admin dashboard reads, as JSON (admin-server.ts serves it under /api/):
 *   /api/cluster   the live nodes this node knows of (its Membership: what their announcements
 *                  carry: roles, address, clients, uids, groups, start time) and this node's bus;
 *   /api/stats     this node's counters and their per-second rates, sampled every 2 s for the
 *                  last 5 minutes (other nodes announce counts, not rates: they show counts);
 *   /api/warnings  this node's last warn/error log lines (WarningRing).
 * Sampling starts with the admin server, so the chart has history when the page opens.
 */
import type { Logger } from 'pino';
import { tapLogLines } from '../logger.js';
import type { NodeIdentity } from '../cluster/node-identity.js';
import { dropCounts, type MetricsSource } from './metrics.js';
import { RateHistory, type CounterSample } from './rates.js';
import { WarningRing } from './warning-ring.js';

/** What the dashboard reads (a GatewireNode). */
export interface DashboardSource extends MetricsSource {
  identity: NodeIdentity;
  config: { bus: { kind: string } };
  readonly running: boolean;
}

export interface DashboardOptions {
  /** ms between samples of the counters; @default 2000 */
  sampleInterval?: number;
  /** rate points kept; @default 150 (5 minutes at 2 s) */
  historySize?: number;
  /** warnings kept; @default 50 */
  warnings?: number;
}

export interface NodeRow {
  instance: string;
  id: string;
  self: boolean;
  roles: string[];
  address: string;
  startedAt: number;
  uptimeMs: number;
  clients: number;
  uids: number;
  groups: number;
  /** ms since its last announcement (0 for this node) */
  seenAgoMs: number;
  wireVersion: number;
  /** this node: its bus (connected, disconnected); another: announcing, or suspect (gone from the broker) */
  state: string;
}

export class Dashboard {
  readonly rates: RateHistory;
  readonly warnings: WarningRing;
  private timer: NodeJS.Timeout | undefined;
  private untap: (() => void) | null = null;
  private readonly sampleInterval: number;

  constructor(
    private readonly node: DashboardSource,
    private readonly log: Logger,
    options: DashboardOptions = {},
  ) {
    this.sampleInterval = options.sampleInterval ?? 2000;
    this.rates = new RateHistory(options.historySize ?? 150);
    this.warnings = new WarningRing(options.warnings ?? 50);
  }

  start(): void {
    if (this.untap === null) this.untap = tapLogLines(this.log, this.warnings.add);
    this.sample();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.sample(), this.sampleInterval);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.untap?.();
    this.untap = null;
  }

  /** This node's counters as of now. */
  counters(): CounterSample {
    const gateway = this.node.gateway;
    let drops = 0;
    for (const count of Object.values(dropCounts(this.node))) drops += count;
    return {
      pushes: this.node.bus.stats.pushesConsumed,
      deliveries: gateway?.counters.messagesOut ?? 0,
      drops,
      messagesIn: gateway?.counters.messagesIn ?? 0,
    };
  }

  sample(now = Date.now()): void {
    this.rates.add(now, this.counters());
  }

  cluster(now = Date.now()): { self: string; now: number; bus: Record<string, unknown>; nodes: NodeRow[] } {
    const { bus, gateway, identity } = this.node;
    const selfInstance = identity.instance;
    const rows: NodeRow[] = this.node.membership.list().map((m) => {
      const self = m.instance === selfInstance;
      return {
        instance: m.instance,
        id: m.id,
        self,
        roles: m.roles,
        address: m.address,
        startedAt: m.startedAt,
        uptimeMs: Math.max(0, now - m.startedAt),
        // this node's own numbers as of now; the others' as last announced
        clients: self && gateway ? gateway.registry.size : m.clients,
        uids: self && gateway ? gateway.registry.uids.size : m.uids,
        groups: self && gateway ? gateway.registry.groups.size : m.groups,
        seenAgoMs: self ? 0 : Math.max(0, now - m.lastSeen),
        wireVersion: m.wireVersion,
        state: self ? (bus.isConnected ? 'connected' : 'disconnected') : m.suspect ? 'suspect' : 'announcing',
      };
    });
    rows.sort((a, b) => Number(b.self) - Number(a.self) || a.id.localeCompare(b.id));
    return {
      self: selfInstance,
      now,
      bus: {
        kind: this.node.config.bus.kind,
        connected: bus.isConnected,
        buffered: bus.stats.buffered,
        reconnects: bus.stats.reconnects,
        running: this.node.running,
      },
      nodes: rows,
    };
  }

  stats(): Record<string, unknown> {
    return {
      node: this.node.identity.id,
      instance: this.node.identity.instance,
      sampleInterval: this.sampleInterval,
      totals: this.counters(),
      current: this.rates.current(),
      series: this.rates.series(),
    };
  }

  warningList(): { total: number; capacity: number; warnings: ReturnType<WarningRing['list']> } {
    return { total: this.warnings.total, capacity: this.warnings.capacity, warnings: this.warnings.list() };
  }
}

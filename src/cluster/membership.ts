/**
 * Membership, in place of GatewayWorker's Register: every node announces itself on the bus at a
 * fixed interval; every node keeps the live set; a node silent for cluster.nodeTimeout is dead.
 * There is no registry process to lose.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Op, type NodeAnnouncement } from '../bus/commands.js';
import type { Bus } from '../bus/bus.js';

export interface MemberInfo {
  instance: string;
  id: string;
  roles: string[];
  address: string;
  startedAt: number;
  clients: number;
  uids: number;
  groups: number;
  lastSeen: number;
}

export interface MembershipOptions {
  announceInterval: number;
  nodeTimeout: number;
  /** false for publishers: they listen but do not announce themselves */
  announce: boolean;
}

export class Membership extends EventEmitter {
  private readonly members = new Map<string, MemberInfo>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bus: Bus,
    private readonly options: MembershipOptions,
    /** this node's announcement as of now (counts change) */
    private readonly self: () => NodeAnnouncement,
    private readonly log: Logger,
  ) {
    super();
  }

  start(): void {
    if (this.options.announce) this.record(this.self());
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.announceInterval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    // While the broker is unreachable a LEAVE would wait for a reconnect a stopping process may
    // never see (and stop() would hang); the others then time this node out (cluster.nodeTimeout).
    if (this.options.announce && this.bus.isConnected) {
      await this.bus.publish({ op: Op.LEAVE, i: this.bus.instance }).catch(() => undefined);
    }
  }

  onAnnounce(info: NodeAnnouncement): void {
    if (typeof info?.i !== 'string') return;
    const known = this.members.has(info.i);
    this.record(info);
    if (!known) {
      this.log.info({ node: info.n, instance: info.i, roles: info.ro }, 'node joined');
      this.emit('join', info.i);
      // Answer a newcomer at once so it learns the cluster without waiting a full interval.
      if (this.options.announce && info.i !== this.bus.instance) this.announce();
    }
  }

  onLeave(instance: string): void {
    if (this.members.delete(instance)) {
      this.log.info({ instance }, 'node left');
      this.emit('leave', instance);
    }
  }

  isLive(instance: string): boolean {
    return this.members.has(instance);
  }

  /** Live members, this node included. */
  list(): MemberInfo[] {
    return [...this.members.values()];
  }

  /** Instance tags of live nodes with the gateway role. */
  gateways(): string[] {
    const out: string[] = [];
    for (const m of this.members.values()) if (m.roles.includes('gateway')) out.push(m.instance);
    return out;
  }

  private tick(): void {
    const now = Date.now();
    for (const member of this.members.values()) {
      if (member.instance === this.bus.instance) continue;
      if (now - member.lastSeen > this.options.nodeTimeout) {
        this.members.delete(member.instance);
        this.log.warn({ node: member.id, instance: member.instance }, 'node silent past cluster.nodeTimeout; taken for dead');
        this.emit('leave', member.instance);
      }
    }
    if (this.options.announce) this.announce();
  }

  private announce(): void {
    const info = this.self();
    this.record(info);
    this.bus.publish({ op: Op.ANNOUNCE, n: info }).catch((err: Error) => {
      this.log.debug({ err: err.message }, 'announcement not sent');
    });
  }

  private record(info: NodeAnnouncement): void {
    this.members.set(info.i, {
      instance: info.i,
      id: String(info.n),
      roles: Array.isArray(info.ro) ? info.ro.map(String) : [],
      address: String(info.ad ?? ''),
      startedAt: Number(info.st),
      clients: Number(info.cc) || 0,
      uids: Number(info.uc) || 0,
      groups: Number(info.gc) || 0,
      lastSeen: Date.now(),
    });
  }
}

/**
 * Membership, in place of GatewayWorker's Register: every node announces itself on the bus at a
 * fixed interval; every node keeps the live set; a node silent for cluster.nodeTimeout is dead.
 * There is no registry process to lose.
 *
 * A node the broker shows gone (requests.ts probes it while waiting for its answer) is *suspect*
 * until it announces itself again: requests stop waiting for it, and calls for its clients fail at
 * once, without shortening the silence timeout that protects a merely slow node. Announcements
 * are applied only when new (the bus's sequence check), so a replayed one can neither bring a
 * stopped node back nor clear a suspicion.
 *
 * Announcements also carry the wire version a node speaks (wv); while a node on version 1
 * (gatewire 0.1, which sends none) is live, the bus is told, for a rolling upgrade.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Op, type NodeAnnouncement } from '../protocol/commands.js';
import type { Bus } from '../transport/bus.js';
import { LEGACY_WIRE_VERSION } from '../protocol/envelope.js';

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
  /** the wire version it announced (1: gatewire 0.1) */
  wireVersion: number;
  /** the broker showed it gone; cleared by its next announcement */
  suspect: boolean;
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
    if (this.members.get(info.i)?.suspect)
      this.log.info({ node: info.n, instance: info.i }, 'suspect node announced itself again');
    this.record(info);
    // The transport may need the peers (AMQP: who to wait for after a reconnect, how many bindings).
    this.bus.peerAnnounced(info.i, Number(info.uc) || 0, Number(info.gc) || 0);
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
      this.bus.peerLeft(instance);
      this.emit('leave', instance, 'left');
      this.updateLegacy();
    }
  }

  /** Live (announced within cluster.nodeTimeout) and not shown gone by the broker. */
  isLive(instance: string): boolean {
    const member = this.members.get(instance);
    return member !== undefined && !member.suspect;
  }

  /** The broker showed the node gone (no consumer, no subscription): see the header. */
  suspect(instance: string): void {
    const member = this.members.get(instance);
    if (member === undefined || member.suspect || instance === this.bus.instance) return;
    member.suspect = true;
    this.log.warn(
      { node: member.id, instance },
      'node gone from the broker (no consumer); not waited for until it announces itself again',
    );
    this.emit('suspect', instance);
  }

  isSuspect(instance: string): boolean {
    return this.members.get(instance)?.suspect === true;
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
        this.log.warn(
          { node: member.id, instance: member.instance },
          'node silent past cluster.nodeTimeout; taken for dead',
        );
        // Not told to the transport: a silent node may be one that waits for the broker too (after
        // a broker restart every node is silent for a while), and the AMQP transport must still
        // wait for it to be bound again before sending what waited (peer-barrier.ts).
        this.emit('leave', member.instance, 'silent');
      }
    }
    this.updateLegacy();
    if (this.options.announce) this.announce();
  }

  private announce(): void {
    const info = this.self();
    this.record(info);
    this.bus.publish({ op: Op.ANNOUNCE, n: info }).catch((err: Error) => {
      this.log.debug({ err: err.message }, 'announcement not sent');
    });
  }

  /** Tells the bus whether a node on wire version 1 is live (rolling upgrade). */
  private updateLegacy(): void {
    let legacy = false;
    for (const member of this.members.values())
      if (member.instance !== this.bus.instance && member.wireVersion <= LEGACY_WIRE_VERSION) legacy = true;
    this.bus.setLegacyPeers(legacy);
  }

  private record(info: NodeAnnouncement): void {
    const wireVersion = Number(info.wv) || LEGACY_WIRE_VERSION;
    const before = this.members.get(info.i)?.wireVersion;
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
      wireVersion,
      suspect: false,
    });
    if (before !== wireVersion) this.updateLegacy();
  }
}

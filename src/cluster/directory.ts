/**
 * The holder directory (direct mode; docs/architecture.md, "The directory"): which node holds
 * which uid and group keys, kept on every node from the nodes' own announcements, so that a push
 * goes to the node queues of the nodes that hold its target, and the pushes of one turn to one
 * node travel as one broker message (RabbitMQ pays per message, not per push: docs/benchmarks.md).
 *
 * The broker's bindings stay the truth. Every key is still bound on its node's first holder and
 * unbound on the last, so foreign publishers reach every client, and this node sends by the keys
 * themselves whenever the directory cannot answer: before it holds every peer's state, after a
 * lost broker session, after an event-loop stall, and for keys nobody is known to hold.
 *
 *   - Each node announces the keys it took on and let go of once per turn (DIR_UPDATE on `all`),
 *     numbered, in order behind its other messages.
 *   - A node asks each peer membership reports for its state (DIR_HELLO; the answer DIR_STATE
 *     comes in parts) and applies the peer's later announcements on top. From the hello on, the
 *     peer waits for this node's ack (DIR_ACK) of each announcement.
 *   - `bindUid` / `joinGroup` resolve once the broker confirmed the bind and every node that asked
 *     acked the announcement: after that every gatewire sender routes pushes to the new holder.
 *   - A peer membership takes for dead (silence, LEAVE, or gone from the broker) is no longer
 *     waited for; it is sent a DIR_DROP, so that, if alive after all, it asks again and routes by
 *     key meanwhile. A silent or vanished peer keeps its entries for a while (its queue may
 *     outlive its connection, and what is routed to it waits there); one that left is forgotten.
 */
import type { Logger } from 'pino';
import { Op, type DirectoryCommand, type DirUpdate } from '../protocol/commands.js';
import { DirectoryAnnouncer } from './directory-announcer.js';
import { nodeKey } from '../protocol/routing-keys.js';
import type { Bus } from '../transport/bus.js';
import type { KeyRouter } from '../transport/key-router.js';
import { DirectoryTable } from './directory-table.js';
import type { DirectoryOptions, DirectoryStats } from './directory-options.js';

export type { DirectoryOptions, DirectoryStats } from './directory-options.js';
import type { Membership } from './membership.js';

/** How often the event loop's heartbeat is taken (ms). */
const BEAT_MS = 100;

interface Peer {
  /** its whole state arrived */
  complete: boolean;
  /**
   * When membership took it for dead (silent, or gone from the broker), 0 while alive. Its
   * entries are kept meanwhile (retainMs): a node cut off from the broker comes back with its
   * queue and its keys, and what was sent to its node key waits for it there, as what was sent
   * by its keys would. It is not waited for.
   */
  goneAt: number;
  /** a DIR_STATE is arriving in parts */
  receiving: boolean;
  askedAt: number;
}

export class Directory implements KeyRouter {
  readonly stats: DirectoryStats = { routed: 0, byKey: 0, resets: 0 };
  private readonly table = new DirectoryTable();
  private readonly peers = new Map<string, Peer>();
  /** this node's own keys, announced */
  readonly announcer: DirectoryAnnouncer;
  /** announcer -> the highest announcement to ack this turn */
  private readonly pendingAcks = new Map<string, number>();
  private acksScheduled = false;
  /** when the directory (re)started; 0: not routing (stopped, or the bus is down) */
  private startedAt = 0;
  /** whether it answers route() now (recomputed on every change) */
  private ready = false;
  private lastBeat = Date.now();
  private beat: NodeJS.Timeout | undefined;

  constructor(
    private readonly bus: Bus,
    private readonly membership: Membership,
    private readonly options: DirectoryOptions,
    private readonly log: Logger,
  ) {
    this.announcer = new DirectoryAnnouncer(bus, log);
  }

  get instance(): string {
    return this.bus.instance;
  }

  /** Starts routing through the bus (call once the bus is connected and membership started). */
  start(): void {
    this.bus.keys.setAnnouncer(this.announcer);
    this.bus.keys.setRouter(this);
    this.bus.on('connected', this.onConnected);
    this.bus.on('disconnected', this.onDisconnected);
    this.membership.on('join', this.onJoin);
    this.membership.on('leave', this.onGone);
    this.membership.on('suspect', this.onGone);
    this.beat = setInterval(() => this.tick(), BEAT_MS);
    this.beat.unref();
    if (this.bus.isConnected) this.restart();
  }

  stop(): void {
    clearInterval(this.beat);
    this.bus.keys.setRouter(null);
    this.bus.keys.setAnnouncer(null);
    this.bus.off('connected', this.onConnected);
    this.bus.off('disconnected', this.onDisconnected);
    this.membership.off('join', this.onJoin);
    this.membership.off('leave', this.onGone);
    this.membership.off('suspect', this.onGone);
    this.startedAt = 0;
    this.ready = false;
    this.announcer.stop();
  }

  /** Whether route() answers now (every peer's state known, no stall since). */
  get routing(): boolean {
    return this.isReady();
  }

  // ---- routing (KeyRouter) -------------------------------------------------------------

  route(keys: string[]): string[] | null {
    if (!this.isReady()) {
      this.stats.byKey += 1;
      return null;
    }
    if (keys.length === 1) {
      const only = this.nodesOf(keys[0]!);
      if (only === null) this.stats.byKey += 1;
      else this.stats.routed += 1;
      return only;
    }
    const out: string[] = [];
    for (const key of keys) {
      const nodes = this.nodesOf(key);
      if (nodes === null) {
        this.stats.byKey += 1;
        return null;
      }
      for (const node of nodes) if (!out.includes(node)) out.push(node);
    }
    this.stats.routed += 1;
    return out;
  }

  /**
   * Whether `uid`'s key has a holder, exactly, when the directory routes (null: it cannot say).
   * A uid key is `u.<uid>` (one key per uid); with bus.uidBuckets the directory knows buckets only.
   */
  holdsKey(key: string): boolean | null {
    if (!this.isReady()) return null;
    return this.bus.keys.holds(key) || this.liveHolder(key);
  }

  /** Whether a peer not taken for dead holds `key`. */
  private liveHolder(key: string): boolean {
    const holders = this.table.holdersOf(key);
    if (holders === undefined) return false;
    for (const instance of holders) if (this.peers.get(instance)?.goneAt === 0) return true;
    return false;
  }

  /** The instances (other than this one) the directory says hold `key`, sorted. */
  holdersOf(key: string): string[] {
    return [...(this.table.holdersOf(key) ?? [])].sort();
  }

  /** Distinct keys starting with `prefix` held anywhere, exactly (null: it cannot say). */
  countKeys(prefix: string): number | null {
    if (!this.isReady()) return null;
    let n = 0;
    for (const key of this.table.keys()) if (key.startsWith(prefix) && this.liveHolder(key)) n += 1;
    for (const key of this.bus.desiredKeys()) if (key.startsWith(prefix) && !this.liveHolder(key)) n += 1;
    return n;
  }

  /** The node keys of a key's holders, or null for a key nobody is known to hold (or not a held kind). */
  private nodesOf(key: string): string[] | null {
    if (!key.startsWith('u') && !key.startsWith('g')) return key.startsWith('n.') ? [key] : null;
    const holders = this.table.holdersOf(key);
    const self = this.bus.keys.holds(key);
    if (holders === undefined) return self ? [nodeKey(this.instance)] : null;
    const out: string[] = self ? [nodeKey(this.instance)] : [];
    for (const instance of holders) out.push(nodeKey(instance));
    return out;
  }

  private isReady(): boolean {
    if (!this.ready) return false;
    if (Date.now() - this.lastBeat > this.options.stallMs) {
      this.reset('the event loop stalled');
      return false;
    }
    return true;
  }

  private recompute(): void {
    let ready = this.startedAt > 0 && Date.now() - this.startedAt >= this.options.settleMs;
    if (ready) for (const peer of this.peers.values()) if (!peer.complete && peer.goneAt === 0) ready = false;
    if (ready !== this.ready) this.log.debug({ ready, peers: this.peers.size }, 'directory routing changed');
    this.ready = ready;
  }

  // ---- what arrives ----------------------------------------------------------------------

  /** A directory command from the bus (the dispatcher checked that `i` is its sender). */
  onCommand(cmd: DirectoryCommand): void {
    if (cmd.i === this.instance) return;
    switch (cmd.op) {
      case Op.DIR_HELLO:
        return this.onHello(cmd.i);
      case Op.DIR_STATE:
        return this.onState(cmd.i, cmd.k, cmd.m !== 0);
      case Op.DIR_UPDATE:
        return this.onUpdate(cmd);
      case Op.DIR_ACK:
        return this.announcer.acked(cmd.i, cmd.s);
      case Op.DIR_DROP:
        return this.onDrop(cmd.i);
    }
  }

  /** A peer asks for this node's keys: it gets them, and acks every announcement from now on. */
  private onHello(peer: string): void {
    // Only a member can be waited for: a process membership does not list could die unnoticed.
    if (!this.membership.isLive(peer)) {
      this.log.debug({ peer }, 'directory hello from a node membership does not list; ignored');
      return;
    }
    for (const part of this.announcer.stateFor(peer)) this.send(part);
    if (!this.alive(peer)) this.ask(peer);
  }

  /** Whether the peer is asked or answered, and not taken for dead. */
  private alive(peer: string): boolean {
    return this.peers.get(peer)?.goneAt === 0;
  }

  private onState(peer: string, keys: string[], more: boolean): void {
    const state = this.peers.get(peer);
    // Not asked (or dropped since): a later hello brings the state again.
    if (state === undefined || state.complete) return;
    if (!state.receiving) {
      this.table.dropNode(peer);
      state.receiving = true;
      state.goneAt = 0;
    }
    for (const key of keys) this.table.add(peer, key);
    // An answer arriving is not asked for again: the next part of this one would start the state
    // over (dropping the parts before it), and complete it with what is left.
    state.askedAt = Date.now();
    if (more) return;
    state.receiving = false;
    state.complete = true;
    this.recompute();
  }

  private onUpdate(cmd: DirUpdate): void {
    const peer = cmd.i;
    // Acked whatever this node's state of the peer: the peer may still wait for it from an
    // earlier hello, and an ack costs one small message per turn.
    this.queueAck(peer, cmd.s);
    // A node this one has not asked yet (membership has not told of it yet), or took for dead:
    // it is alive, so it is asked now (the state it answers with includes this update), and the
    // update applies meanwhile (routing waits for the answer).
    if (!this.alive(peer)) this.ask(peer);
    for (const key of cmd.a) this.table.add(peer, key);
    for (const key of cmd.o) this.table.remove(peer, key);
  }

  /** The peer stopped waiting for this node's acks: its entry may have missed updates. */
  private onDrop(peer: string): void {
    if (this.peers.has(peer)) this.ask(peer);
  }

  private queueAck(peer: string, s: number): void {
    this.pendingAcks.set(peer, Math.max(s, this.pendingAcks.get(peer) ?? 0));
    if (this.acksScheduled) return;
    this.acksScheduled = true;
    setImmediate(() => {
      this.acksScheduled = false;
      for (const [announcer, seq] of this.pendingAcks)
        this.send({ op: Op.DIR_ACK, i: this.instance, t: announcer, s: seq });
      this.pendingAcks.clear();
    });
  }

  // ---- peers ---------------------------------------------------------------------------

  private readonly onJoin = (instance: string): void => {
    if (instance !== this.instance && this.startedAt > 0 && !this.alive(instance)) this.ask(instance);
  };

  /**
   * Membership took the peer for dead: it is no longer waited for, and told (if alive after all,
   * it asks again). A node that left (LEAVE) is forgotten; one that fell silent or vanished from
   * the broker keeps its entries for retainMs (see Peer.goneAt).
   */
  private readonly onGone = (instance: string, why?: 'left' | 'silent'): void => {
    if (instance === this.instance) return;
    if (this.announcer.forget(instance)) this.send({ op: Op.DIR_DROP, i: this.instance, t: instance });
    const peer = this.peers.get(instance);
    if (why === 'left') {
      this.peers.delete(instance);
      this.table.dropNode(instance);
    } else if (peer !== undefined && peer.goneAt === 0) {
      peer.goneAt = Date.now();
      peer.receiving = false;
    }
    this.recompute();
  };

  private readonly onConnected = (): void => this.restart();

  /**
   * The broker session is gone: peers may have stopped waiting for this node's acks meanwhile, so
   * it routes by key until every live peer answered again. The entries stay (they are replaced
   * by the answers; a peer that does not come back keeps them for retainMs).
   */
  private readonly onDisconnected = (): void => {
    this.startedAt = 0;
    this.ready = false;
    for (const peer of this.peers.values()) {
      peer.complete = false;
      peer.receiving = false;
    }
  };

  private reset(why: string): void {
    this.stats.resets += 1;
    this.log.warn({ why }, 'directory dropped; asking every node again (pushes go by key meanwhile)');
    this.onDisconnected();
    if (this.bus.isConnected) this.restart();
  }

  private restart(): void {
    const now = Date.now();
    this.startedAt = now;
    this.lastBeat = now;
    // A peer membership does not list (now) is not waited for: it keeps its entries for retainMs,
    // and is asked when it shows up. Nor is a suspect member: it would not answer.
    for (const [instance, peer] of this.peers)
      if (!this.membership.isLive(instance) && peer.goneAt === 0) peer.goneAt = now;
    for (const { instance } of this.membership.list())
      if (instance !== this.instance && this.membership.isLive(instance)) this.ask(instance);
    this.recompute();
  }

  private ask(peer: string): void {
    this.peers.set(peer, { complete: false, receiving: false, askedAt: Date.now(), goneAt: 0 });
    this.ready = false;
    this.send({ op: Op.DIR_HELLO, i: this.instance, t: peer });
  }

  private tick(): void {
    const now = Date.now();
    const stalled = now - this.lastBeat > this.options.stallMs;
    this.lastBeat = now;
    if (stalled && this.startedAt > 0) {
      this.reset('the event loop stalled');
      return;
    }
    if (this.startedAt === 0) return;
    for (const [peer, state] of this.peers) {
      if (state.goneAt > 0) {
        if (now - state.goneAt > this.options.retainMs) {
          this.peers.delete(peer);
          this.table.dropNode(peer);
        }
      } else if (!state.complete && now - state.askedAt > this.options.askAgainMs) {
        // Asked again while membership lists it; else not waited for any more.
        if (this.membership.isLive(peer)) this.ask(peer);
        else state.goneAt = now;
      }
    }
    if (!this.ready) this.recompute();
  }

  private send(cmd: DirectoryCommand): void {
    this.bus
      .publish(cmd)
      .catch((err: Error) => this.log.debug({ err: err.message, op: cmd.op }, 'directory message not sent'));
  }
}

/**
 * After a reconnect, hold this node's waiting commands until the other nodes are ready again.
 *
 * Why: queues are not durable, so when the broker restarts each node comes back with a NEW,
 * empty queue that receives nothing until it has re-bound its keys (after a mere connection loss
 * the queue survives, amqp-topology.ts, and this wait costs one round trip). A node that reconnected first and flushed the commands it
 * buffered during the outage would send them into queues that do not exist yet: the broker
 * confirms them, and no one ever gets them. So, before flushing, a reconnected node waits until
 * it has heard, on its new queue, from every peer it knew before the loss:
 *   - a peer is a node that announces itself (membership ANNOUNCE); publishers are not peers;
 *   - "heard" means an ANNOUNCE or a READY from it arrived on the new connection. A node sends
 *     READY right after its own re-bind (before its own barrier, so two recovering nodes cannot
 *     wait for each other), and answers every READY it receives with a READY-ACK to the asker,
 *     so a node whose peers never lost their connection hears from them within one round trip;
 *   - a peer that does not show up within waitMs (default: cluster.nodeTimeout + the largest
 *     reconnect delay) is taken for gone, and the commands go out anyway.
 * A receiver that drops while its publishers stay connected needs no barrier: its queue keeps
 * what they publish meanwhile (docs/wire-format.md).
 *
 * A process that lost the broker within learnMs of its first connection (a publisher created
 * just before, a node just started) may know no peer only because no ANNOUNCE (every
 * cluster.announceInterval) reached it yet. Such a process, if it knows no peer, waits for the
 * first node to announce itself on the new connection (a node does once it has re-bound its
 * keys), at most waitMs; a process older than that which knows no peer is alone and waits for no
 * one. (Found by bench:login: a publisher created 0.3 s before a broker restart flushed its probes
 * while the node was still re-binding.)
 */
/** In `missing` when a process that knew no peer yet heard no node within the wait. */
export const UNKNOWN_PEERS = '(any node: none was known yet)';

export interface BarrierResult {
  /** peers that were waited for */
  expected: string[];
  /** of those, the ones not heard from before the deadline */
  missing: string[];
}

export class PeerBarrier {
  /** instance -> last time it announced itself */
  private readonly peers = new Map<string, number>();
  /** instances heard from on the current connection */
  private heard = new Set<string>();
  /** whether a node announced itself on the current connection */
  private heardNode = false;
  /** when this process first connected; 0 until it has */
  private firstConnectedAt = 0;
  private wake: (() => void) | null = null;

  /** learnMs: how long a new process may know no peer for want of an ANNOUNCE. @default 2000 */
  constructor(
    private readonly self: string,
    private readonly waitMs: number,
    private readonly learnMs = 2000,
  ) {}

  /** A connection is usable (the first one starts the learning time). */
  connected(): void {
    if (this.firstConnectedAt === 0) this.firstConnectedAt = Date.now();
  }

  /** An ANNOUNCE from `instance` arrived. */
  announced(instance: string): void {
    if (instance === this.self) return;
    this.peers.set(instance, Date.now());
    this.heardNode = true;
    this.heardFrom(instance);
  }

  /** A READY or READY-ACK from `instance` arrived (it may be a publisher: not made a peer). */
  heardFrom(instance: string): void {
    if (instance === this.self) return;
    this.heard.add(instance);
    this.wake?.();
  }

  /** The peer left the cluster (LEAVE): nobody waits for it. */
  left(instance: string): void {
    this.peers.delete(instance);
    this.wake?.();
  }

  /** A new connection: nobody has been heard on it yet. */
  reset(): void {
    this.heard = new Set();
    this.heardNode = false;
  }

  /**
   * Resolves once every peer that announced itself within waitMs before `lostAt` has been heard
   * on this connection, or waitMs after the call. `cancel` ends the wait early (connection lost,
   * bus closed); the barrier then resolves with the peers still missing.
   */
  async wait(lostAt: number, cancel: Promise<unknown>): Promise<BarrierResult> {
    const expected: string[] = [];
    for (const [instance, lastSeen] of this.peers) {
      if (lastSeen >= lostAt - this.waitMs) expected.push(instance);
      else this.peers.delete(instance); // silent longer than a node may be: gone
    }
    // Young and peerless: the peers are unknown, so wait for the first node that announces itself.
    const unknownPeers =
      expected.length === 0 && this.firstConnectedAt > 0 && lostAt - this.firstConnectedAt < this.learnMs;
    const missing = (): string[] =>
      unknownPeers && !this.heardNode
        ? [UNKNOWN_PEERS]
        : expected.filter((p) => !this.heard.has(p) && this.peers.has(p));
    if (missing().length === 0) return { expected, missing: [] };
    let timer: NodeJS.Timeout | undefined;
    let cancelled = false;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      timer = setTimeout(done, this.waitMs);
      timer.unref();
      this.wake = () => {
        if (missing().length === 0) done();
      };
      cancel.then(
        () => undefined,
        () => {
          cancelled = true;
          done();
        },
      );
    });
    return { expected, missing: cancelled ? expected : missing() };
  }
}

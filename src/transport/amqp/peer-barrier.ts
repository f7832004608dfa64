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
 */
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
  private wake: (() => void) | null = null;

  constructor(
    private readonly self: string,
    private readonly waitMs: number,
  ) {}

  /** An ANNOUNCE from `instance` arrived. */
  announced(instance: string): void {
    if (instance === this.self) return;
    this.peers.set(instance, Date.now());
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
    const missing = (): string[] => expected.filter((p) => !this.heard.has(p) && this.peers.has(p));
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

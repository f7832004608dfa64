/** The holder directory's settings and counters (directory.ts). */
export interface DirectoryOptions {
  /**
   * After a (re)start, the directory routes only once this long has passed, so that every live
   * peer has announced itself and been asked. @default 2 × cluster.announceInterval
   */
  settleMs: number;
  /**
   * A turn that starts this long after the previous beat (the event loop stalled) drops the
   * directory and asks every peer again: its peers may have stopped waiting for this node's
   * acks meanwhile. @default cluster.nodeTimeout / 2
   */
  stallMs: number;
  /** a peer that did not answer a hello within this long is asked again. @default 2 × settleMs */
  askAgainMs: number;
  /**
   * How long the entries of a peer taken for dead are kept (routing to it goes on meanwhile):
   * as long as its node queue outlives its connection. @default 60000 (the node queue's x-expires)
   */
  retainMs: number;
}

export interface DirectoryStats {
  /** commands routed by the directory, and by their own keys while it could not answer */
  routed: number;
  byKey: number;
  resets: number;
}

/**
 * What the bus asks of a holder directory (cluster/directory.ts) in direct mode: where to send a
 * command, and to announce the keys this node takes on and lets go of. Both are optional: without
 * them the bus sends by the commands' own keys, which the broker's bindings route (the truth, and
 * what foreign publishers use).
 */
export interface KeyRouter {
  /**
   * The node keys (`n.<instance>`) of every node holding one of `keys`, or null when the
   * directory cannot say for all of them (the command then goes by its own keys).
   */
  route(keys: string[]): string[] | null;
}

export interface KeyAnnouncer {
  /** This node holds `key`: resolves once every node routing by a directory knows it. */
  held(key: string): Promise<void>;
  /** This node's last holder of `key` let go of it. */
  released(key: string): void;
}

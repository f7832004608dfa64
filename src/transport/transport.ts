/**
 * The transport contract: what a broker adapter implements, and all it implements (DESIGN §8;
 * docs/architecture.md, "Adding a broker"). An adapter moves bytes: it connects (and reconnects)
 * to its broker, sends batches in order and says when the broker has them, binds and unbinds
 * routing keys, and hands every message it receives to the bus. Everything that is the same for
 * every broker — batching, splitting and merging, the envelope and its signature, the sequence
 * and replay rules, the desired key set and its replay after a reconnect, counters — is the
 * bus's (bus.ts), which calls the adapter through this interface and is called back through
 * TransportHooks.
 *
 * An application can bind its own transport through DI (TOKENS.Transport): the bus, and with it
 * every guarantee above the adapter, stays the same.
 */
import type { Command } from '../protocol/commands.js';

/** One broker message on its way out. */
export interface OutgoingBatch {
  /** distinct routing keys of its commands (direct mode); empty in fanout mode */
  readonly keys: string[];
  readonly commands: Command[];
  /**
   * The envelope to send now: stamped with the present time and, from the first call on, always
   * the same sequence number (so a retransmit is recognised by receivers). Seal in the order the
   * messages go out: sequence numbers are drawn at the first seal.
   */
  seal(): Buffer;
  /**
   * seal() as a function that holds the packed commands only (not the command objects): for an
   * adapter that keeps a message until the broker confirmed it.
   */
  sealer(): () => Buffer;
  /** upper bound of seal()'s length */
  readonly bytes: number;
}

/** What the broker says about a node's presence (its queue's consumer, its subscription). */
export type Presence = 'present' | 'absent' | 'unknown';

/** The bus's side, given to the adapter at connect. */
export interface TransportHooks {
  /** Whether the bus counts as connected (the adapter's setup after a (re)connect is done). */
  readonly isConnected: boolean;
  /** Every broker message that arrives; `viaKey` where a message names one key (no CC). True if new and applied. */
  receive(data: Uint8Array, viaKey?: string): boolean;
  /** Commands from an in-process broker, already decoded (the local adapter). */
  receiveDecoded(commands: Command[], sender: string, seq: number): void;
  /** The link is up (after the adapter's setup) or down. */
  setConnected(connected: boolean): void;
  /** After every (re)connect: binds every desired key again (through bindKey). */
  replaySubscriptions(): Promise<void>;
  /** The keys the bus wants bound now (to unbind those released while disconnected). */
  desiredKeys(): string[];
  /** A reconnect happened (counted). */
  countReconnect(): void;
  /** The broker refused a message for its size and said its limit. */
  learnBrokerLimit(bytes: number): void;
  /** The broker refused a message: it is dropped (the adapter rejects its callers). */
  countRefused(bytes: number, reason: string): void;
  /** An envelope without commands or sequence number, for the adapter's own signals. */
  sealSignal(): Buffer;
  /** An error nothing else will report (logged by the bus). */
  error(err: unknown): void;
}

export interface Transport {
  /**
   * Distinct routing keys one broker message may carry: 1 where the broker publishes to one key at
   * a time (a send for several keys is then split); more where it copies a message to several
   * (AMQP CC). May change while running.
   */
  readonly keysPerMessage: number;
  /** Largest message when bus.maxMessageBytes is 0. */
  readonly defaultMaxMessageBytes: number;
  /** Connects (retrying as the adapter sees fit) and runs its setup; resolves once connected. */
  connect(hooks: TransportHooks): Promise<void>;
  /** The bus is closing: what waits for an unreachable broker may be failed at once. */
  closing(): void;
  /** Closes everything; what still waits is rejected with GW_ERR_BUS_CLOSED. */
  disconnect(): Promise<void>;
  /** Sends batches in order; resolves once the broker has all of them (confirms). */
  transmitAll(batches: OutgoingBatch[]): Promise<unknown>;
  /** Binds a routing key (direct mode); resolves once the broker confirmed it, across reconnects. */
  bindKey(key: string): Promise<void>;
  unbindKey(key: string): Promise<void>;
  /** Whether another node still consumes (see Bus.probe). */
  probe(instance: string): Promise<Presence>;
  /** Membership's view of the peers, for adapters that need it (readiness, routing costs). */
  peerAnnounced(instance: string, uids: number, groups: number): void;
  peerLeft(instance: string): void;
}

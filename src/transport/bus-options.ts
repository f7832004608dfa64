/** The bus's options and counters (bus.ts), apart so that its parts can name them. */
import type { BusMode } from '../protocol/routes.js';

export interface BusOptions {
  /** this process's instance tag */
  instance: string;
  mode: BusMode;
  /** '' leaves messages unsigned */
  secret: string;
  /** 0: one key per uid; N: uids hashed onto N keys */
  uidBuckets: number;
  groupBuckets: number;
  maxBufferedCommands: number;
  maxCommandsPerMessage: number;
  /** this process's start (ms since 1970): the epoch of its messages. @default Date.now() */
  startedAt?: number;
  /** largest broker message in bytes; 0: the transport's default. @default 0 */
  maxMessageBytes?: number;
  /** clock difference tolerated between nodes (signed messages). @default 1000 */
  maxClockSkewMs?: number;
  /** oldest signed message accepted, ms. @default 300000 */
  maxMessageAgeMs?: number;
  /** senders whose sequence state is kept at once. @default 10000 */
  maxSenders?: number;
  /** with a secret, still read signed version-1 messages while 0.1 peers are live. @default false */
  acceptSignedV1?: boolean;
}

export interface BusStats {
  messagesPublished: number;
  commandsPublished: number;
  messagesConsumed: number;
  commandsConsumed: number;
  /**
   * Targets of the commands consumed: a send to n uids, clients or groups counts n (merged sends
   * carry many), any other command 1. What direct mode saves shows here.
   */
  pushesConsumed: number;
  decodeErrors: number;
  signatureErrors: number;
  /** commands dropped alone for a field missing or of the wrong type */
  malformedCommands: number;
  /** messages dropped as repeats: seen already, or behind a later one of the same sender */
  duplicatesDropped: number;
  /** signed messages refused by their time or epoch: replays, captures from before this start */
  replaysRefused: number;
  /** version 1 messages refused (no 0.1 peer is live, or signed without bus.acceptSignedV1) */
  legacyRefused: number;
  /** messages the broker refused (too large for it): dropped, their callers told */
  messagesRefused: number;
  /** API calls refused because one command could not fit in a broker message */
  commandsTooLarge: number;
  reconnects: number;
  buffered: number;
}

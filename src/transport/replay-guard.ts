/**
 * At most once, in order: which incoming bus messages are new (DESIGN §5; docs/wire-format.md,
 * "Sequence and replay rules").
 *
 * Every version 2 message carries its sender, the sender's epoch (its start), a sequence number
 * that grows by one with every message the sender publishes, and its send time. A sender
 * publishes on one connection at a time and the brokers keep the order of one connection's
 * messages to one queue or subscriber, so whatever reaches this node from one sender is in
 * sequence order, with gaps where a message went only to other nodes (direct mode). A message is
 * therefore new only if its sequence number is above the last one applied from that sender and
 * epoch; everything else is a repeat (a redelivery after a reconnect or a frozen consumer, a
 * publisher-confirm retransmit, a replayed capture) or out of order, and is dropped. That one rule
 * gives at most once and per-sender order on every bus, whatever the broker does.
 *
 * With a secret (signed messages) the send time is trusted too, which closes what sequence
 * numbers alone cannot:
 *   - a message stamped more than maxClockSkew in the future is refused;
 *   - a message older than maxAge is refused (nothing legitimate waits that long in a broker);
 *   - from a sender this node has no state for, a message stamped before `floor` is refused. The
 *     floor starts at this node's start minus maxClockSkew, so a capture made before this node
 *     started is refused too, and rises whenever a sender's state must be evicted early (more
 *     than maxSenders senders), to the last time heard from it, so its old messages stay refused.
 * Without a secret anyone with broker access can forge any message, so only the sequence rule
 * applies (it still ends the repeats of redelivery).
 *
 * Memory: one small entry per sender, removed maxAge after the sender was last heard from (its
 * messages are too old by then). A sender that leaves keeps its entry as a tombstone for that
 * time, so a replayed announcement cannot bring a stopped node back. At most maxSenders entries.
 */
import type { EnvelopeHeader } from '../protocol/envelope.js';

export type Verdict =
  /** apply it (then call accept) */
  | 'new'
  /** seen already, or behind a later message of the same sender */
  | 'duplicate'
  /** from an earlier start of the sender */
  | 'old-epoch'
  /** signed, and stamped older than maxAge */
  | 'too-old'
  /** signed, unknown sender, stamped before the floor (before this node started) */
  | 'before-start'
  /** signed, stamped more than maxClockSkew ahead of this node's clock */
  | 'from-future';

export interface ReplayGuardOptions {
  /** messages are signed (bus.secret set): the send time is trusted */
  signed: boolean;
  /** this node's start, ms since 1970 */
  startedAt: number;
  /** @default 1000 (bus.maxClockSkew) */
  maxClockSkewMs: number;
  /** @default 300000 (bus.maxMessageAge) */
  maxAgeMs: number;
  /** @default 10000 */
  maxSenders: number;
  /** the clock, for tests */
  now?: () => number;
}

interface SenderState {
  epoch: number;
  seq: number;
  /** the sender's time of the last message applied */
  time: number;
  /** this node's time when it was last heard from */
  heardAt: number;
  left: boolean;
}

export class ReplayGuard {
  private readonly senders = new Map<string, SenderState>();
  private floor: number;
  private readonly now: () => number;

  constructor(private readonly options: ReplayGuardOptions) {
    this.now = options.now ?? Date.now;
    this.floor = options.startedAt - options.maxClockSkewMs;
  }

  /** Senders tracked now (tombstones included). */
  get size(): number {
    return this.senders.size;
  }

  /** The time before which messages of unknown senders are refused (signed only). */
  get refusedBefore(): number {
    return this.floor;
  }

  check(header: EnvelopeHeader): Verdict {
    const { signed, maxClockSkewMs, maxAgeMs } = this.options;
    if (signed) {
      const now = this.now();
      if (header.time > now + maxClockSkewMs) return 'from-future';
      if (header.time < now - maxAgeMs) return 'too-old';
    }
    const state = this.senders.get(header.sender);
    if (state === undefined) return signed && header.time < this.floor ? 'before-start' : 'new';
    if (header.epoch < state.epoch) return 'old-epoch';
    if (header.epoch > state.epoch) return 'new';
    return header.seq > state.seq ? 'new' : 'duplicate';
  }

  /** Marks a message applied: later messages of the sender must have a higher sequence. */
  accept(header: EnvelopeHeader): void {
    const now = this.now();
    const state = this.senders.get(header.sender);
    if (state !== undefined) {
      if (header.epoch > state.epoch) {
        state.epoch = header.epoch;
        state.left = false;
      }
      state.seq = header.seq;
      if (header.time > state.time) state.time = header.time;
      state.heardAt = now;
      return;
    }
    if (this.senders.size >= this.options.maxSenders) this.evictLeastRecent();
    this.senders.set(header.sender, {
      epoch: header.epoch,
      seq: header.seq,
      time: header.time,
      heardAt: now,
      left: false,
    });
  }

  /** The sender left the cluster: keep its entry as a tombstone until it ages out. */
  left(sender: string): void {
    const state = this.senders.get(sender);
    if (state !== undefined) state.left = true;
  }

  /** Whether the sender's last word was that it left (and it has not started again since). */
  hasLeft(sender: string): boolean {
    return this.senders.get(sender)?.left === true;
  }

  /** Forgets senders not heard from for maxAge (their messages would be refused as too old). */
  sweep(): number {
    const cutoff = this.now() - this.options.maxAgeMs;
    let removed = 0;
    for (const [sender, state] of this.senders) {
      if (state.heardAt < cutoff) {
        this.senders.delete(sender);
        removed += 1;
      }
    }
    return removed;
  }

  private evictLeastRecent(): void {
    let oldest: string | null = null;
    let oldestAt = Number.POSITIVE_INFINITY;
    for (const [sender, state] of this.senders) {
      if (state.heardAt < oldestAt) {
        oldestAt = state.heardAt;
        oldest = sender;
      }
    }
    if (oldest === null) return;
    const state = this.senders.get(oldest)!;
    this.senders.delete(oldest);
    // What it sent until now (stamped at or before its last message) must stay refused; a
    // sender's clock ahead of ours cannot push the floor past our own present.
    this.floor = Math.max(this.floor, Math.min(state.time + 1, this.now()));
  }
}

/**
 * What a gatewire.v1 client's session keeps so that it can resume (docs/client-protocol.md): the
 * counts of messages each way, the messages sent and not yet acknowledged (bounded in bytes), the
 * resume tokens, and the identity its authorizer gave. Pure bookkeeping; resumable.ts and
 * takeover.ts drive it.
 */
import type { OutgoingMessage } from './outgoing-message.js';

/** A message kept for a resume, with the bus message it came in (to drop repeats at a takeover). */
export interface KeptMessage {
  message: OutgoingMessage;
  /** a control (a reply): framed as is, never escaped */
  control: boolean;
  /** the bus sender and sequence number of the message it came in ('' and 0: none) */
  sender: string;
  seq: number;
}

export class ResumeState {
  /** the current token; `previousToken` stays valid until the client acknowledges a welcome */
  token: string | null;
  previousToken: string | null = null;
  /** counted messages sent to the client in this session */
  sent = 0;
  /** counted messages the client acknowledged */
  acked = 0;
  /** counted messages received from the client */
  received = 0;
  /** the number of the first kept message, minus one: older ones are gone (acknowledged or dropped) */
  private floor = 0;
  /** kept[head..] are the kept messages (letting go moves head; the array is compacted now and then) */
  private kept: (KeptMessage | null)[] = [];
  private head = 0;
  private keptBytes = 0;
  /** messages dropped unacknowledged because the bound was reached: a resume before them fails */
  overflowed = false;
  /**
   * While another gateway takes the session over, the live pushes for this (new) session wait
   * here until the old gateway handed over what it kept (takeover.ts); null otherwise.
   */
  holding: KeptMessage[] | null = null;
  private heldBytes = 0;
  /** Old gateway: the session is frozen for a takeover by this clientId, from client seq `handingSeq`. */
  handingTo: string | null = null;
  handingSeq = 0;
  /** bumped at each attach and detach: a socket's events count only while its link is current */
  link = 0;
  /** while suspended: ends the session when the window passes */
  expiry: NodeJS.Timeout | undefined;

  constructor(
    /** gateway.resumeBufferSize: bytes kept at most */
    private readonly maxBytes: number,
    /** what the authorizer said of the session's first connection (null: nothing) */
    readonly identity: string | null,
    /** the first clientId of the session (kept across takeovers: the events' order key) */
    public root: string,
    token: string | null,
  ) {
    this.token = token;
  }

  get bytes(): number {
    return this.keptBytes;
  }

  /** Counts a message sent (or to be sent) and keeps it until acknowledged. */
  record(entry: KeptMessage): void {
    if (this.holding !== null) {
      // Bounded like what is kept: past the bound the session cannot be handed over whole.
      this.holding.push(entry);
      this.heldBytes += entry.message.length;
      while (this.heldBytes > this.maxBytes && this.holding.length > 0) {
        this.heldBytes -= this.holding.shift()!.message.length;
        this.overflowed = true;
      }
      return;
    }
    this.sent += 1;
    this.kept.push(entry);
    this.keptBytes += entry.message.length;
    if (this.keptBytes <= this.maxBytes) return;
    // Over the bound: the oldest go; a resume from before them cannot be served any more.
    let drop = 0;
    while (this.keptBytes > this.maxBytes && this.head + drop < this.kept.length) {
      this.keptBytes -= this.kept[this.head + drop]!.message.length;
      drop += 1;
    }
    this.letGo(drop);
    this.overflowed = true;
  }

  /** The client has `n` messages: the kept ones up to n are let go. False for an impossible n. */
  ack(n: number): boolean {
    if (n > this.sent) return false;
    // An ack after a welcome says the client has the new token.
    this.previousToken = null;
    if (n <= this.acked) return true;
    this.acked = n;
    if (n > this.floor) {
      const drop = n - this.floor;
      for (let i = 0; i < drop; i++) this.keptBytes -= this.kept[this.head + i]!.message.length;
      this.letGo(drop);
    }
    return true;
  }

  /** The kept messages after `seq` (what a client that received seq messages missed), or null if some are gone. */
  since(seq: number): KeptMessage[] | null {
    if (seq < this.floor || seq > this.sent) return null;
    return this.kept.slice(this.head + seq - this.floor) as KeptMessage[];
  }

  /**
   * The `count` oldest kept messages go. Moving the head costs nothing per message; the array is
   * compacted only when more than half of it (and over 1,024 entries) is gone, so a client that
   * never acknowledges costs amortised O(1) per message, not a copy of what is kept.
   */
  private letGo(count: number): void {
    // The slots let go hold nothing: what is kept stays within the byte bound.
    for (let i = 0; i < count; i++) this.kept[this.head + i] = null;
    this.head += count;
    this.floor += count;
    if (this.head > 1024 && this.head * 2 > this.kept.length) {
      this.kept = this.kept.slice(this.head);
      this.head = 0;
    }
  }

  /** Starts the count of a session taken over from another gateway at the client's `seq`. */
  continueFrom(seq: number): void {
    this.sent = seq;
    this.acked = seq;
    this.floor = seq;
    this.kept = [];
    this.head = 0;
    this.keptBytes = 0;
  }
}

/**
 * This node's side of the holder directory (directory.ts): the keys it takes on and lets go of,
 * announced at most once per turn (DIR_UPDATE on `all`, numbered), and each announcement's promise,
 * which resolves once the broker has it and every peer that asked for this node's state (an acker)
 * acked it. `bindUid` / `joinGroup` wait for it (bus-keys.ts).
 *
 * One announcement is in flight at a time: what is taken on or let go of until it is published
 * and acked waits and goes out together in the next one. Logins that trickle in are announced at
 * once, as before; under a stream of logins each announcement (and each peer's ack of it) carries
 * the logins of one round trip instead of one turn's, with no timer to tune, like Nagle's
 * algorithm. A bind waits at most one more round trip than it would alone.
 */
import type { Logger } from 'pino';
import { Op, type DirState, type DirUpdate } from '../protocol/commands.js';
import type { Bus } from '../transport/bus.js';
import type { KeyAnnouncer } from '../transport/key-router.js';
import { deferred, type Deferred } from '../transport/outgoing-batch.js';

/** Keys per DIR_STATE part. @default 1000 (about 30 KB of uids) */
const STATE_PART_KEYS = 1000;

/** Keys (taken on and let go of) per DIR_UPDATE. @default 1000 (about 30 KB of uids) */
const UPDATE_PART_KEYS = 1000;

/** An announcement that could not be published is made again after this long (ms). @default 1000 */
const RETRY_MS = 1000;

function noop(): void {}

interface Announcement {
  /** ackers whose ack is still missing */
  waiting: Set<string>;
  /** the broker confirmed the announcement */
  published: boolean;
  done: Deferred;
}

export class DirectoryAnnouncer implements KeyAnnouncer {
  announcements = 0;
  private seq = 0;
  /** the keys announced as held (what a DIR_STATE answers) */
  private readonly announced = new Set<string>();
  private turnAdded = new Set<string>();
  private turnRemoved = new Set<string>();
  private turnDone: Deferred | null = null;
  private turnScheduled = false;
  private readonly inFlight = new Map<number, Announcement>();
  /** key -> the promise of the announcement that carried it, until every ack came */
  private readonly keyAnnounced = new Map<string, Promise<void>>();
  /** peers that asked for this node's state: each announcement waits for their acks */
  private readonly ackers = new Set<string>();
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  /**
   * The answer to a peer's DIR_HELLO: the keys announced as held, in DIR_STATE parts (one, empty,
   * when there are none). The peer acks every later announcement.
   */
  stateFor(peer: string): DirState[] {
    this.ackers.add(peer);
    const keys = [...this.announced];
    const parts: DirState[] = [];
    for (let start = 0; start === 0 || start < keys.length; start += STATE_PART_KEYS) {
      const k = keys.slice(start, start + STATE_PART_KEYS);
      const m = start + STATE_PART_KEYS < keys.length ? 1 : 0;
      parts.push({ op: Op.DIR_STATE, i: this.bus.instance, t: peer, k, m });
    }
    return parts;
  }

  /** The peer acked announcement `s` and every one before it. */
  acked(peer: string, s: number): void {
    for (const [seq, announcement] of this.inFlight) {
      if (seq > s) break;
      announcement.waiting.delete(peer);
      this.settle(seq, announcement);
    }
  }

  /** The peer is gone: nothing waits for it any more. True if it was an acker. */
  forget(peer: string): boolean {
    const was = this.ackers.delete(peer);
    for (const [seq, announcement] of this.inFlight) {
      announcement.waiting.delete(peer);
      this.settle(seq, announcement);
    }
    return was;
  }

  /** Stopping: nothing waits for acks that will not come, nothing is announced again. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.retry = undefined;
    for (const announcement of this.inFlight.values()) announcement.done.resolve();
    this.inFlight.clear();
    this.turnDone?.resolve(); // held behind an announcement in flight: it will not be acked now
    this.turnDone = null;
  }

  held(key: string): Promise<void> {
    if (this.turnRemoved.delete(key)) return this.keyAnnounced.get(key) ?? Promise.resolve();
    if (this.announced.has(key)) return this.keyAnnounced.get(key) ?? Promise.resolve();
    this.turnAdded.add(key);
    return this.scheduleTurn();
  }

  released(key: string): void {
    if (this.turnAdded.delete(key)) return;
    if (!this.announced.has(key)) return;
    this.turnRemoved.add(key);
    void this.scheduleTurn();
  }

  private scheduleTurn(): Promise<void> {
    this.turnDone ??= deferred();
    this.announceWhenFree();
    return this.turnDone.promise;
  }

  /**
   * Announces what waits in the next turn, unless an announcement (any of its parts) is still in
   * flight or a failed one waits for its retry: then whichever ends it calls this again.
   */
  private announceWhenFree(): void {
    if (this.turnDone === null || this.turnScheduled || this.inFlight.size > 0 || this.retry !== undefined) return;
    this.turnScheduled = true;
    setImmediate(() => this.announceTurn());
  }

  /**
   * The turn's changes as DIR_UPDATEs of at most UPDATE_PART_KEYS keys each (a login storm may
   * take on thousands of keys in one turn); the turn's promise resolves once every part was
   * published and acked by every acker of that moment, and rejects if a part could not be
   * published (the callers are told). The keys of a part that could not be published are
   * announced again a moment later, as they stand then: peers must not miss a holder.
   */
  private announceTurn(): void {
    this.turnScheduled = false;
    const done = this.turnDone ?? deferred(); // null once stop() resolved the callers
    this.turnDone = null;
    if (this.turnAdded.size === 0 && this.turnRemoved.size === 0) {
      done.resolve();
      return;
    }
    const added = [...this.turnAdded];
    const removed = [...this.turnRemoved];
    this.turnAdded = new Set();
    this.turnRemoved = new Set();
    for (const key of added) this.announced.add(key);
    for (const key of removed) {
      this.announced.delete(key);
      this.keyAnnounced.delete(key);
    }
    const parts: Promise<void>[] = [];
    for (let a = 0, o = 0; a < added.length || o < removed.length;) {
      const partAdded = added.slice(a, a + UPDATE_PART_KEYS);
      a += partAdded.length;
      const partRemoved = removed.slice(o, o + UPDATE_PART_KEYS - partAdded.length);
      o += partRemoved.length;
      parts.push(this.announcePart(partAdded, partRemoved));
    }
    const all = parts.length === 1 ? parts[0]! : Promise.all(parts).then(noop);
    all.then(done.resolve, done.reject);
    for (const key of added) this.keyAnnounced.set(key, done.promise);
    void done.promise.catch(noop).then(() => {
      for (const key of added) if (this.keyAnnounced.get(key) === done.promise) this.keyAnnounced.delete(key);
    });
  }

  private announcePart(added: string[], removed: string[]): Promise<void> {
    const s = ++this.seq;
    const done = deferred();
    const announcement: Announcement = { waiting: new Set(this.ackers), published: false, done };
    this.inFlight.set(s, announcement);
    this.announcements += 1;
    const update: DirUpdate = { op: Op.DIR_UPDATE, i: this.bus.instance, s, a: added, o: removed };
    this.bus.publish(update).then(
      () => {
        announcement.published = true;
        this.settle(s, announcement);
      },
      (err: Error) => {
        this.inFlight.delete(s);
        done.reject(err);
        this.announceAgain(added, removed, err);
      },
    );
    return done.promise;
  }

  /** A part was not published: its keys go into a later turn, as they stand then. */
  private announceAgain(added: string[], removed: string[], err: Error): void {
    if (this.stopped) return;
    this.log.warn(
      { err: err.message, added: added.length, removed: removed.length, retryMs: RETRY_MS },
      'directory announcement not sent; announcing its keys again',
    );
    for (const key of added) {
      // let go of since (or about to be, in the next turn): nothing to tell
      if (!this.announced.has(key) || this.turnRemoved.has(key)) continue;
      this.announced.delete(key);
      this.keyAnnounced.delete(key);
      this.turnAdded.add(key);
    }
    for (const key of removed) if (!this.announced.has(key) && !this.turnAdded.has(key)) this.turnRemoved.add(key);
    if (this.retry !== undefined) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.stopped) return;
      if (this.turnAdded.size > 0 || this.turnRemoved.size > 0) void this.scheduleTurn();
      else this.announceWhenFree(); // callers that waited behind the retry, whose keys came and went
    }, RETRY_MS);
    this.retry.unref();
  }

  private settle(s: number, announcement: Announcement): void {
    if (!announcement.published || announcement.waiting.size > 0) return;
    this.inFlight.delete(s);
    announcement.done.resolve();
    this.announceWhenFree();
  }
}

/**
 * The receiving side of the replay log (scripts.ts, docs/wire-format.md "The replay log"): the id of
 * the last logged message this node applied, and after its subscriber connection dropped, the
 * replay of what it missed, in id order and once, before what arrived live meanwhile. The id a
 * message arrives wrapped with is Redis's addition, not signed: it moves the cursor only once the
 * envelope verified and was new, and never past Redis's own clock.
 *
 * One cursor per lane (channels.ts): on one Redis there is one lane and one log; on a cluster
 * each lane has its own log on its own shard, with its own ids and its own clock, and a recovery
 * reads every lane's log from that lane's cursor. A sender publishes on one lane only, so the order
 * of one lane's log is all the per-sender order there is to keep.
 */
import type { Logger } from 'pino';
import type { BusMode } from '../../protocol/routes.js';
import { compareStreamIds, logKey, parseStreamId, type Lane, type StreamId } from './channels.js';
import type { ScriptedRedis } from './redis-publisher.js';

/** Counters specific to this bus (the common ones are in `stats`). */
export interface RedisBusStats {
  /** publish script calls (or PUBLISH pipelines) sent */
  calls: number;
  /** times the sub connection came back and the gap was replayed from the log */
  recoveries: number;
  /** messages applied from the replay log (missed live) */
  replayed: number;
  /** live messages skipped because the log had already applied them */
  duplicatesSkipped: number;
  /** recoveries whose gap reached past the replay window (counted per lane): messages may have been lost */
  gaps: number;
  /** stream ids ahead of Redis's clock, so not made by this Redis: the replay cursor ignored them */
  idsAheadOfClock: number;
  /** publish calls that fewer than bus.redis.waitReplicas replicas confirmed (rejected) */
  notReplicated: number;
}

/**
 * How far ahead of Redis's clock (TIME at setup, allowing for the round trip) a stream id may be
 * and still move the replay cursor; an id further ahead was not made by this Redis. @default 2000
 */
const STREAM_CLOCK_SLACK_MS = 2000;

/**
 * Redis Cluster, the gap check only: how long before its subscriber connection dropped a message
 * published to this node may still have been on its way (not arrived live). @default 2000
 */
const LIVE_SLACK_MS = 2000;

/** Log entries read per XRANGE. */
const REPLAY_PAGE = 1000;

interface Arrived {
  lane: number;
  id: StreamId;
  key: string;
  envelope: Buffer;
}

/** What the cursor needs from its transport. */
export interface ReplayHost {
  readonly replayWindowMs: number;
  readonly mode: BusMode;
  readonly stats: RedisBusStats;
  readonly log: Logger;
  readonly lanes: Lane[];
  /** bumped whenever a connection closes: a replay that started before is stale */
  readonly connEpoch: number;
  desiredKeys(): string[];
  /** hands a message to the bus; true if it verified and was new */
  apply(envelope: Buffer, key: string): boolean;
  /** Redis's clock on a lane's shard, ms */
  redisNow(lane: Lane): Promise<number>;
}

export class ReplayCursor {
  /** per lane: id of the last logged message applied (or the baseline taken at the first connect) */
  private readonly lastIds = new Map<number, StreamId>();
  /** per lane: Redis's clock minus this process's (ms), measured at the first connect */
  private readonly clockOffsets = new Map<number, number>();
  private aheadLoggedAt = 0;
  /** the sub connection dropped: live messages wait in `arrived` until the gap is replayed */
  recovering = false;
  private arrived: Arrived[] = [];
  /** when (this process's clock) the sub connection dropped, for the gap check on a cluster */
  private lostAt = 0;

  constructor(private readonly host: ReplayHost) {}

  /** Whether the baseline was taken (the first connect's setup got that far). */
  get started(): boolean {
    return this.lastIds.size === this.host.lanes.length;
  }

  /** At the first connect: the log's present end (Redis's clock) is where a later replay starts. */
  baseline(lane: Lane, redisNow: number): void {
    this.clockOffsets.set(lane.index, redisNow - Date.now());
    if (!this.lastIds.has(lane.index)) this.lastIds.set(lane.index, parseStreamId(`${redisNow}-0`));
  }

  /** The subscriber connection dropped: what arrives live waits until the gap is replayed. */
  subscriberLost(): void {
    if (!this.started || this.recovering) return;
    this.recovering = true;
    this.lostAt = Date.now();
    this.arrived = [];
  }

  /** A live message in the wrapped form, on a lane. */
  onWrapped(lane: Lane, id: StreamId, envelope: Buffer, key: string): void {
    if (this.recovering) {
      this.arrived.push({ lane: lane.index, id, key, envelope });
      return;
    }
    if (this.host.apply(envelope, key)) this.advance(lane.index, id);
  }

  /**
   * Applies, in order, what the node missed while its sub connection was down: per lane, the log
   * entries after the last id it applied there, for the keys it holds, then the live messages that
   * arrived meanwhile and were not in that read. Runs after every desired channel is subscribed
   * again, so anything published after the read arrives live. False if a connection dropped
   * meanwhile (the next setup goes on from where this one got).
   */
  async replayGap(pub: ScriptedRedis, epoch: number): Promise<boolean> {
    const held = this.host.mode === 'fanout' ? null : new Set(this.host.desiredKeys());
    let replayed = 0;
    const from: string[] = [];
    for (const lane of this.host.lanes) {
      const result = await this.replayLane(pub, epoch, lane, held);
      if (result === null) return false;
      replayed += result.replayed;
      from.push(result.from);
    }
    // No await from here on: live messages that arrive later find recovering off.
    for (const live of this.arrived) {
      if (compareStreamIds(live.id, this.lastIds.get(live.lane)!) <= 0) {
        this.host.stats.duplicatesSkipped += 1;
        continue;
      }
      if (this.host.apply(live.envelope, live.key)) this.advance(live.lane, live.id);
    }
    this.arrived = [];
    this.recovering = false;
    this.host.stats.recoveries += 1;
    this.host.stats.replayed += replayed;
    this.host.log.info(
      { from: from.length === 1 ? from[0] : from, replayed },
      'replayed what the subscriber missed from the replay log',
    );
    return true;
  }

  /** One lane's part of replayGap; null if a connection dropped meanwhile. */
  private async replayLane(
    pub: ScriptedRedis,
    epoch: number,
    lane: Lane,
    held: Set<string> | null,
  ): Promise<{ replayed: number; from: string } | null> {
    const log = logKey(lane.prefix);
    const from = this.lastIds.get(lane.index)!;
    const [head] = (await pub.xrange(log, '-', '+', 'COUNT', 1)) as [string, string[]][];
    const now = await this.host.redisNow(lane);
    if (epoch !== this.host.connEpoch) return null;
    // Trimming removes the oldest entries first: nothing after `from` is missing as long as the
    // log still begins at or before it (or is empty and `from` is within the window). On a
    // cluster, a lane whose senders never wrote to this node's channels leaves its cursor at the
    // first connect: there, only what was published from LIVE_SLACK_MS before the drop on counts
    // (what was published earlier had arrived live while the subscription was up).
    let since = from;
    if (this.host.lanes.length > 1) {
      const dropped = this.lostAt + (this.clockOffsets.get(lane.index) ?? 0) - LIVE_SLACK_MS;
      if (dropped > from.ms) since = parseStreamId(`${dropped}-0`);
    }
    // Trimming only drops ids older than its publish call's time minus the window, so nothing at
    // or after `since` can be gone while `since` is still within the window (a log that began
    // after `since` was simply started then).
    const lost =
      now - this.host.replayWindowMs > since.ms &&
      (head === undefined || compareStreamIds(parseStreamId(head[0]), since) > 0);
    if (lost) {
      this.host.stats.gaps += 1;
      this.host.log.warn(
        { lastApplied: from.text, logStart: head?.[0] ?? null, replayWindowMs: this.host.replayWindowMs },
        'the subscriber was away longer than bus.redis.replayWindow: messages for this node in the gap may be lost',
      );
    }
    let replayed = 0;
    let cursor = from.text;
    for (;;) {
      const page = (await pub.xrangeBuffer(log, `(${cursor}`, '+', 'COUNT', REPLAY_PAGE)) as [Buffer, Buffer[]][];
      if (epoch !== this.host.connEpoch) return null;
      for (const [idBytes, fields] of page) {
        const id = parseStreamId(idBytes.toString('latin1'));
        cursor = id.text;
        if (compareStreamIds(id, this.lastIds.get(lane.index)!) <= 0) continue;
        const { key, envelope } = logFields(fields);
        if (key === null || envelope === null || (held !== null && !held.has(key))) continue;
        replayed += 1;
        if (this.host.apply(envelope, key)) this.advance(lane.index, id);
      }
      if (page.length < REPLAY_PAGE) break;
    }
    return { replayed, from: from.text };
  }

  /** Moves a lane's replay cursor to `id`, unless it lies ahead of Redis's clock (forged). */
  advance(lane: number, id: StreamId): void {
    if (id.ms > Date.now() + (this.clockOffsets.get(lane) ?? 0) + STREAM_CLOCK_SLACK_MS) {
      this.host.stats.idsAheadOfClock += 1;
      const now = Date.now();
      if (now - this.aheadLoggedAt >= 1000) {
        this.aheadLoggedAt = now;
        this.host.log.warn(
          { id: id.text.slice(0, 40) },
          "a replay-log id ahead of Redis's clock: ignored for the replay cursor",
        );
      }
      return;
    }
    const last = this.lastIds.get(lane);
    if (last === undefined || compareStreamIds(id, last) > 0) this.lastIds.set(lane, id);
  }
}

/** The c (key) and m (envelope) fields of a log entry. */
function logFields(fields: Buffer[]): { key: string | null; envelope: Buffer | null } {
  let key: string | null = null;
  let envelope: Buffer | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString('latin1');
    if (name === 'c') key = fields[i + 1]!.toString('utf8');
    else if (name === 'm') envelope = fields[i + 1]!;
  }
  return { key, envelope };
}

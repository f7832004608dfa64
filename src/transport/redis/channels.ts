/**
 * Redis names used by the Redis bus (docs/wire-format.md, "Redis" is the contract).
 *
 * Channels (pub/sub):
 *   direct mode   <prefix>:<routing key>   e.g. gatewire:n.lx2k9q0a1b2c, gatewire:all,
 *                                          gatewire:u.alice, gatewire:g.room1, gatewire:ub.17
 *   fanout mode   <prefix>:fanout          one channel for every command
 * The fanout channel is deliberately not <prefix>:all (the direct mode's broadcast channel): a
 * cluster whose nodes disagree on bus.mode then splits into two clusters that do not see each
 * other at all (as the AMQP bus does with one exchange per mode), instead of one cluster that
 * shares announcements and broadcasts but silently loses every per-key push.
 *
 * Keys (with bus.redis.replayWindow > 0, see scripts.ts):
 *   <prefix>:log               stream  every message of the last replayWindow ms: c = key, m = envelope
 *   <prefix>:ack:<instance>    string  the last publish call id of a process (expires)
 */

/** The one channel of fanout mode, as a key under the prefix. */
export const FANOUT_KEY = 'fanout';

export function channelOf(prefix: string, key: string): string {
  return `${prefix}:${key}`;
}

export function fanoutChannel(prefix: string): string {
  return channelOf(prefix, FANOUT_KEY);
}

export function logKey(prefix: string): string {
  return `${prefix}:log`;
}

export function ackKey(prefix: string, instance: string): string {
  return `${prefix}:ack:${instance}`;
}

/** A stream id "<ms>-<seq>" as numbers, for comparing. */
export interface StreamId {
  ms: number;
  seq: number;
  text: string;
}

export function parseStreamId(text: string): StreamId {
  const dash = text.indexOf('-');
  return { ms: Number(text.slice(0, dash)), seq: Number(text.slice(dash + 1)), text };
}

/** <0, 0, >0 as a is before, equal to, after b. */
export function compareStreamIds(a: StreamId, b: StreamId): number {
  return a.ms !== b.ms ? a.ms - b.ms : a.seq - b.seq;
}

/**
 * Reads the wrapped form [id, envelope] (scripts.ts) without copying the envelope; null when the
 * bytes are not in that form (a plain envelope from another program, or garbage).
 */
export function unwrap(data: Buffer): { id: string; envelope: Buffer } | null {
  if (data.length < 5 || data[0] !== 0x92 || data[1] !== 0xd9) return null;
  const idLength = data[2]!;
  let at = 3 + idLength;
  if (at >= data.length) return null;
  const id = data.toString('latin1', 3, at);
  const type = data[at]!;
  let size: number;
  if (type === 0xc4 && at + 1 < data.length) {
    size = data[at + 1]!;
    at += 2;
  } else if (type === 0xc5 && at + 2 < data.length) {
    size = data.readUInt16BE(at + 1);
    at += 3;
  } else if (type === 0xc6 && at + 4 < data.length) {
    size = data.readUInt32BE(at + 1);
    at += 5;
  } else {
    return null;
  }
  if (at + size !== data.length) return null;
  return { id, envelope: data.subarray(at) };
}

/**
 * Redis Cluster (bus.redis.cluster): the bus runs on CLUSTER_LANES lanes. A lane is one hash tag,
 * `{<prefix>:l<n>-<j>}`, so its channels, its replay log and its ack keys live in one slot, which
 * lets the publish script append and SPUBLISH in that slot. Every process publishes on one lane
 * (laneOf its instance), so whatever it sends takes one path through one shard and reaches every
 * receiver in the order it was sent, as the replay guard requires (replay-guard.ts: one sequence
 * per sender). Every node subscribes its keys on every lane. <j> is the first suffix that puts
 * lane n's slot in the n-th of CLUSTER_LANES equal parts of the slot space, so that on a cluster
 * whose masters own contiguous slot ranges (what `redis-cli --cluster create` makes) the lanes,
 * their channels and their logs spread evenly over the masters.
 *
 * Channels and keys on a cluster (lane prefix L = `{<prefix>:l<n>-<j>}`):
 *   L:<routing key> / L:fanout   sharded channels (SSUBSCRIBE, SPUBLISH)
 *   L:log                        stream: the lane's replay log
 *   L:ack:<instance>             string: the last publish call id of a process on that lane
 * @default 16 (at least 20% of the lanes on each master of a 3-master cluster, and room to spread
 * over up to 16 masters)
 */
export const CLUSTER_LANES = 16;

/** Redis Cluster's hash slots. */
export const CLUSTER_SLOTS = 16384;

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster takes a key's slot from. */
function crc16(bytes: Buffer): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The slot of a key, by its hash tag when it has a non-empty one. */
export function keySlot(key: string): number {
  let hashed = key;
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) hashed = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(hashed, 'utf8')) % CLUSTER_SLOTS;
}

/** One lane: its prefix (the hash tag) and its slot. */
export interface Lane {
  index: number;
  prefix: string;
  slot: number;
}

/** The lanes of a prefix on a cluster (see CLUSTER_LANES). */
export function clusterLanes(prefix: string, count = CLUSTER_LANES): Lane[] {
  const lanes: Lane[] = [];
  const width = CLUSTER_SLOTS / count;
  for (let index = 0; index < count; index++) {
    // Expected `count` tries per lane; bounded so a pathological prefix still gets a lane.
    let chosen: Lane | null = null;
    for (let j = 0; j < 100 * count && chosen === null; j++) {
      const tag = `{${prefix}:l${index}-${j}}`;
      const slot = keySlot(tag);
      if (slot >= index * width && slot < (index + 1) * width) chosen = { index, prefix: tag, slot };
    }
    const fallback = `{${prefix}:l${index}}`;
    lanes.push(chosen ?? { index, prefix: fallback, slot: keySlot(fallback) });
  }
  return lanes;
}

/** The lane a process publishes on. */
export function laneOf(instance: string, count = CLUSTER_LANES): number {
  return crc16(Buffer.from(instance, 'utf8')) % count;
}

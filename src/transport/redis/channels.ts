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

/**
 * Redis names used by the Redis bus (docs/redis-wire-format.md is the contract).
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
 * Keys (only with bus.redis.deliveryCheck, see scripts.ts):
 *   <prefix>:live              hash  instance -> ms (Redis clock) until which the node counts as live
 *   <prefix>:acks              hash  instance -> "<call id>:<result>" of its last publish call
 *   <prefix>:holders:<key>     set   instances holding a uid or group key (u., ub., g., gb.)
 */
import type { BusMode } from '../../config/formats.js';

/** The one channel of fanout mode, as a key under the prefix. */
export const FANOUT_KEY = 'fanout';

export function channelOf(prefix: string, key: string): string {
  return `${prefix}:${key}`;
}

export function fanoutChannel(prefix: string): string {
  return channelOf(prefix, FANOUT_KEY);
}

export function livenessKey(prefix: string): string {
  return `${prefix}:live`;
}

export function acksKey(prefix: string): string {
  return `${prefix}:acks`;
}

export function holdersKey(prefix: string, key: string): string {
  return `${prefix}:holders:${key}`;
}

/** Keys whose holders are not known from liveness alone: uid and group keys and their buckets. */
export function isHolderKey(key: string): boolean {
  return key.startsWith('u.') || key.startsWith('g.') || key.startsWith('ub.') || key.startsWith('gb.');
}

/**
 * What the publish script checks before it publishes to a channel (scripts.ts):
 *   'n'  the node named in `arg` must be subscribed if it is live (node keys)
 *   'a'  every live bus must be subscribed (direct mode `all`, the fanout channel)
 *   'h'  every live instance in the holder set `arg` must be subscribed (uid and group keys)
 *   ''   no check, but in order behind messages held back on the same channel
 *   '-'  no check and not held behind anything (control messages: announcements, queries)
 */
export type Check = 'n' | 'a' | 'h' | '' | '-';

export function checkOf(prefix: string, mode: BusMode, key: string | null): { check: Check; arg: string } {
  if (mode === 'fanout' || key === null || key === 'all') return { check: 'a', arg: '' };
  if (key.startsWith('n.')) return { check: 'n', arg: key.slice(2) };
  if (isHolderKey(key)) return { check: 'h', arg: holdersKey(prefix, key) };
  return { check: '', arg: '' };
}

/**
 * Routing keys, the one place that spells them (docs/wire-format.md, "Routing keys"). A key names
 * what a message is for; in direct mode a node binds exactly the keys of what it holds:
 *   n.<instance>            a node (its clients, its replies, its readiness signals)
 *   all                     every node (broadcasts, announcements, queries to all)
 *   u.<uid> | ub.<bucket>   the nodes holding a client bound to the uid (bus.uidBuckets)
 *   g.<group> | gb.<bucket> the nodes holding a member of the group (bus.groupBuckets)
 * Redis channels are <prefix>:<key>; RabbitMQ routing keys are the keys themselves.
 */
import { Op, type Command } from './commands.js';
import { ownerOf } from './identity.js';
import { routesOf, type Route } from './routes.js';

export const BROADCAST_KEY = 'all';

export interface KeyOptions {
  /** 0: one key per uid; N: uids hashed onto N keys */
  uidBuckets: number;
  /** 0: one key per group; N: groups hashed onto N keys */
  groupBuckets: number;
}

export function nodeKey(instance: string): string {
  return `n.${instance}`;
}

export function uidKey(uid: string, options: KeyOptions): string {
  return options.uidBuckets > 0 ? `ub.${bucketOf(uid, options.uidBuckets)}` : `u.${uid}`;
}

export function groupKey(group: string, options: KeyOptions): string {
  return options.groupBuckets > 0 ? `gb.${bucketOf(group, options.groupBuckets)}` : `g.${group}`;
}

export function keyOfRoute(route: Route, options: KeyOptions): string {
  switch (route.kind) {
    case 'node':
      return nodeKey(route.node);
    case 'all':
      return BROADCAST_KEY;
    case 'uid':
      return uidKey(route.uid, options);
    case 'group':
      return groupKey(route.group, options);
  }
}

/** The distinct keys of a command (direct mode), in the order of the wire format's keys column. */
export function keysOfCommand(command: Command, options: KeyOptions): string[] {
  // The common sends to one target, without building a route (a hot path in direct mode).
  if (command.op === Op.SEND_TO_UIDS && command.u.length === 1) return [uidKey(command.u[0]!, options)];
  if (command.op === Op.SEND_TO_CLIENTS && command.c.length === 1) return [nodeKey(ownerOf(command.c[0]!))];
  const routes = routesOf(command);
  if (routes.length === 1) return [keyOfRoute(routes[0]!, options)];
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const route of routes) {
    const key = keyOfRoute(route, options);
    if (seen.has(key)) continue;
    seen.add(key);
    keys.push(key);
  }
  return keys;
}

/** The key of one target of a send (direct mode): a uid's, a group's, or a client's node's. */
export function keyOfTarget(op: number, target: string, options: KeyOptions): string {
  if (op === Op.SEND_TO_UIDS) return uidKey(target, options);
  if (op === Op.SEND_TO_GROUPS) return groupKey(target, options);
  return nodeKey(ownerOf(target));
}

/** FNV-1a over the UTF-8 bytes, modulo n: the bucket of a uid or group, and an event's partition. */
export function bucketOf(value: string, n: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(value, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % n;
}

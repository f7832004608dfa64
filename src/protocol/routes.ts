/**
 * Where a command must go, derived from the command itself, so every bus computes the same
 * routes when it publishes and when it receives.
 */
import { Op, isClientCommand, type Command } from './commands.js';
import { ownerOf } from './identity.js';

/** How a bus routes: every command to every node, or each to the nodes holding its targets. */
export const BUS_MODES = ['fanout', 'direct'] as const;
export type BusMode = (typeof BUS_MODES)[number];

export type Route =
  { kind: 'node'; node: string } | { kind: 'uid'; uid: string } | { kind: 'group'; group: string } | { kind: 'all' };

export const ALL: Route = { kind: 'all' };

export function routesOf(cmd: Command): Route[] {
  if (isClientCommand(cmd)) return [{ kind: 'node', node: ownerOf(cmd.c) }];
  switch (cmd.op) {
    case Op.SEND_TO_CLIENTS: {
      const owners = new Set<string>();
      for (const c of cmd.c) owners.add(ownerOf(c));
      return [...owners].map((node) => ({ kind: 'node', node }));
    }
    case Op.SEND_TO_UIDS:
      return cmd.u.map((uid) => ({ kind: 'uid', uid }));
    case Op.CLOSE_UID:
      return [{ kind: 'uid', uid: cmd.u }];
    case Op.SEND_TO_GROUPS:
      return cmd.g.map((group) => ({ kind: 'group', group }));
    case Op.UNGROUP:
      return [{ kind: 'group', group: cmd.g }];
    case Op.QUERY:
      return cmd.t ? [{ kind: 'node', node: cmd.t }] : [ALL];
    case Op.REPLY:
      return [{ kind: 'node', node: cmd.t }];
    case Op.CLIENT_EVENT:
      // Client events go to the workers' partition queues, never to the bus exchange.
      return [];
    case Op.DIR_HELLO:
    case Op.DIR_STATE:
    case Op.DIR_ACK:
    case Op.DIR_DROP:
      return [{ kind: 'node', node: cmd.t }];
    case Op.SEND_TO_ALL:
    case Op.ANNOUNCE:
    case Op.LEAVE:
    case Op.DIR_UPDATE:
      return [ALL];
  }
}

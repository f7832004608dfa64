/**
 * Per-client commands and sessions at the gateway that holds the client: close, destroy, bind and
 * unbind a uid, join and leave groups, ungroup, replace or merge the session.
 */
import {
  Op,
  isClientCommand,
  type ClientCommand,
  type Command,
  type SendToAll,
  type SendToClients,
  type SendToGroups,
  type SendToUids,
  type Session,
} from '../protocol/commands.js';
import type { ClientRegistry } from './client-registry.js';

/**
 * Applies a command that arrived on the bus (or from this process). Session writes resolve to
 * the session's new version (null for a client that is gone); the rest to undefined.
 */
export async function applyCommand(
  registry: ClientRegistry,
  cmd: Command,
  push: (cmd: SendToClients | SendToAll | SendToUids | SendToGroups) => void,
): Promise<number | null | void> {
  switch (cmd.op) {
    case Op.SEND_TO_CLIENTS:
    case Op.SEND_TO_ALL:
    case Op.SEND_TO_UIDS:
    case Op.SEND_TO_GROUPS:
      push(cmd);
      return;
    case Op.CLOSE_UID:
      for (const client of [...(registry.uids.get(cmd.u) ?? [])]) client.close(cmd.d);
      return;
    case Op.UNGROUP:
      registry.ungroup(cmd.g);
      return;
    default:
      if (isClientCommand(cmd)) return applyToClient(registry, cmd);
  }
}

/** A command about one client this gateway holds; a session write to one gone resolves to null. */
async function applyToClient(registry: ClientRegistry, cmd: ClientCommand): Promise<number | null | void> {
  const client = registry.get(cmd.c);
  if (client === undefined) return cmd.op === Op.SET_SESSION || cmd.op === Op.UPDATE_SESSION ? null : undefined;
  switch (cmd.op) {
    case Op.CLOSE_CLIENT:
      return client.close(cmd.d);
    case Op.DESTROY_CLIENT:
      return client.destroy();
    case Op.BIND_UID:
      return registry.bindUid(client, cmd.u);
    case Op.UNBIND_UID:
      // As in GatewayWorker, the uid argument is not checked: the client's uid is unbound.
      return registry.unbindUid(client);
    case Op.JOIN_GROUP:
      return registry.joinGroup(client, cmd.g);
    case Op.LEAVE_GROUP:
      return registry.leaveGroup(client, cmd.g);
    case Op.SET_SESSION:
      replaceSession(client.session, copySession(cmd.s));
      return ++client.sessionVersion;
    case Op.UPDATE_SESSION:
      replaceSession(client.session, mergeSession(client.session, copySession(cmd.s)));
      return ++client.sessionVersion;
  }
}

/**
 * Sessions change in place: events already queued for the worker hold this same object, so each
 * sees the session as the previous event left it.
 */
function replaceSession(target: Session, source: Session): void {
  for (const key of Object.keys(target)) delete target[key];
  Object.assign(target, source);
}

/**
 * The gateway owns every session: what comes in and what goes out is a copy (JSON, as on the
 * wire), so a caller in the same process never shares nested objects with the stored session.
 */
export function copySession(session: Session): Session {
  return JSON.parse(JSON.stringify(session)) as Session;
}

/** GatewayWorker merges with array_replace_recursive: nested plain objects merge, the rest replaces. */
export function mergeSession(base: Session, update: Session): Session {
  const out: Session = { ...base };
  for (const [key, value] of Object.entries(update)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? mergeSession(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Session {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/**
 * The push and query API (DESIGN §2), the same in handlers, publishers and the CLI. Names follow
 * GatewayWorker's Lib\Gateway in camelCase; every method is asynchronous.
 *
 * Pushes resolve once the bus has them (broker confirm). bindUid, joinGroup and the session
 * writes resolve once the client's gateway applied them, and bindUid/joinGroup only after the
 * broker confirmed the bind, so a push sent after they resolve reaches the client from any node.
 * Pushes to clients that are gone are dropped silently.
 *
 * A call for one client either takes effect or fails: for a client whose node is not live (taken
 * for dead, or shown gone by the broker) it rejects with GW_ERR_NODE_UNREACHABLE; one that times
 * out (GW_ERR_REQUEST_TIMEOUT) carried a deadline its node enforces, so it never applies later.
 *
 * Queries over the cluster take { strict: true } (or cluster.strictQueries) to reject with
 * GW_ERR_QUERY_INCOMPLETE, naming the nodes, instead of answering from the nodes that answered.
 *
 * Folder api/ (layer 4: imports protocol, transport, cluster, events, gateway, worker): this API
 * and its argument checks (arguments.ts). Flow: call -> arguments checked -> the local gateway
 * at once, or a command on the bus (and for per-client calls a request awaiting the reply).
 */
import { Op, type Command, type Payload, type QueryKind, type Session } from '../protocol/commands.js';
import { ErrorCodes, GatewireError } from '../errors.js';
import type { PushApi, PushData, QueryOptions } from '../protocol/push-api.js';
import type { Bus } from '../transport/bus.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Membership } from '../cluster/membership.js';
import type { Requests } from '../cluster/requests.js';
import type { Directory } from '../cluster/directory.js';
import { uidKey } from '../protocol/routing-keys.js';
import { ownerOf } from '../protocol/identity.js';
import {
  checkClientId,
  checkClientIds,
  checkData,
  checkExclude,
  checkGroup,
  checkGroups,
  checkOptionalData,
  checkSession,
  checkUid,
  checkUids,
} from './arguments.js';

type Data = PushData;

export type { QueryOptions };

interface ClientInfo {
  uid: string | null;
  session: Session;
  groups: string[];
  /** session version */
  v: number;
}

export class GatewayApi implements PushApi {
  /**
   * The holder directory, on a node that keeps one (direct mode, one key per uid): isUidOnline
   * and getAllUidCount are then answered from it, exactly and without asking every node.
   */
  directory: Directory | null = null;

  constructor(
    private readonly bus: Bus,
    private readonly membership: Membership,
    private readonly requests: Requests,
    /** the gateway in this process, if it has the role: its own clients are served directly */
    private readonly localGateway: Gateway | null,
    /** cluster.strictQueries: the default of QueryOptions.strict */
    private readonly strictByDefault = false,
  ) {}

  // ---- send ---------------------------------------------------------------------------

  // The sends are the hot path: plain functions that return the bus's promise (no async frame and
  // no extra promise per call; a bad argument still rejects, it never throws).

  sendToClient(clientId: string, data: Data): Promise<void> {
    try {
      return this.bus.publish({ op: Op.SEND_TO_CLIENTS, c: [checkClientId(clientId)], d: checkData(data) });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  sendToUid(uid: string | number | (string | number)[], data: Data): Promise<void> {
    try {
      const u = checkUids(uid);
      const d = checkData(data);
      if (u.length === 0) return Promise.resolve();
      return this.bus.publish({ op: Op.SEND_TO_UIDS, u, d });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  sendToGroup(group: string | string[], data: Data, options: { exclude?: string | string[] } = {}): Promise<void> {
    try {
      const g = checkGroups(group);
      const d = checkData(data);
      const x = checkExclude(options?.exclude);
      if (g.length === 0) return Promise.resolve();
      return this.bus.publish(x ? { op: Op.SEND_TO_GROUPS, g, d, x } : { op: Op.SEND_TO_GROUPS, g, d });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** To every client, or only to `clientIds`; never to `exclude`. */
  async sendToAll(data: Data, options: { clientIds?: string[]; exclude?: string | string[] } = {}): Promise<void> {
    const d = checkData(data);
    const x = checkExclude(options?.exclude);
    if (options?.clientIds === undefined || options.clientIds === null) {
      await this.bus.publish(x ? { op: Op.SEND_TO_ALL, d, x } : { op: Op.SEND_TO_ALL, d });
      return;
    }
    // Skips the excluded and repeated ids: a client listed twice gets one copy.
    const skip = new Set(x ?? []);
    const byOwner = new Map<string, string[]>();
    for (const id of checkClientIds(options.clientIds, 'clientIds')) {
      if (skip.has(id)) continue;
      skip.add(id);
      const owner = ownerOf(id);
      const list = byOwner.get(owner);
      if (list) list.push(id);
      else byOwner.set(owner, [id]);
    }
    await Promise.all([...byOwner.values()].map((c) => this.bus.publish({ op: Op.SEND_TO_CLIENTS, c, d })));
  }

  // ---- close --------------------------------------------------------------------------

  /** Writes what is queued for the client, then `data`, then closes the connection. */
  async closeClient(clientId: string, data?: Data): Promise<void> {
    const c = checkClientId(clientId);
    const d = checkOptionalData(data);
    await this.bus.publish(d === undefined ? { op: Op.CLOSE_CLIENT, c } : { op: Op.CLOSE_CLIENT, c, d });
  }

  /** The answer to a gatewire.v1 client's request, to the gateway that holds the client. */
  async replyToRequest(clientId: string, requestId: number | string, ok: boolean, data: Payload): Promise<void> {
    const c = checkClientId(clientId);
    const reply: Command = ok
      ? { op: Op.CLIENT_REPLY, c, i: requestId, ok: 1, d: data }
      : { op: Op.CLIENT_REPLY, c, i: requestId, ok: 0, e: String(data) };
    await this.bus.publish(reply);
  }

  /** Drops the connection at once. */
  async destroyClient(clientId: string): Promise<void> {
    await this.bus.publish({ op: Op.DESTROY_CLIENT, c: checkClientId(clientId) });
  }

  /** closeClient for every client bound to the uid. */
  async closeUid(uid: string | number, data?: Data): Promise<void> {
    const u = checkUid(uid);
    const d = checkOptionalData(data);
    await this.bus.publish(d === undefined ? { op: Op.CLOSE_UID, u } : { op: Op.CLOSE_UID, u, d });
  }

  // ---- bind ---------------------------------------------------------------------------

  /** One uid per client (binding another replaces it); many clients per uid. */
  async bindUid(clientId: string, uid: string | number): Promise<void> {
    await this.toOwner({ op: Op.BIND_UID, c: checkClientId(clientId), u: checkUid(uid) });
  }

  /** Unbinds the client's uid (as in GatewayWorker, whatever uid is passed). */
  async unbindUid(clientId: string, uid: string | number): Promise<void> {
    await this.toOwner({ op: Op.UNBIND_UID, c: checkClientId(clientId), u: checkUid(uid) });
  }

  async joinGroup(clientId: string, group: string): Promise<void> {
    await this.toOwner({ op: Op.JOIN_GROUP, c: checkClientId(clientId), g: checkGroup(group) });
  }

  async leaveGroup(clientId: string, group: string): Promise<void> {
    await this.toOwner({ op: Op.LEAVE_GROUP, c: checkClientId(clientId), g: checkGroup(group) });
  }

  /** Dissolves the group on every node (its clients stay connected). */
  async ungroup(group: string): Promise<void> {
    await this.bus.publish({ op: Op.UNGROUP, g: checkGroup(group) });
  }

  // ---- session ------------------------------------------------------------------------

  /** Replaces the client's session. */
  async setSession(clientId: string, session: Session): Promise<void> {
    await this.toOwner({ op: Op.SET_SESSION, c: checkClientId(clientId), s: checkSession(session) });
  }

  /** Merges into the client's session (nested objects merge, other values replace). */
  async updateSession(clientId: string, session: Session): Promise<void> {
    await this.toOwner({ op: Op.UPDATE_SESSION, c: checkClientId(clientId), s: checkSession(session) });
  }

  /**
   * setSession that resolves to the session's new version at the client's gateway (null if the
   * client is gone): workers use it to tell whether a later event's snapshot is older.
   */
  async writeSession(clientId: string, session: Session): Promise<number | null> {
    const value = await this.toOwner({ op: Op.SET_SESSION, c: checkClientId(clientId), s: checkSession(session) });
    return typeof value === 'number' ? value : null;
  }

  /** The session with its version at the client's gateway, or null if the client is not online. */
  async readSession(clientId: string): Promise<{ session: Session; version: number } | null> {
    const info = await this.clientInfo(checkClientId(clientId));
    return info === null ? null : { session: info.session, version: Number(info.v) || 0 };
  }

  /** The session, or null if the client is not online. */
  async getSession(clientId: string): Promise<Session | null> {
    return (await this.clientInfo(checkClientId(clientId)))?.session ?? null;
  }

  // ---- online -------------------------------------------------------------------------

  async isOnline(clientId: string): Promise<boolean> {
    return (await this.clientInfo(checkClientId(clientId))) !== null;
  }

  async getUidByClientId(clientId: string): Promise<string | null> {
    return (await this.clientInfo(checkClientId(clientId)))?.uid ?? null;
  }

  async isUidOnline(uid: string | number, options?: QueryOptions): Promise<boolean> {
    const u = checkUid(uid);
    const known =
      this.bus.options.uidBuckets === 0 ? (this.directory?.holdsKey(uidKey(u, this.bus.options)) ?? null) : null;
    if (known !== null) return known;
    return (await this.getClientIdByUid(u, options)).length > 0;
  }

  async getClientIdByUid(uid: string | number, options?: QueryOptions): Promise<string[]> {
    const u = checkUid(uid);
    return (await this.batchGetClientIdByUid([u], options))[u] ?? [];
  }

  /** For each uid, whether any of its clients is online. */
  async isUidsOnline(uids: (string | number)[], options?: QueryOptions): Promise<Record<string, boolean>> {
    const byUid = await this.batchGetClientIdByUid(uids, options);
    const out: Record<string, boolean> = {};
    for (const [uid, ids] of Object.entries(byUid)) out[uid] = ids.length > 0;
    return out;
  }

  /** For each uid, its client ids across the cluster. */
  async batchGetClientIdByUid(uids: (string | number)[], options?: QueryOptions): Promise<Record<string, string[]>> {
    const list = checkUids(uids);
    const out: Record<string, string[]> = {};
    for (const uid of list) out[uid] = [];
    if (list.length === 0) return out;
    for (const part of await this.gather('uids', list, options)) {
      for (const [uid, ids] of Object.entries(part as Record<string, string[]>)) out[uid]?.push(...ids);
    }
    return out;
  }

  // ---- counts and lists ---------------------------------------------------------------

  async getAllClientCount(options?: QueryOptions): Promise<number> {
    return this.sum('count', '', options);
  }

  async getClientCountByGroup(group: string, options?: QueryOptions): Promise<number> {
    return this.sum('count', checkGroup(group), options);
  }

  async getAllClientIdList(options?: QueryOptions): Promise<string[]> {
    return this.concat('clients', '', options);
  }

  async getClientIdListByGroup(group: string, options?: QueryOptions): Promise<string[]> {
    return this.concat('clients', checkGroup(group), options);
  }

  async getAllClientSessions(options?: QueryOptions): Promise<Record<string, Session>> {
    return this.sessions('', options);
  }

  async getClientSessionsByGroup(group: string, options?: QueryOptions): Promise<Record<string, Session>> {
    return this.sessions(checkGroup(group), options);
  }

  async getAllUidList(options?: QueryOptions): Promise<string[]> {
    return this.union('uidList', '', options);
  }

  async getAllUidCount(options?: QueryOptions): Promise<number> {
    const known = this.bus.options.uidBuckets === 0 ? (this.directory?.countKeys('u.') ?? null) : null;
    if (known !== null) return known;
    return (await this.getAllUidList(options)).length;
  }

  async getUidListByGroup(group: string, options?: QueryOptions): Promise<string[]> {
    return this.union('uidList', checkGroup(group), options);
  }

  async getUidCountByGroup(group: string, options?: QueryOptions): Promise<number> {
    return (await this.getUidListByGroup(group, options)).length;
  }

  async getAllGroupIdList(options?: QueryOptions): Promise<string[]> {
    return this.union('groups', '', options);
  }

  // ---- internals ----------------------------------------------------------------------

  /** A per-client command that the client's gateway applies and acknowledges. */
  private async toOwner(cmd: Command & { c: string }): Promise<unknown> {
    const owner = ownerOf(cmd.c);
    if (this.localGateway !== null && owner === this.bus.instance) {
      return this.localGateway.apply(cmd);
    }
    // Not applied, and never will be: the caller must hear it (a node taken for dead may still
    // hold the client, frozen; resolving would claim an effect that never happens).
    if (!this.membership.isLive(owner)) throw this.unreachable(owner, cmd.c);
    return this.requests.ask(cmd, owner);
  }

  private unreachable(owner: string, clientId: string): GatewireError {
    const state = this.membership.isSuspect(owner)
      ? 'gone from the broker'
      : 'not live (never seen, left, or silent past cluster.nodeTimeout)';
    return new GatewireError(
      ErrorCodes.NODE_UNREACHABLE,
      `node ${owner}, which holds client ${clientId}, is ${state}: the call did not take effect`,
    );
  }

  private async clientInfo(clientId: string): Promise<ClientInfo | null> {
    const owner = ownerOf(clientId);
    if (this.localGateway !== null && owner === this.bus.instance) {
      return this.localGateway.answer({ q: 'client', a: [clientId] }) as ClientInfo | null;
    }
    // A client's node that is not live holds no client that anyone can reach: it is offline.
    if (!this.membership.isLive(owner)) return null;
    const value = await this.requests.ask({ op: Op.QUERY, q: 'client', a: [clientId], t: owner, r: 0, f: '' }, owner);
    return (value as ClientInfo | null) ?? null;
  }

  /** One answer from every live gateway (this process's own answered directly). */
  private async gather(q: QueryKind, a: string[], options?: QueryOptions): Promise<unknown[]> {
    const gateways = this.membership.gateways();
    const self = this.bus.instance;
    const local = this.localGateway;
    const remote = local !== null ? gateways.filter((g) => g !== self) : gateways;
    const answers: unknown[] = local !== null ? [local.answer({ q, a })] : [];
    if (remote.length === 0) return answers;
    const strict = options?.strict ?? this.strictByDefault;
    const { replies } = await this.requests.gather({ op: Op.QUERY, q, a, r: 0, f: '' }, remote, { strict });
    for (const reply of replies.values()) {
      const { v } = reply as { v?: unknown };
      if (v !== undefined && v !== null) answers.push(v);
    }
    return answers;
  }

  private async sum(q: QueryKind, arg: string, options?: QueryOptions): Promise<number> {
    let total = 0;
    for (const part of await this.gather(q, [arg], options)) total += Number(part) || 0;
    return total;
  }

  private async concat(q: QueryKind, arg: string, options?: QueryOptions): Promise<string[]> {
    const out: string[] = [];
    for (const part of await this.gather(q, [arg], options)) if (Array.isArray(part)) out.push(...(part as string[]));
    return out;
  }

  private async union(q: QueryKind, arg: string, options?: QueryOptions): Promise<string[]> {
    const out = new Set<string>();
    for (const part of await this.gather(q, [arg], options))
      if (Array.isArray(part)) for (const v of part) out.add(String(v));
    return [...out];
  }

  private async sessions(group: string, options?: QueryOptions): Promise<Record<string, Session>> {
    const out: Record<string, Session> = {};
    for (const part of await this.gather('sessions', [group], options))
      Object.assign(out, part as Record<string, Session>);
    return out;
  }
}

export type { Payload };

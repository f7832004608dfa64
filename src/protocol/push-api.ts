/**
 * The push and query API as a contract (DESIGN §2; docs/api.md): what handlers get as
 * ctx.gateway, what split-role workers read sessions through, and what GatewayApi implements.
 * It lives here, at the bottom, so that every layer can name it without importing the API's
 * implementation above them.
 */
import type { Payload, Session } from './commands.js';

/** What a push carries: text stays a string, bytes stay binary. */
export type PushData = string | Uint8Array | ArrayBuffer;

/** Options of the queries that gather answers from every gateway. */
export interface QueryOptions {
  /**
   * Reject with GW_ERR_QUERY_INCOMPLETE (its `missing` names the nodes) when a node does not
   * answer within cluster.queryTimeout or is gone, instead of answering from the others.
   * @default cluster.strictQueries (false)
   */
  strict?: boolean;
}

export interface PushApi {
  sendToClient(clientId: string, data: PushData): Promise<void>;
  sendToUid(uid: string | number | (string | number)[], data: PushData): Promise<void>;
  sendToGroup(group: string | string[], data: PushData, options?: { exclude?: string | string[] }): Promise<void>;
  sendToAll(data: PushData, options?: { clientIds?: string[]; exclude?: string | string[] }): Promise<void>;
  closeClient(clientId: string, data?: PushData): Promise<void>;
  destroyClient(clientId: string): Promise<void>;
  closeUid(uid: string | number, data?: PushData): Promise<void>;
  bindUid(clientId: string, uid: string | number): Promise<void>;
  unbindUid(clientId: string, uid: string | number): Promise<void>;
  joinGroup(clientId: string, group: string): Promise<void>;
  leaveGroup(clientId: string, group: string): Promise<void>;
  ungroup(group: string): Promise<void>;
  setSession(clientId: string, session: Session): Promise<void>;
  updateSession(clientId: string, session: Session): Promise<void>;
  /** setSession that resolves to the new version at the client's gateway (null: gone) */
  writeSession(clientId: string, session: Session): Promise<number | null>;
  /** the session with its version at the client's gateway (null: not online) */
  readSession(clientId: string): Promise<{ session: Session; version: number } | null>;
  getSession(clientId: string): Promise<Session | null>;
  /** the answer to a gatewire.v1 client's request (the worker sends what onRequest returned or threw) */
  replyToRequest(clientId: string, requestId: number | string, ok: boolean, data: Payload): Promise<void>;
  isOnline(clientId: string): Promise<boolean>;
  getUidByClientId(clientId: string): Promise<string | null>;
  isUidOnline(uid: string | number, options?: QueryOptions): Promise<boolean>;
  getClientIdByUid(uid: string | number, options?: QueryOptions): Promise<string[]>;
  isUidsOnline(uids: (string | number)[], options?: QueryOptions): Promise<Record<string, boolean>>;
  batchGetClientIdByUid(uids: (string | number)[], options?: QueryOptions): Promise<Record<string, string[]>>;
  getAllClientCount(options?: QueryOptions): Promise<number>;
  getClientCountByGroup(group: string, options?: QueryOptions): Promise<number>;
  getAllClientIdList(options?: QueryOptions): Promise<string[]>;
  getClientIdListByGroup(group: string, options?: QueryOptions): Promise<string[]>;
  getAllClientSessions(options?: QueryOptions): Promise<Record<string, Session>>;
  getClientSessionsByGroup(group: string, options?: QueryOptions): Promise<Record<string, Session>>;
  getAllUidList(options?: QueryOptions): Promise<string[]>;
  getAllUidCount(options?: QueryOptions): Promise<number>;
  getUidListByGroup(group: string, options?: QueryOptions): Promise<string[]>;
  getUidCountByGroup(group: string, options?: QueryOptions): Promise<number>;
  getAllGroupIdList(options?: QueryOptions): Promise<string[]>;
}

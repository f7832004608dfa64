/**
 * Commands that travel on the bus. Several commands ride in one broker message (see
 * envelope.ts); docs/wire-format.md is the contract for programs in other languages.
 * Field names are one or two letters to keep messages small.
 *
 * Folder protocol/ (layer 0, the bottom; imports nothing of src/ but errors.ts): the wire
 * format and the shared types, no I/O. Flow: a command (here) -> routes.ts (where it goes)
 * -> envelope.ts (the broker message, signed) and back (envelope-reader.ts, command-check.ts).
 */

/** Text stays a string (a WebSocket text frame), bytes stay bytes (a binary frame). */
export type Payload = string | Uint8Array;

export const Op = {
  SEND_TO_CLIENTS: 5,
  SEND_TO_ALL: 6,
  CLOSE_CLIENT: 7,
  DESTROY_CLIENT: 8,
  UPDATE_SESSION: 9,
  BIND_UID: 12,
  UNBIND_UID: 13,
  SEND_TO_UIDS: 14,
  JOIN_GROUP: 20,
  LEAVE_GROUP: 21,
  SEND_TO_GROUPS: 22,
  UNGROUP: 27,
  CLOSE_UID: 30,
  QUERY: 40,
  REPLY: 41,
  ANNOUNCE: 50,
  LEAVE: 51,
  /** the holder directory (docs/wire-format.md, "Directory"): a node asks another for its keys */
  DIR_HELLO: 52,
  /** the keys a node holds, in parts, answering a DIR_HELLO */
  DIR_STATE: 53,
  /** the keys a node bound and unbound in one turn, to every node */
  DIR_UPDATE: 54,
  /** a node applied a DIR_UPDATE */
  DIR_ACK: 55,
  /** a node no longer waits for the receiver's acks: its directory entry must be asked again */
  DIR_DROP: 56,
  SET_SESSION: 204,
  /** a client event from a gateway to the workers (split roles; not sent on the bus exchange) */
  CLIENT_EVENT: 60,
  /** the answer to a gatewire.v1 client's request, from the worker that ran onRequest */
  CLIENT_REPLY: 70,
} as const;

export type Session = Record<string, unknown>;

/** Fields of a request that wants an answer: request id and the asking instance. */
interface Asks {
  /** request id, unique per asking instance */
  r?: number;
  /** instance tag of the asker; the answer is a REPLY routed to it */
  f?: string;
  /**
   * deadline: the latest time (ms since 1970, the asker's clock) at which the owner may still
   * start applying the command; past it (allowing bus.maxClockSkew) the owner drops it, so a call
   * the asker gave up on never takes effect later
   */
  dl?: number;
}

export interface SendToClients {
  op: 5;
  c: string[];
  d: Payload;
}
export interface SendToAll {
  op: 6;
  d: Payload;
  x?: string[];
}
export interface CloseClient {
  op: 7;
  c: string;
  d?: Payload;
}
export interface DestroyClient {
  op: 8;
  c: string;
}
export interface SendToUids {
  op: 14;
  u: string[];
  d: Payload;
}
/**
 * `k`: set when one call was split into several commands (more groups than one broker message
 * carries): a client reached through several of them gets the payload once (the call id is the
 * sender's; parts of one call arrive one after another).
 */
export interface SendToGroups {
  op: 22;
  g: string[];
  d: Payload;
  x?: string[];
  k?: number;
}
export interface Ungroup extends Asks {
  op: 27;
  g: string;
}
export interface CloseUid {
  op: 30;
  u: string;
  d?: Payload;
}
export interface BindUid extends Asks {
  op: 12 | 13;
  c: string;
  u: string;
}
export interface JoinGroup extends Asks {
  op: 20 | 21;
  c: string;
  g: string;
}
export interface SessionWrite extends Asks {
  op: 204 | 9;
  c: string;
  s: Session;
}

export type QueryKind =
  | 'client' // a[0] = clientId: { online, uid, session, groups } or null; answered by the owner only
  | 'uids' // a = uids: { uid: clientIds[] } for the asked uids held here
  | 'clients' // a[0] = group or '' for all: clientIds held here
  | 'sessions' // a[0] = group or '': { clientId: session }
  | 'uidList' // a[0] = group or '': distinct uids held here
  | 'count' // a[0] = group or '': number of clients held here
  | 'groups' // group names with a member here
  // resumable sessions (docs/client-protocol.md), asked of the owner of a[0] only:
  | 'takeover' // a = [clientId, token, identity, seq, newClientId]: freezes the session; its state
  | 'release'; // a = [clientId, newClientId, ...senders]: hands the kept messages over, forgets it

export interface Query {
  op: 40;
  q: QueryKind;
  a: string[];
  r: number;
  f: string;
  t?: string;
}
/** `pi`/`pc`: part index and part count of an answer too large for one broker message. */
export interface Reply {
  op: 41;
  r: number;
  f: string;
  t: string;
  v?: unknown;
  e?: string;
  pi?: number;
  pc?: number;
}

export interface NodeAnnouncement {
  /** instance tag (routing) */
  i: string;
  /** configured or generated node id (display) */
  n: string;
  /** roles */
  ro: string[];
  /** advertised address */
  ad: string;
  /** start time, ms since epoch */
  st: number;
  /** clients, uids, groups held */
  cc: number;
  uc: number;
  gc: number;
  /** announcement interval in ms, so receivers can judge silence */
  iv: number;
  /** the newest wire version it reads and sends; absent: 1 (gatewire 0.1) */
  wv?: number;
}
export interface Announce {
  op: 50;
  n: NodeAnnouncement;
}

/** A client event on its way from a gateway to the workers' event queues (docs/operations.md). */
export interface ClientEventCommand {
  op: 60;
  /** 'connect' | 'websocketConnect' | 'message' | 'close' | 'resume' | 'request' */
  e: string;
  c: string;
  /** gateway instance */
  gw: string;
  ra: string;
  rp: number;
  s: Session;
  /** session version */
  sv: number;
  /** message payload (message events) */
  d?: Payload;
  /** request url, headers, query (websocketConnect events) */
  rq?: { url: string; headers: Record<string, string | string[] | undefined>; query: Record<string, string> };
  /** previous clientId (resume events) */
  pc?: string;
  /** request id (request events; `d` is the request's data) */
  ri?: number | string;
  /** the session's first clientId, when a resumed session has another one now */
  rt?: string;
}
/** The reply to request `i` of gatewire.v1 client `c`: `d` when `ok` is 1, the error `e` when 0. */
export interface ClientReply {
  op: 70;
  c: string;
  i: number | string;
  ok: number;
  d?: Payload;
  e?: string;
}
export interface Leave {
  op: 51;
  i: string;
}
/** `i`: the asking node; `t`: the node asked. */
export interface DirHello {
  op: 52;
  i: string;
  t: string;
}
/** Part of node `i`'s held keys for node `t`: `k` keys; `m` 1 while more parts follow. */
export interface DirState {
  op: 53;
  i: string;
  t: string;
  k: string[];
  m: number;
}
/** Node `i`'s announcement `s` (1, 2, …): keys it took on `a` and let go of `o` since the one before. */
export interface DirUpdate {
  op: 54;
  i: string;
  s: number;
  a: string[];
  o: string[];
}
/** Node `i` applied node `t`'s announcement `s` (and every one before it). */
export interface DirAck {
  op: 55;
  i: string;
  t: string;
  s: number;
}
/** Node `i` stopped waiting for node `t`'s acks (`t` was taken for dead): `t` must ask again. */
export interface DirDrop {
  op: 56;
  i: string;
  t: string;
}
export type DirectoryCommand = DirHello | DirState | DirUpdate | DirAck | DirDrop;

export type Command =
  | SendToClients
  | SendToAll
  | CloseClient
  | DestroyClient
  | SendToUids
  | SendToGroups
  | Ungroup
  | CloseUid
  | BindUid
  | JoinGroup
  | SessionWrite
  | Query
  | Reply
  | Announce
  | Leave
  | DirectoryCommand
  | ClientEventCommand
  | ClientReply;

/** The commands about one client (`c`): only the gateway holding it (its owner) applies them. */
export type ClientCommand = CloseClient | DestroyClient | BindUid | JoinGroup | SessionWrite | ClientReply;

const CLIENT_OPS: ReadonlySet<number> = new Set([
  Op.CLOSE_CLIENT,
  Op.DESTROY_CLIENT,
  Op.BIND_UID,
  Op.UNBIND_UID,
  Op.JOIN_GROUP,
  Op.LEAVE_GROUP,
  Op.SET_SESSION,
  Op.UPDATE_SESSION,
  Op.CLIENT_REPLY,
]);

export function isClientCommand(cmd: Command): cmd is ClientCommand {
  return CLIENT_OPS.has(cmd.op);
}

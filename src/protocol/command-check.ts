/**
 * The field check of commands that arrive from a broker (docs/wire-format.md, "Commands"): a
 * command whose fields are missing or of the wrong type is dropped alone and counted, and the
 * rest of its message runs. Without it a forged or buggy command could throw in the middle of a
 * message (the commands after it lost), or be half applied with a value of the wrong type (a
 * number as a uid, a string iterated as a list of uids). Ops this version does not know pass:
 * receivers ignore them.
 */
import { Op } from './commands.js';

type Fields = Record<string, unknown>;
type Check = (value: unknown) => boolean;

const isString: Check = (v) => typeof v === 'string';
const isStrings: Check = (v) => Array.isArray(v) && v.every((s) => typeof s === 'string');
const isPayload: Check = (v) => typeof v === 'string' || v instanceof Uint8Array;
const isInt: Check = (v) => Number.isInteger(v);
const isNumber: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isMap = (v: unknown): v is Fields =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);

const KINDS = new Map<Check, string>([
  [isString, 'a string'],
  [isStrings, 'a list of strings'],
  [isPayload, 'a string or bytes'],
  [isInt, 'an integer'],
  [isNumber, 'a number'],
  [isMap, 'a map'],
]);

function need(cmd: Fields, field: string, check: Check): string | null {
  return check(cmd[field]) ? null : `${field} must be ${KINDS.get(check)}`;
}

/** An optional field: absent or nil, or of its type. */
function may(cmd: Fields, field: string, check: Check): string | null {
  const value = cmd[field];
  return value === undefined || value === null || check(value)
    ? null
    : `${field} must be ${KINDS.get(check)} when present`;
}

/** The request fields of a command that asks for a reply. */
function asks(cmd: Fields): string | null {
  return may(cmd, 'r', isInt) ?? may(cmd, 'f', isString) ?? may(cmd, 'dl', isNumber);
}

function announcement(cmd: Fields): string | null {
  const n = cmd.n;
  if (!isMap(n)) return 'n must be a map';
  return (
    need(n, 'i', isString) ??
    need(n, 'ro', isStrings) ??
    may(n, 'n', isString) ??
    may(n, 'ad', isString) ??
    may(n, 'st', isNumber) ??
    may(n, 'cc', isNumber) ??
    may(n, 'uc', isNumber) ??
    may(n, 'gc', isNumber) ??
    may(n, 'iv', isNumber) ??
    may(n, 'wv', isInt)
  );
}

/** Why the command cannot be applied, or null if its fields are as the wire format says. */
export function commandProblem(cmd: Fields): string | null {
  switch (cmd.op) {
    case Op.SEND_TO_CLIENTS:
      return need(cmd, 'c', isStrings) ?? need(cmd, 'd', isPayload);
    case Op.SEND_TO_ALL:
      return need(cmd, 'd', isPayload) ?? may(cmd, 'x', isStrings);
    case Op.CLOSE_CLIENT:
      return need(cmd, 'c', isString) ?? may(cmd, 'd', isPayload);
    case Op.DESTROY_CLIENT:
      return need(cmd, 'c', isString);
    case Op.UPDATE_SESSION:
    case Op.SET_SESSION:
      return need(cmd, 'c', isString) ?? need(cmd, 's', isMap) ?? asks(cmd);
    case Op.BIND_UID:
      return need(cmd, 'c', isString) ?? need(cmd, 'u', isString) ?? asks(cmd);
    case Op.UNBIND_UID:
      // The client's uid is unbound whatever `u` is (as in GatewayWorker).
      return need(cmd, 'c', isString) ?? asks(cmd);
    case Op.SEND_TO_UIDS:
      return need(cmd, 'u', isStrings) ?? need(cmd, 'd', isPayload);
    case Op.JOIN_GROUP:
    case Op.LEAVE_GROUP:
      return need(cmd, 'c', isString) ?? need(cmd, 'g', isString) ?? asks(cmd);
    case Op.SEND_TO_GROUPS:
      return need(cmd, 'g', isStrings) ?? need(cmd, 'd', isPayload) ?? may(cmd, 'x', isStrings) ?? may(cmd, 'k', isInt);
    case Op.UNGROUP:
      return need(cmd, 'g', isString) ?? asks(cmd);
    case Op.CLOSE_UID:
      return need(cmd, 'u', isString) ?? may(cmd, 'd', isPayload);
    case Op.QUERY:
      return (
        need(cmd, 'q', isString) ??
        need(cmd, 'a', isStrings) ??
        need(cmd, 'r', isInt) ??
        need(cmd, 'f', isString) ??
        may(cmd, 't', isString)
      );
    case Op.REPLY:
      return (
        need(cmd, 'r', isInt) ??
        need(cmd, 'f', isString) ??
        need(cmd, 't', isString) ??
        may(cmd, 'e', isString) ??
        may(cmd, 'pi', isInt) ??
        may(cmd, 'pc', isInt)
      );
    case Op.CLIENT_REPLY:
      return (
        need(cmd, 'c', isString) ??
        (isInt(cmd.i) || isString(cmd.i) ? null : 'i must be an integer or a string') ??
        need(cmd, 'ok', isInt) ??
        may(cmd, 'd', isPayload) ??
        may(cmd, 'e', isString)
      );
    case Op.ANNOUNCE:
      return announcement(cmd);
    case Op.LEAVE:
      return need(cmd, 'i', isString);
    case Op.DIR_HELLO:
    case Op.DIR_DROP:
      return need(cmd, 'i', isString) ?? need(cmd, 't', isString);
    case Op.DIR_STATE:
      return need(cmd, 'i', isString) ?? need(cmd, 't', isString) ?? need(cmd, 'k', isStrings) ?? need(cmd, 'm', isInt);
    case Op.DIR_UPDATE:
      return (
        need(cmd, 'i', isString) ?? need(cmd, 's', isInt) ?? need(cmd, 'a', isStrings) ?? need(cmd, 'o', isStrings)
      );
    case Op.DIR_ACK:
      return need(cmd, 'i', isString) ?? need(cmd, 't', isString) ?? need(cmd, 's', isInt);
    default:
      return null;
  }
}

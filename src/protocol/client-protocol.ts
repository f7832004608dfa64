/**
 * The `gatewire.v1` WebSocket subprotocol, server side (docs/client-protocol.md): which frames are
 * controls, the escape of text that starts with U+0000, the controls the server reads and writes,
 * and the resume token. Pure functions; the gateway applies them (gateway/resumable.ts).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Payload } from './commands.js';

export const SUBPROTOCOL = 'gatewire.v1';

/** A text frame that starts with this is a control (or, doubled, escaped text). */
export const CONTROL_MARK = '\u0000';

/** What a client may send: its first frame is a hello. */
export type ClientControl =
  | { t: 'hello'; token?: string; seq?: number }
  | { t: 'ack'; n: number }
  | { t: 'req'; id: number | string; d?: string; b?: string }
  | { t: 'ping' }
  | { t: 'pong' };

/** Why a hello with a token got a fresh session (welcome.reason). */
export type NotResumedReason = 'expired' | 'overflow' | 'refused' | 'unreachable';

export interface Welcome {
  t: 'welcome';
  clientId: string;
  token: string | null;
  resumed: boolean;
  previousClientId?: string;
  reason?: NotResumedReason;
  /** the client's messages the server has */
  received: number;
  /** gateway.resumeWindow, seconds */
  window: number;
  /** the server's ping period, seconds (0: none) */
  heartbeat: number;
}

/** A received text frame: a message (its text, unescaped), or a control to parse. */
export function isControlText(text: string): boolean {
  return text.length > 1 && text.charCodeAt(0) === 0 && text.charCodeAt(1) !== 0;
}

/** The text of a message frame that started with the mark twice. */
export function unescapeText(text: string): string {
  return text.length > 0 && text.charCodeAt(0) === 0 ? text.slice(1) : text;
}

/** Whether a text message needs the escape on its way to a v1 client. */
export function needsEscape(data: Payload): boolean {
  return typeof data === 'string' && data.length > 0 && data.charCodeAt(0) === 0;
}

const MAX_ID_LENGTH = 64;
const MAX_TOKEN_LENGTH = 128;

/** Parses a control from a client; null when it is not one this server knows (a protocol error). */
export function parseClientControl(text: string): ClientControl | null {
  let value: unknown;
  try {
    value = JSON.parse(text.slice(1));
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const c = value as Record<string, unknown>;
  switch (c['t']) {
    case 'hello': {
      const token = c['token'];
      const seq = c['seq'];
      if (token === undefined && seq === undefined) return { t: 'hello' };
      if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || !isCount(seq)) return null;
      return { t: 'hello', token, seq };
    }
    case 'ack':
      return isCount(c['n']) ? { t: 'ack', n: c['n'] } : null;
    case 'req': {
      const id = c['id'];
      const validId = isCount(id) || (typeof id === 'string' && id.length <= MAX_ID_LENGTH);
      if (!validId) return null;
      if (typeof c['d'] === 'string') return { t: 'req', id, d: c['d'] };
      if (typeof c['b'] === 'string') return { t: 'req', id, b: c['b'] };
      return null;
    }
    case 'ping':
      return { t: 'ping' };
    case 'pong':
      return { t: 'pong' };
    default:
      return null;
  }
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** The text frame of a server control. */
export function controlText(control: object): string {
  return CONTROL_MARK + JSON.stringify(control);
}

/** The reply to request `id`: the handler's value, or the message of what it threw. */
export function replyControl(id: number | string, ok: boolean, value: Payload | string): object {
  if (!ok) return { t: 'reply', id, ok: false, error: String(value) };
  if (typeof value === 'string') return { t: 'reply', id, ok: true, d: value };
  return {
    t: 'reply',
    id,
    ok: true,
    b: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'),
  };
}

/** A request's data as the handler gets it: text, or the decoded bytes. */
export function requestData(control: { d?: string; b?: string }): Payload {
  return control.d !== undefined ? control.d : Buffer.from(control.b ?? '', 'base64');
}

// ---- resume tokens ------------------------------------------------------------------------

/** `<clientId>.<32 random bytes, base64url>`: any gateway can tell which one holds the session. */
export function newResumeToken(clientId: string): string {
  return `${clientId}.${randomBytes(32).toString('base64url')}`;
}

/** The clientId a token names, or null for a token of the wrong shape. */
export function tokenClientId(token: string): string | null {
  const dot = token.lastIndexOf('.');
  if (dot <= 0 || token.length - dot - 1 !== 43) return null;
  return token.slice(0, dot);
}

/** Compares two tokens in constant time (for tokens of one length). */
export function sameToken(a: string | null, b: string): boolean {
  if (a === null || a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

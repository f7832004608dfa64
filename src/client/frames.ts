/**
 * The frames of the `gatewire.v1` subprotocol (docs/client-protocol.md) as the client sees them:
 * messages (text, escaped when it starts with U+0000, or bytes) and controls (U+0000 then JSON).
 * No imports and no Node API, so that it runs in browsers as is.
 */

/** What the application sends: text, or bytes. */
export type ClientData = string | Uint8Array | ArrayBuffer;

/** What the application receives: text as a string, bytes as a Uint8Array. */
export type ReceivedData = string | Uint8Array;

/** A frame as written to the socket. */
export type Frame = string | Uint8Array;

/** A control from the server (the fields the client reads). */
export interface ServerControl {
  t: string;
  n?: number;
  id?: number | string;
  ok?: boolean;
  d?: string;
  b?: string;
  error?: string;
  clientId?: string;
  token?: string | null;
  resumed?: boolean;
  previousClientId?: string;
  reason?: string;
  received?: number;
  window?: number;
  heartbeat?: number;
}

/** A frame from the server, read. */
export type Incoming =
  | { kind: 'message'; data: ReceivedData }
  | { kind: 'control'; control: ServerControl }
  | { kind: 'invalid'; why: string };

const NUL = '\u0000';

/** A control frame: U+0000 then the JSON object. */
export function controlFrame(control: Record<string, unknown>): string {
  return NUL + JSON.stringify(control);
}

/** Whether `data` is something send() and request() take. */
export function isClientData(data: unknown): data is ClientData {
  return typeof data === 'string' || data instanceof Uint8Array || data instanceof ArrayBuffer;
}

/** The frame of an application message (text that starts with U+0000 gets a second one in front). */
export function messageFrame(data: ClientData): Frame {
  if (typeof data === 'string') return data.startsWith(NUL) ? NUL + data : data;
  return copyBytes(data);
}

/** The frame of a `req` control with the given id (text in `d`, bytes in base64 in `b`). */
export function requestFrame(id: number, data: ClientData): string {
  return typeof data === 'string'
    ? controlFrame({ t: 'req', id, d: data })
    : controlFrame({ t: 'req', id, b: toBase64(copyBytes(data)) });
}

/** Reads one frame from the socket (`data` of a MessageEvent with binaryType 'arraybuffer'). */
export function readFrame(data: unknown): Incoming {
  if (typeof data !== 'string') {
    const bytes = asBytes(data);
    return bytes ? { kind: 'message', data: bytes } : { kind: 'invalid', why: 'a frame of unknown type' };
  }
  if (!data.startsWith(NUL)) return { kind: 'message', data };
  if (data.startsWith(NUL + NUL)) return { kind: 'message', data: data.slice(1) };
  let control: unknown;
  try {
    control = JSON.parse(data.slice(1));
  } catch {
    return { kind: 'invalid', why: 'a control that is not JSON' };
  }
  if (typeof control !== 'object' || control === null || typeof (control as ServerControl).t !== 'string') {
    return { kind: 'invalid', why: 'a control without a type' };
  }
  return { kind: 'control', control: control as ServerControl };
}

/** The bytes a frame takes (UTF-8 length for text), for the queue's bound. */
export function frameBytes(frame: Frame): number {
  if (typeof frame !== 'string') return frame.byteLength;
  let bytes = 0;
  for (let i = 0; i < frame.length; i++) {
    const code = frame.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < frame.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** The bytes of a reply's `b` field. */
export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** A copy, so that the caller may reuse its buffer while the message waits for its ack. */
function copyBytes(data: Uint8Array | ArrayBuffer): Uint8Array {
  return data instanceof ArrayBuffer ? new Uint8Array(data.slice(0)) : new Uint8Array(data);
}

function asBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/**
 * Argument checks of the push and query API. Each failure is a TypeError with one sentence that
 * names the argument, what it must be, and what it got.
 */
import type { Payload, Session } from '../protocol/commands.js';
import { isClientId } from '../protocol/identity.js';
import { InvalidArgumentError } from '../errors.js';

/** Longest uid or group, in UTF-8 bytes: keys must fit in a 255-byte AMQP routing key. */
export const MAX_NAME_LENGTH = 200;

function tooLong(value: string): boolean {
  // UTF-16 length bounds the UTF-8 length: at most 3 bytes per unit (a pair of 2 units is 4 bytes)
  return value.length * 3 > MAX_NAME_LENGTH && Buffer.byteLength(value, 'utf8') > MAX_NAME_LENGTH;
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

export function checkClientId(value: unknown, name = 'clientId'): string {
  if (!isClientId(value)) {
    throw new InvalidArgumentError(
      `${name} must be a gatewire client id (13 to 32 characters 0-9 a-z), got ${show(value)}.`,
    );
  }
  return value;
}

export function checkClientIds(value: unknown, name: string): string[] {
  const list = Array.isArray(value) ? value : [value];
  return list.map((id, i) => checkClientId(id, Array.isArray(value) ? `${name}[${i}]` : name));
}

/** A uid is a non-empty string, or an integer (used as its decimal string). */
export function checkUid(value: unknown, name = 'uid'): string {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  if (typeof value !== 'string' || value === '' || tooLong(value)) {
    throw new InvalidArgumentError(
      `${name} must be a non-empty string of at most ${MAX_NAME_LENGTH} bytes (UTF-8) or an integer, got ${show(value)}.`,
    );
  }
  return value;
}

export function checkUids(value: unknown): string[] {
  if (!Array.isArray(value)) return [checkUid(value)];
  return value.map((uid, i) => checkUid(uid, `uid[${i}]`));
}

export function checkGroup(value: unknown, name = 'group'): string {
  if (typeof value !== 'string' || value === '' || tooLong(value)) {
    throw new InvalidArgumentError(
      `${name} must be a non-empty string of at most ${MAX_NAME_LENGTH} bytes (UTF-8), got ${show(value)}.`,
    );
  }
  return value;
}

export function checkGroups(value: unknown): string[] {
  if (!Array.isArray(value)) return [checkGroup(value)];
  return value.map((group, i) => checkGroup(group, `group[${i}]`));
}

/** Text stays a string; Buffer, Uint8Array and ArrayBuffer become bytes. */
export function checkData(value: unknown, name = 'data'): Payload {
  if (typeof value === 'string' || value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new InvalidArgumentError(
    `${name} must be a string or bytes (Buffer, Uint8Array, ArrayBuffer), got ${show(value)}.`,
  );
}

export function checkOptionalData(value: unknown, name = 'data'): Payload | undefined {
  return value === undefined || value === null ? undefined : checkData(value, name);
}

/** A session is a plain object that survives JSON (it travels between nodes). */
export function checkSession(value: unknown, name = 'session'): Session {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    throw new InvalidArgumentError(`${name} must be a plain object, got ${show(value)}.`);
  }
  try {
    JSON.stringify(value);
  } catch {
    throw new InvalidArgumentError(`${name} must be JSON-serialisable (no cycles or BigInt).`);
  }
  return value as Session;
}

export function checkExclude(value: unknown): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  return checkClientIds(value, 'exclude');
}

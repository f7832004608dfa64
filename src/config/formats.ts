/**
 * Custom convict formats. Each validator throws one sentence naming what is wrong; convict
 * prefixes it with the key.
 */
import convict from 'convict';
import { parseListenUrl } from '../gateway/listen-url.js';
import { BUS_MODES, type BusMode } from '../protocol/routes.js';

export { BUS_MODES, type BusMode };

export const ROLES = ['gateway', 'worker'] as const;
export const BUS_KINDS = ['local', 'amqp', 'redis'] as const;

export type Role = (typeof ROLES)[number];
export type BusKind = (typeof BUS_KINDS)[number];

function toList(value: unknown): unknown {
  if (typeof value === 'string')
    return value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  return value;
}

let registered = false;

export function registerFormats(): void {
  if (registered) return;
  registered = true;
  convict.addFormat({
    name: 'roles',
    coerce: (value: unknown) => {
      const list = toList(value);
      // "all" is accepted as a shorthand for both roles.
      return Array.isArray(list) && list.length === 1 && list[0] === 'all' ? [...ROLES] : list;
    },
    validate(value: unknown) {
      if (!Array.isArray(value)) throw new Error(`must be a list of roles (${ROLES.join(', ')})`);
      for (const role of value) {
        if (!(ROLES as readonly string[]).includes(role)) {
          throw new Error(`must list only the roles ${ROLES.join(', ')}: got ${JSON.stringify(role)}`);
        }
      }
    },
  });
  convict.addFormat({
    name: 'listen-urls',
    coerce: toList,
    validate(value: unknown) {
      if (!Array.isArray(value)) throw new Error('must be a list of listener URLs');
      for (const url of value) {
        if (typeof url !== 'string') throw new Error('must be a list of listener URLs');
        parseListenUrl(url);
      }
    },
  });
  convict.addFormat({
    name: 'node-id',
    validate(value: unknown) {
      if (typeof value !== 'string' || !/^[A-Za-z0-9_.-]{0,64}$/.test(value)) {
        throw new Error('must be at most 64 letters, digits, "_", "." or "-"');
      }
    },
  });
  convict.addFormat({
    name: 'positive-int',
    coerce: (value: unknown) => (typeof value === 'string' ? Number(value) : value),
    validate(value: unknown) {
      if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
        throw new Error('must be a positive integer');
      }
    },
  });
  convict.addFormat({
    name: 'host-port',
    validate(value: unknown) {
      if (typeof value !== 'string' || (value !== '' && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}$/.test(value))) {
        throw new Error('must be host:port (e.g. 127.0.0.1:9090) or empty');
      }
    },
  });
  convict.addFormat({
    // RFC 6750 b64token: what an `Authorization: Bearer` header can carry (no spaces).
    name: 'bearer-token',
    validate(value: unknown) {
      if (typeof value !== 'string' || (value !== '' && !/^[A-Za-z0-9\-._~+/]+=*$/.test(value))) {
        throw new Error('must be empty or a bearer token: letters, digits and - . _ ~ + / (then = padding), no spaces');
      }
    },
  });
  convict.addFormat({
    name: 'non-empty',
    validate(value: unknown) {
      if (typeof value !== 'string' || value === '') throw new Error('must be a non-empty string');
    },
  });
}

/**
 * Node identity and client ids.
 *
 * Every process start draws a fresh 12-character *instance* tag: 8 base-36 digits of the start
 * time in milliseconds (fixed width until the year 2059) and 4 random base-36 digits. The tag
 * names the process on the bus (its node routing key) and begins every clientId it hands out,
 * so a command for a client is routed to its owner with no lookup, and ids are never reused,
 * also not after a restart.
 *
 * clientId = instance (12 chars) + connection counter in base 36: only [0-9a-z], at most 32
 * characters, safe in URLs, AMQP routing keys and Redis channel names.
 */
import { randomInt } from 'node:crypto';

export const INSTANCE_LENGTH = 12;
const CLIENT_ID_PATTERN = /^[0-9a-z]{13,32}$/;

export function createInstanceId(now = Date.now()): string {
  const time = now.toString(36).padStart(8, '0').slice(-8);
  let random = '';
  for (let i = 0; i < 4; i++) random += randomInt(36).toString(36);
  return time + random;
}

export function isClientId(value: unknown): value is string {
  return typeof value === 'string' && CLIENT_ID_PATTERN.test(value);
}

/** The instance tag of the process that holds the client. */
export function ownerOf(clientId: string): string {
  return clientId.slice(0, INSTANCE_LENGTH);
}

export class ClientIdGenerator {
  private counter = 0;
  constructor(private readonly instance: string) {}
  next(): string {
    this.counter += 1;
    return this.instance + this.counter.toString(36);
  }
}

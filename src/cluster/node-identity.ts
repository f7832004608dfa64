import { createInstanceId } from '../protocol/identity.js';

export interface NodeIdentity {
  /** fresh per process start: routing key and clientId prefix */
  instance: string;
  /** node.id, or the instance tag when none is configured */
  id: string;
  startedAt: number;
}

export function createNodeIdentity(configuredId: string): NodeIdentity {
  const startedAt = Date.now();
  const instance = createInstanceId(startedAt);
  return { instance, id: configuredId === '' ? instance : configuredId, startedAt };
}

/**
 * A remote worker's view of its clients' sessions. An event carries the session as the gateway
 * held it when the event happened; if this worker wrote the session while handling the client's
 * previous event, that snapshot is older than what the worker knows, and the cache wins. Versions
 * come from the gateway (bumped by every write), so "newer" is exact: a write by anyone else
 * (another worker, a publisher) shows as a higher version in the next event and wins over the
 * cache.
 *
 * A worker that has no entry for a client asks the gateway once (one round trip per client
 * after this worker took over its partition); a fresh connect event (version 0) needs no ask.
 * Entries of a partition are dropped when the worker gives the partition up, because another
 * worker may write the sessions meanwhile.
 */
import type { PushApi } from '../protocol/push-api.js';
import type { Session } from '../protocol/commands.js';
import type { ClientEvent } from '../protocol/client-event.js';
import type { SessionSource } from '../protocol/client-event.js';

interface Entry {
  version: number;
  session: Session;
  partition: number;
}

export class SessionCache implements SessionSource {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly api: PushApi,
    private readonly partitionOf: (clientId: string) => number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  async read(event: ClientEvent): Promise<Session> {
    const cached = this.entries.get(event.clientId);
    if (cached !== undefined && cached.version >= event.sessionVersion) return cached.session;
    if (cached !== undefined || (event.type === 'connect' && event.sessionVersion === 0)) {
      this.remember(event.clientId, event.session, event.sessionVersion);
      return event.session;
    }
    const current = await this.api.readSession(event.clientId);
    if (current === null || current.version < event.sessionVersion) {
      // Gone (a close event follows) or somehow behind the event: the event's snapshot is the best.
      return event.session;
    }
    this.remember(event.clientId, current.session, current.version);
    return current.session;
  }

  wrote(clientId: string, session: Session, version: number): void {
    const cached = this.entries.get(clientId);
    if (cached === undefined || cached.version < version) this.remember(clientId, session, version);
  }

  forget(clientId: string): void {
    this.entries.delete(clientId);
  }

  forgetPartition(partition: number): void {
    for (const [clientId, entry] of this.entries) if (entry.partition === partition) this.entries.delete(clientId);
  }

  private remember(clientId: string, session: Session, version: number): void {
    this.entries.set(clientId, { version, session, partition: this.partitionOf(clientId) });
  }
}

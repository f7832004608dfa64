/** Answers to cluster queries from what this gateway holds (docs/wire-format.md lists the kinds). */
import type { Query, Session } from '../protocol/commands.js';
import type { Client } from './client.js';
import type { ClientRegistry } from './client-registry.js';
import { copySession } from './client-commands.js';

/** Answers a query with what this gateway holds (docs/wire-format.md lists the kinds). */
export function answerQuery(registry: ClientRegistry, query: Pick<Query, 'q' | 'a'>): unknown {
  const group = query.a[0] ?? '';
  const members = (): Iterable<Client> =>
    group === '' ? registry.clients.values() : (registry.groups.get(group) ?? []);
  switch (query.q) {
    case 'client': {
      const client = registry.get(group);
      if (client === undefined || client.closed) return null;
      return {
        uid: client.uid,
        session: copySession(client.session),
        groups: [...client.groups],
        v: client.sessionVersion,
      };
    }
    case 'uids': {
      const out: Record<string, string[]> = {};
      for (const uid of query.a) {
        const holders = registry.uids.get(uid);
        if (holders) out[uid] = [...holders].map((c) => c.id);
      }
      return out;
    }
    case 'clients':
      return [...members()].map((c) => c.id);
    case 'sessions': {
      const out: Record<string, Session> = {};
      for (const c of members()) out[c.id] = copySession(c.session);
      return out;
    }
    case 'uidList': {
      if (group === '') return [...registry.uids.keys()];
      const uids = new Set<string>();
      for (const c of members()) if (c.uid !== null) uids.add(c.uid);
      return [...uids];
    }
    case 'count':
      return group === '' ? registry.size : (registry.groups.get(group)?.size ?? 0);
    case 'groups':
      return [...registry.groups.keys()];
    default:
      return null;
  }
}

/**
 * The clients this gateway holds, indexed by id, uid and group. The first local holder of a uid
 * or group subscribes its route on the bus and the last one releases it (direct mode binds and
 * unbinds the routing key on exactly these edges); bindUid and joinGroup resolve only once the
 * subscription is confirmed.
 */
import type { Route } from '../protocol/routes.js';
import type { Client } from './client.js';

export interface RouteHolder {
  subscribe(route: Route): Promise<void>;
  unsubscribe(route: Route): Promise<void>;
  /** Resolves once any bind of the route now in flight is confirmed. */
  subscribed(route: Route): Promise<void>;
}

export class ClientRegistry {
  readonly clients = new Map<string, Client>();
  readonly uids = new Map<string, Set<Client>>();
  readonly groups = new Map<string, Set<Client>>();

  constructor(private readonly routes: RouteHolder) {}

  get size(): number {
    return this.clients.size;
  }

  get(clientId: string): Client | undefined {
    return this.clients.get(clientId);
  }

  add(client: Client): void {
    this.clients.set(client.id, client);
  }

  /** Forgets a client and releases its uid and groups. */
  remove(client: Client): void {
    if (!this.clients.delete(client.id)) return;
    if (client.uid !== null) this.detachUid(client);
    for (const group of client.groups) this.detachGroup(client, group);
    client.groups.clear();
  }

  /** One uid per client: binding another uid replaces the old one. */
  async bindUid(client: Client, uid: string): Promise<void> {
    if (client.uid === uid) return;
    if (client.uid !== null) this.detachUid(client);
    client.uid = uid;
    await this.hold(this.uids, uid, client, { kind: 'uid', uid }, () => {
      if (client.uid === uid) this.detachUid(client);
    });
  }

  unbindUid(client: Client): void {
    if (client.uid !== null) this.detachUid(client);
  }

  async joinGroup(client: Client, group: string): Promise<void> {
    if (client.groups.has(group)) return;
    client.groups.add(group);
    await this.hold(this.groups, group, client, { kind: 'group', group }, () => {
      if (client.groups.has(group)) this.leaveGroup(client, group);
    });
  }

  leaveGroup(client: Client, group: string): void {
    if (!client.groups.delete(group)) return;
    this.detachGroup(client, group);
  }

  ungroup(group: string): void {
    const members = this.groups.get(group);
    if (members === undefined) return;
    for (const client of members) client.groups.delete(group);
    this.groups.delete(group);
    this.release({ kind: 'group', group });
  }

  private detachUid(client: Client): void {
    const uid = client.uid!;
    client.uid = null;
    this.letGo(this.uids, uid, client, { kind: 'uid', uid });
  }

  private detachGroup(client: Client, group: string): void {
    this.letGo(this.groups, group, client, { kind: 'group', group });
  }

  /**
   * Adds the client to the holders of `key`. The first local holder subscribes the route, and
   * `undo` rolls back on failure, so local state never claims a binding the broker does not
   * have; a later holder waits for a bind of the route that may still be in flight.
   */
  private async hold(
    index: Map<string, Set<Client>>,
    key: string,
    client: Client,
    route: Route,
    undo: () => void,
  ): Promise<void> {
    const holders = index.get(key);
    if (holders !== undefined) {
      holders.add(client);
      await this.routes.subscribed(route);
      return;
    }
    index.set(key, new Set([client]));
    try {
      await this.routes.subscribe(route);
    } catch (err) {
      undo();
      throw err;
    }
  }

  /** Removes the client from the holders of `key`; the last one releases the route. */
  private letGo(index: Map<string, Set<Client>>, key: string, client: Client, route: Route): void {
    const holders = index.get(key);
    if (holders === undefined || !holders.delete(client) || holders.size > 0) return;
    index.delete(key);
    this.release(route);
  }

  /** Unbinds in the background: nothing waits for it, and a failure is the bus's to report. */
  private release(route: Route): void {
    this.routes.unsubscribe(route).catch(() => undefined);
  }
}

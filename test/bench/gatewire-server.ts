/**
 * A gatewire node as a benchmark child process: gateway and worker roles, one ws:// listener on
 * port 0, and a handler that binds each client to the uid in its URL query (`?uid=<prefix><n>`),
 * as an application would at login, and with `groupsPerConn` > 0 joins it to that many groups
 * (groupOf). A push loop target `{ kind: 'uid', prefix: '@<groupPrefix>' }` addresses groups: a
 * "uid" starting with `@` is sent with sendToGroup. Driven over IPC by the runner (protocol.ts).
 */
import { createNode } from '../../src/node.js';
import { loadConfig, type ConfigInput } from '../../src/config/load.js';
import type { EventHandler } from '../../src/worker/handler.js';
import { childOptions, failStart, serve } from './server-runtime.js';
import { groupOf } from './group-of.js';

export interface GatewireServerOptions {
  /** gatewire configuration values (bus kind, mode, exchange, …); env is ignored */
  values: ConfigInput;
  /** groups each client joins (default 0: none) */
  groupsPerConn?: number;
  /** groups in all: a client's groups are `${groupPrefix}${groupOf(n, j, groups)}` (default 1) */
  groups?: number;
  /** default 'g' */
  groupPrefix?: string;
}

async function main(): Promise<void> {
  const options = childOptions<GatewireServerOptions>();
  let bound = 0;
  let errors = 0;
  const countError = (): void => {
    errors += 1;
  };
  const handler: EventHandler = {
    async onWebSocketConnect(clientId, request, { gateway }) {
      const uid = request.query.uid;
      if (uid === undefined || uid === '') return;
      const joins: Promise<void>[] = [gateway.bindUid(clientId, uid)];
      const n = Number(/(\d+)$/.exec(uid)?.[1] ?? 0);
      for (let j = 0; j < (options.groupsPerConn ?? 0); j++)
        joins.push(gateway.joinGroup(clientId, `${options.groupPrefix ?? 'g'}${groupOf(n, j, options.groups ?? 1)}`));
      await Promise.all(joins);
      bound += 1;
    },
    onMessage() {},
  };
  const config = loadConfig({ env: {}, values: options.values });
  const node = await createNode({ config, handler });
  await node.start();
  const url = node.urls.find((u) => u.startsWith('ws://'));
  if (url === undefined) throw new Error('the benchmark node needs a ws:// listener');
  const api = node.api;
  const bus = node.bus;
  serve(
    {
      // The API returns a promise per call; the loop does not wait for it (like io.emit).
      sendToAll: (payload) => void api.sendToAll(payload).catch(countError),
      sendToUid: (uid, payload) =>
        void (uid.startsWith('@') ? api.sendToGroup(uid.slice(1), payload) : api.sendToUid(uid, payload)).catch(
          countError,
        ),
      clients: () => node.gateway?.registry.size ?? 0,
      bound: () => bound,
      busStats: () => ({
        messagesConsumed: bus.stats.messagesConsumed,
        commandsConsumed: bus.stats.commandsConsumed,
        pushesConsumed: bus.stats.pushesConsumed,
        messagesPublished: bus.stats.messagesPublished,
        commandsPublished: bus.stats.commandsPublished,
        directory:
          node.directory === null
            ? null
            : { routing: node.directory.routing, ...pick(node.directory.stats, 'routed', 'byKey') },
      }),
      errors: () => errors,
      sessions: () => {
        const sessions = node.gateway?.sessions;
        if (sessions === undefined) return null;
        const notResumed = Object.values(sessions.notResumed).reduce((a, b) => a + b, 0);
        return { resumed: sessions.resumed, takenOver: sessions.takenOver, notResumed };
      },
      stop: () => node.stop(),
    },
    Number(new URL(url).port),
  );
}

main().catch(failStart);

function pick<T extends object, K extends keyof T>(from: T, ...keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((key) => [key, from[key]])) as Pick<T, K>;
}

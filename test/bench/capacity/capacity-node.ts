/**
 * A gatewire node for the capacity measurements: the benchmark server (../gatewire-server.ts)
 * plus groups. Each client asks for its uid in the URL (`?uid=<prefix><n>`); the handler binds it
 * and, with `groupsPerConn` > 0, joins it to that many groups picked by a hash of n (groupOf), so
 * the members of a group spread over the nodes as real users would. A push loop target
 * `{ kind: 'uid', prefix: '@<groupPrefix>' }` addresses groups: a "uid" starting with `@` is sent
 * with sendToGroup. Driven over IPC like every benchmark server (../protocol.ts).
 */
import { createNode } from '../../../src/node.js';
import { loadConfig, type ConfigInput } from '../../../src/config/load.js';
import type { EventHandler } from '../../../src/worker/handler.js';
import { childOptions, failStart, serve } from '../server-runtime.js';

export interface CapacityNodeOptions {
  values: ConfigInput;
  /** groups each client joins (0: none) */
  groupsPerConn: number;
  /** groups in all: a client's groups are `${groupPrefix}${groupOf(n, j, groups)}` */
  groups: number;
  groupPrefix: string;
}

/** Group j of client number n among `groups` groups: a fixed integer hash, the same in the runner. */
export function groupOf(n: number, j: number, groups: number): number {
  let h = Math.imul(n ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(j + 1, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 13;
  return (h >>> 0) % groups;
}

async function main(): Promise<void> {
  const options = childOptions<CapacityNodeOptions>();
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
      for (let j = 0; j < options.groupsPerConn; j++)
        joins.push(gateway.joinGroup(clientId, `${options.groupPrefix}${groupOf(n, j, options.groups)}`));
      await Promise.all(joins);
      bound += 1;
    },
    onMessage() {},
  };
  const config = loadConfig({ env: {}, values: options.values });
  const node = await createNode({ config, handler });
  await node.start();
  const url = node.urls.find((u) => u.startsWith('ws://'));
  if (url === undefined) throw new Error('the capacity node needs a ws:// listener');
  const api = node.api;
  const bus = node.bus;
  serve(
    {
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
      }),
      errors: () => errors,
      stop: () => node.stop(),
    },
    Number(new URL(url).port),
  );
}

// Imported by the runner for groupOf: start only as a forked child.
if (process.send !== undefined) main().catch(failStart);

/**
 * Shared pieces of the e2e tests: a handler that tells each client its id, connect helpers that
 * return the client with its id, and an inbox reader that shows "nothing else arrived" without
 * timing (a marker pushed after the messages under test; one node applies commands in order, so
 * once the marker is in, anything pushed before it is in too).
 */
import assert from 'node:assert/strict';
import type { GatewireNode } from '../../src/node.js';
import type { EventHandler } from '../../src/worker/handler.js';
import { tcpPort, wsUrl } from '../helpers/nodes.js';
import { TcpTestClient, WsTestClient } from '../helpers/clients.js';
import type WebSocket from 'ws';

export type AnyClient = WsTestClient | TcpTestClient;

export interface Connected<C extends AnyClient = AnyClient> {
  client: C;
  id: string;
  node: GatewireNode;
}

/** Sends "id:<clientId>" to every new client; `extra` adds or overrides callbacks. */
export function idHandler(extra: Partial<EventHandler> = {}): EventHandler {
  return {
    onMessage() {},
    ...extra,
    async onConnect(clientId, ctx) {
      await ctx.gateway.sendToClient(clientId, `id:${clientId}`);
      await extra.onConnect?.(clientId, ctx);
    },
  };
}

/** Everything every test opened, closed by closeAll() in t.after. */
export class Opened {
  private readonly clients: AnyClient[] = [];
  private readonly nodes: GatewireNode[] = [];

  client<C extends AnyClient>(client: C): C {
    this.clients.push(client);
    return client;
  }

  node(node: GatewireNode): GatewireNode {
    this.nodes.push(node);
    return node;
  }

  async closeAll(): Promise<void> {
    for (const c of this.clients) {
      if (c instanceof WsTestClient) c.ws.terminate();
      else c.socket.destroy();
    }
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}

async function readId(client: AnyClient): Promise<string> {
  const first = await client.nextText();
  assert.match(first, /^id:[0-9a-z]{13,32}$/);
  return first.slice(3);
}

export async function connectWs(
  opened: Opened,
  node: GatewireNode,
  options: WebSocket.ClientOptions = {},
): Promise<Connected<WsTestClient>> {
  const client = opened.client(await WsTestClient.connect(wsUrl(node), options));
  return { client, id: await readId(client), node };
}

export async function connectTcp(
  opened: Opened,
  node: GatewireNode,
  protocol: 'text' | 'frame' = 'text',
): Promise<Connected<TcpTestClient>> {
  const client = opened.client(await TcpTestClient.connect(tcpPort(node, protocol), protocol));
  return { client, id: await readId(client), node };
}

const readUpTo = new WeakMap<AnyClient, number>();

/**
 * Pushes a fresh marker to each target (from `via`) and returns, per target, the messages that
 * arrived since the last inbox() call for it, up to the marker.
 */
export async function inbox(via: GatewireNode, ...targets: Connected[]): Promise<string[][]> {
  const marker = `marker-${Math.random().toString(36).slice(2)}`;
  await Promise.all(targets.map((t) => via.api.sendToClient(t.id, marker)));
  return Promise.all(
    targets.map(async (t) => {
      await t.client.waitForText(marker);
      const texts = t.client.texts();
      const end = texts.lastIndexOf(marker);
      // Skip the id greeting, which every client got first.
      const start = readUpTo.get(t.client) ?? 1;
      readUpTo.set(t.client, end + 1);
      return texts.slice(start, end);
    }),
  );
}

export function sorted<T>(list: readonly T[]): T[] {
  return [...list].sort();
}

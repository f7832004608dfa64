/**
 * Test helpers: start real nodes on port 0 and talk to them with real ws and TCP clients.
 */
import net from 'node:net';
import { createNode, type GatewireNode } from '../../src/node.js';
import { loadConfig, type ConfigInput, type GatewireConfig } from '../../src/config/load.js';
import type { EventHandler } from '../../src/worker/handler.js';
import type { Authorizer } from '../../src/gateway/listener.js';

export const AMQP_URL = process.env.GATEWIRE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const REDIS_URL = process.env.GATEWIRE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * The id of this test run: GATEWIRE_TEST_RUN when the test wrapper (scripts/test.mjs) runs the
 * suite, so it can find and delete whatever a run left on the shared brokers; otherwise one per
 * process. Letters and digits only: names built from it are safe in glob patterns.
 */
export const TEST_RUN_ID = (() => {
  const given = process.env.GATEWIRE_TEST_RUN;
  if (given !== undefined && given !== '') {
    if (!/^[a-z0-9]+$/.test(given))
      throw new Error(`GATEWIRE_TEST_RUN must be lowercase letters and digits, got ${JSON.stringify(given)}`);
    return given;
  }
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
})();

/** What every broker object name of this run starts with (exchanges, queues, Redis keys). */
export const TEST_RUN_MARKER = `gwt-${TEST_RUN_ID}-`;

let nameCount = 0;

/**
 * A unique name for exchanges, channel prefixes and the like, so tests never share broker state:
 * gwt-<run id>-<prefix>-<pid, counter and random part>. Every test names its broker objects
 * through this, so all of them carry the run's marker.
 */
export function uniqueName(prefix = 'gwtest'): string {
  nameCount += 1;
  return `${TEST_RUN_MARKER}${prefix}-${process.pid.toString(36)}${nameCount.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** Deep-merges config values (arrays replace). */
export function mergeValues(...parts: (ConfigInput | undefined)[]): ConfigInput {
  const out: Record<string, unknown> = {};
  for (const part of parts) {
    if (!part) continue;
    for (const [key, value] of Object.entries(part)) {
      const current = out[key];
      out[key] =
        value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object'
          ? mergeValues(current as ConfigInput, value as ConfigInput)
          : value;
    }
  }
  return out as ConfigInput;
}

/** A configuration for tests: env ignored, logs silent (GATEWIRE_TEST_LOG=debug to see them), port 0. */
export function testConfig(values: ConfigInput = {}): GatewireConfig {
  return loadConfig({
    env: {},
    values: mergeValues(
      {
        gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'], pingInterval: 0 },
        log: { level: process.env.GATEWIRE_TEST_LOG ?? 'silent' },
        cluster: { announceInterval: 200, nodeTimeout: 1500, queryTimeout: 2000 },
      },
      values,
    ),
  });
}

/** A handler that does nothing; tests override what they need. */
export const quietHandler: EventHandler = { onMessage() {} };

export interface StartOptions {
  handler?: EventHandler;
  authorize?: Authorizer;
}

export async function startNode(values: ConfigInput = {}, options: StartOptions = {}): Promise<GatewireNode> {
  const config = testConfig(values);
  const node = await createNode({
    config,
    handler: config.node.roles.includes('worker') ? (options.handler ?? quietHandler) : undefined,
    authorize: options.authorize,
  });
  await node.start();
  return node;
}

export function wsUrl(node: GatewireNode): string {
  const url = node.urls.find((u) => u.startsWith('ws://'));
  if (!url) throw new Error('node has no ws:// listener');
  return url;
}

export function tcpPort(node: GatewireNode, protocol: 'text' | 'frame' = 'text'): number {
  const url = node.urls.find((u) => u.startsWith('tcp://') && u.endsWith(`protocol=${protocol}`));
  if (!url) throw new Error(`node has no tcp:// listener with protocol=${protocol}`);
  return Number(new URL(url).port);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Waits until every node sees `count` live gateways. */
export async function waitForMembership(nodes: GatewireNode[], count: number, timeoutMs = 5000): Promise<void> {
  await waitFor(
    () => nodes.every((n) => n.membership.gateways().length >= count),
    timeoutMs,
    `${count} gateways in membership`,
  );
}

/** Listens on 127.0.0.1:`port` (0: any free port) and returns the port; rejects if it cannot. */
export async function listenLocal(server: net.Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

/** Closes `server` (stops listening; open connections are the caller's). */
export function closeServer(server: net.Server): Promise<void> {
  return new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A TCP port free on 127.0.0.1 right now (for listeners that must be named before they start). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  const port = await listenLocal(server);
  await closeServer(server);
  return port;
}

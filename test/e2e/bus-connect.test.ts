/**
 * `gatewire start` and its broker connection, seen as an operator sees them (a real process, its
 * admin port, its output and exit code):
 *   - an unreachable broker: /healthz 200 and /readyz 503 while it connects, then, after
 *     bus.connectTimeout, a GW_ERR_BUS_CONNECT_TIMEOUT naming the broker kind and its address
 *     (never the password) and a non-zero exit;
 *   - bus.connectTimeout 0 waits for ever, and SIGTERM still ends the process meanwhile;
 *   - a reachable broker: /readyz 200 once the node runs.
 * "Unreachable" is a free loopback port where nothing listens; the reachable brokers are the
 * shared ones, on names unique to the test, deleted after.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { AMQP_URL, REDIS_URL, freePort, sleep, uniqueName } from '../helpers/nodes.js';
import { httpGet } from '../helpers/http.js';
import { killAll, runCli, type Cli } from '../helpers/processes.js';
import { deleteExchanges, rabbitmqctl } from '../helpers/amqp.js';

type Kind = 'amqp' | 'redis';
const PASSWORD = 'pw-never-shown-7f3a';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-connect-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The environment without GATEWIRE_* settings or NODE_ENV of the shell running the tests. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of Object.keys(process.env))
    if (key.startsWith('GATEWIRE_') || key === 'NODE_ENV') env[key] = undefined;
  return env;
}

function busValues(kind: Kind, url: string, prefix: string, connectTimeout: number): Record<string, unknown> {
  return kind === 'amqp'
    ? { kind, connectTimeout, amqp: { url, exchange: prefix } }
    : { kind, connectTimeout, redis: { url, prefix } };
}

/** Starts `gatewire start` with its admin server on a free port; returns the CLI and that port. */
async function start(
  t: { after(fn: () => void): void },
  bus: Record<string, unknown>,
): Promise<{ cli: Cli; admin: string }> {
  const dir = tempDir(t);
  const adminPort = await freePort();
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      node: { pidFile: '', shutdownTimeout: 3000 },
      gateway: { listen: ['ws://127.0.0.1:0/ws'] },
      worker: { handler: path.resolve('dist/examples/chat/handler.js') },
      bus,
      admin: { listen: `127.0.0.1:${adminPort}` },
      log: { level: 'info' },
    }),
  );
  t.after(killAll);
  const cli = runCli(['start', '--config', config], cleanEnv(), dir);
  return { cli, admin: `http://127.0.0.1:${adminPort}` };
}

/** The status of GET url, 0 while nothing answers. */
function statusOf(url: string): Promise<number> {
  return httpGet(url).then(
    (r) => r.status,
    () => 0,
  );
}

/** Waits until the admin server answers at all (its /healthz). */
async function adminUp(cli: Cli, admin: string): Promise<void> {
  const deadline = Date.now() + 20000;
  while ((await statusOf(`${admin}/healthz`)) === 0) {
    if (cli.child.exitCode !== null)
      throw new Error(`gatewire exited (${cli.child.exitCode}) before its admin server answered:\n${cli.output()}`);
    if (Date.now() > deadline) throw new Error(`the admin server did not answer within 20 s:\n${cli.output()}`);
    await sleep(25);
  }
}

for (const kind of ['amqp', 'redis'] as const) {
  test(
    `${kind} unreachable: /healthz 200 and /readyz 503 while connecting, then GW_ERR_BUS_CONNECT_TIMEOUT names ${kind} and the address, not the password, and the exit is non-zero`,
    { timeout: 60000 },
    async (t) => {
      const port = await freePort();
      const url =
        kind === 'amqp'
          ? `amqp://gwuser:${PASSWORD}@127.0.0.1:${port}`
          : `redis://gwuser:${PASSWORD}@127.0.0.1:${port}`;
      const { cli, admin } = await start(t, busValues(kind, url, uniqueName('gwconnect'), 5000));
      await adminUp(cli, admin);
      assert.equal(await statusOf(`${admin}/healthz`), 200);
      const ready = await httpGet(`${admin}/readyz`);
      assert.equal(ready.status, 503, 'not ready while the bus connects');
      const code = await cli.exited;
      const output = cli.output();
      assert.notEqual(code, 0, output);
      assert.notEqual(code, null, output);
      assert.match(output, /GW_ERR_BUS_CONNECT_TIMEOUT/);
      const failure = output.split('\n').find((line) => line.includes('GW_ERR_BUS_CONNECT_TIMEOUT'))!;
      assert.ok(failure.includes(kind), failure);
      assert.ok(failure.includes(`127.0.0.1:${port}`), failure);
      assert.ok(failure.includes('5000 ms'), failure);
      assert.equal(output.includes(PASSWORD), false, 'the password appears nowhere in the output');
      assert.equal(output.includes('listening on'), false, 'no listener was opened');
    },
  );

  test(
    `${kind} unreachable with bus.connectTimeout 0: it keeps connecting (/readyz 503), and SIGTERM ends it within node.shutdownTimeout`,
    { timeout: 60000 },
    async (t) => {
      const port = await freePort();
      const url = kind === 'amqp' ? `amqp://127.0.0.1:${port}` : `redis://127.0.0.1:${port}`;
      const { cli, admin } = await start(t, busValues(kind, url, uniqueName('gwconnect'), 0));
      await adminUp(cli, admin);
      assert.equal((await httpGet(`${admin}/readyz`)).status, 503);
      const sentAt = Date.now();
      cli.child.kill('SIGTERM');
      const killer = setTimeout(() => cli.child.kill('SIGKILL'), 15000);
      const code = await cli.exited;
      clearTimeout(killer);
      const elapsed = Date.now() - sentAt;
      // node.shutdownTimeout is 3000 ms; the OS reports the exit a moment after it happened.
      assert.ok(elapsed <= 4000, `exited ${elapsed} ms after SIGTERM:\n${cli.output()}`);
      assert.equal(code, 0, cli.output());
    },
  );
}

test('amqp reachable: /readyz 200 once the node runs, and SIGTERM exits 0', { timeout: 60000 }, async (t) => {
  const prefix = uniqueName('gwconnect');
  t.after(async () => {
    await deleteExchanges(prefix);
    await deleteQueues(prefix);
  });
  const { cli, admin } = await start(t, busValues('amqp', AMQP_URL, prefix, 30000));
  await cli.waitForOutput('listening on');
  await waitForStatus(admin, 200);
  assert.equal(await statusOf(`${admin}/healthz`), 200);
  cli.child.kill('SIGTERM');
  assert.equal(await cli.exited, 0, cli.output());
});

test('redis reachable: /readyz 200 once the node runs, and SIGTERM exits 0', { timeout: 60000 }, async (t) => {
  const prefix = uniqueName('gwconnect');
  t.after(() => deleteRedisKeys(prefix));
  const { cli, admin } = await start(t, busValues('redis', REDIS_URL, prefix, 30000));
  await cli.waitForOutput('listening on');
  await waitForStatus(admin, 200);
  cli.child.kill('SIGTERM');
  assert.equal(await cli.exited, 0, cli.output());
});

/** /readyz may lag 'listening on' by the admin server's own start, never by more. */
async function waitForStatus(admin: string, status: number): Promise<void> {
  const deadline = Date.now() + 10000;
  while ((await statusOf(`${admin}/readyz`)) !== status) {
    if (Date.now() > deadline) throw new Error(`/readyz did not answer ${status} within 10 s`);
    await sleep(25);
  }
}

/** Deletes the queues of a test's exchange prefix (the node queues outlive their node by x-expires). */
async function deleteQueues(prefix: string): Promise<void> {
  const rows = JSON.parse(await rabbitmqctl('list_queues', 'name', '--formatter', 'json')) as { name: string }[];
  const names = rows.map((r) => r.name).filter((name) => name.startsWith(`${prefix}.`));
  if (names.length === 0) return;
  const connection = await amqp.connect(AMQP_URL);
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    for (const name of names) await channel.deleteQueue(name).catch(() => undefined);
    await channel.close().catch(() => undefined);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** Deletes every key under a test's Redis prefix. */
async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { connectionName: 'gwtest-cleanup' });
  redis.on('error', () => undefined);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/**
 * The supervisor and the cluster commands as a user runs them: `gatewire start --gateways 2
 * --workers 2` (gateways share one port), `gatewire status` from another process, `gatewire stop`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, uniqueName, waitFor } from '../helpers/nodes.js';
import { tempDir } from '../helpers/config-files.js';
import { writeJson } from '../helpers/fixtures.js';
import { WsTestClient } from '../helpers/clients.js';
import { killAll, runCli, runCliToEnd } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';

test('gatewire start --gateways 2 --workers 2, then status and stop', { timeout: 90000 }, async (t) => {
  const exchange = uniqueName('cli');
  t.after(async () => {
    killAll();
    // The split roles' durable event queues and the node queues stay on the broker otherwise.
    await cleanupAmqp(exchange);
  });
  const dir = tempDir(t, 'gatewire-cli-');
  const port = await freePort();
  const config = writeJson(dir, 'cluster.json', {
    gateway: { listen: [`ws://127.0.0.1:${port}/ws`] },
    worker: { handler: path.resolve('dist/examples/chat/handler.js') },
    bus: { kind: 'amqp', mode: 'direct', amqp: { exchange } },
    cluster: { announceInterval: 300 },
    log: { level: 'warn' },
  });
  const pidFile = path.join(dir, 'cluster.pid');
  const cluster = runCli(['start', '--config', config, '--gateways', '2', '--workers', '2', '--pid-file', pidFile]);
  await cluster.waitForOutput('cluster running: 2 gateway(s), 2 worker(s)');

  const clients = [];
  for (let i = 0; i < 6; i++) {
    const client = await WsTestClient.connect(`ws://127.0.0.1:${port}/ws`);
    // The greeting, not necessarily first: another client's login broadcast may arrive before it.
    await client.until(() => client.texts().some((text) => text.startsWith('Hello ')), 10000, 'the greeting');
    clients.push(client);
  }
  // Announcements carry counts: they include the new clients from the next interval on. Ask
  // until the total counts them (at most 10 s); the checks below then read that answer.
  let status = { code: null as number | null, output: '' };
  await waitFor(
    async () => {
      status = await runCliToEnd(['status', '--config', config]);
      return status.output.trim().endsWith(', 6 client(s)');
    },
    10000,
    'status to count the 6 clients',
  ).catch(() => undefined);
  assert.equal(status.code, 0, status.output);
  const lines = status.output.trim().split('\n');
  assert.match(lines[0]!, /^NODE\s+INSTANCE\s+ROLES\s+ADDRESS\s+CLIENTS\s+UIDS\s+GROUPS\s+UPTIME$/);
  const rows = lines.slice(1, -1).map((line) => line.split(/\s+/));
  assert.equal(rows.filter((r) => r[2] === 'gateway').length, 2, status.output);
  assert.equal(rows.filter((r) => r[2] === 'worker').length, 2, status.output);
  for (const row of rows.filter((r) => r[2] === 'gateway')) assert.equal(row[3], `ws://127.0.0.1:${port}/ws`);
  const clientsShown = rows.filter((r) => r[2] === 'gateway').reduce((sum, r) => sum + Number(r[4]), 0);
  assert.equal(clientsShown, 6, 'status counts every client');
  assert.equal(lines.at(-1), '4 node(s), 6 client(s)');
  for (const row of rows) assert.match(row.at(-1)!, /^\d+(s|m\d\ds)$/);

  const stop = await runCliToEnd(['stop', '--pid-file', pidFile]);
  assert.equal(stop.code, 0, stop.output);
  assert.equal(await cluster.exited, 0);
  for (const client of clients) {
    await client.waitClosed();
    assert.equal(client.closeCode, 1001, 'clients are told the server is going away');
  }
  assert.equal(fs.existsSync(pidFile), false);
});

test(
  'embedded mode: changing the handler on disk and `gatewire reload` keeps the connection',
  { timeout: 60000 },
  async (t) => {
    t.after(() => killAll());
    const dir = tempDir(t, 'gatewire-reload-');
    const handlerFile = path.join(dir, 'handler.mjs');
    const writeHandler = (version: string): void =>
      fs.writeFileSync(
        handlerFile,
        `export default {
        async onMessage(clientId, message, { gateway }) { await gateway.sendToClient(clientId, '${version}: ' + message); },
        async onWorkerStart({ gateway }) { await gateway.sendToAll('${version} started'); },
        async onWorkerStop({ gateway }) { await gateway.sendToAll('${version} stopping'); },
      };\n`,
      );
    writeHandler('v1');
    const port = await freePort();
    const config = writeJson(dir, 'node.json', {
      gateway: { listen: [`ws://127.0.0.1:${port}/ws`] },
      worker: { handler: handlerFile },
      log: { level: 'warn' },
    });
    const pidFile = path.join(dir, 'node.pid');
    const node = runCli(['start', '--config', config, '--pid-file', pidFile]);
    await node.waitForOutput('listening on');
    const client = await WsTestClient.connect(`ws://127.0.0.1:${port}/ws`);
    client.send('one');
    await client.waitForText('v1: one');

    writeHandler('v2');
    const reload = await runCliToEnd(['reload', '--pid-file', pidFile]);
    assert.equal(reload.code, 0, reload.output);
    await client.waitForText('v2 started');
    client.send('two');
    await client.waitForText('v2: two');
    const texts = client.texts();
    assert.ok(
      texts.indexOf('v1 stopping') < texts.indexOf('v2 started'),
      'onWorkerStop of the old handler runs before onWorkerStart of the new',
    );
    assert.equal(client.closed, false, 'the same connection stays open');
    const stop = await runCliToEnd(['stop', '--pid-file', pidFile]);
    assert.equal(stop.code, 0, stop.output);
  },
);

/**
 * The supervisor and the cluster commands as a user runs them: `gatewire start --gateways 2
 * --workers 2` (gateways share one port), `gatewire status` from another process, `gatewire stop`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, uniqueName } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
import { killAll, runCli, runCliToEnd } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';

test('gatewire start --gateways 2 --workers 2, then status and stop', { timeout: 90000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-cli-'));
  const exchange = uniqueName('cli');
  t.after(async () => {
    killAll();
    fs.rmSync(dir, { recursive: true, force: true });
    // The split roles' durable event queues and the node queues stay on the broker otherwise.
    await cleanupAmqp(exchange);
  });
  const port = await freePort();
  const config = path.join(dir, 'cluster.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      gateway: { listen: [`ws://127.0.0.1:${port}/ws`] },
      worker: { handler: path.resolve('dist/examples/chat/handler.js') },
      bus: { kind: 'amqp', mode: 'direct', amqp: { exchange } },
      cluster: { announceInterval: 300 },
      log: { level: 'warn' },
    }),
  );
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
  // Announcements carry counts: wait one interval so they include the new clients.
  await new Promise((resolve) => setTimeout(resolve, 700));
  const status = await runCliToEnd(['status', '--config', config]);
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
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-reload-'));
    t.after(() => {
      killAll();
      fs.rmSync(dir, { recursive: true, force: true });
    });
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
    const config = path.join(dir, 'node.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        gateway: { listen: [`ws://127.0.0.1:${port}/ws`] },
        worker: { handler: handlerFile },
        log: { level: 'warn' },
      }),
    );
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

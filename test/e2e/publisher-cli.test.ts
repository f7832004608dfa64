/**
 * Publishers from the command line and from a cron job: `gatewire push` to a client, a uid, a
 * group and everyone (text, and bytes from a file), and examples/cron-push on a one-second
 * schedule, against a node on RabbitMQ.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AMQP_URL, startNode, uniqueName, wsUrl } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
import { killAll, runCliToEnd } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import { amqpCliEnv } from '../helpers/fixtures.js';
import type { GatewireNode } from '../../src/node.js';

test('gatewire push and the cron-push example reach clients through the broker', { timeout: 60000 }, async (t) => {
  const exchange = uniqueName('push');
  const env = amqpCliEnv(exchange);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-push-'));
  let started: GatewireNode | undefined;
  let cron: ReturnType<typeof spawn> | undefined;
  t.after(async () => {
    killAll();
    cron?.kill('SIGKILL');
    await started?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    await cleanupAmqp(exchange);
  });
  const node = (started = await startNode(
    { bus: { kind: 'amqp', mode: 'direct', amqp: { url: AMQP_URL, exchange } } },
    {
      handler: {
        async onConnect(clientId, { gateway }) {
          await gateway.bindUid(clientId, 'alice');
          await gateway.joinGroup(clientId, 'clock');
          await gateway.sendToClient(clientId, `id:${clientId}`);
        },
        onMessage() {},
      },
    },
  ));
  const client = await WsTestClient.connect(wsUrl(node));
  const id = (await client.nextText()).slice(3);

  for (const [args, expected] of [
    [['--client', id, 'to the client'], 'to the client'],
    [['--uid', 'alice', 'to', 'alice'], 'to alice'],
    [['--group', 'clock', 'to the group'], 'to the group'],
    [['--all', 'to everyone'], 'to everyone'],
  ] as [string[], string][]) {
    const run = await runCliToEnd(['push', ...args], env);
    assert.equal(run.code, 0, run.output);
    await client.waitForText(expected);
  }

  const bytes = Buffer.from([0, 159, 146, 150, 255]);
  fs.writeFileSync(path.join(dir, 'payload.bin'), bytes);
  const fromFile = await runCliToEnd(['push', '--uid', 'alice', '--file', path.join(dir, 'payload.bin')], env);
  assert.equal(fromFile.code, 0, fromFile.output);
  await client.until(
    () => client.received.some((r) => r.binary && Buffer.compare(r.data as Buffer, bytes) === 0),
    5000,
    'the bytes',
  );

  const bad = await runCliToEnd(['push', '--uid', 'alice', '--group', 'clock', 'two targets'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.output, /exactly one of --client, --uid, --group or --all/);

  cron = spawn(process.execPath, ['dist/examples/cron-push/push.js', '--schedule', '* * * * * *'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await client.until(() => client.texts().some((text) => text.startsWith('It is ')), 10000, 'the cron push');
  cron.kill('SIGTERM');
  client.close();
});

/**
 * Every example runs as its README says: the commands come from the README's fenced blocks
 * marked ```sh <label> (so the README and this test cannot drift), run with bash from the repo
 * root. What the test adds is only environment the READMEs name: a free port in
 * GATEWIRE_GATEWAY__LISTEN, a unique exchange in GATEWIRE_BUS__AMQP__EXCHANGE (deleted after), a
 * pid file in a temporary folder. The setup block (`npm install && npm run build`) is not run: the test runs from
 * the build it belongs to.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { AMQP_URL, freePort, uniqueName } from '../helpers/nodes.js';
import { tempDir } from '../helpers/config-files.js';
import { WsTestClient } from '../helpers/clients.js';
import { killAll, runShell, type Cli } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';

/** The commands of each ```sh <label> block of `readme` (comments and empty lines dropped). */
function readmeBlocks(readme: string): Map<string, string[]> {
  const text = fs.readFileSync(path.resolve(readme), 'utf8');
  const blocks = new Map<string, string[]>();
  for (const match of text.matchAll(/^```sh ([\w-]+)\n([\s\S]*?)^```$/gm)) {
    const lines = match[2]!
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    assert.ok(!blocks.has(match[1]!), `${readme}: two blocks marked ${match[1]}`);
    blocks.set(match[1]!, lines);
  }
  return blocks;
}

/** The one command of block `label`; the blocks must be exactly `labels` (setup: npm install && npm run build). */
function commands(readme: string, labels: string[]): Record<string, string> {
  const blocks = readmeBlocks(readme);
  assert.deepEqual([...blocks.keys()], ['setup', ...labels], `${readme}: the blocks the test runs`);
  assert.deepEqual(blocks.get('setup'), ['npm install && npm run build'], `${readme}: the setup the test skips`);
  const out: Record<string, string> = {};
  for (const label of labels) {
    const lines = blocks.get(label)!;
    assert.equal(lines.length, 1, `${readme}: block ${label} is one command`);
    out[label] = lines[0]!;
  }
  return out;
}

/** SIGINT to the command's process group (what Ctrl-C in its terminal sends), then its exit code. */
async function stop(cli: Cli, timeoutMs = 10000): Promise<number | null> {
  try {
    process.kill(-cli.child.pid!, 'SIGINT');
  } catch {
    // already gone
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const code = await Promise.race([cli.exited, timeout]);
  clearTimeout(timer);
  assert.notEqual(code, 'timeout', `the command did not stop within ${timeoutMs} ms:\n${cli.output().slice(-2000)}`);
  return code as number | null;
}

test('examples/chat: the node serves the page and greets a client', { timeout: 30000 }, async (t) => {
  const { node } = commands('examples/chat/README.md', ['node']);
  t.after(() => killAll());
  const dir = tempDir(t, 'gatewire-example-chat-');
  const port = await freePort();
  const env = {
    GATEWIRE_GATEWAY__LISTEN: `ws://127.0.0.1:${port}/ws`,
    GATEWIRE_NODE__PID_FILE: path.join(dir, 'node.pid'),
  };
  const server = runShell(node!, env);
  await server.waitForOutput(`gatewire: listening on ws://127.0.0.1:${port}/ws`);

  const page = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /GatewireClient/, 'the chat page');
  const library = await fetch(`http://127.0.0.1:${port}/gatewire/client/gatewire-client.js`);
  assert.equal(library.status, 200, 'the client library the page imports');
  await library.arrayBuffer();

  const client = await WsTestClient.connect(`ws://127.0.0.1:${port}/ws`);
  assert.match(await client.nextText(), /^Hello \w+$/);
  client.close();
  assert.equal(await stop(server), 0, server.output());
});

test('examples/cron-push: the cron job on RabbitMQ reaches a client', { timeout: 40000 }, async (t) => {
  const { node, publisher, client } = commands('examples/cron-push/README.md', ['node', 'publisher', 'client']);
  const exchange = uniqueName('cron');
  t.after(async () => {
    killAll();
    await cleanupAmqp(exchange);
  });
  const dir = tempDir(t, 'gatewire-example-cron-');
  const port = await freePort();
  const env = {
    GATEWIRE_BUS__AMQP__URL: AMQP_URL,
    GATEWIRE_BUS__AMQP__EXCHANGE: exchange,
    GATEWIRE_GATEWAY__LISTEN: `ws://127.0.0.1:${port}/ws`,
    GATEWIRE_NODE__PID_FILE: path.join(dir, 'node.pid'),
  };
  const server = runShell(node!, env);
  await server.waitForOutput(`gatewire: listening on ws://127.0.0.1:${port}/ws`);
  const cron = runShell(publisher!, env);
  await cron.waitForOutput('cron-push: "*/10 * * * * *"');
  const listener = runShell(client!, env);
  await listener.waitForOutput(/Hello \w+: you are in "clock"/);
  // Every 10 seconds: the first push after the client joined reaches it.
  await listener.waitForOutput(/^It is \d{4}-\d\d-\d\dT[\d:.]+Z$/m, 15000);
  await cron.waitForOutput('pushed the time to 1 client(s) in "clock"', 5000);

  assert.equal(await stop(listener), 0, listener.output());
  assert.equal(await stop(cron), 0, cron.output());
  assert.equal(await stop(server), 0, server.output());
});

test('examples/split-cluster: run.sh, the workers reloaded while clients talk', { timeout: 60000 }, async (t) => {
  const { run } = commands('examples/split-cluster/README.md', ['run']);
  const exchange = uniqueName('split');
  t.after(async () => {
    killAll();
    await cleanupAmqp(exchange);
  });
  const port = await freePort();
  const script = runShell(run!, {
    GATEWIRE_BUS__AMQP__URL: AMQP_URL,
    GATEWIRE_BUS__AMQP__EXCHANGE: exchange,
    GATEWIRE_GATEWAY__LISTEN: `ws://127.0.0.1:${port}/ws`,
    // The shortest talk during which the reload happens (run.sh reloads after 4 s, then waits 2 s).
    TALK_SECONDS: '7',
  });
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    script.exited,
    new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 50000))),
  ]);
  clearTimeout(timer);
  const output = script.output();
  assert.equal(code, 0, output);
  assert.match(output, /20 clients connected; talking for 7 s/);
  assert.match(output, /== reloading the workers while the clients talk/);
  assert.match(output, /gatewire supervisor: reload complete/);
  // The status lists the 4 nodes; its client count depends on whether the talk is still on (a
  // loaded machine can make the reload outlast it).
  assert.match(output, /^4 node\(s\), \d+ client\(s\)$/m);
  assert.match(output, /missing: 0; connections dropped: 0/);
});

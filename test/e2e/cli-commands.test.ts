/**
 * The command line as a user types it: --help on every command, unknown options, push and status
 * printing only their result on stdout (logs on stderr), both refusing the local bus, and
 * several nodes started from one folder (a pid file each; stop --node, stop --all, and a plain
 * stop that refuses to guess).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AMQP_URL, freePort, startNode, uniqueName, wsUrl } from '../helpers/nodes.js';
import { tempDir } from '../helpers/config-files.js';
import { amqpCliEnv, writeJson } from '../helpers/fixtures.js';
import { WsTestClient } from '../helpers/clients.js';
import { GATEWIRE_BIN, killAll, runCli } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import type { GatewireNode } from '../../src/node.js';

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs one short command to its end, stdout and stderr apart. */
function gatewire(args: string[], env: NodeJS.ProcessEnv = {}, cwd = process.cwd()): Promise<Ran> {
  const started = Date.now();
  const child = spawn(process.execPath, [GATEWIRE_BIN, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started })),
  );
}

test('--help on every command lists its options; an unknown option is exit 2', { timeout: 60000 }, async () => {
  const top = await gatewire(['--help']);
  assert.equal(top.code, 0, top.stderr);
  for (const command of ['start', 'reload', 'stop', 'status', 'push'])
    assert.match(top.stdout, new RegExp(`gatewire ${command} `));

  const expected: Record<string, string[]> = {
    start: ['--config FILE', '--role', '--gateways N', '--workers M', '--pid-file FILE'],
    stop: ['--node ID', '--all', '--pid-file FILE', '--config FILE'],
    reload: ['--node ID', '--all', '--pid-file FILE', '--config FILE'],
    status: ['--config FILE', '--json', '--verbose'],
    push: ['--client ID', '--uid UID', '--group G', '--all', '--file FILE', '--stdin', '--config FILE', '--verbose'],
  };
  for (const [command, options] of Object.entries(expected)) {
    for (const flag of ['--help', '-h']) {
      const help = await gatewire([command, flag]);
      assert.equal(help.code, 0, `${command} ${flag}: ${help.stderr}`);
      assert.equal(help.stderr, '');
      assert.match(help.stdout, new RegExp(`^usage: gatewire ${command} `));
      for (const option of [...options, '--help'])
        assert.ok(help.stdout.includes(option), `${command} --help lists ${option}`);
    }
    const bad = await gatewire([command, '--no-such-option']);
    assert.equal(bad.code, 2, `${command} --no-such-option`);
    assert.match(bad.stderr, /Unknown option '--no-such-option'/);
    assert.equal(bad.stdout, '');
  }
  const unknown = await gatewire(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command frobnicate/);
});

test('push and status refuse the local bus: exit 2 and one sentence', { timeout: 30000 }, async () => {
  for (const args of [['push', '--all', 'hello'], ['status']]) {
    const run = await gatewire(args, { GATEWIRE_BUS__KIND: 'local' });
    assert.equal(run.code, 2, run.stderr);
    assert.equal(run.stdout, '');
    const lines = run.stderr.trim().split('\n');
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /local bus .* cannot reach other processes; set bus\.kind to amqp or redis/);
  }
});

test(
  'push and status print only their result on stdout; status ends once the nodes answered',
  { timeout: 60000 },
  async (t) => {
    const exchange = uniqueName('clicmd');
    let node: GatewireNode | undefined;
    t.after(async () => {
      await node?.stop();
      await cleanupAmqp(exchange);
    });
    // A long interval: the old fixed wait (two intervals) would be 12 s.
    const announceInterval = 6000;
    node = await startNode(
      {
        node: { id: 'cli-target' },
        bus: { kind: 'amqp', mode: 'direct', amqp: { url: AMQP_URL, exchange } },
        cluster: { announceInterval, nodeTimeout: 20000 },
      },
      {
        handler: {
          async onConnect(clientId, { gateway }) {
            await gateway.bindUid(clientId, 'alice');
            await gateway.sendToClient(clientId, 'ready');
          },
          onMessage() {},
        },
      },
    );
    const client = await WsTestClient.connect(wsUrl(node));
    await client.waitForText('ready');
    // Info logs asked for: they must still stay off stdout.
    const env = {
      ...amqpCliEnv(exchange),
      GATEWIRE_LOG__LEVEL: 'info',
      GATEWIRE_CLUSTER__ANNOUNCE_INTERVAL: String(announceInterval),
    };

    const push = await gatewire(['push', '--uid', 'alice', 'hello alice'], env);
    assert.equal(push.code, 0, push.stderr);
    assert.equal(push.stdout, 'pushed 11 bytes of text to uid alice (amqp)\n');
    assert.equal(push.stderr, '', 'no log lines below warn without --verbose');
    await client.waitForText('hello alice');

    const verbose = await gatewire(['push', '--verbose', '--all', 'to everyone'], env);
    assert.equal(verbose.code, 0, verbose.stderr);
    assert.equal(verbose.stdout, 'pushed 11 bytes of text to every client (amqp)\n');
    assert.match(verbose.stderr, /"msg":"connected to the broker"/, 'with --verbose the info lines go to stderr');
    await client.waitForText('to everyone');

    const status = await gatewire(['status'], env);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(status.stderr, '');
    const lines = status.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3, status.stdout);
    assert.match(lines[0]!, /^NODE\s+INSTANCE\s+ROLES/);
    assert.match(lines[1]!, /^cli-target\s+\S+\s+gateway,worker\s+ws:\/\//);
    assert.equal(lines[2], '1 node(s), 1 client(s)');
    assert.ok(status.ms < announceInterval, `status took ${status.ms} ms: it should not wait out the interval`);

    const json = await gatewire(['status', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { nodes: { id: string }[]; clients: number };
    assert.deepEqual(
      parsed.nodes.map((n) => n.id),
      ['cli-target'],
      'the other status commands are not listed as nodes',
    );
    client.close();
  },
);

test(
  'several nodes from one folder: a pid file each; stop --node, plain stop with two, stop --all',
  { timeout: 90000 },
  async (t) => {
    t.after(() => killAll());
    const dir = tempDir(t, 'gatewire-pids-');
    fs.writeFileSync(path.join(dir, 'handler.mjs'), 'export default { onMessage() {} };\n');
    const start = async (id: string) => {
      const config = writeJson(dir, `${id}.json`, {
        node: { id },
        gateway: { listen: [`ws://127.0.0.1:${await freePort()}/ws`] },
        worker: { handler: path.join(dir, 'handler.mjs') },
        log: { level: 'warn' },
      });
      const cli = runCli(['start', '--config', config], {}, dir);
      await cli.waitForOutput('listening on');
      return cli;
    };
    const pidFile = (id: string): string => path.join(dir, '.gatewire', `${id}.pid`);
    const alpha = await start('alpha');
    const beta = await start('beta');
    assert.equal(fs.readFileSync(pidFile('alpha'), 'utf8').trim(), String(alpha.child.pid));
    assert.equal(fs.readFileSync(pidFile('beta'), 'utf8').trim(), String(beta.child.pid));

    // The same id twice from one folder: the second refuses instead of taking the file over.
    const twin = runCli(['start', '--config', path.join(dir, 'alpha.json')], {}, dir);
    assert.equal(await twin.exited, 2);
    assert.match(twin.output(), /node alpha already runs from this folder/);
    assert.equal(fs.readFileSync(pidFile('alpha'), 'utf8').trim(), String(alpha.child.pid));

    // A stale file (its process is gone) is deleted, not signalled.
    fs.writeFileSync(pidFile('ghost'), '2147483646\n');

    const guess = await gatewire(['stop'], {}, dir);
    assert.equal(guess.code, 2);
    assert.match(
      guess.stderr,
      /2 nodes run from this folder: alpha \(pid \d+\), beta \(pid \d+\); choose one with --node ID, or --all/,
    );
    assert.equal(fs.existsSync(pidFile('ghost')), false, 'the stale pid file is cleaned');

    const reload = await gatewire(['reload', '--node', 'beta'], {}, dir);
    assert.equal(reload.code, 0, reload.stderr);
    const missing = await gatewire(['stop', '--node', 'gamma'], {}, dir);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /node gamma does not run from this folder; running: alpha/);

    const one = await gatewire(['stop', '--node', 'alpha'], {}, dir);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(await alpha.exited, 0);
    assert.equal(fs.existsSync(pidFile('alpha')), false);
    assert.equal(beta.child.exitCode, null, 'the other node still runs');

    const gamma = await start('gamma');
    const all = await gatewire(['stop', '--all'], {}, dir);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(await beta.exited, 0);
    assert.equal(await gamma.exited, 0);
    assert.deepEqual(fs.readdirSync(path.join(dir, '.gatewire')), []);

    // Exactly one running: a plain stop stops it.
    const delta = await start('delta');
    const plain = await gatewire(['stop'], {}, dir);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stderr, /delta \(pid \d+\) stopped/);
    assert.equal(await delta.exited, 0);
    const none = await gatewire(['stop'], {}, dir);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /GW_ERR_NOT_RUNNING/);
  },
);

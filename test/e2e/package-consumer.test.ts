/**
 * The package as a consumer gets it: `npm pack` (the files list: no tests, no source maps), a
 * fresh project that installs the tarball (dependencies from the local npm cache), and then
 * that the install ran nothing of gatewire's (no install-time build), that the published
 * declarations type-check under strict nodenext without skipLibCheck (every type they import is
 * a dependency), that a node runs from the consumer on RabbitMQ (a WebSocket client reaches its
 * handler) and `npx gatewire push` from the consumer's folder reaches that client, printing only
 * its result line, and that `gatewire --help` runs from node_modules/.bin. The test's exchange is
 * deleted after.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { AMQP_URL, uniqueName } from '../helpers/nodes.js';
import { cleanupAmqp } from '../helpers/amqp.js';

/** The repository root (this file runs from dist/test/e2e). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The environment without the npm_* variables `npm test` sets, GATEWIRE_* settings and NODE_ENV. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(key) && !key.startsWith('GATEWIRE_') && key !== 'NODE_ENV') env[key] = value;
  }
  return env;
}

interface Run {
  code: number | null;
  output: string;
  ms: number;
}

/** Runs a command to its end (killed after `timeout` ms); stdout and stderr together. */
function run(
  command: string,
  args: string[],
  cwd: string,
  timeout = 30_000,
  extraEnv: Record<string, string> = {},
): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const env = { ...cleanEnv(), ...extraEnv };
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - started });
    });
  });
}

/** The tsc of the repository's own typescript (no install of it in the consumer). */
function tscPath(): string {
  const require = createRequire(path.join(ROOT, 'package.json'));
  const manifest = require.resolve('typescript/package.json');
  const { bin } = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { bin: Record<string, string> };
  return path.join(path.dirname(manifest), bin.tsc ?? 'bin/tsc');
}

const CONSUMER_TS = `import { createNode, createPublisher, type EventHandler } from 'gatewire';
import { GatewireClient } from 'gatewire/client';

const handler: EventHandler = {
  async onMessage(clientId, message, { gateway }) {
    await gateway.sendToClient(clientId, \`echo \${String(message)}\`);
  },
};
export const kinds: string[] = [typeof createNode, typeof createPublisher, typeof GatewireClient];
export { handler };
`;

const TSCONFIG = {
  compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true },
  files: ['index.ts'],
};

/**
 * A node on RabbitMQ (its exchange from CONSUMER_EXCHANGE) whose handler echoes and binds the
 * client to uid "consumer"; a client (ws, a dependency) says hi, then `npx gatewire push` from
 * the consumer's folder pushes to that uid and the client gets it.
 */
const RUN_MJS = `import { createNode } from 'gatewire';
import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';
const bus = { kind: 'amqp', mode: 'direct', amqp: { url: process.env.CONSUMER_AMQP_URL, exchange: process.env.CONSUMER_EXCHANGE } };
const node = await createNode({
  values: { bus, gateway: { listen: ['ws://127.0.0.1:0/ws'] }, node: { pidFile: '' }, log: { level: 'warn' } },
  handler: {
    async onWebSocketConnect(clientId, request, { gateway }) { await gateway.bindUid(clientId, 'consumer'); },
    async onMessage(clientId, message, { gateway }) { await gateway.sendToClient(clientId, 'echo ' + message); },
  },
});
await node.start();
const url = node.urls.find((u) => u.startsWith('ws://'));
const ws = new WebSocket(url);
const texts = [];
const arrived = (text) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no ' + text + ' in 10 s; got ' + JSON.stringify(texts))), 10000);
  const check = () => { if (texts.includes(text)) { clearTimeout(timer); resolve(text); } else setTimeout(check, 20); };
  check();
});
ws.on('message', (data) => texts.push(String(data)));
ws.on('error', (err) => console.error(err));
ws.on('open', () => ws.send('hi'));
const echoed = await arrived('echo hi');
console.log('consumer node: ' + echoed);
const env = { ...process.env, GATEWIRE_BUS__KIND: 'amqp', GATEWIRE_BUS__AMQP__URL: bus.amqp.url, GATEWIRE_BUS__AMQP__EXCHANGE: bus.amqp.exchange };
const push = spawnSync('npx', ['--no', 'gatewire', 'push', '--uid', 'consumer', 'hello from the cli'], { env, encoding: 'utf8' });
if (push.status !== 0) throw new Error('npx gatewire push failed: ' + push.stderr);
console.log('push stdout: ' + push.stdout.trim());
console.log('consumer client: ' + (await arrived('hello from the cli')));
ws.close();
await node.stop();
`;

test(
  'the packed package installs, type-checks and runs in a fresh consumer project',
  { timeout: 90_000 },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-consumer-'));
    const exchange = uniqueName('consumer');
    t.after(async () => {
      fs.rmSync(dir, { recursive: true, force: true });
      await cleanupAmqp(exchange);
    });
    const timings: string[] = [];

    // `npm test` has just built dist/; prepack (which rebuilds it from scratch) would pull dist/
    // from under the running suite, so the scripts are skipped here.
    const pack = await run(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
    assert.equal(pack.code, 0, pack.output);
    timings.push(`pack ${pack.ms} ms`);
    const [packed] = JSON.parse(pack.output.slice(pack.output.indexOf('['))) as {
      filename: string;
      entryCount: number;
      size: number;
      files: { path: string }[];
    }[];
    assert.ok(packed);
    const paths = packed.files.map((f) => f.path);
    const unexpected = paths.filter(
      (p) =>
        !/^(dist\/src\/.+\.(js|d\.ts)|bin\/[^/]+\.js|docs\/.+|README\.md|LICENSE|package\.json)$/.test(p) ||
        /(^|\/)(test|tests|fixtures)\//.test(p),
    );
    assert.deepEqual(unexpected, [], 'files the package should not ship');
    for (const needed of [
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/client/gatewire-client.d.ts',
      'bin/gatewire.js',
    ])
      assert.ok(paths.includes(needed), `the package ships ${needed}`);

    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(
      path.join(app, 'package.json'),
      JSON.stringify({ name: 'gatewire-consumer', version: '1.0.0', private: true, type: 'module' }),
    );
    const tarball = path.join(dir, packed.filename);
    const flags = ['--no-audit', '--no-fund', '--no-save'];
    let install = await run(NPM, ['install', '--offline', ...flags, tarball], app, 60_000);
    let how = 'offline';
    if (install.code !== 0 && /ENOTCACHED/.test(install.output)) {
      // A dependency's metadata is not in the local cache yet: fetch only what is missing.
      install = await run(NPM, ['install', '--prefer-offline', ...flags, tarball], app, 60_000);
      how = 'prefer-offline';
    }
    assert.equal(install.code, 0, install.output);
    timings.push(`install (${how}) ${install.ms} ms`);
    const ownScripts = install.output
      .split('\n')
      .filter((line) => /gatewire@/.test(line) && /install-scripts|prepare|install|postinstall/.test(line));
    assert.deepEqual(ownScripts, [], `the install runs nothing of gatewire's:\n${install.output}`);
    assert.doesNotMatch(install.output, /> gatewire@.*\n> tsc/);

    fs.writeFileSync(path.join(app, 'index.ts'), CONSUMER_TS);
    fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
    const tsc = await run(process.execPath, [tscPath(), '-p', '.'], app, 60_000);
    assert.equal(tsc.code, 0, `tsc --noEmit (strict, nodenext, no skipLibCheck):\n${tsc.output}`);
    timings.push(`tsc ${tsc.ms} ms`);

    fs.writeFileSync(path.join(app, 'run.mjs'), RUN_MJS);
    const node = await run(process.execPath, ['run.mjs'], app, 60_000, {
      CONSUMER_AMQP_URL: AMQP_URL,
      CONSUMER_EXCHANGE: exchange,
    });
    assert.equal(node.code, 0, node.output);
    assert.match(node.output, /consumer node: echo hi/);
    // `npx gatewire push` prints its one result line on stdout, and the client gets the push.
    assert.match(node.output, /push stdout: pushed .* to uid consumer/);
    assert.match(node.output, /consumer client: hello from the cli/);
    timings.push(`node ${node.ms} ms`);

    const bin = await run(path.join(app, 'node_modules', '.bin', 'gatewire'), ['--help'], app);
    assert.equal(bin.code, 0, bin.output);
    assert.match(bin.output, /usage:[\s\S]*gatewire push/, bin.output);
    timings.push(`bin ${bin.ms} ms`);

    console.log(`[package-consumer] ${packed.entryCount} files, ${packed.size} bytes packed; ${timings.join(', ')}`);
  },
);

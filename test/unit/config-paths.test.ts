/**
 * Paths in configuration files: relative ones resolve from the file's folder (a --config file,
 * config/<NODE_ENV>.json), absolute and empty ones stay; paths from env and from code stay as
 * given (relative to the working directory where they are used). The example configs work from
 * any working directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configError, tempDir } from '../helpers/config-files.js';
import { loadConfig, type GatewireConfig } from '../../src/config/load.js';
import { PATH_KEYS, resolveFilePaths } from '../../src/config/file-paths.js';
import { loadHandler } from '../../src/worker/handler-loader.js';

/** The repository root (this file runs from dist/test/unit). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Every path key set to `value` (a config file's content, or values from code). */
function allPaths(value: string): Record<string, Record<string, unknown>> {
  return {
    node: { pidFile: value === '' ? '' : `${value}/gatewire.pid` },
    gateway: {
      authorizer: value === '' ? '' : `${value}/authorizer.js`,
      staticDir: value === '' ? '' : `${value}/public`,
      tls: { key: value === '' ? '' : `${value}/key.pem`, cert: value === '' ? '' : `${value}/cert.pem` },
    },
    worker: { handler: value === '' ? '' : `${value}/handler.js` },
  };
}

function pathsOf(config: GatewireConfig): Record<string, string> {
  return {
    'node.pidFile': config.node.pidFile,
    'gateway.authorizer': config.gateway.authorizer,
    'gateway.staticDir': config.gateway.staticDir,
    'gateway.tls.key': config.gateway.tls.key,
    'gateway.tls.cert': config.gateway.tls.cert,
    'worker.handler': config.worker.handler,
  };
}

function writeJson(file: string, content: unknown): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(content));
  return file;
}

test('relative paths in a --config file resolve from its folder, whatever the working directory', (t) => {
  const dir = tempDir(t);
  const file = writeJson(path.join(dir, 'deploy', 'node.json'), allPaths('../app'));
  const expected = {
    'node.pidFile': path.join(dir, 'app/gatewire.pid'),
    'gateway.authorizer': path.join(dir, 'app/authorizer.js'),
    'gateway.staticDir': path.join(dir, 'app/public'),
    'gateway.tls.key': path.join(dir, 'app/key.pem'),
    'gateway.tls.cert': path.join(dir, 'app/cert.pem'),
    'worker.handler': path.join(dir, 'app/handler.js'),
  };
  assert.deepEqual(pathsOf(loadConfig({ env: {}, files: [file] })), expected);
  // The file named relative to the working directory: the same result.
  assert.deepEqual(pathsOf(loadConfig({ env: {}, files: [path.relative(process.cwd(), file)] })), expected);
  assert.deepEqual(Object.keys(expected), [...PATH_KEYS]);
});

test('absolute and empty paths in a file stay as they are', (t) => {
  const dir = tempDir(t);
  const absolute = writeJson(path.join(dir, 'a', 'abs.json'), allPaths('/srv/app'));
  assert.deepEqual(Object.values(pathsOf(loadConfig({ env: {}, files: [absolute] }))), [
    '/srv/app/gatewire.pid',
    '/srv/app/authorizer.js',
    '/srv/app/public',
    '/srv/app/key.pem',
    '/srv/app/cert.pem',
    '/srv/app/handler.js',
  ]);
  const empty = writeJson(path.join(dir, 'b', 'empty.json'), allPaths(''));
  assert.deepEqual(Object.values(pathsOf(loadConfig({ env: {}, files: [empty] }))), ['', '', '', '', '', '']);
});

test('a key a file leaves out keeps its default, relative to the working directory', (t) => {
  const file = writeJson(path.join(tempDir(t), 'x', 'node.json'), { worker: { handler: 'h.js' } });
  const config = loadConfig({ env: {}, files: [file] });
  assert.equal(config.worker.handler, path.join(path.dirname(file), 'h.js'));
  assert.equal(config.node.pidFile, '.gatewire/{id}.pid');
});

test('each file resolves from its own folder; config/<NODE_ENV>.json from the config folder', (t) => {
  const dir = tempDir(t);
  const configDir = path.join(dir, 'config');
  writeJson(path.join(configDir, 'staging.json'), { worker: { handler: 'overlay.js' }, gateway: { staticDir: 'www' } });
  assert.equal(
    loadConfig({ env: { NODE_ENV: 'staging' }, configDir }).worker.handler,
    path.join(configDir, 'overlay.js'),
  );
  const second = writeJson(path.join(dir, 'other', 'more.json'), { worker: { handler: './later.js' } });
  const config = loadConfig({ env: { NODE_ENV: 'staging' }, configDir, files: [second] });
  assert.equal(config.worker.handler, path.join(dir, 'other', 'later.js'));
  assert.equal(config.gateway.staticDir, path.join(configDir, 'www'));
});

test('paths from env and from code stay relative to the working directory, and win over a file', (t) => {
  const file = writeJson(path.join(tempDir(t), 'y', 'node.json'), allPaths('from-file'));
  const fromValues = loadConfig({ env: {}, files: [file], values: allPaths('from-values') });
  assert.deepEqual(Object.values(pathsOf(fromValues)), [
    'from-values/gatewire.pid',
    'from-values/authorizer.js',
    'from-values/public',
    'from-values/key.pem',
    'from-values/cert.pem',
    'from-values/handler.js',
  ]);
  const fromEnv = loadConfig({
    env: { GATEWIRE_WORKER__HANDLER: 'dist/handler.js', GATEWIRE_GATEWAY__STATIC_DIR: 'public' },
    files: [file],
  });
  assert.equal(fromEnv.worker.handler, 'dist/handler.js');
  assert.equal(fromEnv.gateway.staticDir, 'public');
  assert.equal(fromEnv.gateway.authorizer, path.join(path.dirname(file), 'from-file/authorizer.js'));
});

test('a path key of the wrong type is still refused, naming the file', (t) => {
  const file = writeJson(path.join(tempDir(t), 'z', 'bad.json'), { worker: { handler: 42 } });
  const { message } = configError(() => loadConfig({ env: {}, files: [file] }));
  assert.match(message, /worker\.handler/);
  assert.ok(message.includes(file), message);
});

test('resolveFilePaths copies: the parsed content is not changed', () => {
  const content = { worker: { handler: 'h.js', partitions: 4 }, log: { level: 'warn' } };
  const resolved = resolveFilePaths(content, '/etc/gatewire');
  assert.deepEqual(content, { worker: { handler: 'h.js', partitions: 4 }, log: { level: 'warn' } });
  assert.deepEqual(resolved, { worker: { handler: '/etc/gatewire/h.js', partitions: 4 }, log: { level: 'warn' } });
  assert.equal(resolved.log, content.log);
});

test('the example configs name existing files from any working directory', async () => {
  for (const name of ['chat', 'split-cluster']) {
    const config = loadConfig({ env: {}, files: [path.join(ROOT, 'examples', name, 'config.json')] });
    assert.equal(config.gateway.staticDir, path.join(ROOT, 'examples/chat/public'), name);
    assert.ok(fs.existsSync(path.join(config.gateway.staticDir, 'index.html')), name);
    assert.equal(config.worker.handler, path.join(ROOT, 'dist/examples/chat/handler.js'), name);
    const handler = await loadHandler(config.worker.handler);
    assert.equal(typeof handler.onMessage, 'function', name);
  }
});

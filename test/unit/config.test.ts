/**
 * Configuration: defaults, values from code, GATEWIRE_SECTION__KEY env names, the
 * config/<NODE_ENV>.json overlay, strict validation that names every bad key (and the allowed
 * values of enumerations), the production secret rule, and the CLI refusing a bad bus.kind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configError, tempDir as tempFolder } from '../helpers/config-files.js';
import { loadConfig, type ConfigInput } from '../../src/config/load.js';
import { GatewireError } from '../../src/errors.js';

/** The repository root (this file runs from dist/test/unit). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('defaults with an empty environment', () => {
  const config = loadConfig({ env: {}, configDir: '/nonexistent' });
  assert.deepEqual(config.node.roles, ['gateway', 'worker']);
  assert.equal(config.node.id, '');
  assert.deepEqual(config.gateway.listen, ['ws://127.0.0.1:8080/ws']);
  assert.equal(config.gateway.pingInterval, 25);
  assert.equal(config.gateway.pingNotResponseLimit, 2);
  assert.equal(config.gateway.pingData, '');
  assert.equal(config.gateway.maxPayload, 1048576);
  assert.equal(config.gateway.sendBufferSize, 1048576);
  assert.equal(config.bus.kind, 'local');
  assert.equal(config.bus.mode, 'direct');
  assert.equal(config.bus.secret, '');
  assert.equal(config.worker.handler, '');
  assert.equal(config.log.level, 'info');
});

test('values from code apply', () => {
  const config = loadConfig({
    env: {},
    values: {
      node: { id: 'edge-1', roles: ['gateway'] },
      gateway: { listen: ['tcp://0.0.0.0:8282?protocol=frame'], pingInterval: 10, pingData: '{"type":"ping"}' },
      bus: {
        kind: 'amqp',
        mode: 'fanout',
        amqp: { url: 'amqp://10.0.0.1:5672' },
        redis: { url: 'redis://10.0.0.1:6379' },
      },
    },
  });
  assert.equal(config.node.id, 'edge-1');
  assert.deepEqual(config.node.roles, ['gateway']);
  assert.deepEqual(config.gateway.listen, ['tcp://0.0.0.0:8282?protocol=frame']);
  assert.equal(config.gateway.pingInterval, 10);
  assert.equal(config.gateway.pingData, '{"type":"ping"}');
  assert.equal(config.bus.kind, 'amqp');
  assert.equal(config.bus.mode, 'fanout');
  assert.equal(config.bus.amqp.url, 'amqp://10.0.0.1:5672');
  assert.equal(config.bus.redis.url, 'redis://10.0.0.1:6379');
  // untouched keys keep their defaults
  assert.equal(config.gateway.pingNotResponseLimit, 2);
});

test('GATEWIRE_SECTION__KEY environment variables apply, and win over values', () => {
  const env = {
    GATEWIRE_BUS__KIND: 'amqp',
    GATEWIRE_BUS__MODE: 'fanout',
    GATEWIRE_BUS__AMQP__URL: 'amqp://u:p@broker:5672',
    GATEWIRE_BUS__AMQP__EXCHANGE: 'chat',
    GATEWIRE_GATEWAY__LISTEN: 'ws://127.0.0.1:8080/ws, tcp://0.0.0.0:8282?protocol=text',
    GATEWIRE_GATEWAY__PING_INTERVAL: '7',
    GATEWIRE_GATEWAY__PING_NOT_RESPONSE_LIMIT: '3',
    GATEWIRE_GATEWAY__PING_DATA: 'ping',
    GATEWIRE_GATEWAY__MAX_PAYLOAD: '4096',
    GATEWIRE_GATEWAY__SEND_BUFFER_SIZE: '65536',
    GATEWIRE_NODE__ID: 'n-7',
    GATEWIRE_NODE__ROLES: 'worker',
    GATEWIRE_WORKER__HANDLER: './handler.js',
    GATEWIRE_BUS__SECRET: 's3cret',
    GATEWIRE_LOG__LEVEL: 'warn',
  };
  const config = loadConfig({ env, values: { gateway: { pingInterval: 99 }, bus: { kind: 'redis' } } });
  assert.equal(config.bus.kind, 'amqp');
  assert.equal(config.bus.mode, 'fanout');
  assert.equal(config.bus.amqp.url, 'amqp://u:p@broker:5672');
  assert.equal(config.bus.amqp.exchange, 'chat');
  assert.deepEqual(config.gateway.listen, ['ws://127.0.0.1:8080/ws', 'tcp://0.0.0.0:8282?protocol=text']);
  assert.equal(config.gateway.pingInterval, 7);
  assert.equal(typeof config.gateway.pingInterval, 'number');
  assert.equal(config.gateway.pingNotResponseLimit, 3);
  assert.equal(config.gateway.pingData, 'ping');
  assert.equal(config.gateway.maxPayload, 4096);
  assert.equal(config.gateway.sendBufferSize, 65536);
  assert.equal(config.node.id, 'n-7');
  assert.deepEqual(config.node.roles, ['worker']);
  assert.equal(config.worker.handler, './handler.js');
  assert.equal(config.bus.secret, 's3cret');
  assert.equal(config.log.level, 'warn');
  assert.deepEqual(loadConfig({ env: { GATEWIRE_NODE__ROLES: 'gateway,worker' } }).node.roles, ['gateway', 'worker']);
});

test('unknown keys are rejected, each named', () => {
  const err = configError(() =>
    loadConfig({ env: {}, values: { bogus: 1, gateway: { pingIntervall: 5 } } as unknown as ConfigInput }),
  );
  assert.match(err.message, /'bogus'/);
  assert.match(err.message, /'gateway\.pingIntervall'/);
});

test('an invalid enumeration names the key and the allowed values', () => {
  const kind = configError(() => loadConfig({ env: { GATEWIRE_BUS__KIND: 'nosuch' } }));
  assert.match(kind.message, /bus\.kind/);
  for (const allowed of ['local', 'amqp', 'redis']) assert.ok(kind.message.includes(allowed), kind.message);
  assert.match(kind.message, /nosuch/);

  const mode = configError(() => loadConfig({ env: {}, values: { bus: { mode: 'topic' as 'direct' } } }));
  assert.match(mode.message, /bus\.mode/);
  assert.ok(mode.message.includes('fanout') && mode.message.includes('direct'), mode.message);

  const roles = configError(() => loadConfig({ env: { GATEWIRE_NODE__ROLES: 'gateway,register' } }));
  assert.match(roles.message, /node\.roles/);
  assert.ok(roles.message.includes('gateway') && roles.message.includes('worker'), roles.message);

  const level = configError(() => loadConfig({ env: { GATEWIRE_LOG__LEVEL: 'loud' } }));
  assert.match(level.message, /log\.level/);
  assert.ok(level.message.includes('debug'), level.message);
});

test('several bad values are all named in one error', () => {
  const err = configError(() =>
    loadConfig({
      env: { GATEWIRE_BUS__KIND: 'nosuch', GATEWIRE_GATEWAY__PING_INTERVAL: 'soon' },
      values: { gateway: { maxPayload: 0 } },
    }),
  );
  assert.match(err.message, /bus\.kind/);
  assert.match(err.message, /gateway\.pingInterval/);
  assert.match(err.message, /gateway\.maxPayload/);
});

test('a bad listener URL is named', () => {
  const scheme = configError(() =>
    loadConfig({ env: { GATEWIRE_GATEWAY__LISTEN: 'ws://127.0.0.1:1/ws,ftp://127.0.0.1:21' } }),
  );
  assert.match(scheme.message, /gateway\.listen/);
  assert.match(scheme.message, /ftp:\/\/127\.0\.0\.1:21/);
  assert.match(scheme.message, /ws, wss, tcp, tls/);

  const noPort = configError(() => loadConfig({ env: {}, values: { gateway: { listen: ['ws://127.0.0.1/ws'] } } }));
  assert.match(noPort.message, /gateway\.listen/);
  assert.match(noPort.message, /ws:\/\/127\.0\.0\.1\/ws/);
  assert.match(noPort.message, /port/);

  const protocol = configError(() =>
    loadConfig({ env: { GATEWIRE_GATEWAY__LISTEN: 'tcp://127.0.0.1:9?protocol=json' } }),
  );
  assert.match(protocol.message, /gateway\.listen/);
  assert.match(protocol.message, /protocol=json/);
  assert.match(protocol.message, /text, frame/);

  // a port equal to the scheme's default is still a port
  const defaults = loadConfig({
    env: { GATEWIRE_GATEWAY__LISTEN: 'ws://0.0.0.0:80/ws,wss://0.0.0.0:443/ws,ws://[::1]:80/' },
  });
  assert.deepEqual(defaults.gateway.listen, ['ws://0.0.0.0:80/ws', 'wss://0.0.0.0:443/ws', 'ws://[::1]:80/']);
  const noPortV6 = configError(() => loadConfig({ env: { GATEWIRE_GATEWAY__LISTEN: 'ws://[::1]/ws' } }));
  assert.match(noPortV6.message, /no port/);

  const garbage = configError(() => loadConfig({ env: { GATEWIRE_GATEWAY__LISTEN: 'not a url' } }));
  assert.match(garbage.message, /gateway\.listen/);
  assert.match(garbage.message, /not a url/);
});

test('config/<NODE_ENV>.json overlays the defaults; values and env win over it; its unknown keys are refused', (t) => {
  const dir = tempFolder(t, 'gatewire-config-');
  fs.writeFileSync(
    path.join(dir, 'staging.json'),
    JSON.stringify({
      gateway: { pingInterval: 9, pingData: 'overlay' },
      bus: { mode: 'fanout' },
      log: { level: 'debug' },
    }),
  );
  const overlaid = loadConfig({ env: { NODE_ENV: 'staging' }, configDir: dir });
  assert.equal(overlaid.gateway.pingInterval, 9);
  assert.equal(overlaid.gateway.pingData, 'overlay');
  assert.equal(overlaid.bus.mode, 'fanout');
  assert.equal(overlaid.log.level, 'debug');

  const layered = loadConfig({
    env: { NODE_ENV: 'staging', GATEWIRE_LOG__LEVEL: 'error' },
    configDir: dir,
    values: { gateway: { pingData: 'code' } },
  });
  assert.equal(layered.gateway.pingInterval, 9);
  assert.equal(layered.gateway.pingData, 'code');
  assert.equal(layered.log.level, 'error');

  // another NODE_ENV, or none, does not read it; a missing overlay is no error
  assert.equal(loadConfig({ env: { NODE_ENV: 'test' }, configDir: dir }).gateway.pingInterval, 25);
  assert.equal(loadConfig({ env: {}, configDir: dir }).gateway.pingInterval, 25);

  fs.writeFileSync(path.join(dir, 'typo.json'), JSON.stringify({ gatway: { pingInterval: 1 } }));
  const err = configError(() => loadConfig({ env: { NODE_ENV: 'typo' }, configDir: dir }));
  assert.match(err.message, /'gatway\.pingInterval'/);

  // a --config file is applied after the overlay
  const file = path.join(dir, 'extra.json');
  fs.writeFileSync(file, JSON.stringify({ gateway: { pingInterval: 4 } }));
  assert.equal(loadConfig({ env: { NODE_ENV: 'staging' }, configDir: dir, files: [file] }).gateway.pingInterval, 4);
  const missing = configError(() => loadConfig({ env: {}, files: [path.join(dir, 'nope.json')] }));
  assert.match(missing.message, /nope\.json/);
});

test('NODE_ENV=production refuses a broker bus without bus.secret, or with its broker URL (credentials) at the default', (t) => {
  const dir = tempFolder(t, 'gatewire-config-');
  for (const kind of ['amqp', 'redis']) {
    const err = configError(() =>
      loadConfig({ env: { NODE_ENV: 'production', GATEWIRE_BUS__KIND: kind }, configDir: dir }),
    );
    assert.match(err.message, /bus\.secret/);
    assert.match(err.message, new RegExp(`bus\\.${kind}\\.url`));
  }
  const err = configError(() =>
    loadConfig({
      env: { NODE_ENV: 'production', GATEWIRE_BUS__KIND: 'amqp', GATEWIRE_BUS__SECRET: 'k' },
      configDir: dir,
    }),
  );
  assert.match(err.message, /bus\.amqp\.url/);
  assert.doesNotMatch(err.message, /bus\.secret|guest/);
  assert.equal(
    loadConfig({
      env: {
        NODE_ENV: 'production',
        GATEWIRE_BUS__KIND: 'amqp',
        GATEWIRE_BUS__SECRET: 'k',
        GATEWIRE_BUS__AMQP__URL: 'amqp://app:pw@mq:5672',
      },
      configDir: dir,
    }).bus.kind,
    'amqp',
  );
  assert.equal(loadConfig({ env: { NODE_ENV: 'production' }, configDir: dir }).bus.kind, 'local');
  assert.equal(loadConfig({ env: { GATEWIRE_BUS__KIND: 'amqp' }, configDir: dir }).bus.secret, '');
});

test('NODE_ENV=production refuses admin.token at its default only for an admin server beyond loopback', (t) => {
  const dir = tempFolder(t, 'gatewire-config-');
  const production = (extra: NodeJS.ProcessEnv) => ({ env: { NODE_ENV: 'production', ...extra }, configDir: dir });
  for (const listen of [':9090', '0.0.0.0:9090', '[::]:9090', '10.0.0.5:9090']) {
    const err = configError(() => loadConfig(production({ GATEWIRE_ADMIN__LISTEN: listen })));
    assert.match(err.message, /admin\.token/, listen);
  }
  // no admin server, or one reachable from this machine only: no token needed
  assert.equal(loadConfig(production({})).admin.token, '');
  assert.equal(loadConfig(production({ GATEWIRE_ADMIN__LISTEN: '127.0.0.1:9090' })).admin.listen, '127.0.0.1:9090');
  assert.equal(loadConfig(production({ GATEWIRE_ADMIN__LISTEN: '[::1]:9090' })).admin.listen, '[::1]:9090');
  const withToken = loadConfig(production({ GATEWIRE_ADMIN__LISTEN: ':9090', GATEWIRE_ADMIN__TOKEN: 'k3y' }));
  assert.equal(withToken.admin.token, 'k3y');
  // outside production an open admin server is allowed (it warns at start)
  assert.equal(loadConfig({ env: { GATEWIRE_ADMIN__LISTEN: ':9090' }, configDir: dir }).admin.token, '');
});

test('admin.token must be a bearer token; a bad one is refused without being shown', () => {
  const err = configError(() => loadConfig({ env: { GATEWIRE_ADMIN__TOKEN: 'has a space' } }));
  assert.match(err.message, /admin\.token/);
  assert.equal(err.message.includes('has a space'), false, err.message);
});

test('the CLI: GATEWIRE_BUS__KIND=nosuch gatewire start exits non-zero naming bus.kind and the allowed values', async () => {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, GATEWIRE_BUS__KIND: 'nosuch' };
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/gatewire.js'), 'start'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  clearTimeout(killer);
  assert.equal(signal, null, `the CLI did not exit by itself; stderr: ${stderr}`);
  assert.notEqual(code, 0);
  assert.match(stderr, /bus\.kind/);
  for (const allowed of ['local', 'amqp', 'redis']) assert.ok(stderr.includes(allowed), stderr);
  assert.match(stderr, /nosuch/);
  assert.equal(stdout.includes('listening'), false);
});

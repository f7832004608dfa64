/**
 * admin.token over real HTTP: with a token, /metrics and every other path but /healthz and
 * /readyz need `Authorization: Bearer <token>` (401 with WWW-Authenticate: Bearer otherwise);
 * without one, an admin server on an address beyond loopback logs a warning at start, and one on
 * loopback does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startNode } from '../helpers/nodes.js';
import { ChildNode } from '../helpers/child-node.js';
import { isLoopbackHost, parseHostPort } from '../../src/config/host-port.js';

const TOKEN = 'gw-admin-Tk3n.9_~+/x=';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** GET on a fresh connection with the given headers. */
function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

function assertRefused(answer: Answer, what: string): void {
  assert.equal(answer.status, 401, what);
  assert.match(String(answer.headers['www-authenticate']), /^Bearer\b/, `${what}: WWW-Authenticate`);
  assert.equal(answer.body.includes('gatewire_'), false, `${what}: no metrics in the body`);
}

test('admin.token: /metrics needs Authorization: Bearer <token>; /healthz and /readyz do not', async (t) => {
  const node = await startNode({ admin: { listen: '127.0.0.1:0', token: TOKEN } });
  t.after(() => node.stop());
  const base = `http://127.0.0.1:${node.adminPort}`;

  assertRefused(await get(`${base}/metrics`), 'no Authorization');
  assertRefused(await get(`${base}/metrics`, { authorization: 'Bearer wrong-token' }), 'a wrong token');
  assertRefused(
    await get(`${base}/metrics`, { authorization: `Bearer ${TOKEN}x` }),
    'the token with one more character',
  );
  assertRefused(
    await get(`${base}/metrics`, { authorization: `Bearer ${TOKEN.slice(0, -1)}` }),
    'the token less its last character',
  );
  assertRefused(
    await get(`${base}/metrics`, { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }),
    'Basic',
  );
  assertRefused(await get(`${base}/metrics`, { authorization: TOKEN }), 'the token without a scheme');
  assertRefused(await get(`${base}/metrics?token=${encodeURIComponent(TOKEN)}`), 'the token in the query');
  // Unknown paths are refused before they are looked up: nothing is learnt without the token.
  assertRefused(await get(`${base}/nosuch`), 'an unknown path');

  const metrics = await get(`${base}/metrics`, { authorization: `Bearer ${TOKEN}` });
  assert.equal(metrics.status, 200);
  assert.match(metrics.body, /gatewire_connections\{/);
  assert.equal(
    (await get(`${base}/metrics`, { authorization: `bearer  ${TOKEN}` })).status,
    200,
    'the scheme is case-insensitive',
  );
  assert.equal((await get(`${base}/nosuch`, { authorization: `Bearer ${TOKEN}` })).status, 404);

  assert.equal((await get(`${base}/healthz`)).status, 200);
  assert.equal((await get(`${base}/readyz`)).status, 200);
  assert.equal(
    (await get(`${base}/readyz`, { authorization: 'Bearer wrong-token' })).status,
    200,
    'probes ignore credentials',
  );
});

test('without admin.token every admin endpoint answers without credentials', async (t) => {
  const node = await startNode({ admin: { listen: '127.0.0.1:0' } });
  t.after(() => node.stop());
  const base = `http://127.0.0.1:${node.adminPort}`;
  assert.equal((await get(`${base}/metrics`)).status, 200);
  assert.equal((await get(`${base}/healthz`)).status, 200);
});

test('which admin.listen values stay on this machine', () => {
  for (const listen of [
    '127.0.0.1:9090',
    '127.1.2.3:9090',
    '[::1]:9090',
    'localhost:9090',
    '[::ffff:127.0.0.1]:9090',
  ]) {
    assert.equal(isLoopbackHost(parseHostPort(listen).host), true, listen);
  }
  for (const listen of [
    ':9090',
    '0.0.0.0:9090',
    '[::]:9090',
    '10.0.0.5:9090',
    '[fe80::1]:9090',
    'admin.example.com:9090',
  ]) {
    assert.equal(isLoopbackHost(parseHostPort(listen).host), false, listen);
  }
});

const WARNING = 'the admin server listens beyond this machine without admin.token';

/** Starts a node in a child process with its output captured; returns that output once stopped. */
async function startupOutput(
  t: { after(fn: () => Promise<void>): void },
  admin: { listen: string; token?: string },
): Promise<{ output: string; adminPort: number }> {
  const node = await ChildNode.start({
    values: { admin, log: { level: 'warn' } },
    handler: 'quiet',
    captureOutput: true,
    label: `admin ${admin.listen}`,
  });
  t.after(() => node.stop());
  const adminPort = node.adminPort;
  await node.stop();
  return { output: node.output, adminPort };
}

test('an admin server on every interface (:port, 0.0.0.0, [::]) without admin.token logs a warning', async (t) => {
  for (const listen of [':0', '0.0.0.0:0', '[::]:0']) {
    const { output, adminPort } = await startupOutput(t, { listen });
    assert.ok(adminPort > 0, `${listen}: the admin server listened`);
    const line = output.split('\n').find((l) => l.includes(WARNING));
    assert.ok(line !== undefined, `${listen}: warning logged; output:\n${output}`);
    assert.equal((JSON.parse(line) as { level: number }).level, 40, 'at warn level');
  }
});

test('no warning on loopback, nor with admin.token set', async (t) => {
  for (const admin of [{ listen: '127.0.0.1:0' }, { listen: '[::1]:0' }, { listen: ':0', token: TOKEN }]) {
    const { output } = await startupOutput(t, admin);
    assert.equal(output.includes(WARNING), false, `${admin.listen}${admin.token ? ' with a token' : ''}: ${output}`);
    assert.equal(output.includes(TOKEN), false, 'the token is never logged');
  }
});

/**
 * Security:
 *   - wss:// and tls:// (text and frame) listeners with a real certificate made here with openssl
 *     (EC P-256, self-signed, SAN 127.0.0.1 and localhost): clients that trust it connect, push and
 *     get pushes; clients that do not trust it, that check another name, or that speak plaintext
 *     to a TLS port are refused and never become clients, while the others are served on;
 *   - bus signing: rogue publishers on the same exchange, one without the secret and one with a
 *     wrong one, push, query and close clients between a legitimate publisher's pushes: every rogue
 *     message is dropped and counted, no rogue push arrives, rogue queries learn nothing, and every
 *     legitimate push arrives in order;
 *   - NODE_ENV=production: `gatewire start` refuses to run while a secret of the bus in use keeps
 *     its default, naming the keys, not the values;
 *   - no secret in logs: `gatewire start` at debug level with bus.secret and a password in
 *     bus.amqp.url (a RabbitMQ user made for the test on a private broker, so the shared one's
 *     users are never touched), through start, clients, a lost broker connection and its
 *     recovery, and SIGTERM; and a start refused for a wrong password: neither string appears in
 *     anything the processes printed nor on the admin port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startNode, testConfig, uniqueName, waitFor, waitForMembership } from '../helpers/nodes.js';
import { amqpValues, BrokerProxy, cleanupAmqp } from '../helpers/amqp.js';
import { PrivateRabbit } from '../helpers/private-broker.js';
import { Opened, connectWs, idHandler } from '../e2e/support.js';
import { WsTestClient } from '../helpers/clients.js';
import { RawWs, wsFrame } from '../helpers/raw-ws.js';
import { httpGet } from '../helpers/http.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import { ErrorCodes } from '../../src/errors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30_000 }, (err, _stdout, stderr) =>
      err ? reject(new Error(`openssl: ${stderr}`)) : resolve(),
    );
  });
}

/** A self-signed EC certificate for 127.0.0.1 and localhost, in a fresh temporary folder. */
async function makeCertificate(
  t: { after: (fn: () => void) => void },
  name: string,
): Promise<{ key: string; cert: string; pem: Buffer }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `gatewire-${name}-`));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'key.pem',
      '-out',
      'cert.pem',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    dir,
  );
  return {
    key: path.join(dir, 'key.pem'),
    cert: path.join(dir, 'cert.pem'),
    pem: fs.readFileSync(path.join(dir, 'cert.pem')),
  };
}

/** A TLS client of a tls:// listener that records what it reads. */
function tlsConnect(
  port: number,
  options: tls.ConnectionOptions,
): Promise<{ socket: tls.TLSSocket; data: () => string }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = tls.connect({ host: '127.0.0.1', port, ...options }, () => resolve({ socket, data: () => data }));
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.once('error', reject);
  });
}

function frame(text: string): Buffer {
  const body = Buffer.from(text);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

test('wss:// and tls:// with a real certificate: trusted clients are served, untrusted, misnamed and plaintext ones refused', async (t) => {
  const { key, cert, pem } = await makeCertificate(t, 'tls');
  const other = await makeCertificate(t, 'other');
  const opened = new Opened();
  const sockets: tls.TLSSocket[] = [];
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await opened.closeAll();
  });
  const received: string[] = [];
  const node = opened.node(
    await startNode(
      {
        gateway: {
          listen: ['wss://127.0.0.1:0/ws', 'tls://127.0.0.1:0?protocol=text', 'tls://127.0.0.1:0?protocol=frame'],
          tls: { key, cert },
        },
      },
      {
        handler: idHandler({
          async onMessage(clientId, message, { gateway }) {
            const text = typeof message === 'string' ? message : Buffer.from(message).toString();
            received.push(text);
            await gateway.sendToClient(clientId, `echo ${text}`);
          },
        }),
      },
    ),
  );
  const wssUrl = node.urls.find((u) => u.startsWith('wss://'))!;
  const tlsText = Number(new URL(node.urls.find((u) => u.startsWith('tls://') && u.endsWith('text'))!).port);
  const tlsFrame = Number(new URL(node.urls.find((u) => u.startsWith('tls://') && u.endsWith('frame'))!).port);

  // Trusted: the certificate is the CA, and the name is checked (127.0.0.1 is in its SAN).
  const ws = opened.client(await WsTestClient.connect(wssUrl, { ca: pem }));
  const wsId = (await ws.nextText()).slice(3);
  ws.send('over wss');
  await ws.waitForText('echo over wss');
  const text = await tlsConnect(tlsText, { ca: pem });
  sockets.push(text.socket);
  text.socket.write('over tls text\n');
  await waitFor(() => text.data().includes('echo over tls text\n'), 5000, 'tls text echo');
  const framed = await tlsConnect(tlsFrame, { ca: pem, servername: 'localhost' });
  sockets.push(framed.socket);
  framed.socket.write(frame('over tls frame'));
  await waitFor(() => framed.data().includes('echo over tls frame'), 5000, 'tls frame echo');
  const protocols = [
    text.socket.getProtocol(),
    framed.socket.getProtocol(),
    (ws.ws as unknown as { _socket: tls.TLSSocket })._socket.getProtocol(),
  ];
  const cipher = text.socket.getCipher().name;
  /** Pushes `push` to every client and waits until the wss, tls text and tls frame ones got it. */
  const pushToAll = async (push: string, what: string): Promise<void> => {
    await node.api.sendToAll(push);
    await ws.waitForText(push);
    await waitFor(() => text.data().includes(`${push}\n`) && framed.data().includes(push), 5000, what);
  };
  await pushToAll('to every tls client', 'push over tls');

  // Refused: no trust in the certificate, trust in another one, a name not in it, plaintext.
  const refusals: [string, () => Promise<unknown>, RegExp][] = [
    ['wss without the CA', () => WsTestClient.connect(wssUrl), /self-signed certificate/],
    [
      'wss trusting another certificate',
      () => WsTestClient.connect(wssUrl, { ca: other.pem }),
      /self-signed certificate/,
    ],
    ['tls without the CA', () => tlsConnect(tlsText, {}), /self-signed certificate/],
    [
      'tls checking another name',
      () => tlsConnect(tlsText, { ca: pem, servername: 'gateway.example.com' }),
      /does not match|altnames/i,
    ],
    [
      'ws:// (plaintext) to the wss port',
      () => WsTestClient.connect(wssUrl.replace('wss://', 'ws://')),
      /socket hang up|ECONNRESET|Unexpected server response|HTTP 400/,
    ],
  ];
  const outcomes: string[] = [];
  for (const [what, attempt, expected] of refusals) {
    await assert.rejects(attempt(), (err: Error) => {
      outcomes.push(`${what}: ${err.message.split('\n')[0]}`);
      assert.match(err.message, expected, what);
      return true;
    });
  }
  // Plaintext lines to the tls:// port: the handshake fails and nothing reaches the handler.
  const plain = await new Promise<string>((resolve) => {
    const socket = net.connect(tlsText, '127.0.0.1', () => socket.write('not tls at all\n'));
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(data));
  });
  outcomes.push(`plaintext to the tls port: handshake failed, closed by the server (${plain.length} bytes back)`);

  // Nobody refused became a client; the trusted ones are still served.
  await waitFor(async () => (await node.api.getAllClientCount()) === 3, 5000, 'three clients');
  assert.ok((await node.api.getAllClientIdList()).includes(wsId));
  assert.deepEqual(received, ['over wss', 'over tls text', 'over tls frame']);
  await pushToAll('still served', 'still served over tls');
  console.log(
    `[security tls] certificate: openssl EC P-256 self-signed, SAN IP:127.0.0.1 DNS:localhost; negotiated ${protocols.join(', ')} (${cipher})\n` +
      `  served: wss, tls text, tls frame (both ways); refused: ${outcomes.join('; ')}\n` +
      `  clients held afterwards: 3 (the trusted ones)`,
  );
});

test('bus signing: rogue publishers without the secret or with a wrong one are dropped and counted; the legitimate one is served', async (t) => {
  const prefix = uniqueName('gw-rogue');
  const secret = `s3cret-${Math.random().toString(36).slice(2)}`;
  const opened = new Opened();
  const publishers: Publisher[] = [];
  t.after(async () => {
    for (const p of publishers) await p.close().catch(() => undefined);
    await opened.closeAll();
    await cleanupAmqp(prefix);
  });
  const signed = {
    ...amqpValues(prefix, 'direct', { secret }),
    cluster: { announceInterval: 200, nodeTimeout: 1500, queryTimeout: 1500 },
  };
  const a = opened.node(await startNode(signed, { handler: idHandler() }));
  const b = opened.node(await startNode(signed, { handler: idHandler() }));
  const legit = await createPublisher(testConfig(signed));
  const unsigned = await createPublisher(testConfig({ ...signed, bus: { ...signed.bus, secret: '' } }));
  const wrong = await createPublisher(testConfig({ ...signed, bus: { ...signed.bus, secret: 'not the secret' } }));
  publishers.push(legit, unsigned, wrong);
  await waitForMembership([a, b], 2);
  assert.equal(await legit.waitForGateways(2, 5000), 2);
  // A publisher without a secret does not check signatures: it hears the nodes. One with a wrong
  // secret drops their (correctly signed) announcements: it knows no node at all.
  assert.equal(await unsigned.waitForGateways(2, 5000), 2);
  assert.equal(await wrong.waitForGateways(1, 1000), 0);
  assert.ok(wrong.bus.stats.signatureErrors > 0, "the wrong-secret publisher dropped the nodes' messages");
  const a1 = await connectWs(opened, a);
  const b1 = await connectWs(opened, b);
  await legit.api.bindUid(a1.id, 'ua');
  await legit.api.joinGroup(a1.id, 'room');
  await legit.api.joinGroup(b1.id, 'room');
  const statsA = { ...a.bus.stats };
  const statsB = { ...b.bus.stats };

  // Interleaved: each rogue message goes out in its own turn, so each is one broker message.
  const ROUNDS = 50;
  const rogues = [unsigned, wrong];
  for (let i = 0; i < ROUNDS; i++) {
    await legit.api.sendToUid('ua', `legit ${i}`);
    for (const [r, rogue] of rogues.entries()) {
      await rogue.api.sendToUid('ua', `rogue${r} uid ${i}`);
      if (i % 5 === 0) await rogue.api.sendToAll(`rogue${r} all ${i}`);
      if (i % 10 === 0) await rogue.api.sendToGroup('room', `rogue${r} room ${i}`);
    }
  }
  // Rogue queries and commands to an owner: the unsigned rogue asks and nobody answers; the one
  // with a wrong secret knows no node, so it asks no one.
  const rogueCounts = await Promise.all(rogues.map((r) => r.api.getAllClientCount()));
  // closeClient is a plain publish (accepted once the broker has it); bindUid waits for the owner.
  await Promise.all(rogues.map((r) => r.api.closeClient(a1.id)));
  const rogueBind = await Promise.all(
    rogues.map((r) =>
      r.api.bindUid(a1.id, 'hijacked').then(
        () => 'resolved',
        (err: { code?: string }) => String(err.code),
      ),
    ),
  );
  await legit.api.sendToGroup('room', 'legit last');
  await a1.client.waitForText('legit last');
  await b1.client.waitForText('legit last');

  // Per rogue on A: ROUNDS uid pushes + ROUNDS/5 to all + ROUNDS/10 to the room + a close, and
  // from the unsigned one a query and a bind; on B: the pushes to all and to the room, the query.
  const expectedA = 2 * (ROUNDS + ROUNDS / 5 + ROUNDS / 10 + 1) + 2;
  const expectedB = 2 * (ROUNDS / 5 + ROUNDS / 10) + 1;
  await waitFor(
    () => a.bus.stats.signatureErrors - statsA.signatureErrors >= expectedA,
    10_000,
    'node A counted every rogue message',
  ).catch(() => undefined);
  await waitFor(
    () => b.bus.stats.signatureErrors - statsB.signatureErrors >= expectedB,
    10_000,
    'node B counted every rogue message',
  ).catch(() => undefined);
  const legitTexts = a1.client.texts().filter((x) => /^legit \d+$/.test(x));
  const rogueTexts = [...a1.client.texts(), ...b1.client.texts()].filter((x) => x.startsWith('rogue'));
  console.log(
    `[security rogue] injected: 2 rogue publishers (no secret; a wrong secret), ${ROUNDS} rounds interleaved with a signed publisher, plus a query, a closeClient and a bindUid each\n` +
      `  node A dropped and counted ${a.bus.stats.signatureErrors - statsA.signatureErrors} (expected ${expectedA}), node B ${b.bus.stats.signatureErrors - statsB.signatureErrors} (expected ${expectedB}); decode errors ${a.bus.stats.decodeErrors - statsA.decodeErrors + b.bus.stats.decodeErrors - statsB.decodeErrors}\n` +
      `  rogue pushes delivered ${rogueTexts.length}; rogue getAllClientCount -> ${rogueCounts.join(', ')}; rogue bindUid -> ${rogueBind.join(', ')}; rogue closeClient: the client stayed (${!a1.client.closed})\n` +
      `  legitimate pushes: sent ${ROUNDS + 1}, delivered ${legitTexts.length + 1}, in order ${legitTexts.every((x, i) => x === `legit ${i}`)}`,
  );
  assert.deepEqual(rogueTexts, [], 'no rogue push arrived');
  assert.deepEqual(
    legitTexts,
    Array.from({ length: ROUNDS }, (_, i) => `legit ${i}`),
    'every legitimate push arrived, in order',
  );
  assert.equal(
    a.bus.stats.signatureErrors - statsA.signatureErrors,
    expectedA,
    'node A dropped and counted every rogue message',
  );
  assert.equal(
    b.bus.stats.signatureErrors - statsB.signatureErrors,
    expectedB,
    'node B dropped and counted every rogue message',
  );
  assert.deepEqual(rogueCounts, [0, 0], 'rogue queries learn nothing');
  // The unsigned rogue's bind is never applied nor answered (it times out); the other one knows no
  // live node, so its call fails at once.
  assert.deepEqual(rogueBind, [ErrorCodes.REQUEST_TIMEOUT, ErrorCodes.NODE_UNREACHABLE]);
  assert.equal(await legit.api.getUidByClientId(a1.id), 'ua', 'the rogue bind was not applied');
  assert.equal(a1.client.closed, false, 'the rogue close was not applied');
  assert.equal(a.bus.stats.decodeErrors, statsA.decodeErrors);
  assert.equal(await legit.api.getAllClientCount(), 2, 'the legitimate publisher is answered');
});

// ---- the CLI ---------------------------------------------------------------------------------

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Runs `gatewire start` with `env` (and nothing of this process's GATEWIRE_* env). */
function startCli(env: Record<string, string>): {
  child: ReturnType<typeof spawn>;
  output: () => string;
  done: Promise<Run>;
} {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/gatewire.js'), 'start'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (output += c));
  const done = new Promise<Run>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, output })));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void done.then(() => clearTimeout(timer));
  return { child, output: () => output, done };
}

test('NODE_ENV=production: gatewire start refuses secrets left at their defaults, naming the keys only', async () => {
  const base = {
    NODE_ENV: 'production',
    GATEWIRE_BUS__KIND: 'amqp',
    GATEWIRE_WORKER__HANDLER: 'dist/examples/chat/handler.js',
    GATEWIRE_GATEWAY__LISTEN: 'ws://127.0.0.1:0/ws',
  };
  const cases: [string, Record<string, string>, RegExp, RegExp][] = [
    ['no bus.secret, default URL', base, /bus\.secret, bus\.amqp\.url: must be set when NODE_ENV=production/, /guest/],
    [
      'a secret, the default URL (guest:guest)',
      { ...base, GATEWIRE_BUS__SECRET: 'set-secret-1' },
      /bus\.amqp\.url: must be set/,
      /guest|set-secret-1/,
    ],
    [
      'a URL, no secret',
      { ...base, GATEWIRE_BUS__AMQP__URL: 'amqp://app:url-pass-2@127.0.0.1:5672' },
      /bus\.secret: must be set/,
      /url-pass-2/,
    ],
    [
      'redis without a secret or URL',
      { ...base, GATEWIRE_BUS__KIND: 'redis' },
      /bus\.secret, bus\.redis\.url: must be set/,
      /redis:\/\//,
    ],
  ];
  const lines: string[] = [];
  for (const [what, env, expected, leak] of cases) {
    const run = await startCli(env).done;
    lines.push(`${what}: exit ${run.code}, "${run.output.trim().split('\n').at(-1)}"`);
    assert.equal(run.code, 2, `${what}: refused`);
    assert.match(run.output, expected, what);
    assert.doesNotMatch(run.output, leak, `${what}: no value printed`);
    assert.doesNotMatch(run.output, /listening on/, `${what}: nothing started`);
  }
  console.log(`[security production] gatewire start with NODE_ENV=production:\n  ${lines.join('\n  ')}`);
});

test('no secret in logs: gatewire start at debug level through start, clients, a lost broker and SIGTERM; a refused password', async (t) => {
  const user = uniqueName('gwlog');
  const password = `pw-${Math.random().toString(36).slice(2)}-x7`;
  const secret = `bus-secret-${Math.random().toString(36).slice(2)}`;
  const wrongPassword = `wrongpw-${Math.random().toString(36).slice(2)}`;
  const prefix = uniqueName('gw-logs');
  const broker = await PrivateRabbit.start();
  const proxy = new BrokerProxy({ host: '127.0.0.1', port: broker.port });
  const children: ReturnType<typeof spawn>[] = [];
  let client: WebSocket | undefined;
  t.after(async () => {
    client?.terminate();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await proxy.restore().catch(() => undefined);
    await proxy.close();
    // The user, the exchange and the queues go with the broker.
    await broker.stop();
  });
  await broker.ctl('add_user', user, password);
  await broker.ctl('set_permissions', '-p', '/', user, '.*', '.*', '.*');
  await proxy.start();
  const url = new URL(broker.url);
  url.username = user;
  url.password = password;
  url.port = String(proxy.port);
  const env = {
    NODE_ENV: 'production',
    GATEWIRE_LOG__LEVEL: 'debug',
    GATEWIRE_BUS__KIND: 'amqp',
    GATEWIRE_BUS__SECRET: secret,
    GATEWIRE_BUS__AMQP__URL: url.toString(),
    GATEWIRE_BUS__AMQP__EXCHANGE: prefix,
    GATEWIRE_GATEWAY__LISTEN: 'ws://127.0.0.1:0/ws',
    GATEWIRE_WORKER__HANDLER: 'dist/examples/chat/handler.js',
    GATEWIRE_ADMIN__LISTEN: '127.0.0.1:0',
  };
  const run = startCli(env);
  children.push(run.child);
  await waitFor(() => /listening on ws:\/\//.test(run.output()), 30_000, 'the node listening');
  const wsAddress = /listening on (ws:\/\/\S+)/.exec(run.output())![1]!;
  client = new WebSocket(wsAddress);
  const got: string[] = [];
  client.on('message', (data: Buffer) => got.push(data.toString()));
  await new Promise((resolve, reject) => client!.once('open', resolve).once('error', reject));
  client.send('hello from a client');
  await waitFor(() => got.length >= 1, 10_000, 'chat traffic');
  // Things only debug logs tell: a bad HTTP request and a WebSocket protocol error.
  const port = Number(new URL(wsAddress).port);
  await new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('NOT HTTP\r\n\r\n'));
    s.on('error', () => undefined);
    s.resume(); // read the 400 answer, so that its end is seen
    s.on('close', () => resolve());
  });
  const bad = await RawWs.connect(port);
  bad.send(wsFrame({ opcode: 0x3 }));
  await bad.outcome(5000);
  await waitFor(() => /"level":20/.test(run.output()), 10_000, 'debug lines');
  // The broker goes away and comes back: reconnect logs.
  await proxy.cut();
  await waitFor(() => /cannot reach the broker|lost the broker/.test(run.output()), 30_000, 'the loss logged');
  await proxy.restore();
  await waitFor(() => /reconnected to the broker/.test(run.output()), 60_000, 'the reconnect logged');
  client.send('after the reconnect');
  // What the admin port shows is printed too, in a way: scrape it.
  const adminUrl = /"url":"(http:\/\/[^"]+\/metrics)"/.exec(run.output())![1]!;
  const scraped =
    (await httpGet(adminUrl)).body +
    (await httpGet(adminUrl.replace('/metrics', '/healthz'))).body +
    (await httpGet(adminUrl.replace('/metrics', '/readyz'))).body;
  client.terminate();
  run.child.kill('SIGTERM');
  const ended = await run.done;

  // A start with a wrong password: refused by the broker.
  const badUrl = new URL(url);
  badUrl.password = wrongPassword;
  badUrl.port = String(broker.port);
  const refused = startCli({ ...env, GATEWIRE_BUS__AMQP__URL: badUrl.toString() });
  children.push(refused.child);
  const refusedRun = await refused.done;

  const everything = ended.output + refusedRun.output + scraped;
  const lines = everything.split('\n').filter((l) => l.trim() !== '');
  const debugLines = lines.filter((l) => l.includes('"level":20')).length;
  console.log(
    `[security logs] gatewire start (NODE_ENV=production, log.level debug, bus.secret and a password in bus.amqp.url): ${ended.output.split('\n').length} lines (${debugLines} at debug) through start, a client, a cut broker link and its recovery, SIGTERM (exit ${ended.code})\n` +
      `  a start with a wrong password: exit ${refusedRun.code}, "${refusedRun.output.trim().split('\n').at(-1)?.slice(0, 160)}"\n` +
      `  and /metrics, /healthz, /readyz scraped (${scraped.length} bytes); occurrences in all of it: bus.secret ${everything.split(secret).length - 1}, the password ${everything.split(password).length - 1}, the wrong password ${everything.split(wrongPassword).length - 1}`,
  );
  assert.equal(ended.code, 0, 'stopped cleanly on SIGTERM');
  assert.match(ended.output, /reconnected to the broker/);
  assert.ok(debugLines > 0, 'debug lines were printed');
  assert.notEqual(refusedRun.code, 0, 'the wrong password was refused');
  assert.match(refusedRun.output, /ACCESS_REFUSED|refused/i);
  for (const [name, value] of [
    ['bus.secret', secret],
    ['the password', password],
    ['the wrong password', wrongPassword],
    ['the password, URL-encoded', encodeURIComponent(password)],
    ['user:password in base64', Buffer.from(`${user}:${password}`).toString('base64')],
  ] as const) {
    assert.ok(!everything.includes(value), `${name} never printed`);
  }
});

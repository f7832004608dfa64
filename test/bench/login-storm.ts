/**
 * `npm run bench:login`: the cost of direct-mode bindings on RabbitMQ and Redis (DESIGN §1).
 *
 * For exact uid keys and for bucket keys (bus.uidBuckets): one node (its own process) holds
 * 10,000 TCP clients; all log in at once with distinct uids ("login <uid>": bindUid, answered once
 * the broker confirmed the bind); then the broker restarts (rabbitmqctl stop_app / start_app) and
 * a publisher probes every uid until each client has received a push sent after the restart.
 * Prints and writes docs/bench/login-storm.json:
 *   login:    first login sent -> last "ok" received (10,000 binds confirmed)
 *   recovery: the broker back (start_app returned, or Redis answers PING) -> every uid reachable
 *             again (a push sent to it arrived)
 *
 * On Redis (direct mode, one channel per uid) the restart stops the server and starts a new,
 * empty one on the same port.
 *
 * The brokers it restarts are private ones it starts for each measurement on free loopback
 * ports (test/helpers/private-broker.ts) and stops after: the machine's RabbitMQ and Redis are
 * never touched. It loads the machine heavily: run it alone, never beside tests.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { createPublisher } from '../../src/publisher.js';
import { loadConfig } from '../../src/config/load.js';
import { freePort } from '../helpers/nodes.js';
import { PrivateRabbit, PrivateRedis } from '../helpers/private-broker.js';
import { cpuTimes, stealPercent, stealText } from './cpu-steal.js';
import { benchNodeFlags } from './node-flags.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const CLIENTS = Number(process.env.GATEWIRE_BENCH_LOGINS ?? 10000);

type Broker = 'amqp' | 'redis';
type PrivateBroker = { kind: 'amqp'; server: PrivateRabbit } | { kind: 'redis'; server: PrivateRedis };

/** A fresh private broker for one measurement, so no run sees what an earlier one left. */
async function startBroker(broker: Broker): Promise<PrivateBroker> {
  if (broker === 'amqp') {
    const server = await PrivateRabbit.start();
    progress(`private RabbitMQ ${server.nodeName} on port ${server.port}, up in ${server.startupMs} ms`);
    return { kind: 'amqp', server };
  }
  const server = await PrivateRedis.start();
  progress(`private Redis on port ${server.port}`);
  return { kind: 'redis', server };
}

/** Stops the broker for about a second and starts it again; resolves when it is back. */
async function restartBroker(broker: PrivateBroker): Promise<void> {
  if (broker.kind === 'amqp') {
    await broker.server.stopApp();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // Back when start_app returns (the app is up and listening), as the figures always counted.
    await broker.server.ctl('start_app');
    return;
  }
  await broker.server.restart(1000);
}

function progress(text: string): void {
  process.stderr.write(`[login-storm] ${text}\n`);
}

/** A TCP text-protocol client that records the time each line arrived. */
class LineClient {
  private buffer = '';
  readonly lines: { text: string; at: number }[] = [];
  constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let i: number;
      while ((i = this.buffer.indexOf('\n')) !== -1) {
        this.lines.push({ text: this.buffer.slice(0, i), at: Date.now() });
        this.buffer = this.buffer.slice(i + 1);
      }
    });
    socket.on('error', () => undefined);
  }
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Result {
  keys: string;
  clients: number;
  loginMs: number;
  loginsPerSecond: number;
  brokerDownMs: number;
  recoveryMs: number;
  probeRounds: number;
  /** % of CPU time stolen by the hypervisor during the logins and during the recovery */
  loginStealPercent: number | null;
  recoveryStealPercent: number | null;
}

async function measure(kind: Broker, uidBuckets: number): Promise<Result> {
  const keys = `${kind === 'amqp' ? 'RabbitMQ' : 'Redis'} direct, ${uidBuckets === 0 ? 'exact uid keys' : `${uidBuckets} bucket keys`}`;
  const exchange = `gwbench-login-${process.pid}-${uidBuckets}-${Date.now().toString(36)}`;
  const broker = await startBroker(kind);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewire-login-'));
  const configFile = path.join(dir, 'node.json');
  const busValues =
    broker.kind === 'amqp'
      ? { kind: 'amqp', mode: 'direct', uidBuckets, amqp: { url: broker.server.url, exchange } }
      : { kind: 'redis', mode: 'direct', uidBuckets, redis: { url: broker.server.url, prefix: exchange } };
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      gateway: { listen: [`tcp://127.0.0.1:${port}?protocol=text`], pingInterval: 0 },
      worker: { handler: path.join(root, 'dist/test/fixtures/login-handler.js') },
      bus: busValues,
      log: { level: 'warn' },
    }),
  );
  const node: ChildProcess = spawn(
    process.execPath,
    [...benchNodeFlags(), path.join(root, 'bin/gatewire.js'), 'start', '--config', configFile, '--pid-file', ''],
    {
      stdio: ['ignore', 'inherit', 'pipe'],
    },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      node.stderr!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('listening on')) resolve();
      });
      node.once('exit', (code) => reject(new Error(`node exited (${code})`)));
    });
    progress(`${keys}: connecting ${CLIENTS} clients`);
    const clients: LineClient[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const socket = net.connect(port, '127.0.0.1');
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('error', reject);
      });
      clients.push(new LineClient(socket));
    }
    progress(`${keys}: ${CLIENTS} clients connected; logging in`);
    const loginStart = Date.now();
    const cpuAtLogin = cpuTimes();
    clients.forEach((c, i) => c.socket.write(`login user-${i}\n`));
    await until(
      () => clients.every((c) => c.lines.some((l) => l.text.startsWith('ok '))),
      300000,
      'every login confirmed',
    );
    const loginEnd = Math.max(...clients.map((c) => c.lines.find((l) => l.text.startsWith('ok '))!.at));
    const loginMs = loginEnd - loginStart;
    const loginSteal = stealPercent(cpuAtLogin, cpuTimes());
    progress(`${keys}: ${CLIENTS} logins in ${loginMs} ms (${stealText(loginSteal)})`);

    const publisher = await createPublisher(
      loadConfig({ env: {}, values: { bus: busValues as never, log: { level: 'silent' } } }),
    );
    // A publisher knows the node from its first announcement on (at most cluster.announceInterval,
    // 1 s): as a long-lived one does, it then holds what it buffered during the restart until the
    // node re-bound its keys (the peer barrier, peer-barrier.ts). One that knew no node yet waits
    // for the first ANNOUNCE instead, a second later than the node's READY.
    if ((await publisher.waitForGateways(1, 10000)) < 1) throw new Error('the publisher never heard the node');
    progress(`${keys}: restarting the broker`);
    const downAt = Date.now();
    const cpuAtRestart = cpuTimes();
    await restartBroker(broker);
    const upAt = Date.now();
    let rounds = 0;
    const reachedAfter = (c: LineClient): boolean => c.lines.some((l) => l.text.startsWith('probe') && l.at >= upAt);
    while (!clients.every(reachedAfter)) {
      if (Date.now() - upAt > 300000) throw new Error('uids not reachable within 300 s of start_app');
      rounds += 1;
      const waiting = clients.map((c, i) => [c, i] as const).filter(([c]) => !reachedAfter(c));
      await Promise.all(
        waiting.map(([, i]) => publisher.api.sendToUid(`user-${i}`, `probe ${rounds}`).catch(() => undefined)),
      );
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const reachable = Math.max(
      ...clients.map((c) => c.lines.find((l) => l.text.startsWith('probe') && l.at >= upAt)!.at),
    );
    const recoveryMs = reachable - upAt;
    const recoverySteal = stealPercent(cpuAtRestart, cpuTimes());
    progress(
      `${keys}: every uid reachable ${recoveryMs} ms after the broker was back (${rounds} probe rounds; ${stealText(recoverySteal)})`,
    );
    await publisher.close();
    for (const c of clients) c.socket.destroy();
    return {
      keys,
      clients: CLIENTS,
      loginMs,
      loginsPerSecond: Math.round((CLIENTS * 1000) / loginMs),
      brokerDownMs: upAt - downAt,
      recoveryMs,
      probeRounds: rounds,
      loginStealPercent: loginSteal,
      recoveryStealPercent: recoverySteal,
    };
  } finally {
    node.kill('SIGKILL');
    await broker.server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const results: Result[] = [];
  for (const buckets of [0, 1024]) results.push(await measure('amqp', buckets));
  results.push(await measure('redis', 0));
  const header = `| keys | clients | login (all binds confirmed) | logins/s | broker down | all uids reachable after the broker is back | CPU steal (login / recovery) |\n|---|---|---|---|---|---|---|`;
  const percent = (p: number | null): string => (p === null ? '?' : `${p} %`);
  const rows = results.map(
    (r) =>
      `| ${r.keys} | ${r.clients} | ${r.loginMs} ms | ${r.loginsPerSecond} | ${r.brokerDownMs} ms | ${r.recoveryMs} ms | ${percent(r.loginStealPercent)} / ${percent(r.recoveryStealPercent)} |`,
  );
  process.stdout.write(`${header}\n${rows.join('\n')}\n`);
  const out = path.join(root, 'docs/bench/login-storm.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), machine: { cpus: os.cpus().length, node: process.version }, results }, null, 2)}\n`,
  );
  progress(`wrote ${path.relative(root, out)}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    // A private broker still running is killed by its exit hook.
    process.stderr.write(`[login-storm] failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

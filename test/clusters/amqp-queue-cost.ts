/**
 * What a quorum node queue costs against a classic one, measured on a private 3-node RabbitMQ
 * cluster (private-rabbit-cluster.ts) on this machine. Not a test: a measurement, run by hand
 * (docs/cluster-rabbitmq.md quotes it):
 *
 *   npx tsc -p . && node dist/test/clusters/amqp-queue-cost.js [pushes, default 20000]
 *
 * For each queue type, with one push per broker message (bus.maxCommandsPerMessage 1: one enqueue
 * per push, the queue's own cost) and batched (the default): one gatewire node holding 16 clients, each bound to a uid, one publisher
 * pushing to those uids with up to 200 pushes in flight (each awaited: the
 * broker confirmed it), until the client got them all. Printed: pushes per second end to end,
 * and the CPU time the three broker nodes (their Erlang VMs, read from /proc) spent per push.
 */
import fs from 'node:fs';
import { createPublisher } from '../../src/publisher.js';
import type { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js';
import { mergeValues, startNode, testConfig, uniqueName, wsUrl } from '../helpers/nodes.js';
import { idHandler } from '../helpers/fixtures.js';
import { WsTestClient } from '../helpers/clients.js';
import { PrivateRabbitCluster } from '../helpers/private-rabbit-cluster.js';

const PUSHES = Number(process.argv[2] ?? 20000);
const UIDS = 16;
const IN_FLIGHT = 200;
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** CPU seconds (user + system) of the Erlang VMs whose home (-home <dir>) is one of `dirs`. */
function brokerCpuSeconds(dirs: string[]): number {
  let ticks = 0;
  for (const pid of fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const home = args[args.indexOf('-home') + 1];
      if (!args[0]!.endsWith('beam.smp') || home === undefined || !dirs.includes(home)) continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // the process ended meanwhile
    }
  }
  return ticks / TICKS_PER_SECOND;
}

async function run(
  cluster: PrivateRabbitCluster,
  queueType: 'classic' | 'quorum',
  maxCommandsPerMessage: number,
): Promise<string> {
  const exchange = uniqueName('gwclu-cost');
  const values = (url: string) =>
    testConfig({ bus: { kind: 'amqp', mode: 'direct', maxCommandsPerMessage, amqp: { url, exchange, queueType } } });
  const holder = await startNode(mergeValues({ node: { id: 'holder' } }, values(cluster.url) as never), {
    handler: idHandler(),
  });
  const publisher = await createPublisher(values(cluster.url));
  try {
    // A client has one uid (bindUid replaces it): one client per uid.
    const clients: WsTestClient[] = [];
    for (let u = 0; u < UIDS; u++) {
      const client = await WsTestClient.connect(wsUrl(holder));
      clients.push(client);
      await holder.api.bindUid((await client.nextText()).slice(3), `u${u}`);
    }
    await publisher.waitForGateways(1, 10_000);
    let received = 0;
    let resolveAll!: () => void;
    const all = new Promise<void>((resolve) => (resolveAll = resolve));
    for (const client of clients)
      client.ws.on('message', () => {
        received += 1;
        if (received === PUSHES) resolveAll();
      });
    const names = cluster.nodes.map((node) => node.dir);
    const cpuBefore = brokerCpuSeconds(names);
    const started = process.hrtime.bigint();
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < PUSHES) {
          const seq = next++;
          await publisher.api.sendToUid(`u${seq % UIDS}`, `p${seq}`);
        }
      }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      all,
      new Promise<void>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `${queueType}: only ${received} of ${PUSHES} arrived; holder bus ${JSON.stringify(holder.bus.stats)}, ` +
                  `drops ${JSON.stringify(holder.gateway?.counters.drops)}; publisher bus ${JSON.stringify(publisher.bus.stats)}`,
              ),
            ),
          20_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = brokerCpuSeconds(names) - cpuBefore;
    for (const client of clients) client.ws.terminate();
    const type = (holder.bus.transport as AmqpTransport).queueType;
    return (
      `${type}, ${maxCommandsPerMessage === 1 ? 'one push per broker message' : 'batched (default)'}: ${PUSHES} pushes in ${seconds.toFixed(2)} s = ${Math.round(PUSHES / seconds)} pushes/s; ` +
      `brokers' CPU ${cpu.toFixed(2)} s = ${((cpu / PUSHES) * 1e6).toFixed(0)} µs per push`
    );
  } finally {
    await publisher.close();
    await holder.stop();
  }
}

// Only when run as a program: a test runner that imports every file of the folder starts nothing.
if (process.argv[1]?.endsWith('amqp-queue-cost.js')) await main();

async function main(): Promise<void> {
  const cluster = await PrivateRabbitCluster.start(3);
  try {
    console.log(`3-node cluster up in ${cluster.startupMs} ms`);
    // Classic first, then quorum, then classic again: a warm-up effect would show as a difference.
    for (const perMessage of [1, 500])
      for (const type of ['classic', 'quorum', 'classic', 'quorum'] as const)
        console.log(await run(cluster, type, perMessage));
  } finally {
    await cluster.stop();
  }
}

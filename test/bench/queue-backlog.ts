/**
 * `npm run bench:backlog`: how many bytes a frozen node's RabbitMQ queue collects under the
 * latency scenario's load (20,000 sendToUid/s of 64-byte payloads, each distinct, to 200 uids
 * held on the frozen node), which sizes bus.amqp.maxQueueBytes (docs/operations.md, "Tuning").
 * The node is a child process stopped with SIGSTOP; the queue is read with rabbitmqctl after
 * 10 s and the figure scaled to 30 s. Everything it creates is deleted after.
 */
import { execFileSync } from 'node:child_process';
import { ChildNode } from '../helpers/child-node.js';
import { sleep, startNode, uniqueName } from '../helpers/nodes.js';
import { amqpValues, cleanupAmqp } from '../helpers/amqp.js';
import { WsTestClient } from '../helpers/clients.js';
import type { BusMode } from '../../src/config/formats.js';

const RATE = 20_000;
const SECONDS = 10;
const UIDS = 200;

async function measure(mode: BusMode): Promise<void> {
  const prefix = uniqueName('gwbench-backlog');
  const values = amqpValues(prefix, mode);
  const child = await ChildNode.start({ values, handler: 'id' });
  const pusher = await startNode(values);
  const clients: WsTestClient[] = [];
  try {
    while (!pusher.membership.isLive(child.instance)) await sleep(50);
    for (let i = 0; i < UIDS; i++) {
      const client = await WsTestClient.connect(child.url('ws'));
      clients.push(client);
      await pusher.api.bindUid((await client.nextText()).slice(3), `u${i}`);
    }
    child.signal('SIGSTOP');
    await sleep(300);
    const start = Date.now();
    let sent = 0;
    while (Date.now() - start < SECONDS * 1000) {
      const due = Math.floor(((Date.now() - start) * RATE) / 1000);
      const calls: Promise<void>[] = [];
      for (; sent < due; sent++) calls.push(pusher.api.sendToUid(`u${sent % UIDS}`, String(sent).padEnd(64, 'x')));
      await Promise.all(calls);
      await sleep(1);
    }
    const elapsed = Date.now() - start;
    const queue = `${prefix}.${mode}.node.${child.instance}`;
    const rows = JSON.parse(
      execFileSync('rabbitmqctl', [
        '-q',
        'list_queues',
        'name',
        'messages',
        'message_bytes',
        '--formatter',
        'json',
      ]).toString(),
    ) as {
      name: string;
      messages: number;
      message_bytes: number;
    }[];
    const row = rows.find((r) => r.name === queue)!;
    const per30 = (row.message_bytes * 30_000) / elapsed;
    console.log(
      `amqp ${mode}: ${sent} pushes in ${elapsed} ms to a frozen node: its queue holds ${row.messages} messages, ${(row.message_bytes / 1e6).toFixed(1)} MB ` +
        `(${(row.message_bytes / sent).toFixed(0)} bytes per push); 30 s of it: ${(per30 / 1e6).toFixed(0)} MB (bus.amqp.maxQueueBytes default 268 MB)`,
    );
  } finally {
    child.signal('SIGCONT');
    for (const c of clients) c.ws.terminate();
    await child.kill();
    await pusher.stop();
    await cleanupAmqp(prefix);
  }
}

await measure('direct');
await measure('fanout');
process.exit(0);

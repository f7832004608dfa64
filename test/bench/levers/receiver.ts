/**
 * The receiving nodes of the lever measurements, in a child process (measure.ts `Receiver`) so
 * that the CPU they spend is read apart from the sender's. It counts push records, and reports
 * its own CPU (process.cpuUsage) between being armed and the last expected push.
 *
 * RabbitMQ: one channel consuming all node queues with manual acks, one multiple ack per turn
 * (as src/transport/amqp/node-queue.ts does). Redis: one subscriber connection per node.
 */
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { Redis } from 'ioredis';
import { countRecords, selfCpuUs, type ReceiverSetup } from './measure.js';

let expected = 0;
let pushes = 0;
let messages = 0;
let startCpu = 0;
let armed = false;

function onBody(body: Buffer): void {
  messages += 1;
  pushes += countRecords(body);
  if (armed && pushes >= expected) {
    armed = false;
    process.send!({ type: 'done', pushes, messages, cpuUs: selfCpuUs() - startCpu });
  }
}

let amqpConnection: ChannelModel | null = null;
const redisClients: Redis[] = [];

async function setupAmqp(setup: Extract<ReceiverSetup, { kind: 'amqp' }>): Promise<void> {
  amqpConnection = await amqp.connect(setup.url);
  amqpConnection.on('error', () => undefined);
  const channel: Channel = await amqpConnection.createChannel();
  channel.on('error', () => undefined);
  await channel.prefetch(setup.prefetch);
  let last: ConsumeMessage | null = null;
  let ackScheduled = false;
  const ack = (): void => {
    ackScheduled = false;
    if (last !== null) channel.ack(last, true);
    last = null;
  };
  for (const queue of setup.queues) {
    await channel.consume(
      queue,
      (msg) => {
        if (msg === null) return;
        last = msg;
        if (!ackScheduled) {
          ackScheduled = true;
          setImmediate(ack);
        }
        onBody(msg.content);
      },
      { noAck: false },
    );
  }
}

async function setupRedis(setup: Extract<ReceiverSetup, { kind: 'redis' }>): Promise<void> {
  for (const channels of setup.channels) {
    const client = new Redis(setup.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    await client.connect();
    redisClients.push(client);
    client.on('messageBuffer', (_channel: Buffer, body: Buffer) => onBody(body));
    // In slices: one SUBSCRIBE of 2,000 channels is fine for Redis, but ioredis answers per channel.
    for (let i = 0; i < channels.length; i += 500) await client.subscribe(...channels.slice(i, i + 500));
  }
}

process.on('message', (msg: { type: string; setup?: ReceiverSetup; pushes?: number }) => {
  if (msg.type === 'setup') {
    const setup = msg.setup!;
    (setup.kind === 'amqp' ? setupAmqp(setup) : setupRedis(setup)).then(
      () => process.send!({ type: 'ready' }),
      (err: unknown) => process.send!({ type: 'error', error: (err as Error).message }),
    );
  } else if (msg.type === 'expect') {
    expected = msg.pushes!;
    pushes = 0;
    messages = 0;
    armed = true;
    startCpu = selfCpuUs();
    process.send!({ type: 'armed' });
  } else if (msg.type === 'stop') {
    void (async () => {
      for (const client of redisClients) client.disconnect();
      await amqpConnection?.close().catch(() => undefined);
      process.exit(0);
    })();
  }
});
process.on('disconnect', () => process.exit(0));

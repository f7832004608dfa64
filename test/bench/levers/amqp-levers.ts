/**
 * Issue 16, levers for direct mode on RabbitMQ 3.10, each in isolation, with amqplib alone (no
 * gatewire code): a private broker (nothing else loads it), 2,000 bindings of distinct uid keys
 * spread over 3 node queues (plus each queue's node key), a confirm channel, about 80-byte pushes.
 * Broker CPU is beam.smp's utime + stime, sender CPU this process's, receiver CPU the child's.
 *
 *   npx tsc -p . && node dist/test/bench/levers/amqp-levers.js
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { PrivateRabbit } from '../../helpers/private-broker.js';
import { amqpDirectoryRows } from './directory.js';
import {
  NODES,
  UIDS,
  Receiver,
  beamPidOf,
  printWhenMain,
  loadAverage,
  messageOf,
  nodeOfUid,
  procCpuUs,
  repeat,
  selfCpuUs,
  uidOf,
  yieldTurn,
  type Row,
  type Run,
} from './measure.js';

export const EXCHANGE = 'lv.direct';
/** Broker messages a publisher may have unconfirmed before it waits (bounds the broker's backlog). */
const CONFIRM_WINDOW = 4000;
/** Pushes issued per event-loop turn, as the bench's bursts (a yield every 1,000 calls). */
const TURN = 1000;

export function queueOf(node: number): string {
  return `lv.node.${node}`;
}

/** A confirm channel with a bounded number of unconfirmed messages. */
export class Publisher {
  outstanding = 0;
  private wake: (() => void) | null = null;
  private writable = true;

  constructor(readonly channel: ConfirmChannel) {
    channel.on('drain', () => {
      this.writable = true;
      this.release();
    });
  }

  private readonly confirmed = (err: unknown): void => {
    if (err !== null && err !== undefined) process.stderr.write(`nack: ${String(err)}\n`);
    this.outstanding -= 1;
    if (this.outstanding <= CONFIRM_WINDOW / 2) this.release();
  };

  private release(): void {
    const wake = this.wake;
    if (wake !== null && this.writable && this.outstanding <= CONFIRM_WINDOW / 2) {
      this.wake = null;
      wake();
    }
  }

  publish(exchange: string, key: string, body: Buffer, cc?: string[]): void {
    this.outstanding += 1;
    const ok = this.channel.publish(exchange, key, body, cc === undefined ? {} : { CC: cc }, this.confirmed);
    if (!ok) this.writable = false;
  }

  /** Waits for the next turn, longer while the socket is full or too much is unconfirmed. */
  async pace(): Promise<void> {
    if (this.writable && this.outstanding <= CONFIRM_WINDOW) return yieldTurn();
    return new Promise((resolve) => (this.wake = resolve));
  }

  async settle(): Promise<void> {
    await this.channel.waitForConfirms();
  }
}

export interface AmqpContext {
  rabbit: PrivateRabbit;
  beamPid: number;
  connection: ChannelModel;
  publisher: Publisher;
  receiver: Receiver;
}

/**
 * One measured run: `send(from, to)` publishes the pushes [from, to) of one turn and returns the
 * broker messages it sent; `deliveries` is how many push records the receivers must count.
 */
export async function drive(
  ctx: AmqpContext,
  pushes: number,
  turn: number,
  send: (from: number, to: number) => number | Promise<number>,
  deliveries = pushes,
): Promise<Run> {
  const { done } =
    deliveries > 0
      ? await ctx.receiver.expect(deliveries)
      : { done: Promise.resolve({ pushes: 0, messages: 0, cpuUs: 0 }) };
  const broker0 = procCpuUs(ctx.beamPid);
  const sender0 = selfCpuUs();
  const t0 = performance.now();
  let messages = 0;
  for (let from = 0; from < pushes; from += turn) {
    messages += await send(from, Math.min(pushes, from + turn));
    await ctx.publisher.pace();
  }
  await ctx.publisher.settle();
  const received = await done;
  return {
    pushes,
    messages,
    wallMs: performance.now() - t0,
    brokerUs: procCpuUs(ctx.beamPid) - broker0,
    senderUs: selfCpuUs() - sender0,
    receiverUs: received.cpuUs,
  };
}

/** The pushes [from, to) grouped by the node that holds their uid, in order. */
export function byNode(from: number, to: number): number[][] {
  const groups: number[][] = Array.from({ length: NODES }, () => []);
  for (let i = from; i < to; i++) groups[nodeOfUid(i)]!.push(i);
  return groups;
}

/** A turn size that is a multiple of batch × nodes, so every node message holds `batch` pushes. */
export function turnFor(batch: number): number {
  const unit = batch * NODES;
  return unit * Math.max(1, Math.ceil(TURN / unit));
}

/** Pushes of a batched run: at least 2,000 broker messages (CPU resolution 10 ms), at most 256,000. */
export function pushesFor(batch: number, single = 20_000): number {
  return Math.min(Math.max(single, 2000 * batch), 256_000);
}

async function setup(): Promise<AmqpContext> {
  const rabbit = await PrivateRabbit.start();
  const beamPid = beamPidOf(rabbit.nodeName, rabbit.dir);
  const connection = await amqp.connect(rabbit.url);
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  await channel.assertExchange(EXCHANGE, 'direct', { durable: false, autoDelete: false });
  for (let node = 0; node < NODES; node++) {
    // As a node queue: classic, not durable (src/transport/amqp/amqp-topology.ts).
    await channel.assertQueue(queueOf(node), { durable: false, autoDelete: false, exclusive: false });
    await channel.bindQueue(queueOf(node), EXCHANGE, `n.${node}`);
  }
  for (let u = 0; u < UIDS; u += 100) {
    const binds: Promise<unknown>[] = [];
    for (let i = u; i < Math.min(UIDS, u + 100); i++)
      binds.push(channel.bindQueue(queueOf(nodeOfUid(i)), EXCHANGE, `u.${uidOf(i)}`));
    await Promise.all(binds);
  }
  await channel.close();
  const publisher = new Publisher(await connection.createConfirmChannel());
  publisher.channel.on('error', (err: Error) => process.stderr.write(`publisher channel: ${err.message}\n`));
  const queues = Array.from({ length: NODES }, (_, node) => queueOf(node));
  const receiver = await Receiver.start({ kind: 'amqp', url: rabbit.url, queues, prefetch: 1000 });
  return { rabbit, beamPid, connection, publisher, receiver };
}

async function teardown(ctx: AmqpContext): Promise<void> {
  await ctx.receiver.stop();
  await ctx.connection.close().catch(() => undefined);
  await ctx.rabbit.stop();
}

export async function amqpRows(): Promise<Row[]> {
  process.stderr.write(`amqp: starting a private RabbitMQ; load ${loadAverage()}\n`);
  const ctx = await setup();
  const pub = ctx.publisher;
  const rows: Row[] = [];
  const family = 'RabbitMQ 3.10';
  try {
    rows.push(
      await repeat(family, 'a. direct exchange, uid key, 1 message per push', '1', 20_000, (n) =>
        drive(ctx, n, TURN, (from, to) => {
          for (let i = from; i < to; i++) pub.publish(EXCHANGE, `u.${uidOf(i)}`, messageOf([i]));
          return to - from;
        }),
      ),
    );
    rows.push(
      await repeat(family, 'b. default exchange, node queue name, 1 message per push', '1', 20_000, (n) =>
        drive(ctx, n, TURN, (from, to) => {
          for (let i = from; i < to; i++) pub.publish('', queueOf(nodeOfUid(i)), messageOf([i]));
          return to - from;
        }),
      ),
    );
    // c: a push to 4 uids (of one node) as one message, routing key + 3 CC keys; the 4-message
    // form of the same pushes is row a (one uid key per message).
    rows.push(
      await repeat(family, 'c. direct exchange, 4 uid keys (1 + 3 CC) per message', '4', 20_000, (n) =>
        drive(ctx, n, turnFor(4), (from, to) => {
          let messages = 0;
          for (const group of byNode(from, to)) {
            for (let k = 0; k < group.length; k += 4) {
              const chunk = group.slice(k, k + 4);
              const keys = chunk.map((i) => `u.${uidOf(i)}`);
              pub.publish(EXCHANGE, keys[0]!, messageOf(chunk), keys.slice(1));
              messages += 1;
            }
          }
          return messages;
        }),
      ),
    );
    // c': the same push to 3 nodes (a group held on all of them) as one message on the default
    // exchange, its queues named by the routing key and CC; the 3-message form is 3 × row b.
    rows.push(
      await repeat(
        family,
        "c'. default exchange, 1 message to 3 node queues (key + 2 CC queue names)",
        '1',
        20_000,
        (n) =>
          drive(
            ctx,
            n,
            TURN,
            (from, to) => {
              const cc = [queueOf(1), queueOf(2)];
              for (let i = from; i < to; i++) pub.publish('', queueOf(0), messageOf([i]), cc);
              return to - from;
            },
            NODES * n,
          ),
      ),
    );
    for (const [label, byNodeKey] of [
      ['d. default exchange', false],
      ['e. direct exchange, node key', true],
    ] as const) {
      const batches = byNodeKey ? [1, 16, 256] : [1, 4, 16, 64, 256];
      for (const batch of batches) {
        rows.push(
          await repeat(family, `${label}, one turn's pushes per node merged`, String(batch), pushesFor(batch), (n) =>
            drive(ctx, n, turnFor(batch), (from, to) => {
              let messages = 0;
              const groups = byNode(from, to);
              for (let node = 0; node < NODES; node++) {
                const group = groups[node]!;
                for (let k = 0; k < group.length; k += batch) {
                  const body = messageOf(group.slice(k, k + batch));
                  if (byNodeKey) pub.publish(EXCHANGE, `n.${node}`, body);
                  else pub.publish('', queueOf(node), body);
                  messages += 1;
                }
              }
              return messages;
            }),
          ),
        );
      }
    }
    rows.push(...(await amqpDirectoryRows(ctx)));
  } finally {
    await teardown(ctx);
  }
  return rows;
}

await printWhenMain(import.meta.url, amqpRows);

/**
 * Issue 16, levers for direct mode on Redis 7, each in isolation, with ioredis alone (no gatewire
 * code): a private redis-server (nothing else loads it), 3 subscriber connections (one per node)
 * holding 2,000 uid channels between them plus each node's channel, about 80-byte pushes. Redis
 * CPU is INFO cpu used_cpu_user + used_cpu_sys of that server.
 *
 *   npx tsc -p . && node dist/test/bench/levers/redis-levers.js
 */
import { Redis } from 'ioredis';
import { PrivateRedis } from '../../helpers/private-broker.js';
import { byNode, pushesFor, turnFor } from './amqp-levers.js';
import { redisDirectoryRows } from './directory.js';
import {
  NODES,
  UIDS,
  Receiver,
  printWhenMain,
  loadAverage,
  messageOf,
  nodeOfUid,
  repeat,
  selfCpuUs,
  uidOf,
  type Row,
  type Run,
} from './measure.js';

export const PREFIX = 'lv:';
export const DIRECTORY_HASH = 'lv:dir';
/** Subscribed by every node: directory announcements (directory.ts). */
export const DIRECTORY_CHANNEL = 'lv:dir';
const TURN = 1000;

/**
 * Routing inside Redis: ARGV holds (uid, record) pairs; each uid's node comes from the hash
 * KEYS[1] (uid -> node), and the records of one node leave as one PUBLISH on its channel.
 * Returns the number of PUBLISHes.
 */
const ROUTE_SCRIPT = `
local out = {}
local order = {}
for i = 1, #ARGV, 2 do
  local node = redis.call('HGET', KEYS[1], ARGV[i])
  if node then
    local list = out[node]
    if not list then list = {}; out[node] = list; order[#order + 1] = node end
    list[#list + 1] = ARGV[i + 1]
  end
end
for _, node in ipairs(order) do
  redis.call('PUBLISH', KEYS[2] .. node, table.concat(out[node]))
end
return #order
`;

export interface RedisContext {
  server: PrivateRedis;
  /** INFO and setup; not the publisher */
  control: Redis;
  publisher: Redis;
  receiver: Receiver;
  routeSha: string;
}

export async function redisCpuUs(control: Redis): Promise<number> {
  const info = await control.info('cpu');
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1]);
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1]);
  return (user + sys) * 1e6;
}

export async function drive(
  ctx: RedisContext,
  pushes: number,
  turn: number,
  send: (from: number, to: number) => Promise<number>,
  deliveries = pushes,
): Promise<Run> {
  const { done } =
    deliveries > 0
      ? await ctx.receiver.expect(deliveries)
      : { done: Promise.resolve({ pushes: 0, messages: 0, cpuUs: 0 }) };
  const broker0 = await redisCpuUs(ctx.control);
  const sender0 = selfCpuUs();
  const t0 = performance.now();
  let messages = 0;
  for (let from = 0; from < pushes; from += turn) messages += await send(from, Math.min(pushes, from + turn));
  const received = await done;
  const wallMs = performance.now() - t0;
  const senderUs = selfCpuUs() - sender0;
  return {
    pushes,
    messages,
    wallMs,
    brokerUs: (await redisCpuUs(ctx.control)) - broker0,
    senderUs,
    receiverUs: received.cpuUs,
  };
}

function nodeChannel(node: number): string {
  return `${PREFIX}n.${node}`;
}

async function setup(): Promise<RedisContext> {
  const server = await PrivateRedis.start();
  const control = new Redis(server.url, { maxRetriesPerRequest: 1 });
  control.on('error', () => undefined);
  const publisher = new Redis(server.url, { maxRetriesPerRequest: 1 });
  publisher.on('error', () => undefined);
  const channels: string[][] = Array.from({ length: NODES }, (_, node) => [nodeChannel(node), DIRECTORY_CHANNEL]);
  const directory: Record<string, string> = {};
  for (let i = 0; i < UIDS; i++) {
    channels[nodeOfUid(i)]!.push(`${PREFIX}u.${uidOf(i)}`);
    directory[uidOf(i)] = String(nodeOfUid(i));
  }
  await control.hset(DIRECTORY_HASH, directory);
  const routeSha = (await control.script('LOAD', ROUTE_SCRIPT)) as string;
  const receiver = await Receiver.start({ kind: 'redis', url: server.url, channels });
  return { server, control, publisher, receiver, routeSha };
}

async function teardown(ctx: RedisContext): Promise<void> {
  await ctx.receiver.stop();
  ctx.control.disconnect();
  ctx.publisher.disconnect();
  await ctx.server.stop();
}

/** One message per node per `batch` pushes, as the sender groups them (it knows the node). */
function merged(from: number, to: number, batch: number, each: (node: number, body: Buffer) => void): number {
  let messages = 0;
  const groups = byNode(from, to);
  for (let node = 0; node < NODES; node++) {
    const group = groups[node]!;
    for (let k = 0; k < group.length; k += batch) {
      each(node, messageOf(group.slice(k, k + batch)));
      messages += 1;
    }
  }
  return messages;
}

export async function redisRows(): Promise<Row[]> {
  process.stderr.write(`redis: starting a private redis-server; load ${loadAverage()}\n`);
  const ctx = await setup();
  const pub = ctx.publisher;
  const rows: Row[] = [];
  const family = 'Redis 7.0';
  const single = 50_000;
  try {
    rows.push(
      await repeat(family, 'a. PUBLISH per push on its uid channel, one pipeline per turn', '1', single, (n) =>
        drive(ctx, n, TURN, async (from, to) => {
          const pipeline = pub.pipeline();
          for (let i = from; i < to; i++) pipeline.publish(`${PREFIX}u.${uidOf(i)}`, messageOf([i]));
          await pipeline.exec();
          return to - from;
        }),
      ),
    );
    rows.push(
      await repeat(family, 'd. as a, calls not awaited (one write each), turn awaited', '1', single, (n) =>
        drive(ctx, n, TURN, async (from, to) => {
          const calls: Promise<unknown>[] = [];
          for (let i = from; i < to; i++) calls.push(pub.publish(`${PREFIX}u.${uidOf(i)}`, messageOf([i])));
          await Promise.all(calls);
          return to - from;
        }),
      ),
    );
    rows.push(
      await repeat(family, 'd. as a, each PUBLISH awaited', '1', 10_000, (n) =>
        drive(ctx, n, TURN, async (from, to) => {
          for (let i = from; i < to; i++) await pub.publish(`${PREFIX}u.${uidOf(i)}`, messageOf([i]));
          return to - from;
        }),
      ),
    );
    for (const batch of [1, 16, 64, 256]) {
      const turn = batch * Math.max(1, Math.ceil(TURN / batch));
      rows.push(
        await repeat(
          family,
          `b. script maps uids to nodes (HGET), 1 PUBLISH per node per call`,
          `${batch} per call`,
          pushesFor(batch, single),
          (n) =>
            drive(ctx, n, turn, async (from, to) => {
              const pipeline = pub.pipeline();
              let calls = 0;
              for (let k = from; k < to; k += batch) {
                const args: (string | Buffer)[] = [];
                for (let i = k; i < Math.min(to, k + batch); i++) args.push(uidOf(i), messageOf([i]));
                pipeline.evalsha(ctx.routeSha, 2, DIRECTORY_HASH, `${PREFIX}n.`, ...args);
                calls += 1;
              }
              const results = (await pipeline.exec()) ?? [];
              let messages = 0;
              for (const [err, published] of results) {
                if (err) throw err;
                messages += published as number;
              }
              return calls > 0 ? messages : 0;
            }),
        ),
      );
    }
    for (const batch of [1, 16, 64, 256]) {
      rows.push(
        await repeat(
          family,
          'c. sender merges per node, 1 PUBLISH per node message, one pipeline per turn',
          String(batch),
          pushesFor(batch, single),
          (n) =>
            drive(ctx, n, turnFor(batch), async (from, to) => {
              const pipeline = pub.pipeline();
              const messages = merged(from, to, batch, (node, body) => pipeline.publish(nodeChannel(node), body));
              await pipeline.exec();
              return messages;
            }),
        ),
      );
    }
    rows.push(
      await repeat(family, 'd. as c, each PUBLISH awaited', '16', 32_000, (n) =>
        drive(ctx, n, turnFor(16), async (from, to) => {
          const bodies: [number, Buffer][] = [];
          const messages = merged(from, to, 16, (node, body) => bodies.push([node, body]));
          for (const [node, body] of bodies) await pub.publish(nodeChannel(node), body);
          return messages;
        }),
      ),
    );
    rows.push(...(await redisDirectoryRows(ctx)));
  } finally {
    await teardown(ctx);
  }
  return rows;
}

await printWhenMain(import.meta.url, redisRows);

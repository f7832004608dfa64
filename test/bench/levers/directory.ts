/**
 * Issue 16, what a uid directory costs to keep: every bind and unbind of a uid key (a login and
 * a logout on a gateway) announced on the bus to the 3 nodes, either one message per bind or one
 * message per turn, against the bind alone (today's direct mode). The figures are per operation
 * (one bind or one unbind); logins come 50 per turn (a storm), then as many logouts.
 *
 * RabbitMQ: the bind is queue.bind of the uid key to one node queue; the announcement goes to a
 * fanout exchange bound to the 3 node queues (confirmed). Redis: the bind is SUBSCRIBE of the
 * turn's uid channels on the node's subscriber connection; the announcement is one PUBLISH on
 * the directory channel (3 subscribers), with HSET/HDEL of the hash the routing script reads.
 */
import { Redis } from 'ioredis';
import { drive as amqpDrive, queueOf, type AmqpContext } from './amqp-levers.js';
import { NODES, messageOf, repeatInterleaved, type Row } from './measure.js';
import { DIRECTORY_CHANNEL, DIRECTORY_HASH, PREFIX, drive as redisDrive, type RedisContext } from './redis-levers.js';

/** Logins per run (then as many logouts): 2 × LOGINS operations. */
const LOGINS = 2000;
/** Binds issued at once, as in a login storm. */
const OPS_PER_TURN = 50;
/** An announcement carries the uid and about 16 bytes (node, bind or unbind). */
const ANNOUNCE = Buffer.alloc(16, 0x6e);

type Announce = 'none' | 'per bind' | 'per turn';

let runTag = 0;

export async function amqpDirectoryRows(ctx: AmqpContext): Promise<Row[]> {
  const channel = await ctx.connection.createChannel();
  channel.on('error', (err: Error) => process.stderr.write(`bind channel: ${err.message}\n`));
  await channel.assertExchange('lv.dir', 'fanout', { durable: false, autoDelete: false });
  for (let node = 0; node < NODES; node++) await channel.bindQueue(queueOf(node), 'lv.dir', '');
  const family = 'RabbitMQ directory';
  const variants = (['none', 'per bind', 'per turn'] as Announce[]).map((announce) => ({
    scenario: `bind/unbind of a uid key, announced: ${announce}`,
    perMessage: announce === 'none' ? '–' : announce === 'per bind' ? '1' : String(OPS_PER_TURN),
    once: (ops: number) => {
      const tag = `d${(runTag += 1)}.`;
      const logins = ops / 2;
      return amqpDrive(
        ctx,
        ops,
        OPS_PER_TURN,
        async (from, to) => {
          const calls: Promise<unknown>[] = [];
          const indexes: number[] = [];
          for (let op = from; op < to; op++) {
            const key = `u.${tag}${op % logins}`;
            calls.push(
              op < logins
                ? channel.bindQueue(queueOf(0), 'lv.direct', key)
                : channel.unbindQueue(queueOf(0), 'lv.direct', key),
            );
            indexes.push(op);
            if (announce === 'per bind') ctx.publisher.publish('lv.dir', '', messageOf([op], ANNOUNCE));
          }
          if (announce === 'per turn') ctx.publisher.publish('lv.dir', '', messageOf(indexes, ANNOUNCE));
          await Promise.all(calls);
          return announce === 'none' ? 0 : announce === 'per bind' ? to - from : 1;
        },
        announce === 'none' ? 0 : ops * NODES,
      );
    },
  }));
  const rows = await repeatInterleaved(family, 2 * LOGINS, variants);
  await channel.close().catch(() => undefined);
  return rows;
}

export async function redisDirectoryRows(ctx: RedisContext): Promise<Row[]> {
  // The node's own subscriber connection, which SUBSCRIBEs the uid channels of its clients.
  const subscriber = new Redis(ctx.server.url, { maxRetriesPerRequest: 1 });
  subscriber.on('error', () => undefined);
  const family = 'Redis directory';
  // What is kept: the announcement (for a directory in the senders), the hash (for the routing
  // script), or both; one command each per bind, or one each per turn.
  const variants: [Announce, boolean, boolean, string][] = [
    ['none', false, false, 'SUBSCRIBE / UNSUBSCRIBE alone'],
    ['per bind', true, false, '+ PUBLISH per bind'],
    ['per bind', true, true, '+ HSET/HDEL and PUBLISH per bind'],
    ['per turn', true, false, '+ one PUBLISH per turn'],
    ['per turn', false, true, '+ one HSET/HDEL per turn'],
    ['per turn', true, true, '+ one HSET/HDEL and one PUBLISH per turn'],
  ];
  let rows: Row[] = [];
  try {
    rows = await repeatInterleaved(
      family,
      2 * LOGINS,
      variants.map(([announce, publish, hash, label]) => ({
        scenario: `bind/unbind of a uid channel, ${label}`,
        perMessage: !publish ? '–' : announce === 'per bind' ? '1' : String(OPS_PER_TURN),
        once: (ops: number) => {
          const tag = `d${(runTag += 1)}.`;
          const logins = ops / 2;
          return redisDrive(
            ctx,
            ops,
            OPS_PER_TURN,
            async (from, to) => {
              const binding = from < logins;
              const uids: string[] = [];
              const indexes: number[] = [];
              for (let op = from; op < to; op++) {
                uids.push(`${tag}${op % logins}`);
                indexes.push(op);
              }
              const channels = uids.map((uid) => `${PREFIX}u.${uid}`);
              const sub = binding ? subscriber.subscribe(...channels) : subscriber.unsubscribe(...channels);
              let messages = 0;
              if (publish || hash) {
                const pipeline = ctx.publisher.pipeline();
                if (announce === 'per bind') {
                  for (let k = 0; k < uids.length; k++) {
                    if (hash && binding) pipeline.hset(DIRECTORY_HASH, uids[k]!, '0');
                    else if (hash) pipeline.hdel(DIRECTORY_HASH, uids[k]!);
                    if (publish) pipeline.publish(DIRECTORY_CHANNEL, messageOf([indexes[k]!], ANNOUNCE));
                  }
                  if (publish) messages = uids.length;
                } else {
                  if (hash && binding) pipeline.hset(DIRECTORY_HASH, Object.fromEntries(uids.map((uid) => [uid, '0'])));
                  else if (hash) pipeline.hdel(DIRECTORY_HASH, ...uids);
                  if (publish) {
                    pipeline.publish(DIRECTORY_CHANNEL, messageOf(indexes, ANNOUNCE));
                    messages = 1;
                  }
                }
                await pipeline.exec();
              }
              await sub;
              return messages;
            },
            publish ? ops * NODES : 0,
          );
        },
      })),
    );
  } finally {
    subscriber.disconnect();
  }
  return rows;
}

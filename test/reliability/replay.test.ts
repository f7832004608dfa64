/**
 * Signed messages captured by a party with broker access but no secret, and published again, are
 * not applied (DESIGN §5; replay-guard.ts). On RabbitMQ (a spy queue bound to the keys it wants)
 * and on Redis (a subscriber; replayed in the wrapped form and as a plain envelope), with
 * bus.secret set, each captured message is replayed 5 times:
 *   - a sendToUid: delivered once;
 *   - a query: answered once (no fresh sessions to the attacker's reply queue);
 *   - a closeUid: the victim's new connection, on another node, stays open;
 *   - an announcement of a node that has since stopped: it does not come back into membership;
 *   - and a node started after the capture refuses the replays too (stamped before its start).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import type { Redis } from 'ioredis';
import { AMQP_URL, sleep, startNode, uniqueName, waitFor, waitForMembership } from '../helpers/nodes.js';
import { amqpValues, cleanupAmqp } from '../helpers/amqp.js';
import { cleanupBus } from '../helpers/cleanup.js';
import { redisAdmin, redisValues } from './redis-support.js';
import { Opened, connectWs, idHandler } from '../e2e/support.js';
import { decodeEnvelope } from '../../src/protocol/envelope.js';
import { unwrap } from '../../src/transport/redis/channels.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';

const SECRET = 'replay-secret';
const REPLAYS = 5;

/** One captured broker message and how to publish it again. */
interface Captured {
  commands: Command[];
  sender: string;
  replay: () => Promise<void>;
}

/** What the attacker sees and can publish on one broker. */
interface Tap {
  /** starts listening on the keys (routing keys / channel suffixes) */
  listen(keys: string[]): Promise<void>;
  captured: Captured[];
  /** broker messages one replay() publishes */
  copies: number;
  close(): Promise<void>;
}

function commandsOf(envelope: Buffer): { commands: Command[]; sender: string } {
  // The attacker has no secret: decoding without one only reads.
  const { commands, sender } = decodeEnvelope(envelope, '');
  return { commands, sender };
}

async function amqpTap(exchange: string): Promise<Tap> {
  const connection: ChannelModel = await amqp.connect(AMQP_URL);
  connection.on('error', () => undefined);
  const channel: Channel = await connection.createChannel();
  channel.on('error', () => undefined);
  const { queue } = await channel.assertQueue('', { exclusive: true });
  const captured: Captured[] = [];
  await channel.consume(
    queue,
    (msg: ConsumeMessage | null) => {
      if (msg === null || msg.properties.type !== undefined) return;
      const body = Buffer.from(msg.content);
      const routingKey = msg.fields.routingKey;
      const cc = msg.properties.headers?.CC as string[] | undefined;
      captured.push({
        ...commandsOf(body),
        replay: async () => {
          channel.publish(exchange, routingKey, body, cc ? { headers: { CC: cc } } : {});
        },
      });
    },
    { noAck: true },
  );
  return {
    captured,
    copies: 1,
    listen: async (keys) => {
      for (const key of keys) await channel.bindQueue(queue, exchange, key);
    },
    close: async () => {
      await connection.close().catch(() => undefined);
    },
  };
}

async function redisTap(prefix: string, admin: Redis): Promise<Tap> {
  const sub = admin.duplicate({ connectionName: 'gwtest-tap' });
  sub.on('error', () => undefined);
  const captured: Captured[] = [];
  sub.on('messageBuffer', (channelBytes: Buffer, message: Buffer) => {
    const channel = channelBytes.toString();
    const inner = unwrap(message);
    const envelope = Buffer.from(inner?.envelope ?? message);
    const copy = Buffer.from(message);
    captured.push({
      ...commandsOf(envelope),
      // Both forms: the wrapped one as it was, and the bare envelope (not in the replay log).
      replay: async () => {
        await admin.publish(channel, copy);
        await admin.publish(channel, envelope);
      },
    });
  });
  return {
    captured,
    copies: 2,
    listen: async (keys) => {
      await sub.subscribe(...keys.map((k) => `${prefix}:${k}`));
    },
    close: async () => {
      sub.disconnect();
    },
  };
}

interface Broker {
  name: string;
  values: () => ConfigInput;
  tap: (values: ConfigInput, admin: Redis) => Promise<Tap>;
  /** what the tap listens on: the direct-mode keys it is given, or everything in fanout mode */
  keys: (keys: string[]) => string[];
  cleanup: (values: ConfigInput) => Promise<void>;
}

const brokers: Broker[] = (['direct', 'fanout'] as const).flatMap((mode): Broker[] => [
  {
    name: `RabbitMQ ${mode}`,
    values: () => amqpValues(uniqueName('gw-replay'), mode, { secret: SECRET }),
    tap: (values) => amqpTap(`${values.bus!.amqp!.exchange}.${mode}`),
    keys: (keys) => (mode === 'fanout' ? [''] : keys),
    cleanup: async (values) => cleanupAmqp(values.bus!.amqp!.exchange!),
  },
  {
    name: `Redis ${mode}`,
    values: () => redisValues(mode, undefined, { bus: { secret: SECRET } }),
    tap: (values, admin) => redisTap(values.bus!.redis!.prefix!, admin),
    keys: (keys) => (mode === 'fanout' ? ['fanout'] : keys),
    cleanup: (values) => cleanupBus(values),
  },
]);

/** Replays every captured message matching `pick` REPLAYS times; returns how many were replayed. */
async function replayAll(tap: Tap, pick: (c: Captured) => boolean): Promise<number> {
  const chosen = tap.captured.filter(pick);
  assert.ok(chosen.length > 0, 'something to replay was captured');
  for (let i = 0; i < REPLAYS; i++) for (const c of chosen) await c.replay();
  return chosen.length * REPLAYS;
}

describe('replayed signed messages are not applied', () => {
  for (const broker of brokers) {
    test(`${broker.name}: a push, a query, a close and an announcement, replayed; also to a node started after the capture`, async (t) => {
      const values = broker.values();
      const opened = new Opened();
      const admin = redisAdmin();
      let tap: Tap | null = null;
      const extra: GatewireNode[] = [];
      t.after(async () => {
        await tap?.close();
        for (const n of extra) await n.stop();
        await opened.closeAll();
        admin.disconnect();
        await broker.cleanup(values);
      });
      const a = opened.node(await startNode(values, { handler: idHandler() }));
      const b = opened.node(await startNode(values, { handler: idHandler() }));
      const c = await startNode(values, { handler: idHandler() });
      extra.push(c);
      await waitForMembership([a, b, c], 3);
      tap = await broker.tap(values, admin);
      const t0 = tap;
      await t0.listen(broker.keys(['u.victim', 'all', `n.${a.bus.instance}`]));

      const victim = await connectWs(opened, a);
      await b.api.bindUid(victim.id, 'victim');
      await a.api.setSession(victim.id, { secret: 'session data' });
      const stats = (n: GatewireNode): number => n.bus.stats.duplicatesDropped + n.bus.stats.replaysRefused;
      const refusedBefore = stats(a) + stats(b);

      // A push.
      await b.api.sendToUid('victim', 'push once');
      await victim.client.waitForText('push once');
      await waitFor(
        () => t0.captured.some((x) => x.commands.some((cmd) => cmd.op === Op.SEND_TO_UIDS)),
        5000,
        'the push captured',
      );
      let tried = await replayAll(t0, (x) => x.commands.some((cmd) => cmd.op === Op.SEND_TO_UIDS));
      await b.api.sendToUid('victim', 'marker 1');
      await victim.client.waitForText('marker 1');
      const pushCopies = victim.client.texts().filter((x) => x === 'push once').length;

      // A query from A (to all), answered by B and C with REPLYs to A's key: the attacker reads them.
      const replies = (): number =>
        t0.captured.filter((x) =>
          x.commands.some((cmd) => cmd.op === Op.REPLY && cmd.t === a.bus.instance && x.sender === b.bus.instance),
        ).length;
      await a.api.getAllClientSessions();
      await waitFor(() => replies() === 1, 5000, "B's reply captured");
      tried += await replayAll(t0, (x) => x.commands.some((cmd) => cmd.op === Op.QUERY));
      // A bounded wait in which no second answer may come.
      await sleep(500);
      const repliesAfter = replies();

      // A closeUid; the victim comes back on node B; the close, replayed, must not close it.
      await b.api.closeUid('victim');
      await victim.client.waitClosed();
      await waitFor(
        () => t0.captured.some((x) => x.commands.some((cmd) => cmd.op === Op.CLOSE_UID)),
        5000,
        'the close captured',
      );
      const again = await connectWs(opened, b);
      await a.api.bindUid(again.id, 'victim');
      tried += await replayAll(t0, (x) => x.commands.some((cmd) => cmd.op === Op.CLOSE_UID));
      await a.api.sendToUid('victim', 'still open');
      await again.client.waitForText('still open');
      // A bounded wait in which the connection must stay open.
      await sleep(300);
      const stillOpen = !again.client.closed;

      // An announcement of C; C stops; replayed, it must not bring C back.
      await waitFor(
        () => t0.captured.some((x) => x.sender === c.bus.instance && x.commands.some((cmd) => cmd.op === Op.ANNOUNCE)),
        5000,
        'an announcement of C captured',
      );
      await c.stop();
      await waitFor(() => !a.membership.isLive(c.bus.instance) && !b.membership.isLive(c.bus.instance), 5000, 'C left');
      tried += await replayAll(
        t0,
        (x) => x.sender === c.bus.instance && x.commands.some((cmd) => cmd.op === Op.ANNOUNCE),
      );
      // A bounded wait in which C must not come back.
      await sleep(500);
      const cBack = a.membership.isLive(c.bus.instance) || b.membership.isLive(c.bus.instance);
      const refused = stats(a) + stats(b) - refusedBefore;

      // A node started after the capture refuses the replays too (more than bus.maxClockSkew, 1 s,
      // after the last capture: within it, a replay would be taken as new once; docs/operations.md):
      // time that must pass, not an event.
      await sleep(1500);
      const d = await startNode(values, { handler: idHandler() });
      extra.push(d);
      await waitFor(() => d.membership.isLive(a.bus.instance), 5000, 'D joined');
      const late = await connectWs(opened, d);
      await a.api.bindUid(late.id, 'victim');
      const dBefore = d.bus.stats.replaysRefused + d.bus.stats.duplicatesDropped;
      const dTried =
        (await replayAll(t0, (x) => x.commands.some((cmd) => cmd.op === Op.SEND_TO_UIDS && cmd.d === 'push once'))) +
        (await replayAll(t0, (x) => x.sender === c.bus.instance && x.commands.some((cmd) => cmd.op === Op.ANNOUNCE)));
      tried += dTried;
      await a.api.sendToUid('victim', 'marker 2');
      await late.client.waitForText('marker 2');
      // Every copy replayed reaches D (it holds the uid, and every node gets announcements): wait
      // until it refused them all (bounded; the count printed says how many it did).
      const dRefusedNow = (): number => d.bus.stats.replaysRefused + d.bus.stats.duplicatesDropped - dBefore;
      await waitFor(() => dRefusedNow() >= dTried * t0.copies, 5000, 'D to refuse every replayed copy').catch(
        () => undefined,
      );
      const dRefused = dRefusedNow();

      console.log(
        `[replay ${broker.name}] ${tried} replays of captured signed messages (${REPLAYS} each${broker.name.startsWith('Redis') ? ', wrapped and plain' : ''}): ` +
          `push delivered ${pushCopies}x; query answered ${repliesAfter}x by B; victim's new connection open after the replayed closeUid: ${stillOpen}; ` +
          `stopped node back in membership: ${cBack}; refused by A and B ${refused}; by a node started after the capture ${dRefused} (push delivered ${late.client.texts().filter((x) => x === 'push once').length}x, C member: ${d.membership.isLive(c.bus.instance)})`,
      );
      assert.equal(pushCopies, 1, 'the push was delivered once');
      assert.equal(repliesAfter, 1, 'the query was answered once');
      assert.ok(stillOpen, 'the replayed closeUid closed nothing');
      assert.ok(!cBack, 'the stopped node stays out');
      assert.ok(refused > 0);
      assert.equal(
        late.client.texts().filter((x) => x === 'push once').length,
        0,
        'the late node refused the replayed push',
      );
      assert.equal(
        again.client.texts().filter((x) => x === 'push once').length,
        0,
        'and so did B, which now holds the uid too',
      );
      assert.ok(!d.membership.isLive(c.bus.instance), 'the late node refused the replayed announcement');
      assert.ok(dRefused > 0);
    });
  }
});

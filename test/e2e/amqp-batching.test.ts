/**
 * Batching on the AMQP bus, counted in broker messages: commands of one event-loop turn travel
 * together (CC for several keys while the exchange has few bindings, one key per message when
 * the membership's announcements say it has many), and every node applies every command exactly once, also when a
 * command with many keys is split into one message per key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { AMQP_URL, uniqueName, waitFor } from '../helpers/nodes.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import { amqpBus } from '../helpers/transports.js';
import type { Bus } from '../../src/transport/bus.js';
import { Membership } from '../../src/cluster/membership.js';
import { AMQP_KEYS_PER_MESSAGE, CC_MAX_BINDINGS } from '../../src/transport/amqp/cc-policy.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import type { BusMode } from '../../src/config/formats.js';

const UIDS = 150;

function bus(instance: string, mode: BusMode, prefix: string): Bus {
  return amqpBus(
    {
      instance,
      mode,
      secret: '',
      uidBuckets: 0,
      groupBuckets: 0,
      maxBufferedCommands: 100_000,
      maxCommandsPerMessage: 500,
    },
    pino({ level: 'silent' }),
    { url: AMQP_URL, exchange: prefix, prefetch: 256 },
  );
}

/** Counts, per uid, how many times a SEND_TO_UIDS naming it was applied. */
function recorder(b: Bus): Map<string, number> {
  const applied = new Map<string, number>();
  b.onCommands((commands: Command[]) => {
    for (const cmd of commands)
      if (cmd.op === Op.SEND_TO_UIDS) for (const u of cmd.u) applied.set(u, (applied.get(u) ?? 0) + 1);
  });
  return applied;
}

test('direct mode: a burst to many uids uses CC while bindings are few, one key per message when they are many; each command applied once', async (t) => {
  const prefix = uniqueName('gw-amqp-batch');
  const holder = bus('holder000001', 'direct', prefix);
  const sender = bus('sender000001', 'direct', prefix);
  const big = bus('bignode00001', 'direct', prefix);
  t.after(async () => {
    await Promise.all([holder.close(), sender.close(), big.close()]);
    await cleanupAmqp(prefix);
  });
  await Promise.all([holder.start(), sender.start(), big.start()]);
  const applied = recorder(holder);
  const uids = Array.from({ length: UIDS }, (_, i) => `user${i}`);
  await Promise.all(uids.map((uid) => holder.subscribe({ kind: 'uid', uid })));

  // Few bindings: one turn of 150 pushes to 150 uids is 2 messages (100 keys, then 50).
  let before = sender.stats.messagesPublished;
  await Promise.all(uids.map((uid) => sender.publish({ op: Op.SEND_TO_UIDS, u: [uid], d: 'burst 1' })));
  assert.equal(sender.stats.messagesPublished - before, Math.ceil(UIDS / AMQP_KEYS_PER_MESSAGE));
  await waitFor(() => uids.every((u) => applied.get(u) === 1), 10_000, 'burst 1 applied');

  // One command with 150 keys (more than a message may carry): split into messages of 100 keys
  // that each carry only their own uids, applied once each.
  before = sender.stats.messagesPublished;
  await sender.publish({ op: Op.SEND_TO_UIDS, u: uids, d: 'one command to all of them' });
  assert.equal(sender.stats.messagesPublished - before, Math.ceil(UIDS / AMQP_KEYS_PER_MESSAGE));
  await waitFor(
    () => holder.stats.messagesConsumed >= 2 + Math.ceil(UIDS / AMQP_KEYS_PER_MESSAGE),
    10_000,
    'the split messages consumed',
  );

  // A node announces it holds many uids: the exchange now has more bindings than CC pays for.
  // The sender learns it as every node does, through its membership (which tells the transport).
  const membership = new Membership(
    sender,
    { announceInterval: 1000, nodeTimeout: 5000, announce: false },
    () => {
      throw new Error('the sender does not announce');
    },
    pino({ level: 'silent' }),
  );
  sender.onCommands((commands, from) => {
    for (const cmd of commands) if (cmd.op === Op.ANNOUNCE && cmd.n.i === from) membership.onAnnounce(cmd.n);
  });
  await big.publish({
    op: Op.ANNOUNCE,
    n: {
      i: big.instance,
      n: 'big',
      ro: ['gateway'],
      ad: '',
      st: Date.now(),
      cc: 0,
      uc: CC_MAX_BINDINGS + 1,
      gc: 0,
      iv: 1000,
      wv: 2,
    },
  });
  await waitFor(
    () => sender.stats.commandsConsumed > 0 && (sender as unknown as { keysPerMessage: number }).keysPerMessage === 1,
    10_000,
    'the sender saw the announcement',
  );
  before = sender.stats.messagesPublished;
  await Promise.all(uids.map((uid) => sender.publish({ op: Op.SEND_TO_UIDS, u: [uid], d: 'burst 2' })));
  assert.equal(sender.stats.messagesPublished - before, UIDS, 'one message per key');
  // Commands with the same key still share a message.
  before = sender.stats.messagesPublished;
  await Promise.all(
    Array.from({ length: 50 }, () => sender.publish({ op: Op.SEND_TO_UIDS, u: ['user0'], d: 'same key' })),
  );
  assert.equal(sender.stats.messagesPublished - before, 1);
  await waitFor(
    () => uids.every((u) => applied.get(u) === (u === 'user0' ? 53 : 3)),
    10_000,
    'everything applied exactly once',
  ).catch((err: Error) => {
    throw new Error(
      `${err.message}: ${JSON.stringify(holder.stats)} ${JSON.stringify([...applied].filter(([u, n]) => n !== (u === 'user0' ? 53 : 3)).slice(0, 5))}`,
    );
  });
});

test('fanout mode: one turn of pushes to many uids is one message', async (t) => {
  const prefix = uniqueName('gw-amqp-batch-f');
  const holder = bus('holder000002', 'fanout', prefix);
  const sender = bus('sender000002', 'fanout', prefix);
  t.after(async () => {
    await Promise.all([holder.close(), sender.close()]);
    await cleanupAmqp(prefix);
  });
  await Promise.all([holder.start(), sender.start()]);
  const applied = recorder(holder);
  const uids = Array.from({ length: UIDS }, (_, i) => `user${i}`);
  const before = sender.stats.messagesPublished;
  await Promise.all(uids.map((uid) => sender.publish({ op: Op.SEND_TO_UIDS, u: [uid], d: 'burst' })));
  assert.equal(sender.stats.messagesPublished - before, 1);
  await waitFor(() => uids.every((u) => applied.get(u) === 1), 10_000, 'applied once each');
});

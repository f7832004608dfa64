/**
 * Inbound, what arrives from the broker: unreadable or wrongly signed messages are counted and
 * dropped, repeats dropped by the sequence rule, a malformed command dropped alone (the rest of its
 * message runs), a multi-key command applied only on the first key this node holds (a filtered
 * copy is not marked seen), version 1 refused outside a rolling upgrade, consumption counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Inbound } from '../../src/transport/inbound.js';
import { ReplayGuard } from '../../src/transport/replay-guard.js';
import { encodeEnvelope, encodeLegacyEnvelope } from '../../src/protocol/envelope.js';
import { keysOfCommand } from '../../src/protocol/routing-keys.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import type { BusStats } from '../../src/transport/bus-options.js';
import { busOptions, silentLog } from '../helpers/fakes.js';

const SELF = 'aaaaaaaaaaaa';
const PEER = 'bbbbbbbbbbbb';
const plain = { uidBuckets: 0, groupBuckets: 0 };

/** An Inbound on a real replay guard, holding `held` keys, recording what it delivers. */
function inbound(
  held: string[] = [],
  options: { secret?: string; legacyAllowed?: boolean; legacyPeers?: boolean } = {},
) {
  const delivered: { commands: Command[]; sender: string }[] = [];
  const stats = {} as Record<string, number>;
  const host = {
    options: busOptions(SELF, { secret: options.secret ?? '' }),
    stats: new Proxy(stats, { get: (target, key: string) => target[key] ?? 0 }) as unknown as BusStats,
    log: silentLog,
    guard: new ReplayGuard({
      signed: (options.secret ?? '') !== '',
      startedAt: Date.now() - 1000,
      maxClockSkewMs: 1000,
      maxAgeMs: 300000,
      maxSenders: 100,
    }),
    legacyAllowed: options.legacyAllowed ?? false,
    legacyPeers: options.legacyPeers ?? false,
    firstHeldKey: (command: Command) => keysOfCommand(command, plain).find((key) => held.includes(key)),
    deliver: (commands: Command[], sender: string) => delivered.push({ commands, sender }),
  };
  return { receiver: new Inbound(host), delivered, stats };
}

let seq = 0;
const message = (commands: unknown[], secret = '', sender = PEER): Buffer =>
  encodeEnvelope({ sender, epoch: Date.now() - 500, seq: ++seq, time: Date.now() }, commands as Command[], secret);

test('unreadable and wrongly signed messages are dropped and counted apart', () => {
  const { receiver, delivered, stats } = inbound([], { secret: 's3cret' });
  assert.equal(receiver.receive(Buffer.from('garbage')), false);
  assert.equal(receiver.receive(message([{ op: Op.SEND_TO_ALL, d: 'x' }], 'other')), false);
  assert.equal(receiver.receive(message([{ op: Op.SEND_TO_ALL, d: 'x' }])), false); // unsigned
  assert.deepEqual([stats.decodeErrors, stats.signatureErrors, stats.messagesConsumed], [1, 2, 3]);
  assert.equal(receiver.receive(message([{ op: Op.SEND_TO_ALL, d: 'x' }], 's3cret')), true);
  assert.equal(delivered.length, 1);
});

test('a repeated message is dropped as a duplicate', () => {
  const { receiver, delivered, stats } = inbound();
  const once = message([{ op: Op.SEND_TO_ALL, d: 'x' }]);
  assert.equal(receiver.receive(once), true);
  assert.equal(receiver.receive(once), false);
  assert.equal(stats.duplicatesDropped, 1);
  assert.equal(delivered.length, 1);
});

test('a malformed command is dropped alone; the rest of its message is delivered, in order', () => {
  const { receiver, delivered, stats } = inbound();
  const good1 = { op: Op.SEND_TO_ALL, d: '1' };
  const good2 = { op: Op.SEND_TO_UIDS, u: ['a', 'b'], d: '2' };
  assert.equal(receiver.receive(message([good1, { op: Op.SEND_TO_UIDS, u: 'a', d: 'x' }, good2])), true);
  assert.deepEqual(delivered, [{ commands: [good1, good2], sender: PEER }]);
  assert.equal(stats.malformedCommands, 1);
  assert.equal(stats.commandsConsumed, 2);
  assert.equal(stats.pushesConsumed, 1 + 2);
});

test('a multi-key command is applied on the first key held only; a filtered-out copy is not marked seen', () => {
  const { receiver, delivered } = inbound(['u.b', 'u.c']);
  const send = { op: Op.SEND_TO_UIDS, u: ['a', 'b', 'c'], d: 'x' };
  const copyOnC = message([send]);
  assert.equal(receiver.receive(copyOnC, 'u.c'), false);
  assert.equal(delivered.length, 0);
  // the same message arriving on the first held key is new and applied
  assert.equal(receiver.receive(copyOnC, 'u.b'), true);
  assert.deepEqual(delivered[0]!.commands, [send]);
  // single-key commands are not filtered; a mixed message keeps them
  const single = { op: Op.SEND_TO_UIDS, u: ['c'], d: 'y' };
  assert.equal(receiver.receive(message([send, single]), 'u.c'), true);
  assert.deepEqual(delivered[1]!.commands, [single]);
});

test('version 1 is refused outside a rolling upgrade; during one, its announcements are read until a 0.1 peer is live', () => {
  const legacy = (commands: unknown[]) => encodeLegacyEnvelope(PEER, commands as Command[], '');
  const announce = { op: Op.LEAVE, i: PEER };
  const push = { op: Op.SEND_TO_ALL, d: 'x' };
  const refusing = inbound();
  assert.equal(refusing.receiver.receive(legacy([announce])), false);
  assert.equal(refusing.stats.legacyRefused, 1);

  const upgrading = inbound([], { legacyAllowed: true });
  assert.equal(upgrading.receiver.receive(legacy([push])), false);
  assert.equal(upgrading.receiver.receive(legacy([announce])), true);
  assert.equal(upgrading.stats.legacyRefused, 1);

  const live = inbound([], { legacyAllowed: true, legacyPeers: true });
  assert.equal(live.receiver.receive(legacy([push])), true);
  assert.deepEqual(live.delivered[0]!.commands, [push]);
});

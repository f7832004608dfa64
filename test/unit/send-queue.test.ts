/**
 * The outgoing side of the bus below its public API: splitSend (a send cut into parts that carry
 * only the targets of their own keys, within the key and byte limits; group parts share a call id),
 * SendQueue with a fake host (refusals with their codes, merging of adjacent sends, a large
 * command under its own promise, broker errors as GW_ERR_BUS_BROKER) and Batch (packed once,
 * sealed at every send with the sequence number of its first seal).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitSend, type SplitLimits } from '../../src/transport/split-send.js';
import { SendQueue, type SendQueueHost } from '../../src/transport/send-queue.js';
import { Batch } from '../../src/transport/outgoing-batch.js';
import type { BusOptions, BusStats } from '../../src/transport/bus-options.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import { commandBytes } from '../../src/protocol/command-size.js';
import { keyOfTarget, keysOfCommand } from '../../src/protocol/routing-keys.js';
import { packCommands } from '../../src/protocol/envelope.js';
import { ErrorCodes } from '../../src/errors.js';
import { busOptions, stateOf } from '../helpers/fakes.js';

const plain = { uidBuckets: 0, groupBuckets: 0 };

function limits(keysPerMessage: number): SplitLimits & { calls: number } {
  const l = {
    calls: 0,
    keysPerMessage,
    maxMessageBytes: 1000,
    targetKey: (op: number, target: string) => keyOfTarget(op, target, plain),
    nextCallId: () => ++l.calls,
  };
  return l;
}

const split = (command: Command, budget: number, keysPerMessage: number, l = limits(keysPerMessage)) =>
  splitSend(command, keysOfCommand(command, plain), commandBytes(command), budget, l);

test('splitSend: each part carries only the targets of its own keys, at most keysPerMessage keys, in key order', () => {
  const parts = split({ op: Op.SEND_TO_UIDS, u: ['a', 'b', 'a2', 'c'], d: 'x' }, 10000, 2);
  assert.deepEqual(
    parts.map((p) => [p.keys, (p.command as { u: string[] }).u]),
    [
      [
        ['u.a', 'u.b'],
        ['a', 'b'],
      ],
      [
        ['u.a2', 'u.c'],
        ['a2', 'c'],
      ],
    ],
  );
});

test('splitSend: a key with more targets than the byte budget holds is cut, each part within the budget', () => {
  const group = Array.from({ length: 40 }, (_, i) => `${'aaaaaaaaaaaa'}${i}`);
  const budget = 400;
  const parts = split({ op: Op.SEND_TO_CLIENTS, c: group, d: 'x' }, budget, 1);
  assert.ok(parts.length > 1);
  assert.deepEqual(
    parts.flatMap((p) => (p.command as { c: string[] }).c),
    group,
  );
  for (const part of parts) {
    assert.deepEqual(part.keys, ['n.aaaaaaaaaaaa']);
    assert.ok(part.bytes <= budget && commandBytes(part.command) <= budget);
  }
});

test('splitSend: the parts of one group call share a new call id (k), a single part gets none; x is kept', () => {
  const l = limits(1);
  const parts = split({ op: Op.SEND_TO_GROUPS, g: ['a', 'b'], d: 'x', x: ['c'] }, 10000, 1, l);
  assert.deepEqual(
    parts.map((p) => p.command),
    [
      { op: Op.SEND_TO_GROUPS, g: ['a'], d: 'x', x: ['c'], k: 1 },
      { op: Op.SEND_TO_GROUPS, g: ['b'], d: 'x', x: ['c'], k: 1 },
    ],
  );
  const one = split({ op: Op.SEND_TO_GROUPS, g: ['a'], d: 'x' }, 10000, 1, l);
  assert.equal((one[0]!.command as { k?: number }).k, undefined);
  assert.equal(l.calls, 1);
});

test('splitSend: a command that cannot fit is refused with GW_ERR_MESSAGE_TOO_LARGE', () => {
  assert.throws(() => split({ op: Op.SEND_TO_ALL, d: 'x'.repeat(1000) }, 1000, 1), {
    code: ErrorCodes.MESSAGE_TOO_LARGE,
    message: /1000 bytes \(bus.maxMessageBytes\)/,
  });
  assert.throws(() => split({ op: Op.SEND_TO_UIDS, u: ['a', 'b'], d: 'x'.repeat(1000) }, 1000, 1), {
    code: ErrorCodes.MESSAGE_TOO_LARGE,
  });
  // the bound says no, the exact size says yes: it passes
  assert.equal(split({ op: Op.SEND_TO_ALL, d: 'x'.repeat(400) }, 1000, 1).length, 1);
});

const zeroStats = (): BusStats =>
  Object.fromEntries(
    [
      'messagesPublished',
      'commandsPublished',
      'messagesConsumed',
      'commandsConsumed',
      'pushesConsumed',
      'decodeErrors',
      'signatureErrors',
      'malformedCommands',
      'duplicatesDropped',
      'replaysRefused',
      'legacyRefused',
      'messagesRefused',
      'commandsTooLarge',
      'reconnects',
      'buffered',
    ].map((k) => [k, 0]),
  ) as unknown as BusStats;

/** A host whose transmitAll records each call, and fails calls that carry `refuse`'s data. */
function queueOf(options: Partial<BusOptions> = {}) {
  const calls: Command[][][] = [];
  /** the keys of each batch of each transmitAll */
  const keyCalls: string[][][] = [];
  const host = {
    options: busOptions('aaaaaaaaaaaa', { mode: 'fanout', ...options }),
    stats: zeroStats(),
    isConnected: true,
    keysPerMessage: Number.POSITIVE_INFINITY,
    nodeRouting: false as boolean,
    maxMessageBytes: 200000,
    maxCommandBytes: 200000,
    refuse: null as string | null,
    keysOf: (command: Command) => (host.options.mode === 'fanout' ? [] : keysOfCommand(command, plain)),
    targetKey: (op: number, target: string) => keyOfTarget(op, target, plain),
    batch: (keys: string[], commands: Command[], bytes: number, done: Batch['done']) =>
      new Batch(keys, commands, bytes, done, (body, seq) => ({ envelope: body, seq: seq || 1 }), 0),
    async transmitAll(batches: Batch[]) {
      calls.push(batches.map((b) => b.commands));
      keyCalls.push(batches.map((b) => b.keys));
      const data = batches.flatMap((b) => b.commands.map((c) => (c as { d?: unknown }).d));
      if (host.refuse !== null && data.includes(host.refuse)) throw new Error('broker said no');
    },
  };
  const queue = new SendQueue(host as SendQueueHost);
  return { host, queue, calls, keyCalls };
}

test('adjacent sends of the same data merge into one command (a copy: the caller keeps its own)', async () => {
  const { queue, calls } = queueOf();
  const firstUids = ['a'];
  const sends = [
    queue.publish({ op: Op.SEND_TO_UIDS, u: firstUids, d: 'n' }),
    queue.publish({ op: Op.SEND_TO_UIDS, u: ['b', 'c'], d: 'n' }),
    queue.publish({ op: Op.SEND_TO_UIDS, u: ['a'], d: 'n' }), // a repeated target: not merged
    queue.publish({ op: Op.SEND_TO_UIDS, u: ['d'], d: 'other' }),
  ];
  await queue.flushNow();
  await Promise.all(sends);
  assert.deepEqual(calls, [
    [
      [
        { op: Op.SEND_TO_UIDS, u: ['a', 'b', 'c'], d: 'n' },
        { op: Op.SEND_TO_UIDS, u: ['a'], d: 'n' },
        { op: Op.SEND_TO_UIDS, u: ['d'], d: 'other' },
      ],
    ],
  ]);
  assert.deepEqual(firstUids, ['a']);
});

test('direct mode, one key per message: only sends to the same key merge', async () => {
  const { host, queue, calls } = queueOf({ mode: 'direct' });
  host.keysPerMessage = 1;
  void queue.publish({ op: Op.SEND_TO_UIDS, u: ['a'], d: 'n' });
  void queue.publish({ op: Op.SEND_TO_UIDS, u: ['b'], d: 'n' });
  void queue.publish({ op: Op.SEND_TO_CLIENTS, c: ['aaaaaaaaaaaa1'], d: 'n' });
  await queue.flushNow();
  assert.deepEqual(
    calls[0]!.map((commands) => commands.length),
    [1, 1, 1],
  );
});

test('routed by a directory: each node its share of the turn in one message, barriers kept, one message for several nodes', async () => {
  for (const keysPerMessage of [1, 100]) {
    const { host, queue, calls, keyCalls } = queueOf({ mode: 'direct' });
    host.keysPerMessage = keysPerMessage;
    host.nodeRouting = true;
    // a directory: uids a* on node A, b* on node B, 'both' on the two
    const holders = (uid: string) => (uid === 'both' ? ['n.A', 'n.B'] : [`n.${uid[0]!.toUpperCase()}`]);
    host.keysOf = (command: Command) =>
      command.op === Op.SEND_TO_UIDS ? [...new Set(command.u.flatMap(holders))] : keysOfCommand(command, plain);
    const send = (uid: string, d: string) => void queue.publish({ op: Op.SEND_TO_UIDS, u: [uid], d });
    send('a1', '1');
    send('b1', '2');
    send('a2', '3');
    send('b2', '4');
    void queue.publish({ op: Op.SEND_TO_ALL, d: '5' }); // a barrier: after 1–4, before 6–9
    send('b3', '6');
    send('a3', '7');
    send('both', '8');
    send('a4', '9');
    await queue.flushNow();
    const data = calls[0]!.map((commands) => commands.map((c) => (c as { d: string }).d).join(''));
    assert.deepEqual(
      { keys: keyCalls[0], data },
      {
        // one message for both nodes: by their node keys where a message carries several keys,
        // else by the uid's own key (bound on both)
        keys: [['n.A'], ['n.B'], ['all'], ['n.B'], ['n.A'], keysPerMessage > 1 ? ['n.A', 'n.B'] : ['u.both'], ['n.A']],
        data: ['13', '24', '5', '6', '7', '8', '9'],
      },
      `keysPerMessage ${keysPerMessage}`,
    );
  }
});

test('refusals: GW_ERR_BUS_CLOSED after close, GW_ERR_BUS_BUFFER_FULL while disconnected and full, GW_ERR_MESSAGE_TOO_LARGE', async () => {
  const { host, queue } = queueOf({ maxBufferedCommands: 2 });
  host.isConnected = false;
  const waiting = [queue.publish({ op: Op.SEND_TO_ALL, d: '1' }), queue.publish({ op: Op.SEND_TO_ALL, d: '2' })];
  await assert.rejects(queue.publish({ op: Op.SEND_TO_ALL, d: '3' }), { code: ErrorCodes.BUS_BUFFER_FULL });
  assert.equal(host.stats.buffered, 2);
  host.maxCommandBytes = 100;
  host.isConnected = true;
  await assert.rejects(queue.publish({ op: Op.SEND_TO_ALL, d: 'x'.repeat(100) }), {
    code: ErrorCodes.MESSAGE_TOO_LARGE,
  });
  assert.equal(host.stats.commandsTooLarge, 1);
  await queue.close();
  await Promise.all(waiting);
  await assert.rejects(queue.publish({ op: Op.SEND_TO_ALL, d: '4' }), { code: ErrorCodes.BUS_CLOSED });
  assert.equal(host.stats.commandsPublished, 2);
});

test('a broker error fails the turn with GW_ERR_BUS_BROKER; a large command travels alone and fails alone', async () => {
  const { host, queue, calls } = queueOf();
  const big = 'b'.repeat(70 * 1024);
  host.refuse = big;
  const small = queue.publish({ op: Op.SEND_TO_ALL, d: 's' });
  const large = queue.publish({ op: Op.SEND_TO_ALL, d: big });
  const after = queue.publish({ op: Op.SEND_TO_ALL, d: 't' });
  await queue.flushNow();
  await assert.rejects(large, { code: ErrorCodes.BUS_BROKER, message: /broker said no/ });
  assert.equal(await stateOf(small), 'resolved');
  assert.equal(await stateOf(after), 'resolved');
  assert.deepEqual(
    calls.map((call) => call.map((commands) => commands.length)),
    [[1], [1], [1]],
  );
  host.refuse = 's';
  const failing = queue.publish({ op: Op.SEND_TO_ALL, d: 's' });
  await queue.flushNow();
  await assert.rejects(failing, { code: ErrorCodes.BUS_BROKER });
});

test('failQueued rejects what is still queued', async () => {
  const { queue } = queueOf();
  const queued = queue.publish({ op: Op.SEND_TO_ALL, d: '1' });
  queue.failQueued(new Error('closed'));
  await assert.rejects(queued, /closed/);
});

test('a batch is packed once and keeps the sequence number of its first seal at every seal', () => {
  const seals: number[] = [];
  let next = 40;
  const commands: Command[] = [{ op: Op.SEND_TO_ALL, d: 'x' }];
  const batch = new Batch(
    [],
    commands,
    100,
    null,
    (body, seq) => {
      seals.push(seq);
      return { envelope: body, seq: seq || ++next };
    },
    7,
  );
  assert.equal(batch.bytes, 107);
  const body = packCommands(commands);
  assert.deepEqual(batch.seal(), body);
  assert.equal(batch.bytes, body.length + 7);
  batch.seal();
  const sealer = batch.sealer();
  sealer();
  assert.deepEqual(seals, [0, 41, 41]);
});

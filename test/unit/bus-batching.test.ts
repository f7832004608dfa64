/**
 * Batching in the abstract Bus, on a minimal test subclass that records what it transmits:
 * commands queued in one event-loop turn travel as one message, in order; messages are cut at
 * maxCommandsPerMessage and where the keys would pass keysPerMessage; a send to more keys than a
 * message may carry is split so that each message carries only the targets of its own keys; a
 * receiver that gets one command on several keys (a foreign publisher's) applies it once (the
 * viaKey rule).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bus, type BusOptions } from '../../src/transport/bus.js';
import type { OutgoingBatch } from '../../src/transport/transport.js';
import { RecordingTransport, busOptions, silentLog } from '../helpers/fakes.js';
import {
  decodeEnvelope,
  encodeEnvelope,
  encodeLegacyEnvelope,
  type EnvelopeHeader,
} from '../../src/protocol/envelope.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import { GatewireError } from '../../src/errors.js';

const INSTANCE = 'aaaaaaaaaaaa';

class RecordingBus extends Bus {
  readonly received: { commands: Command[]; sender: string }[] = [];
  readonly recorder: RecordingTransport;

  constructor(options: Partial<BusOptions> = {}, keysPerMessage = 1, check?: (batches: OutgoingBatch[]) => void) {
    const recorder = new RecordingTransport(INSTANCE, keysPerMessage, check);
    super(busOptions(INSTANCE, options), silentLog, recorder);
    this.recorder = recorder;
    this.onCommands((commands, sender) => this.received.push({ commands, sender }));
  }

  get sent(): OutgoingBatch[] {
    return this.recorder.sent;
  }
  get bindings(): string[] {
    return this.recorder.bindings;
  }
  set hold(hold: Promise<void> | null) {
    this.recorder.hold = hold;
  }

  /** A broker message arriving, as an adapter hands it over. */
  arrive(bytes: Uint8Array, viaKey?: string): void {
    this.recorder.busHooks!.receive(bytes, viaKey);
  }
}

const toUid = (uid: string | string[], d: string): Command => ({
  op: Op.SEND_TO_UIDS,
  u: Array.isArray(uid) ? uid : [uid],
  d,
});
const toAll = (d: string): Command => ({ op: Op.SEND_TO_ALL, d });
const toGroup = (g: string, d: string): Command => ({ op: Op.SEND_TO_GROUPS, g: [g], d });

/** A header for messages of another node, numbered 1, 2, 3, … */
let foreignSeq = 0;
const from = (sender: string): EnvelopeHeader => ({
  sender,
  epoch: Date.now() - 1000,
  seq: ++foreignSeq,
  time: Date.now(),
});

/** The payloads of a list of commands, to compare order. */
const payloads = (commands: Command[]): string[] => commands.map((c) => String((c as { d?: unknown }).d));

test('commands queued in one turn become one message, in order; the next turn is another message', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout' });
  t.after(() => bus.close());
  await bus.start();
  const commands = [toAll('1'), toUid('u', '2'), toGroup('g', '3'), toAll('4'), toUid(['a', 'b'], '5')];
  await Promise.all(commands.map((c) => bus.publish(c)));
  assert.equal(bus.sent.length, 1);
  assert.deepEqual(bus.sent[0]!.commands, commands);
  assert.deepEqual(bus.sent[0]!.keys, []);

  await bus.publish(toAll('6'));
  await bus.publish(toAll('7'));
  assert.equal(bus.sent.length, 3);
  assert.deepEqual(payloads(bus.sent[1]!.commands), ['6']);
  assert.deepEqual(payloads(bus.sent[2]!.commands), ['7']);
  assert.equal(bus.stats.messagesPublished, 3);
  assert.equal(bus.stats.commandsPublished, 7);
});

test('a publish resolves only once the message carrying it is confirmed', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout' });
  t.after(() => bus.close());
  await bus.start();
  let confirm: () => void = () => undefined;
  bus.hold = new Promise<void>((resolve) => (confirm = resolve));
  let resolved = 0;
  const all = [bus.publish(toAll('a')), bus.publish(toAll('b'))].map((p) => p.then(() => (resolved += 1)));
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(bus.sent.length, 1, 'transmitted');
  assert.equal(resolved, 0, 'not confirmed yet');
  confirm();
  await Promise.all(all);
  assert.equal(resolved, 2);
});

test('maxCommandsPerMessage cuts a turn into several messages, order kept', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout', maxCommandsPerMessage: 3 });
  t.after(() => bus.close());
  await bus.start();
  const commands = Array.from({ length: 7 }, (_, i) => toAll(String(i)));
  await Promise.all(commands.map((c) => bus.publish(c)));
  assert.deepEqual(
    bus.sent.map((b) => payloads(b.commands)),
    [['0', '1', '2'], ['3', '4', '5'], ['6']],
  );
});

test('direct mode, one key per message: a message ends where the key changes; order kept', async (t) => {
  const bus = new RecordingBus({ mode: 'direct' }, 1);
  t.after(() => bus.close());
  await bus.start();
  const commands = [toUid('a', '1'), toUid('a', '2'), toUid('b', '3'), toAll('4'), toGroup('g', '5'), toUid('a', '6')];
  await Promise.all(commands.map((c) => bus.publish(c)));
  assert.deepEqual(
    bus.sent.map((b) => ({ keys: b.keys, d: payloads(b.commands) })),
    [
      { keys: ['u.a'], d: ['1', '2'] },
      { keys: ['u.b'], d: ['3'] },
      { keys: ['all'], d: ['4'] },
      { keys: ['g.g'], d: ['5'] },
      { keys: ['u.a'], d: ['6'] },
    ],
  );
  assert.deepEqual(payloads(bus.sent.flatMap((b) => b.commands)), ['1', '2', '3', '4', '5', '6']);
});

test('direct mode, many keys per message (CC): one message lists its distinct keys in order', async (t) => {
  const bus = new RecordingBus({ mode: 'direct' }, Number.POSITIVE_INFINITY);
  t.after(() => bus.close());
  await bus.start();
  const commands = [toUid('a', '1'), toUid('b', '2'), toUid('a', '3'), toUid(['c', 'a'], '4'), toAll('5')];
  await Promise.all(commands.map((c) => bus.publish(c)));
  assert.equal(bus.sent.length, 1);
  assert.deepEqual(bus.sent[0]!.keys, ['u.a', 'u.b', 'u.c', 'all']);
  assert.deepEqual(bus.sent[0]!.commands, commands);

  // with a limit of two keys per message
  const two = new RecordingBus({ mode: 'direct' }, 2);
  t.after(() => two.close());
  await two.start();
  await Promise.all([toUid('a', '1'), toUid('b', '2'), toUid('a', '3'), toUid('c', '4')].map((c) => two.publish(c)));
  assert.deepEqual(
    two.sent.map((b) => ({ keys: b.keys, d: payloads(b.commands) })),
    [
      { keys: ['u.a', 'u.b'], d: ['1', '2', '3'] },
      { keys: ['u.c'], d: ['4'] },
    ],
  );
});

test('a send to more keys than one message may carry is split: each message carries only its own targets; receivers apply each once', async (t) => {
  const sender = new RecordingBus({ mode: 'direct' }, 1);
  t.after(() => sender.close());
  await sender.start();
  const before = toUid('x', 'before');
  const multi = toUid(['x', 'y', 'z'], 'multi');
  const after = toUid('x', 'after');
  await Promise.all([before, multi, after].map((c) => sender.publish(c)));
  assert.deepEqual(
    sender.sent.map((b) => ({
      keys: b.keys,
      u: b.commands.map((c) => (c as { u: string[] }).u),
      d: payloads(b.commands),
    })),
    [
      // 'before' and the x part of 'multi' share the key u.x, but carry other data: two commands
      { keys: ['u.x'], u: [['x'], ['x']], d: ['before', 'multi'] },
      { keys: ['u.y'], u: [['y']], d: ['multi'] },
      { keys: ['u.z'], u: [['z']], d: ['multi'] },
      { keys: ['u.x'], u: [['x']], d: ['after'] },
    ],
  );

  // What each receiver gets from the broker: the messages of the keys it has bound.
  const receiverHolding = async (uids: string[]): Promise<RecordingBus> => {
    const bus = new RecordingBus({ mode: 'direct', instance: `r${uids.join('')}`.padEnd(12, '0') }, 1);
    t.after(() => bus.close());
    await bus.start();
    for (const uid of uids) await bus.subscribe({ kind: 'uid', uid });
    for (const batch of sender.sent) {
      const key = batch.keys[0]!;
      if (bus.desiredKeys().includes(key)) bus.arrive(batch.seal(), key);
    }
    return bus;
  };
  const applied = (bus: RecordingBus): string[] => payloads(bus.received.flatMap((r) => r.commands));

  // holds x, y and z: gets each part once, in order
  assert.deepEqual(applied(await receiverHolding(['x', 'y', 'z'])), ['before', 'multi', 'multi', 'multi', 'after']);
  // holds y and z: gets the y and z parts
  assert.deepEqual(applied(await receiverHolding(['y', 'z'])), ['multi', 'multi']);
  // holds only z
  assert.deepEqual(applied(await receiverHolding(['z'])), ['multi']);
  // holds x only
  assert.deepEqual(applied(await receiverHolding(['x'])), ['before', 'multi', 'after']);

  // the sender is named
  const any = await receiverHolding(['y']);
  assert.equal(any.received[0]!.sender, INSTANCE);
});

test('without viaKey (a broker that copies one message to many keys) every command is applied', async (t) => {
  const bus = new RecordingBus({ mode: 'direct' }, Number.POSITIVE_INFINITY);
  t.after(() => bus.close());
  await bus.start();
  await bus.subscribe({ kind: 'uid', uid: 'x' });
  bus.arrive(encodeEnvelope(from('bbbbbbbbbbbb'), [toUid(['x', 'y'], '1'), toAll('2')], ''));
  assert.deepEqual(payloads(bus.received.flatMap((r) => r.commands)), ['1', '2']);
});

test('unreadable and wrongly signed messages are counted and dropped; the handler is not called', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout', secret: 'k' });
  t.after(() => bus.close());
  await bus.start();
  bus.arrive(Buffer.from('garbage'));
  bus.arrive(encodeEnvelope(from('bbbbbbbbbbbb'), [toAll('unsigned')], ''));
  bus.arrive(encodeEnvelope(from('bbbbbbbbbbbb'), [toAll('wrong key')], 'not-k'));
  assert.equal(bus.stats.decodeErrors, 1);
  assert.equal(bus.stats.signatureErrors, 2);
  assert.equal(bus.received.length, 0);
  bus.arrive(encodeEnvelope(from('bbbbbbbbbbbb'), [toAll('good')], 'k'));
  assert.deepEqual(payloads(bus.received.flatMap((r) => r.commands)), ['good']);
});

test('subscriptions: the first local holder binds a key, the last one unbinds it; replayed on connect', async (t) => {
  const bus = new RecordingBus({ mode: 'direct' });
  t.after(() => bus.close());
  await bus.start();
  assert.deepEqual(bus.bindings.sort(), ['+all', `+n.${INSTANCE}`]);
  bus.bindings.length = 0;
  await bus.subscribe({ kind: 'uid', uid: 'u' });
  await bus.subscribe({ kind: 'uid', uid: 'u' });
  await bus.subscribe({ kind: 'group', group: 'g' });
  assert.deepEqual(bus.bindings, ['+u.u', '+g.g']);
  await bus.unsubscribe({ kind: 'uid', uid: 'u' });
  assert.deepEqual(bus.bindings, ['+u.u', '+g.g']);
  await bus.unsubscribe({ kind: 'uid', uid: 'u' });
  assert.deepEqual(bus.bindings, ['+u.u', '+g.g', '-u.u']);
  assert.deepEqual(bus.desiredKeys().sort(), ['all', 'g.g', `n.${INSTANCE}`]);
});

test('while disconnected, publish rejects with GW_ERR_BUS_BUFFER_FULL past maxBufferedCommands', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout', maxBufferedCommands: 3 });
  t.after(() => bus.close());
  // never connected
  const accepted = [bus.publish(toAll('1')), bus.publish(toAll('2')), bus.publish(toAll('3'))];
  await assert.rejects(
    bus.publish(toAll('4')),
    (err) => err instanceof GatewireError && err.code === 'GW_ERR_BUS_BUFFER_FULL',
  );
  await Promise.all(accepted);
});

test('adjacent sends of the same data merge into one command; anything between them, other data or a repeated target does not', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout' });
  t.after(() => bus.close());
  await bus.start();
  const data = 'same';
  const first = toUid('a', data);
  const calls = [
    first,
    toUid('b', data),
    toUid(['c', 'd'], data),
    toUid('a', data),
    toUid('e', data),
    toUid('f', 'other'),
    toAll(data),
    toUid('g', data),
  ];
  await Promise.all(calls.map((c) => bus.publish(c)));
  assert.equal(bus.sent.length, 1);
  assert.deepEqual(bus.sent[0]!.commands, [
    { op: Op.SEND_TO_UIDS, u: ['a', 'b', 'c', 'd'], d: data },
    // 'a' again: a second command, so a's clients get the data twice
    { op: Op.SEND_TO_UIDS, u: ['a', 'e'], d: data },
    { op: Op.SEND_TO_UIDS, u: ['f'], d: 'other' },
    { op: Op.SEND_TO_ALL, d: data },
    { op: Op.SEND_TO_UIDS, u: ['g'], d: data },
  ]);
  assert.deepEqual(first, { op: Op.SEND_TO_UIDS, u: ['a'], d: data }, 'the caller’s command is not changed');
  assert.equal(bus.stats.commandsPublished, 5);

  // sendToClient: client ids merge the same way; bytes merge only when they are the same object
  const bytes = Buffer.from('xy');
  const toClient = (c: string, d: string | Uint8Array): Command => ({ op: Op.SEND_TO_CLIENTS, c: [c], d });
  const c1 = `${INSTANCE}00001`;
  const c2 = `${INSTANCE}00002`;
  await Promise.all(
    [toClient(c1, bytes), toClient(c2, bytes), toClient(c1, Buffer.from('xy'))].map((c) => bus.publish(c)),
  );
  assert.deepEqual(
    bus.sent[1]!.commands.map((c) => (c as { c: string[] }).c),
    [[c1, c2], [c1]],
  );
});

test('direct mode: merged sends stay within the keys one message may carry', async (t) => {
  // one key per message: only sends to the same key merge (here: clients of one node)
  const single = new RecordingBus({ mode: 'direct' }, 1);
  t.after(() => single.close());
  await single.start();
  const here = (n: number): string => `${INSTANCE}${String(n).padStart(5, '0')}`;
  const there = `bbbbbbbbbbbb00001`;
  await Promise.all(
    [
      { op: Op.SEND_TO_CLIENTS, c: [here(1)], d: 'm' },
      { op: Op.SEND_TO_CLIENTS, c: [here(2)], d: 'm' },
      { op: Op.SEND_TO_CLIENTS, c: [there], d: 'm' },
      toUid('a', 'm'),
      toUid('b', 'm'),
    ].map((c) => single.publish(c as Command)),
  );
  assert.deepEqual(
    single.sent.map((b) => ({ keys: b.keys, commands: b.commands.length })),
    [
      { keys: [`n.${INSTANCE}`], commands: 1 },
      { keys: ['n.bbbbbbbbbbbb'], commands: 1 },
      { keys: ['u.a'], commands: 1 },
      { keys: ['u.b'], commands: 1 },
    ],
  );
  assert.deepEqual((single.sent[0]!.commands[0] as { c: string[] }).c, [here(1), here(2)]);

  // three keys per message: up to three uids merge
  const three = new RecordingBus({ mode: 'direct' }, 3);
  t.after(() => three.close());
  await three.start();
  await Promise.all(['a', 'b', 'c', 'd', 'e'].map((u) => three.publish(toUid(u, 'm'))));
  assert.deepEqual(
    three.sent.map((b) => ({ keys: b.keys, u: b.commands.map((c) => (c as { u: string[] }).u) })),
    [
      { keys: ['u.a', 'u.b', 'u.c'], u: [['a', 'b', 'c']] },
      { keys: ['u.d', 'u.e'], u: [['d', 'e']] },
    ],
  );
});

// ---- bytes on the bus, bounds, sequence numbers ------------------------------------------------

/** The decoded envelopes of what a bus sent. */
function sentEnvelopes(bus: RecordingBus) {
  return bus.sent.map((batch) => decodeEnvelope(batch.seal(), ''));
}

test('a send to 4,000 uids costs bytes linear in the targets: each message carries only the uids of its keys', async (t) => {
  const payload = 'p'.repeat(100);
  const uids = Array.from({ length: 4000 }, (_, i) => `user-${i}`);
  for (const keysPerMessage of [1, 100]) {
    const bus = new RecordingBus({ mode: 'direct' }, keysPerMessage);
    t.after(() => bus.close());
    await bus.start();
    await bus.publish(toUid(uids, payload));
    let bytes = 0;
    const reached: string[] = [];
    for (const batch of bus.sent) {
      const body = batch.seal();
      bytes += body.length;
      const keys = new Set(batch.keys);
      for (const cmd of decodeEnvelope(body, '').commands) {
        for (const uid of (cmd as { u: string[] }).u) {
          assert.ok(keys.has(`u.${uid}`), `${uid} travels only in a message routed by its key`);
          reached.push(uid);
        }
      }
    }
    assert.deepEqual(reached, uids, 'every uid once, in order');
    assert.equal(bus.sent.length, Math.ceil(4000 / keysPerMessage));
    assert.ok(bytes <= 4000 * (100 + 400), `${bytes} bytes for 4,000 uids (${keysPerMessage} key(s) per message)`);
  }
});

test('a send to groups split over several messages carries one call id, so a client in two parts gets it once', async (t) => {
  const bus = new RecordingBus({ mode: 'direct' }, 2);
  t.after(() => bus.close());
  await bus.start();
  await bus.publish({ op: Op.SEND_TO_GROUPS, g: ['a', 'b', 'c', 'd', 'e'], d: 'x', x: [`${INSTANCE}1`] });
  await bus.publish({ op: Op.SEND_TO_GROUPS, g: ['a', 'b', 'c'], d: 'y' });
  const parts = bus.sent.flatMap((b) => b.commands) as Extract<Command, { op: 22 }>[];
  assert.deepEqual(
    parts.map((p) => [p.g, p.d, p.k]),
    [
      [['a', 'b'], 'x', 1],
      [['c', 'd'], 'x', 1],
      [['e'], 'x', 1],
      [['a', 'b'], 'y', 2],
      [['c'], 'y', 2],
    ],
  );
  assert.deepEqual(parts[0]!.x, [`${INSTANCE}1`], 'the exclusions go with every part');
  // one that fits in one message has no call id
  await bus.publish({ op: Op.SEND_TO_GROUPS, g: ['a', 'b'], d: 'z' });
  assert.equal((bus.sent.at(-1)!.commands[0] as { k?: number }).k, undefined);
});

test('messages are cut below bus.maxMessageBytes; one command that cannot fit is refused with GW_ERR_MESSAGE_TOO_LARGE, and nothing else suffers', async (t) => {
  const max = 4096;
  const bus = new RecordingBus({ mode: 'fanout', maxMessageBytes: max });
  t.after(() => bus.close());
  await bus.start();
  const texts = Array.from({ length: 40 }, (_, i) => `${i}:${'t'.repeat(300)}`);
  await Promise.all(texts.map((d) => bus.publish(toAll(d))));
  assert.ok(bus.sent.length > 1, 'several messages');
  for (const batch of bus.sent) assert.ok(batch.seal().length <= max, `a message of ${batch.seal().length} bytes`);
  assert.deepEqual(payloads(bus.sent.flatMap((b) => b.commands)), texts, 'all of them, in order');

  bus.sent.length = 0;
  const ok = bus.publish(toAll('before'));
  await assert.rejects(
    bus.publish(toAll('x'.repeat(max))),
    (err: unknown) => err instanceof GatewireError && err.code === 'GW_ERR_MESSAGE_TOO_LARGE',
  );
  const after = bus.publish(toAll('after'));
  await Promise.all([ok, after]);
  assert.deepEqual(payloads(bus.sent.flatMap((b) => b.commands)), ['before', 'after']);
  assert.equal(bus.stats.commandsTooLarge, 1);

  // a send to many uids too large for one message is cut by bytes, in fanout mode too
  bus.sent.length = 0;
  const uids = Array.from({ length: 2000 }, (_, i) => `someone-${i}`);
  await bus.publish(toUid(uids, 'hi'));
  assert.ok(bus.sent.length > 1);
  for (const batch of bus.sent) assert.ok(batch.seal().length <= max);
  assert.deepEqual(
    bus.sent.flatMap((b) => b.commands.flatMap((c) => (c as { u: string[] }).u)),
    uids,
  );
});

test('a large command travels alone with its own promise: a failure of its message fails only its caller', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout' }, 1, (batches) => {
    if (batches.some((b) => b.bytes > 64 * 1024))
      throw new GatewireError('GW_ERR_BUS_REFUSED', 'refused by the broker');
  });
  t.after(() => bus.close());
  await bus.start();
  const small1 = bus.publish(toAll('small 1'));
  const large = bus.publish(toAll('L'.repeat(100 * 1024)));
  const small2 = bus.publish(toAll('small 2'));
  await assert.rejects(large, (err: unknown) => (err as GatewireError).code === 'GW_ERR_BUS_REFUSED');
  await Promise.all([small1, small2]);
  assert.deepEqual(
    bus.sent.map((b) => b.commands.length),
    [1, 1, 1],
    'small, large alone, small',
  );
});

test('sequence numbers follow the order of sending; a retransmit keeps its number and gets a fresh time', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout' });
  t.after(() => bus.close());
  await bus.start();
  await bus.publish(toAll('1'));
  await bus.publish(toAll('2'));
  const [first, second] = sentEnvelopes(bus);
  assert.equal(first!.sender, INSTANCE);
  assert.equal(second!.seq, first!.seq + 1);
  assert.equal(first!.epoch, bus.epoch);
  await new Promise((resolve) => setTimeout(resolve, 5));
  const again = decodeEnvelope(bus.sent[0]!.seal(), '');
  assert.equal(again.seq, first!.seq);
  assert.ok(again.time > first!.time);
});

test('receiving: a repeated or replayed message is dropped and counted; a copy filtered out by the receive rule is not marked seen', async (t) => {
  const bus = new RecordingBus({ mode: 'direct' }, 1);
  t.after(() => bus.close());
  await bus.start();
  await bus.subscribe({ kind: 'uid', uid: 'x' });
  await bus.subscribe({ kind: 'uid', uid: 'y' });
  const one = encodeEnvelope(from('bbbbbbbbbbbb'), [toAll('once')], '');
  bus.arrive(one, 'all');
  bus.arrive(one, 'all');
  assert.deepEqual(payloads(bus.received.flatMap((r) => r.commands)), ['once']);
  assert.equal(bus.stats.duplicatesDropped, 1);

  // a foreign multi-key command published once per key, the copy for the other key first
  const multi = encodeEnvelope(from('cccccccccccc'), [toUid(['x', 'y'], 'multi')], '');
  bus.arrive(multi, 'u.y');
  assert.equal(bus.received.length, 1, 'the u.y copy is not this node\u2019s copy (x is its first held key)');
  bus.arrive(multi, 'u.x');
  assert.deepEqual(
    payloads(bus.received.flatMap((r) => r.commands)),
    ['once', 'multi'],
    'the u.x copy is applied: the first was not marked seen',
  );
  bus.arrive(multi, 'u.x');
  assert.equal(bus.received.length, 2);
});

test('with a secret: replays from before this node started, stale and future messages are refused; the sender goes on', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout', secret: 'k', startedAt: Date.now() });
  t.after(() => bus.close());
  await bus.start();
  const now = Date.now();
  const old = { sender: 'bbbbbbbbbbbb', epoch: now - 60_000, seq: 5, time: now - 30_000 };
  bus.arrive(encodeEnvelope(old, [toAll('captured before this node started')], 'k'));
  bus.arrive(encodeEnvelope({ ...old, seq: 6, time: now + 60_000 }, [toAll('from the future')], 'k'));
  bus.arrive(encodeEnvelope({ ...old, seq: 7, time: now - 3_600_000 }, [toAll('an hour old')], 'k'));
  assert.equal(bus.received.length, 0);
  assert.equal(bus.stats.replaysRefused, 3);
  bus.arrive(encodeEnvelope({ ...old, seq: 8, time: Date.now() }, [toAll('live')], 'k'));
  assert.deepEqual(payloads(bus.received.flatMap((r) => r.commands)), ['live']);
});

test('wire version 1 (gatewire 0.1): read only while a 0.1 peer is live, its announcements always; signed only behind acceptSignedV1', async (t) => {
  const announce = (i: string): Command => ({
    op: Op.ANNOUNCE,
    n: { i, n: i, ro: ['gateway'], ad: '', st: 1, cc: 0, uc: 0, gc: 0, iv: 1000 },
  });
  const unsigned = new RecordingBus({ mode: 'fanout' });
  t.after(() => unsigned.close());
  await unsigned.start();
  unsigned.arrive(encodeLegacyEnvelope('oldnode00000', [toAll('v1 push')], ''));
  assert.equal(unsigned.stats.legacyRefused, 1);
  unsigned.arrive(encodeLegacyEnvelope('oldnode00000', [announce('oldnode00000')], ''));
  assert.equal(unsigned.received.length, 1, 'the announcement is read');
  unsigned.setLegacyPeers(true);
  unsigned.arrive(encodeLegacyEnvelope('oldnode00000', [toAll('v1 push')], ''));
  assert.deepEqual(payloads(unsigned.received.at(-1)!.commands), ['v1 push']);
  // and it sends version 1 while the peer is live
  await unsigned.publish(toAll('to the old node'));
  assert.equal(decodeEnvelope(unsigned.sent.at(-1)!.seal(), '').version, 1);
  unsigned.setLegacyPeers(false);
  await unsigned.publish(toAll('after the upgrade'));
  assert.equal(decodeEnvelope(unsigned.sent.at(-1)!.seal(), '').version, 2);

  const signed = new RecordingBus({ mode: 'fanout', secret: 'k' });
  t.after(() => signed.close());
  await signed.start();
  signed.setLegacyPeers(true);
  signed.arrive(encodeLegacyEnvelope('oldnode00000', [toAll('signed v1')], 'k'));
  assert.equal(signed.received.length, 0, 'refused without acceptSignedV1');
  const flagged = new RecordingBus({ mode: 'fanout', secret: 'k', acceptSignedV1: true });
  t.after(() => flagged.close());
  await flagged.start();
  flagged.setLegacyPeers(true);
  flagged.arrive(encodeLegacyEnvelope('oldnode00000', [toAll('signed v1')], 'k'));
  assert.deepEqual(payloads(flagged.received.at(-1)!.commands), ['signed v1']);
});

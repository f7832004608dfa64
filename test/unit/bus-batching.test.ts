/**
 * Batching in the abstract Bus, on a minimal test subclass that records what it transmits:
 * commands queued in one event-loop turn travel as one message, in order; messages are cut at
 * maxCommandsPerMessage and where the keys would pass keysPerMessage; a command with more keys
 * than a message may carry goes once per key, and a receiver holding several of those keys
 * applies it once (the viaKey rule).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Bus, type BusOptions, type OutgoingBatch } from '../../src/bus/bus.js';
import { encodeEnvelope } from '../../src/bus/envelope.js';
import { Op, type Command } from '../../src/bus/commands.js';
import { GatewireError } from '../../src/errors.js';

const INSTANCE = 'aaaaaaaaaaaa';

class RecordingBus extends Bus {
  readonly sent: OutgoingBatch[] = [];
  readonly bindings: string[] = [];
  readonly received: { commands: Command[]; sender: string }[] = [];
  /** when set, transmit waits for it (a broker that has not confirmed yet) */
  hold: Promise<void> | null = null;

  constructor(options: Partial<BusOptions> = {}, keysPerMessage = 1) {
    super(
      {
        instance: INSTANCE,
        mode: 'direct',
        secret: '',
        uidBuckets: 0,
        groupBuckets: 0,
        maxBufferedCommands: 1000,
        maxCommandsPerMessage: 500,
        ...options,
      },
      pino({ level: 'silent' }),
    );
    this.keysPerMessage = keysPerMessage;
    this.onCommands((commands, sender) => this.received.push({ commands, sender }));
  }

  protected async connect(): Promise<void> {
    this.setConnected(true);
    await this.replaySubscriptions();
  }
  protected async disconnect(): Promise<void> {
    this.setConnected(false);
  }
  protected async transmit(batch: OutgoingBatch): Promise<void> {
    this.sent.push(batch);
    if (this.hold) await this.hold;
  }
  protected async bindKey(key: string): Promise<void> {
    this.bindings.push(`+${key}`);
  }
  protected async unbindKey(key: string): Promise<void> {
    this.bindings.push(`-${key}`);
  }

  /** A broker message arriving, as an implementation hands it over. */
  arrive(bytes: Uint8Array, viaKey?: string): void {
    this.receive(bytes, viaKey);
  }
}

const toUid = (uid: string | string[], d: string): Command => ({ op: Op.SEND_TO_UIDS, u: Array.isArray(uid) ? uid : [uid], d });
const toAll = (d: string): Command => ({ op: Op.SEND_TO_ALL, d });
const toGroup = (g: string, d: string): Command => ({ op: Op.SEND_TO_GROUPS, g: [g], d });

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

test('a command with more keys than one message may carry goes once per key; receivers apply it once', async (t) => {
  const sender = new RecordingBus({ mode: 'direct' }, 1);
  t.after(() => sender.close());
  await sender.start();
  const before = toUid('x', 'before');
  const multi = toUid(['x', 'y', 'z'], 'multi');
  const after = toUid('x', 'after');
  await Promise.all([before, multi, after].map((c) => sender.publish(c)));
  assert.deepEqual(
    sender.sent.map((b) => ({ keys: b.keys, d: payloads(b.commands) })),
    [
      { keys: ['u.x'], d: ['before'] },
      { keys: ['u.x'], d: ['multi'] },
      { keys: ['u.y'], d: ['multi'] },
      { keys: ['u.z'], d: ['multi'] },
      { keys: ['u.x'], d: ['after'] },
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
      if (bus.desiredKeys().includes(key)) bus.arrive(batch.body, key);
    }
    return bus;
  };
  const applied = (bus: RecordingBus): string[] => payloads(bus.received.flatMap((r) => r.commands));

  // holds x, y and z: gets the multi-key command three times, applies it once, in order
  assert.deepEqual(applied(await receiverHolding(['x', 'y', 'z'])), ['before', 'multi', 'after']);
  // holds y and z: gets it twice (via u.y and u.z), applies it once
  assert.deepEqual(applied(await receiverHolding(['y', 'z'])), ['multi']);
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
  bus.arrive(encodeEnvelope('bbbbbbbbbbbb', [toUid(['x', 'y'], '1'), toAll('2')], ''));
  assert.deepEqual(payloads(bus.received.flatMap((r) => r.commands)), ['1', '2']);
});

test('unreadable and wrongly signed messages are counted and dropped; the handler is not called', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout', secret: 'k' });
  t.after(() => bus.close());
  await bus.start();
  bus.arrive(Buffer.from('garbage'));
  bus.arrive(encodeEnvelope('bbbbbbbbbbbb', [toAll('unsigned')], ''));
  bus.arrive(encodeEnvelope('bbbbbbbbbbbb', [toAll('wrong key')], 'not-k'));
  assert.equal(bus.stats.decodeErrors, 1);
  assert.equal(bus.stats.signatureErrors, 2);
  assert.equal(bus.received.length, 0);
  bus.arrive(encodeEnvelope('bbbbbbbbbbbb', [toAll('good')], 'k'));
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
  await assert.rejects(bus.publish(toAll('4')), (err) => err instanceof GatewireError && err.code === 'GW_ERR_BUS_BUFFER_FULL');
  await Promise.all(accepted);
});

test('adjacent sends of the same data merge into one command; anything between them, other data or a repeated target does not', async (t) => {
  const bus = new RecordingBus({ mode: 'fanout' });
  t.after(() => bus.close());
  await bus.start();
  const data = 'same';
  const first = toUid('a', data);
  const calls = [first, toUid('b', data), toUid(['c', 'd'], data), toUid('a', data), toUid('e', data), toUid('f', 'other'), toAll(data), toUid('g', data)];
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
  await Promise.all([toClient(c1, bytes), toClient(c2, bytes), toClient(c1, Buffer.from('xy'))].map((c) => bus.publish(c)));
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

/**
 * Hostile bus messages, thousands of generated cases per kind (seeded: GATEWIRE_TEST_SEED):
 *   - random bytes, and valid MessagePack in wrong shapes (not an envelope, wrong version, sender
 *     or commands of the wrong type, commands that are not a list of maps with an op): each is
 *     dropped and counted as undecodable (bus.stats.decodeErrors);
 *   - envelopes whose first command has fields of the wrong type (or missing), followed by a
 *     good push to a canary: the bad command is dropped alone and counted
 *     (bus.stats.malformedCommands), the rest of its message runs (docs/wire-format.md), and the
 *     node's state is untouched (the canary's uid, groups and session, the membership);
 *   - forged envelopes on a node with bus.secret (unsigned, wrong key, tampered, cut signature):
 *     dropped and counted (bus.stats.signatureErrors), never delivered.
 * On the local bus they are fed to the bus's receive path (what a broker implementation calls
 * with the bytes it got); on RabbitMQ they are published raw to the exchange with keys the node
 * holds (single-key messages, so the direct-mode receive rule runs on them too). The node stays
 * up and the canary gets a push after every batch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import amqp from 'amqplib';
import { AMQP_URL, startNode, uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues, deleteExchanges } from '../helpers/amqp.js';
import { Opened, connectWs, idHandler, type Connected } from '../e2e/support.js';
import { Prng, TEST_SEED } from '../helpers/prng.js';
import { foreignEnvelope } from '../helpers/envelopes.js';
import { envelopeFields } from '../helpers/faults.js';
import type { TransportHooks } from '../../src/transport/transport.js';
import type { GatewireNode } from '../../src/node.js';
import { amqpBus, amqpOf } from '../helpers/transports.js';
import type { WsTestClient } from '../helpers/clients.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const BATCH = 100;

function envelope(sender: string, commands: unknown[], secret: string | null = null): Buffer {
  return foreignEnvelope(sender, commands, secret);
}

/** A version 2 envelope's fields around `sender` and `commands`, valid but for what a case breaks. */
const v2 = (sender: unknown, commands: unknown): unknown[] => [2, sender, 1, 1, Date.now(), commands, null];

// ---- generators ------------------------------------------------------------------------------

function randomValue(p: Prng, depth = 0): unknown {
  switch (p.int(depth > 2 ? 6 : 8)) {
    case 0:
      return null;
    case 1:
      return p.bool();
    case 2:
      return p.range(-1_000_000, 1_000_000);
    case 3:
      return p.int(1000) / 7;
    case 4:
      return p.ascii(p.int(12));
    case 5:
      return p.bytes(p.int(12));
    case 6:
      return Array.from({ length: p.int(5) }, () => randomValue(p, depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = p.int(4); i > 0; i--)
        out[p.pick(['op', 'c', 'u', 'g', 'd', 'x', 'q', 'a', 'r', 'f', 't', 'n', 'i', 's', p.ascii(3)])] = randomValue(
          p,
          depth + 1,
        );
      return out;
    }
  }
}

/** Valid MessagePack that is not a gatewire envelope, in one of many ways. */
function wrongShape(p: Prng, i: number): Buffer {
  const body = (): Buffer => packr.pack([{ op: 6, d: 'x' }]);
  switch (i % 9) {
    case 0:
      return packr.pack(p.bool() ? randomValue(p) : { hello: randomValue(p) });
    case 1: // an array of another length
      return packr.pack(Array.from({ length: p.pick([0, 1, 2, 3, 5, 6, 8]) }, () => randomValue(p)));
    case 2: // another version
      return packr.pack([p.pick([0, 3, -1, 255, '2', null, true]), 'x', 1, 1, Date.now(), body(), null]);
    case 3: // a sender that is not a string
      return packr.pack(v2(p.pick([null, 1, true, [], {}, Buffer.from('x')]), body()));
    case 4: // commands that are not bin
      return packr.pack(v2('x', p.pick(['[]', [{ op: 6, d: 'x' }], { op: 6 }, 7, null])));
    case 5: // commands bin that is not MessagePack
      return packr.pack(v2('x', Buffer.from([0xc1, ...p.bytes(p.int(8))])));
    case 6: // commands that are not a list
      return packr.pack(v2('x', packr.pack(p.pick([{ op: 6, d: 'x' }, 'commands', 42, null, true]))));
    case 7: // a list holding something that is not a map
      return packr.pack(v2('x', packr.pack([{ op: 6, d: 'x' }, p.pick([1, 'op', null, [6], true])])));
    default: // a map without a numeric op
      return packr.pack(
        v2(
          'x',
          packr.pack([
            { op: 6, d: 'x' },
            { op: p.pick(['6', null, [6], { v: 6 }, true, 6.5]), d: 'x' },
          ]),
        ),
      );
  }
}

/** Field kinds of each command (docs/wire-format.md); `c` means a clientId string. */
type FieldKind = 'str' | 'c' | 'strs' | 'cs' | 'payload' | 'map' | 'int' | 'announce';
const SHAPES: Record<number, { required: Record<string, FieldKind>; optional?: Record<string, FieldKind> }> = {
  5: { required: { c: 'cs', d: 'payload' } },
  6: { required: { d: 'payload' }, optional: { x: 'cs' } },
  7: { required: { c: 'c' }, optional: { d: 'payload' } },
  8: { required: { c: 'c' } },
  9: { required: { c: 'c', s: 'map' }, optional: { r: 'int', f: 'str' } },
  12: { required: { c: 'c', u: 'str' }, optional: { r: 'int', f: 'str' } },
  13: { required: { c: 'c' }, optional: { r: 'int', f: 'str' } },
  14: { required: { u: 'strs', d: 'payload' } },
  20: { required: { c: 'c', g: 'str' }, optional: { r: 'int', f: 'str' } },
  21: { required: { c: 'c', g: 'str' }, optional: { r: 'int', f: 'str' } },
  22: { required: { g: 'strs', d: 'payload' }, optional: { x: 'cs' } },
  27: { required: { g: 'str' } },
  30: { required: { u: 'str' }, optional: { d: 'payload' } },
  40: { required: { q: 'str', a: 'strs', r: 'int', f: 'str' }, optional: { t: 'str' } },
  41: { required: { r: 'int', f: 'str', t: 'str' } },
  50: { required: { n: 'announce' } },
  51: { required: { i: 'str' } },
  204: { required: { c: 'c', s: 'map' }, optional: { r: 'int', f: 'str' } },
};

/** A value of the right kind (aimed at the canary and its node, to make a wrong command count). */
function rightValue(p: Prng, kind: FieldKind, canary: string, instance: string): unknown {
  switch (kind) {
    case 'str':
      return p.pick(['cuid', 'cgroup', instance, 'count', 'x']);
    case 'c':
      return canary;
    case 'strs':
      return [p.pick(['cuid', 'cgroup', 'x'])];
    case 'cs':
      return [canary];
    case 'payload':
      return p.bool() ? 'bad-field payload' : Buffer.from('bad-field payload');
    case 'map':
      return { hijacked: true };
    case 'int':
      return p.int(1000);
    case 'announce':
      return { i: 'forgednode01', n: 'forged', ro: ['gateway'], ad: '', st: 1, cc: 0, uc: 0, gc: 0, iv: 1000 };
  }
}

/** A value of the wrong kind (or undefined: the field is left out). */
function wrongValue(p: Prng, kind: FieldKind): unknown {
  const any = [undefined, null, true, 42, -1.5, { k: 'v' }, Buffer.from('bin')];
  switch (kind) {
    case 'str':
    case 'c':
      return p.pick([...any, ['cuid'], 12]);
    case 'strs':
    case 'cs':
      return p.pick([...any, 'cuid', [1, 2], [null], [{}], [['x']], [Buffer.from('x')]]);
    case 'payload':
      return p.pick([undefined, null, true, 42, { d: 'x' }, ['x'], -1.5]);
    case 'map':
      return p.pick([undefined, null, true, 42, 'session', ['x'], Buffer.from('x')]);
    case 'int':
      return p.pick([undefined, null, '7', 1.5, { r: 1 }, [1], true]);
    case 'announce':
      return p.pick([
        undefined,
        null,
        'node',
        42,
        [],
        { n: 'no instance', ro: ['gateway'] },
        { i: 42, ro: ['gateway'] },
        { i: 'forgednode02', ro: 'gateway' },
        { i: 'forgednode03', ro: [1] },
        { i: 'forgednode04', ro: ['gateway'], cc: 'many' },
        { i: 'forgednode05', ro: ['gateway'], st: 'yesterday' },
      ]);
  }
}

/** A command of a real op with at least one field of the wrong type; the others aim at the canary. */
function badCommand(p: Prng, canary: string, instance: string): Record<string, unknown> {
  const op = p.pick(Object.keys(SHAPES).map(Number));
  const shape = SHAPES[op]!;
  const fields = { ...shape.required, ...(shape.optional ?? {}) };
  const names = Object.keys(fields);
  const wrong = new Set([p.pick(names)]);
  if (p.bool(0.3)) wrong.add(p.pick(names));
  const cmd: Record<string, unknown> = { op };
  for (const name of names) {
    const kind = fields[name]!;
    if (wrong.has(name)) {
      let value = wrongValue(p, kind);
      // Leaving out (or nil for) an optional field is fine: an optional field is wrong by its type.
      while (!(name in shape.required) && (value === undefined || value === null)) value = wrongValue(p, kind);
      if (value !== undefined) cmd[name] = value;
    } else if (name in shape.required || p.bool()) {
      cmd[name] = rightValue(p, kind, canary, instance);
    }
  }
  return cmd;
}

// ---- the runs --------------------------------------------------------------------------------

interface Target {
  node: GatewireNode;
  canary: Connected<WsTestClient>;
  /** delivers one message to the node as its broker would */
  deliver: (bytes: Buffer, p: Prng) => Promise<void>;
  /** waits until the node consumed everything delivered so far */
  settle: () => Promise<void>;
}

interface Counts {
  cases: number;
  decodeErrors: number;
  signatureErrors: number;
  malformedCommands: number;
  batches: number;
}

let markers = 0;

/** What each case sent, for failure messages (a failure names the case and what it held). */
const sentCases = new Map<string, unknown>();

function describeCommand(key: string, cmd: Record<string, unknown>): Record<string, unknown> {
  sentCases.set(key, cmd);
  return cmd;
}

function shown(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v instanceof Uint8Array || (v as { type?: string })?.type === 'Buffer'
      ? `<bin ${Buffer.from(v as Uint8Array).toString('hex')}>`
      : v,
  );
}

async function runKind(
  target: Target,
  count: number,
  make: (i: number) => Buffer,
  extraPush: (i: number) => string | null,
): Promise<Counts> {
  const bus = target.node.bus;
  const before = { ...bus.stats };
  let batches = 0;
  for (let start = 0; start < count; start += BATCH) {
    const expected: string[] = [];
    for (let i = start; i < Math.min(count, start + BATCH); i++) {
      await target.deliver(make(i), new Prng(i));
      const push = extraPush(i);
      if (push !== null) expected.push(push);
    }
    await target.settle();
    batches += 1;
    const text = `canary ${++markers}`;
    await target.node.api.sendToClient(target.canary.id, text);
    await target.canary.client.waitForText(text, 10_000);
    for (const push of expected) {
      assert.ok(
        target.canary.client.texts().includes(push),
        `${push} arrived (the rest of its message ran); its bad command: ${shown(sentCases.get(push))}; got ${JSON.stringify(target.canary.client.texts().slice(-5))}`,
      );
    }
  }
  return {
    cases: count,
    decodeErrors: bus.stats.decodeErrors - before.decodeErrors,
    signatureErrors: bus.stats.signatureErrors - before.signatureErrors,
    malformedCommands:
      (bus.stats as { malformedCommands?: number }).malformedCommands! -
      ((before as { malformedCommands?: number }).malformedCommands ?? 0),
    batches,
  };
}

/**
 * The kinds every bus gets, in this order: `junk` cases of random bytes, `junk` of wrong shapes,
 * then `fields` envelopes whose first command is bad, followed by a good push to the canary.
 */
async function runCommonKinds(
  target: Target,
  prng: Prng,
  junk: number,
  fields: { count: number; deliver?: Target['deliver'] },
): Promise<{ random: Counts; shapes: Counts; fields: Counts }> {
  const none = (): null => null;
  const random = await runKind(target, junk, () => prng.bytes(prng.int(200)), none);
  const shapes = await runKind(target, junk, (i) => wrongShape(prng, i), none);
  const instance = target.node.bus.instance;
  const canary = target.canary.id;
  const bad = await runKind(
    { ...target, deliver: fields.deliver ?? target.deliver },
    fields.count,
    (i) =>
      envelope('hostile', [
        describeCommand(`ok ${i}`, badCommand(prng, canary, instance)),
        { op: 5, c: [canary], d: `ok ${i}` },
      ]),
    (i) => `ok ${i}`,
  );
  return { random, shapes, fields: bad };
}

/** The canary and the node are as they were: nothing a bad command carried was applied. */
async function assertUntouched(target: Target): Promise<void> {
  const { node, canary } = target;
  const registry = node.gateway!.registry;
  assert.deepEqual([...registry.uids.keys()], ['cuid'], "uids: only the canary's");
  assert.deepEqual([...registry.groups.keys()], ['cgroup'], "groups: only the canary's");
  assert.deepEqual(await node.api.getSession(canary.id), { k: 'v' }, "the canary's session");
  assert.equal(await node.api.getUidByClientId(canary.id), 'cuid');
  assert.deepEqual(
    node.membership.list().map((m) => m.instance),
    [node.bus.instance],
    'no forged member',
  );
  assert.equal(canary.client.closed, false);
  assert.ok(!canary.client.texts().includes('bad-field payload'), 'no bad command delivered its payload');
}

async function canaryNode(
  opened: Opened,
  values: Parameters<typeof startNode>[0],
): Promise<{ node: GatewireNode; canary: Connected<WsTestClient> }> {
  const node = opened.node(await startNode(values, { handler: idHandler() }));
  const canary = await connectWs(opened, node);
  await node.api.bindUid(canary.id, 'cuid');
  await node.api.joinGroup(canary.id, 'cgroup');
  await node.api.setSession(canary.id, { k: 'v' });
  return { node, canary };
}

function print(label: string, kinds: [string, Counts][]): void {
  console.log(
    `[hostile bus ${label}] seed ${TEST_SEED}: ` +
      kinds
        .map(
          ([kind, c]) =>
            `${kind}: ${c.cases} cases -> decodeErrors ${c.decodeErrors}, signatureErrors ${c.signatureErrors}, malformedCommands ${c.malformedCommands}`,
        )
        .join('; ') +
      `; canary served after each of ${kinds.reduce((n, [, c]) => n + c.batches, 0)} batches`,
  );
}

test('local bus: random bytes, wrong shapes, bad fields and forged signatures through the receive path', async (t) => {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const prng = new Prng(TEST_SEED + 10);
  const plain = await canaryNode(opened, {});
  const receive =
    (node: GatewireNode) =>
    (bytes: Buffer): void =>
      void (node.bus as unknown as { hooks: TransportHooks }).hooks.receive(bytes);
  const local = (n: { node: GatewireNode; canary: Connected<WsTestClient> }): Target => {
    const feed = receive(n.node);
    return { ...n, deliver: async (bytes) => feed(bytes), settle: async () => undefined };
  };
  const target = local(plain);
  const { random, shapes, fields } = await runCommonKinds(target, prng, 2000, { count: 3000 });
  await assertUntouched(target);

  const secret = 'the right secret';
  const signed = await canaryNode(opened, { bus: { secret } });
  const push = (text: string): unknown[] => [{ op: 5, c: [signed.canary.id], d: text }];
  const forged = await runKind(
    local(signed),
    2000,
    (i) => {
      switch (i % 5) {
        case 0:
          return envelope('forger', push(`forged ${i}`), null);
        case 1:
          return envelope('forger', push(`forged ${i}`), `not ${secret}`);
        case 2: {
          // the commands changed after signing
          const [v, s, e, q, tm, , sig] = packr.unpack(envelope('forger', push(`forged ${i}`), secret)) as unknown[];
          return packr.pack([v, s, e, q, tm, packr.pack(push(`tampered ${i}`)), sig]);
        }
        case 3: {
          // another sender, or a later sequence number (a replay made to look new)
          const [v, , e, q, tm, body, sig] = packr.unpack(envelope('forger', push(`forged ${i}`), secret)) as unknown[];
          return prng.bool()
            ? packr.pack([v, 'someone else', e, q, tm, body, sig])
            : packr.pack([v, 'forger', e, Number(q) + 1000, tm, body, sig]);
        }
        default: {
          const [v, s, e, q, tm, body, sig] = envelopeFields(envelope('forger', push(`forged ${i}`), secret));
          return packr.pack([v, s, e, q, tm, body, sig.subarray(0, prng.int(32))]);
        }
      }
    },
    () => null,
  );
  assert.ok(
    !signed.canary.client.texts().some((text) => text.startsWith('forged') || text.startsWith('tampered')),
    'no forged push delivered',
  );
  // A push signed with the secret by anyone is one of ours.
  (signed.node.bus as unknown as { hooks: TransportHooks }).hooks.receive(
    envelope('foreign program', push('signed'), secret),
  );
  await signed.canary.client.waitForText('signed');

  print('local', [
    ['random bytes', random],
    ['wrong shapes', shapes],
    ['bad fields', fields],
    ['forged (bus.secret set)', forged],
  ]);
  assert.equal(random.decodeErrors, random.cases);
  assert.equal(shapes.decodeErrors, shapes.cases);
  assert.equal(fields.decodeErrors, 0);
  assert.equal(fields.malformedCommands, fields.cases, 'every bad command dropped and counted');
  assert.equal(forged.signatureErrors, forged.cases);
  assert.equal(forged.decodeErrors, 0);
});

test('RabbitMQ: random bytes, wrong shapes and bad fields published raw to the exchange on keys the node holds', async (t) => {
  const prefix = uniqueName('gw-hostile-bus');
  const opened = new Opened();
  const connection = await amqp.connect(AMQP_URL);
  connection.on('error', () => undefined);
  t.after(async () => {
    await connection.close().catch(() => undefined);
    await opened.closeAll();
    await deleteExchanges(prefix);
  });
  const prng = new Prng(TEST_SEED + 20);
  const n = await canaryNode(opened, amqpValues(prefix, 'direct'));
  const bus = n.node.bus;
  const exchange = amqpOf(bus).exchange;
  const channel = await connection.createConfirmChannel();
  channel.on('error', () => undefined);
  const keys = [`n.${bus.instance}`, 'all', 'u.cuid', 'g.cgroup'];
  let published = 0;
  const target: Target = {
    ...n,
    deliver: async (bytes, p) => {
      channel.publish(exchange, p.pick(keys), bytes);
      published += 1;
    },
    // Everything published is confirmed, then consumed (the node counts what it consumed).
    settle: async () => {
      await channel.waitForConfirms();
      await waitFor(
        () => bus.stats.messagesConsumed >= consumedBefore + published,
        20_000,
        'the node consumed every hostile message',
      );
    },
  };
  const consumedBefore = bus.stats.messagesConsumed;
  // One key per message and no CC: the direct-mode receive rule runs on the bad commands too. The
  // good push goes to the node's own key, so it is applied whatever key the bad one was sent on.
  const { random, shapes, fields } = await runCommonKinds(target, prng, 1000, {
    count: 2000,
    deliver: async (bytes) => target.deliver(bytes, { pick: () => `n.${bus.instance}` } as unknown as Prng),
  });
  await assertUntouched(target);
  print('RabbitMQ direct', [
    ['random bytes', random],
    ['wrong shapes', shapes],
    ['bad fields', fields],
  ]);
  assert.equal(random.decodeErrors, random.cases);
  assert.equal(shapes.decodeErrors, shapes.cases);
  assert.equal(fields.malformedCommands, fields.cases, 'every bad command dropped and counted');
});

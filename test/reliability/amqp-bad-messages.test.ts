/**
 * Messages a node cannot use, published to its routing key with a plain amqplib channel: each is
 * logged and counted (bus.stats.decodeErrors / signatureErrors), and the node keeps serving.
 * Envelopes are built here by hand, with MessagePack and HMAC as docs/wire-format.md describes,
 * as a program in another language would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { waitFor } from '../helpers/nodes.js';
import { amqpValues, publishRaw } from '../helpers/amqp.js';
import { connectWs } from '../e2e/support.js';
import { foreignEnvelope } from '../helpers/envelopes.js';
import { amqpOf } from '../helpers/transports.js';
import { AmqpScope, envelopeFields, startNodes } from '../helpers/faults.js';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

const envelope = foreignEnvelope;

/** Records the bus's warnings (logs are silent in tests, so the logger method is wrapped). */
function spyWarnings(node: GatewireNode): { msg: string; code?: string }[] {
  const seen: { msg: string; code?: string }[] = [];
  const log = (node.bus as unknown as { log: { warn: (obj: unknown, msg?: string) => void } }).log;
  const original = log.warn.bind(log);
  log.warn = (obj: unknown, msg?: string) => {
    seen.push({ msg: String(msg), code: (obj as { code?: string }).code });
    original(obj, msg);
  };
  return seen;
}

/**
 * A scope on a fresh exchange prefix (uniqueName(`name`)), nodes A and B on it that see each other,
 * and a client of A bound to uid alice; A's bus warnings are recorded.
 */
async function pairWithAlice(
  t: { after: (fn: () => Promise<void>) => void },
  name: string,
  values: (prefix: string) => ConfigInput,
) {
  const scope = new AmqpScope(t, name);
  const [a, b] = await startNodes(scope.opened, values(scope.prefix), 2);
  const c = await connectWs(scope.opened, a);
  await a.api.bindUid(c.id, 'alice');
  return { b, c, bus: a.bus, amqp: amqpOf(a.bus), warnings: spyWarnings(a) };
}

test('direct mode: undecodable messages are logged, counted and dropped; the node keeps serving', async (t) => {
  const { b, c, bus, amqp, warnings } = await pairWithAlice(t, 'gw-amqp-bad', (prefix) => amqpValues(prefix, 'direct'));
  const nodeKey = `n.${bus.instance}`;

  const garbage: [string, Buffer][] = [
    ['random bytes (0xc1 is never MessagePack)', Buffer.from([0xc1, 0xff, 0x00, 0x13, 0x37])],
    ['empty body', Buffer.alloc(0)],
    ['MessagePack, not an envelope', packr.pack({ hello: 'world' })],
    ['envelope of an unknown version', packr.pack([2, 'someone', packr.pack([]), null])],
    ['commands field not MessagePack', packr.pack([2, 'someone', 1, 1, Date.now(), Buffer.from([0xc1]), null])],
    ['commands without a numeric op', envelope('someone', [{ c: 'x' }], null)],
  ];
  for (const [, bytes] of garbage) await publishRaw(amqp.exchange, nodeKey, bytes);
  // One more on a uid key the node holds, to show it is not only the node key.
  await publishRaw(amqp.exchange, 'u.alice', Buffer.from('not a gatewire message'));
  await waitFor(() => bus.stats.decodeErrors === garbage.length + 1, 10_000, 'every bad message counted');
  assert.equal(bus.stats.signatureErrors, 0);
  assert.equal(warnings.filter((w) => w.code === 'GW_ERR_BUS_DECODE').length, garbage.length + 1, 'each one logged');

  // The node keeps serving: pushes from the other node and from a hand-made envelope arrive.
  await b.api.sendToUid('alice', 'after the garbage');
  await c.client.waitForText('after the garbage');
  await publishRaw(
    amqp.exchange,
    'u.alice',
    envelope('foreign-program', [{ op: 14, u: ['alice'], d: 'hand-made push' }], null),
  );
  await c.client.waitForText('hand-made push');
  assert.equal(bus.stats.decodeErrors, garbage.length + 1);
});

test('fanout mode with bus.secret: unsigned and wrongly signed messages are logged, counted and dropped', async (t) => {
  const secret = 'correct horse battery staple';
  const { b, c, bus, amqp, warnings } = await pairWithAlice(t, 'gw-amqp-sig', (prefix) =>
    amqpValues(prefix, 'fanout', { secret }),
  );
  const push = (text: string): unknown[] => [{ op: 14, u: ['alice'], d: text }];

  await publishRaw(amqp.exchange, '', envelope('intruder', push('unsigned'), null));
  await publishRaw(amqp.exchange, '', envelope('intruder', push('wrong secret'), 'not the secret'));
  // Signed correctly, then altered in transit: the signature no longer matches the commands.
  const good = envelope('intruder', push('tampered'), secret);
  const [version, sender, epoch, seq, time, , signature] = envelopeFields(good);
  await publishRaw(
    amqp.exchange,
    '',
    packr.pack([version, sender, epoch, seq, time, packr.pack(push('tampered!')), signature]),
  );
  await waitFor(() => bus.stats.signatureErrors === 3, 10_000, 'the three bad signatures counted');
  assert.equal(warnings.filter((w) => w.code === 'GW_ERR_BUS_SIGNATURE').length, 3, 'each one logged');
  assert.equal(bus.stats.decodeErrors, 0);

  // A push signed with the secret by a foreign program, and one from the other node, arrive; the
  // rejected ones never did (one node applies messages in order, and these came after them).
  await publishRaw(amqp.exchange, '', envelope('foreign-program', push('signed by a foreign program'), secret));
  await c.client.waitForText('signed by a foreign program');
  await b.api.sendToUid('alice', 'from node B');
  await c.client.waitForText('from node B');
  for (const text of ['unsigned', 'wrong secret', 'tampered', 'tampered!'])
    assert.ok(!c.client.texts().includes(text), `${text} was not delivered`);
  assert.equal(bus.stats.signatureErrors, 3);
});

/**
 * Requests, request/reply over the bus, with a fake bus and fake time: a gather waits for every
 * expected node at most its timeout and names the missing ones (strict: GW_ERR_QUERY_INCOMPLETE);
 * a node the broker shows absent in two probes is missing at once and reported; a node that left
 * is no longer expected; ask() fails with GW_ERR_REMOTE, GW_ERR_REQUEST_TIMEOUT or
 * GW_ERR_NODE_UNREACHABLE; an answer too large for one message goes in parts and is joined.
 */
import { test, mock, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Requests, type AskingCommand } from '../../src/cluster/requests.js';
import type { Bus } from '../../src/transport/bus.js';
import type { Presence } from '../../src/transport/transport.js';
import { Op, type Command, type Reply } from '../../src/protocol/commands.js';
import { ErrorCodes } from '../../src/errors.js';
import { silentLog, stateOf } from '../helpers/fakes.js';

const SELF = 'aaaaaaaaaaaa';

let timeFaked = false;

const query = (q: string, a: string[] = []): AskingCommand => ({ op: Op.QUERY, q, a }) as unknown as AskingCommand;

/** Requests on a bus that records what is published and answers probes from `presence`. */
function setup(t: TestContext, options: { timeoutMs?: number; maxCommandBytes?: number } = {}) {
  if (!timeFaked) {
    timeFaked = true;
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    t.after(() => {
      timeFaked = false;
      mock.timers.reset();
    });
  }
  const published: Command[] = [];
  const presence = new Map<string, Presence>();
  const bus = {
    instance: SELF,
    maxCommandBytes: options.maxCommandBytes ?? 100000,
    publishError: null as Error | null,
    async publish(command: Command) {
      published.push(command);
      if (bus.publishError) throw bus.publishError;
    },
    async probe(node: string) {
      return presence.get(node) ?? 'present';
    },
  };
  const requests = new Requests(
    bus as unknown as Bus,
    { timeoutMs: 3000, probeDelayMs: 750, probeConfirmMs: 500, maxClockSkewMs: 1000, ...options },
    silentLog,
  );
  const answer = (from: string, r: number, v: unknown, e?: string) =>
    requests.onReply({ op: Op.REPLY, r, f: from, t: SELF, ...(e === undefined ? { v } : { e }) } as Reply);
  return { requests, bus, published, presence, answer };
}

/** Lets the promise callbacks of fake probes run. */
const settle = () => stateOf(Promise.resolve());

test('a gather resolves once every expected node answered; replies from others or repeated are ignored', async (t) => {
  const { requests, published, answer } = setup(t);
  const gathering = requests.gather(query('count'), ['n1', 'n2']);
  const sent = published[0] as { r: number; f: string };
  assert.equal(sent.f, SELF);
  answer('n1', sent.r, 1);
  answer('n1', sent.r, 99);
  answer('stranger', sent.r, 5);
  assert.equal(await stateOf(gathering), 'pending');
  answer('n2', sent.r, 2);
  const result = await gathering;
  assert.deepEqual(
    [...result.replies],
    [
      ['n1', { v: 1 }],
      ['n2', { v: 2 }],
    ],
  );
  assert.deepEqual(result.missing, []);
  assert.deepEqual(await requests.gather(query('x'), []), {
    replies: new Map(),
    missing: [],
    gone: [],
  });
});

test('at the timeout the missing nodes are named; strict rejects with GW_ERR_QUERY_INCOMPLETE', async (t) => {
  const { requests, published, answer } = setup(t);
  const loose = requests.gather(query('count'), ['n1', 'n2']);
  const strict = requests.gather(query('count'), ['n1'], { strict: true });
  answer('n1', (published[0] as { r: number }).r, 1);
  mock.timers.tick(2999);
  assert.equal(await stateOf(loose), 'pending');
  mock.timers.tick(1);
  assert.deepEqual((await loose).missing, ['n2']);
  await assert.rejects(strict, { code: ErrorCodes.QUERY_INCOMPLETE, missing: ['n1'] });
  assert.equal(requests.timeouts, 2);
  assert.equal(requests.incomplete, 2);
});

test('a node absent in two probes is missing at once and reported; a present one is waited for', async (t) => {
  const { requests, presence } = setup(t);
  const absent: string[] = [];
  requests.onAbsent = (node) => absent.push(node);
  presence.set('dead', 'absent');
  const gathering = requests.gather(query('count'), ['dead']);
  mock.timers.tick(750);
  await settle();
  assert.equal(await stateOf(gathering), 'pending'); // one probe is not enough (a reconnect)
  mock.timers.tick(500);
  await settle();
  assert.deepEqual(await gathering, { replies: new Map(), missing: ['dead'], gone: ['dead'] });
  assert.deepEqual(absent, ['dead']);

  presence.set('back', 'absent');
  const slow = requests.gather(query('count'), ['back']);
  mock.timers.tick(750);
  await settle();
  presence.set('back', 'present');
  mock.timers.tick(500);
  await settle();
  assert.equal(await stateOf(slow), 'pending');
  mock.timers.tick(1750);
  assert.deepEqual((await slow).gone, []);
});

test('a node that left is no longer expected; one taken for dead, or known gone, counts as missing', async (t) => {
  const { requests } = setup(t);
  const a = requests.gather(query('count'), ['left']);
  requests.forget('left');
  assert.deepEqual((await a).missing, []);
  const b = requests.gather(query('count'), ['silent']);
  requests.forget('silent', true);
  assert.deepEqual((await b).missing, ['silent']);
  requests.isGone = (node) => node === 'suspect';
  const c = await requests.gather(query('count'), ['suspect']);
  assert.deepEqual(c.gone, ['suspect']);
});

test('ask: the value, GW_ERR_REMOTE for an error, GW_ERR_REQUEST_TIMEOUT after the wait, a failed publish', async (t) => {
  const { requests, bus, published, answer } = setup(t);
  const asked = requests.ask({ op: Op.BIND_UID, c: 'x', u: 'u' } as AskingCommand, 'n1');
  const sent = published[0] as { r: number; dl: number };
  assert.equal(sent.dl, Date.now() + 3000); // the deadline: sent + timeout
  answer('n1', sent.r, true);
  assert.equal(await asked, true);

  const failing = requests.ask({ op: Op.BIND_UID, c: 'x', u: 'u' } as AskingCommand, 'n1');
  answer('n1', (published[1] as { r: number }).r, undefined, 'no such client');
  await assert.rejects(failing, { code: ErrorCodes.REMOTE, message: /no such client/ });

  // a command with a deadline waits timeout + skew + half a timeout
  assert.equal(requests.askWaitMs, 3000 + 1000 + 1500);
  const silent = requests.ask({ op: Op.BIND_UID, c: 'x', u: 'u' } as AskingCommand, 'n1');
  mock.timers.tick(5499);
  assert.equal(await stateOf(silent), 'pending');
  mock.timers.tick(1);
  await assert.rejects(silent, { code: ErrorCodes.REQUEST_TIMEOUT });

  bus.publishError = new Error('bus down');
  await assert.rejects(requests.ask(query('client', ['x']), 'n1'), /bus down/);
});

test('ask: a node shown gone fails with GW_ERR_NODE_UNREACHABLE only once the deadline (+ skew) has passed', async (t) => {
  const { requests } = setup(t);
  const asked = requests.ask({ op: Op.BIND_UID, c: 'x', u: 'u' } as AskingCommand, 'n1');
  requests.forget('n1', true);
  assert.equal(await stateOf(asked), 'pending');
  mock.timers.tick(3999);
  assert.equal(await stateOf(asked), 'pending');
  mock.timers.tick(1);
  await assert.rejects(asked, { code: ErrorCodes.NODE_UNREACHABLE });
});

test('an answer too large for one message goes in parts that the asker joins; one that cannot be cut is an error', async (t) => {
  const asker = setup(t);
  const owner = setup(t, { maxCommandBytes: 600 });
  const list = Array.from({ length: 50 }, (_, i) => `client-${i}`);
  const gathering = asker.requests.gather(query('list'), ['owner']);
  const request = asker.published[0] as { r: number; f: string };
  owner.requests.reply(request, list);
  assert.ok(owner.published.length > 1);
  for (const part of owner.published) asker.requests.onReply({ ...(part as Reply), f: 'owner' });
  assert.deepEqual((await gathering).replies.get('owner'), { v: list });

  owner.requests.reply(request, 'x'.repeat(1000));
  assert.match(String((owner.published.at(-1) as { e?: string }).e), /too large/);
  owner.requests.reply({ r: 1 }, 'no asker'); // without f: nothing sent
  assert.equal((owner.published.at(-1) as { v?: unknown }).v, undefined);
});

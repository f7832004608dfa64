/**
 * CommandDispatcher with a fake bus, membership, requests and gateway: replies go to requests
 * when addressed here, announcements and leaves count only from their own sender, queries are
 * answered by the node they are for, per-client commands are the owner's alone and dropped past
 * their deadline (the asker told), sends are pushed synchronously, and a command that throws is
 * counted without stopping the rest of its message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { CommandDispatcher, type CommandTarget } from '../../src/cluster/command-dispatcher.js';
import type { Bus } from '../../src/transport/bus.js';
import type { Membership } from '../../src/cluster/membership.js';
import type { Requests } from '../../src/cluster/requests.js';
import { Op, type Command } from '../../src/protocol/commands.js';
import { silentLog } from '../helpers/fakes.js';

const SELF = 'aaaaaaaaaaaa';
const PEER = 'bbbbbbbbbbbb';
const MINE = `${SELF}1`;
const THEIRS = `${PEER}1`;

function setup(withGateway = true) {
  const log: string[] = [];
  let handler: (commands: Command[], sender: string) => void = () => undefined;
  const bus = { instance: SELF, onCommands: (h: typeof handler) => (handler = h) };
  const membership = Object.assign(new EventEmitter(), {
    onAnnounce: (n: { i: string }) => log.push(`announce ${n.i}`),
    onLeave: (i: string) => log.push(`leave ${i}`),
    suspect: (i: string) => log.push(`suspect ${i}`),
    isSuspect: (i: string) => i === 'gone',
  });
  const requests = {
    expired: 0,
    onAbsent: null as ((instance: string) => void) | null,
    isGone: null as ((instance: string) => boolean) | null,
    onReply: (reply: { r: number }) => log.push(`reply-in ${reply.r}`),
    forget: (node: string, silent: boolean) => log.push(`forget ${node} ${silent}`),
    reply: (request: { r?: number }, value: unknown, error?: string) =>
      log.push(`reply ${request.r} ${JSON.stringify(value)}${error === undefined ? '' : ` ${error}`}`),
  };
  /** apply: a session write resolves to 7, a join fails, anything else resolves with nothing */
  const gateway: CommandTarget = {
    owns: (id) => id.startsWith(SELF),
    push: (cmd, sender) => {
      if (cmd.d === 'throw') throw new Error('bad payload');
      log.push(`push ${cmd.op} ${String(cmd.d)} from ${sender}`);
    },
    apply: async (cmd) => {
      log.push(`apply ${cmd.op}`);
      if (cmd.op === Op.JOIN_GROUP) throw new Error('no such client');
      return cmd.op === Op.SET_SESSION ? 7 : undefined;
    },
    answer: (query) => `answer to ${query.q}`,
  };
  const dispatcher = new CommandDispatcher(
    bus as unknown as Bus,
    withGateway ? gateway : null,
    membership as unknown as Membership,
    requests as unknown as Requests,
    silentLog,
  );
  dispatcher.attach();
  const arrive = async (sender: string, ...commands: unknown[]) => {
    handler(commands as Command[], sender);
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { log, dispatcher, membership, requests, arrive };
}

test('replies addressed here go to requests; announcements and leaves count only from their own sender', async () => {
  const { log, arrive } = setup();
  await arrive(
    PEER,
    { op: Op.REPLY, r: 1, f: PEER, t: SELF },
    { op: Op.REPLY, r: 2, f: PEER, t: 'cccccccccccc' },
    { op: Op.ANNOUNCE, n: { i: PEER } },
    { op: Op.ANNOUNCE, n: { i: 'cccccccccccc' } },
    { op: Op.LEAVE, i: 'cccccccccccc' },
    { op: Op.LEAVE, i: PEER },
  );
  assert.deepEqual(log, ['reply-in 1', `announce ${PEER}`, `leave ${PEER}`]);
});

test('membership and requests are wired together: a leave forgets, an absent node is suspected', () => {
  const { log, membership, requests } = setup();
  membership.emit('leave', PEER, 'left');
  membership.emit('leave', 'dddddddddddd', 'silent');
  requests.onAbsent!(PEER);
  assert.equal(requests.isGone!('gone'), true);
  assert.deepEqual(log, [`forget ${PEER} false`, 'forget dddddddddddd true', `suspect ${PEER}`]);
});

test('queries are answered by the node they are for, a client query by its owner only', async () => {
  const { log, arrive } = setup();
  await arrive(
    PEER,
    { op: Op.QUERY, q: 'count', a: [], r: 1, f: PEER },
    { op: Op.QUERY, q: 'count', a: [], r: 2, f: PEER, t: 'cccccccccccc' },
    { op: Op.QUERY, q: 'client', a: [THEIRS], r: 3, f: PEER },
    { op: Op.QUERY, q: 'client', a: [MINE], r: 4, f: PEER, t: SELF },
  );
  assert.deepEqual(log, ['reply 1 "answer to count"', 'reply 4 "answer to client"']);
});

test("per-client commands are the owner's alone; the result or the error goes back to the asker", async () => {
  const { log, arrive } = setup();
  await arrive(
    PEER,
    { op: Op.BIND_UID, c: THEIRS, u: 'x', r: 1, f: PEER },
    { op: Op.SET_SESSION, c: MINE, s: {}, r: 2, f: PEER },
    { op: Op.BIND_UID, c: MINE, u: 'x', r: 3, f: PEER },
    { op: Op.JOIN_GROUP, c: MINE, g: 'g', r: 4, f: PEER },
    { op: Op.CLOSE_CLIENT, c: MINE },
  );
  assert.deepEqual(log, [
    `apply ${Op.SET_SESSION}`,
    `apply ${Op.BIND_UID}`,
    `apply ${Op.JOIN_GROUP}`,
    `apply ${Op.CLOSE_CLIENT}`,
    'reply 2 7',
    'reply 3 true',
    'reply 4 null no such client',
  ]);
});

test('a per-client command past its deadline is dropped, counted, and the asker told', async () => {
  const { log, arrive, requests } = setup();
  await arrive(
    PEER,
    { op: Op.BIND_UID, c: MINE, u: 'x', r: 1, f: PEER, dl: Date.now() - 1 },
    { op: Op.UNBIND_UID, c: MINE, dl: Date.now() - 1 },
    { op: Op.BIND_UID, c: MINE, u: 'x', r: 2, f: PEER, dl: Date.now() + 60000 },
  );
  assert.equal(requests.expired, 2);
  assert.deepEqual(log, ['reply 1 null expired: arrived past its deadline', `apply ${Op.BIND_UID}`, 'reply 2 true']);
});

test('sends are pushed at once with their sender; one that throws is counted and the rest still run', async () => {
  const { log, dispatcher, arrive } = setup();
  await arrive(
    PEER,
    { op: Op.SEND_TO_ALL, d: '1' },
    { op: Op.SEND_TO_UIDS, u: ['a'], d: 'throw' },
    { op: Op.SEND_TO_GROUPS, g: ['g'], d: '2' },
  );
  assert.deepEqual(log, [`push ${Op.SEND_TO_ALL} 1 from ${PEER}`, `push ${Op.SEND_TO_GROUPS} 2 from ${PEER}`]);
  assert.equal(dispatcher.malformed, 1);
});

test('a node without a gateway (a publisher) ignores gateway commands', async () => {
  const { log, arrive } = setup(false);
  await arrive(
    PEER,
    { op: Op.SEND_TO_ALL, d: '1' },
    { op: Op.QUERY, q: 'count', a: [], r: 1, f: PEER },
    { op: Op.SET_SESSION, c: MINE, s: {}, r: 2, f: PEER },
    { op: Op.UNGROUP, g: 'g' },
  );
  assert.deepEqual(log, []);
});

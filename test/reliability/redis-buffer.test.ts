/**
 * Redis unreachable: commands wait in the bounded buffer (bus.maxBufferedCommands), the call past
 * the bound rejects with GW_ERR_BUS_BUFFER_FULL, and what was accepted goes out, in order, once
 * Redis is back. The outage is made for one node only, with a TCP relay in front of the real
 * Redis that the test takes down and brings back.
 */
import { after, test } from 'node:test';
import { createHook } from 'node:async_hooks';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Op, type Command } from '../../src/protocol/commands.js';
import { redisBus } from '../helpers/transports.js';
import { createInstanceId } from '../../src/protocol/identity.js';
import { ErrorCodes } from '../../src/errors.js';
import { uniqueName, waitFor } from '../helpers/nodes.js';
import { closedPort } from './redis-support.js';
import { RedisScope } from '../helpers/faults.js';

const BOUND = 50;

test('redis down for one node: pushes wait up to bus.maxBufferedCommands, the next rejects, the waiting ones arrive in order after the reconnect', async (t) => {
  const scope = new RedisScope(t, 'gwbuf');
  const pair = await scope.relayedPair({ maxBufferedCommands: BOUND });
  const { relay, relayed: sender, direct: holder, onDirect: remote, onRelayed: local } = pair;
  await holder.api.bindUid(remote.id, 'far');
  await holder.api.bindUid(local.id, 'near');

  await relay.stop();
  await waitFor(() => !sender.bus.isConnected, 5000, 'the sender to notice Redis is gone');

  // Announcements of the sender may already wait too: they count against the same bound.
  const room = BOUND - sender.bus.stats.buffered;
  assert.ok(room > 0 && room <= BOUND);
  let settledWhileDown = 0;
  const waiting = Array.from({ length: room }, (_, i) => {
    const p = sender.api.sendToUid('far', `m${i}`);
    p.then(
      () => void (settledWhileDown += 1),
      () => void (settledWhileDown += 1),
    );
    return p;
  });
  assert.equal(sender.bus.stats.buffered, BOUND);
  await assert.rejects(sender.api.sendToUid('far', 'one too many'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, ErrorCodes.BUS_BUFFER_FULL);
    assert.match(err.message, /bus\.maxBufferedCommands/);
    return true;
  });
  // Nothing could go out while Redis was unreachable.
  assert.equal(settledWhileDown, 0);

  await relay.start();
  await Promise.all(waiting);
  const expected = Array.from({ length: room }, (_, i) => `m${i}`);
  await remote.client.until(() => remote.client.texts().length === room + 1, 10000, `${room} buffered pushes`);
  assert.deepEqual(remote.client.texts().slice(1), expected);
  assert.ok(!remote.client.texts().includes('one too many'));
  assert.ok(sender.bus.stats.reconnects >= 1);

  // The sender resubscribed: its own client's uid is reachable from the other node again.
  await holder.api.sendToUid('near', 'back');
  await local.client.waitForText('back');
});

test('redis never reachable: start waits, the buffer is bounded, close rejects what waits and leaves no timer behind', async () => {
  // Timers made during this test only (timers other tests left may run out meanwhile), also
  // unref'd ones, which process.getActiveResourcesInfo() does not list.
  const timers = new Set<number>();
  const hook = createHook({
    init(id, type) {
      if (type === 'Timeout') timers.add(id);
    },
    destroy(id) {
      timers.delete(id);
    },
  }).enable();
  after(() => hook.disable());
  const port = await closedPort();
  const bus = redisBus(
    {
      instance: createInstanceId(),
      mode: 'direct',
      secret: '',
      uidBuckets: 0,
      groupBuckets: 0,
      maxBufferedCommands: 5,
      maxCommandsPerMessage: 500,
    },
    pino({ level: 'silent' }),
    { url: `redis://127.0.0.1:${port}`, prefix: uniqueName('gwbuf') },
  );
  const started = bus.start();
  started.catch(() => undefined);
  const command: Command = { op: Op.SEND_TO_UIDS, u: ['nobody'], d: 'x' };
  const waiting = Array.from({ length: 5 }, () => bus.publish(command));
  for (const p of waiting) p.catch(() => undefined);
  await assert.rejects(bus.publish(command), { code: ErrorCodes.BUS_BUFFER_FULL });
  assert.equal(bus.isConnected, false);

  await bus.close();
  for (const p of waiting) await assert.rejects(p, { code: ErrorCodes.BUS_CLOSED });
  await assert.rejects(started, { code: ErrorCodes.BUS_CLOSED });
  await assert.rejects(bus.publish(command), { code: ErrorCodes.BUS_CLOSED });
  // No reconnect timer, no retry timer, no liveness timer: the process could exit now. A cleared
  // timer is destroyed on the next turn.
  await new Promise((resolve) => setImmediate(resolve));
  hook.disable();
  assert.equal(timers.size, 0, `${timers.size} timer(s) left behind`);
});

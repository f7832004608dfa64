/**
 * The bounded buffer of the AMQP bus while the broker is unreachable: commands wait, up to
 * bus.maxBufferedCommands; past it the API rejects with GW_ERR_BUS_BUFFER_FULL; what waited goes
 * out after the reconnect, in order. Closing while unreachable rejects what waits with
 * GW_ERR_BUS_CLOSED and leaves nothing running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startNode, testConfig, uniqueName, waitFor, waitForMembership } from '../helpers/nodes.js';
import { amqpValues } from '../helpers/amqp.js';
import { connectWs, idHandler } from '../e2e/support.js';
import { createPublisher } from '../../src/publisher.js';
import { amqpBus } from '../helpers/transports.js';
import { AmqpScope, collectingLogger, type LogLine } from '../helpers/faults.js';
import { Op } from '../../src/protocol/commands.js';
import { ErrorCodes } from '../../src/errors.js';

const LIMIT = 50;

test('a publisher cut off from the broker buffers up to bus.maxBufferedCommands, rejects past it, and sends what waited after the reconnect', async (t) => {
  const scope = new AmqpScope(t, 'gw-amqp-buffer');
  const proxy = await scope.startProxy();
  const a = scope.node(await startNode(amqpValues(scope.prefix, 'direct'), { handler: idHandler() }));
  const c = await connectWs(scope.opened, a);
  await a.api.bindUid(c.id, 'alice');
  const publisher = scope.publisher(
    await createPublisher(
      testConfig(amqpValues(scope.prefix, 'direct', { maxBufferedCommands: LIMIT, amqp: { url: proxy.url } })),
    ),
  );
  await waitForMembership([a], 1);
  await publisher.waitForGateways(1);
  await publisher.api.sendToUid('alice', 'before the cut');
  await c.client.waitForText('before the cut');

  await proxy.cut();
  await waitFor(() => !publisher.bus.isConnected, 10_000, 'the publisher noticed the broker is gone');
  const waiting: Promise<void>[] = [];
  for (let i = 0; i < LIMIT; i++) waiting.push(publisher.api.sendToUid('alice', `waited ${i}`));
  await assert.rejects(publisher.api.sendToUid('alice', 'one too many'), (err: { code?: string }) => {
    assert.equal(err.code, ErrorCodes.BUS_BUFFER_FULL);
    return true;
  });
  await assert.rejects(publisher.api.sendToGroup('room', 'also too many'), { code: ErrorCodes.BUS_BUFFER_FULL });
  assert.equal(publisher.bus.stats.buffered, LIMIT);
  const cutFor = c.client.texts().length;

  await proxy.restore();
  await Promise.all(waiting);
  const expected = Array.from({ length: LIMIT }, (_, i) => `waited ${i}`);
  await c.client.until(() => c.client.texts().length >= cutFor + LIMIT, 10_000, 'the waited pushes');
  assert.deepEqual(
    c.client.texts().slice(cutFor),
    expected,
    'every waited push arrived once, in order; the rejected ones never',
  );
  assert.equal(publisher.bus.stats.reconnects, 1);
  console.log(
    `[amqp buffer] broker cut for the publisher; ${LIMIT} pushes waited and arrived after the reconnect, 2 past the bound were rejected with ${ErrorCodes.BUS_BUFFER_FULL}`,
  );
});

test('a bus pointed at a closed port: start keeps retrying, the buffer is bounded, close rejects what waits and stops', async () => {
  // A port nothing listens on: a free one, closed again.
  const port = await freePort();
  // The retries are logged (warn, then error): their lines tell how many attempts were made.
  const lines: LogLine[] = [];

  const bus = amqpBus(
    {
      instance: 'closedport01',
      mode: 'direct',
      secret: '',
      uidBuckets: 0,
      groupBuckets: 0,
      maxBufferedCommands: 3,
      maxCommandsPerMessage: 500,
    },
    collectingLogger(lines),
    {
      url: `amqp://guest:guest@127.0.0.1:${port}`,
      exchange: uniqueName('gw-amqp-closed'),
      prefetch: 10,
      backoff: { initialMs: 10, maxMs: 50 },
    },
  );
  const started = bus.start();
  started.catch(() => undefined);
  const waiting = [1, 2, 3].map((i) => bus.publish({ op: Op.SEND_TO_ALL, d: `w${i}` }));
  for (const p of waiting) p.catch(() => undefined);
  await assert.rejects(bus.publish({ op: Op.SEND_TO_ALL, d: 'w4' }), { code: ErrorCodes.BUS_BUFFER_FULL });
  // Retries go on (several attempts at 10..50 ms) without connecting.
  await waitFor(() => lines.filter((l) => typeof l.attempt === 'number').length >= 3, 5000, 'three retries');
  assert.equal(bus.isConnected, false);

  await bus.close();
  await assert.rejects(started, { code: ErrorCodes.BUS_CLOSED });
  for (const p of waiting) await assert.rejects(p, { code: ErrorCodes.BUS_CLOSED });
  await assert.rejects(bus.publish({ op: Op.SEND_TO_ALL, d: 'after close' }), { code: ErrorCodes.BUS_CLOSED });
  // Nothing of the bus is left running: the test process exits on its own (no timers, sockets).
});

test('a node stops at once while the broker is unreachable: what waits is rejected, nothing hangs', async (t) => {
  const scope = new AmqpScope(t, 'gw-amqp-stop');
  const proxy = await scope.startProxy();
  // Stopped by the scope too when the test failed early, so nothing declares anything after the cleanup.
  const node = scope.node(
    await startNode(amqpValues(scope.prefix, 'direct', { amqp: { url: proxy.url } }), { handler: idHandler() }),
  );
  await proxy.cut();
  await waitFor(() => !node.bus.isConnected, 10_000, 'the node noticed the broker is gone');
  const waiting = node.api.sendToAll('never sent');
  waiting.catch(() => undefined);
  await node.stop(); // before the fix, this waited for the broker to come back
  await assert.rejects(waiting, { code: ErrorCodes.BUS_CLOSED });
  assert.equal(node.running, false);
});

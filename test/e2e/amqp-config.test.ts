/**
 * Choosing and naming the AMQP bus: bus.kind=amqp gives an AmqpTransport (the one DI switch), its
 * connection carries the instance in its name, both modes' exchanges live side by side under one
 * prefix, and an exchange of another type under the mode's name fails the start with a clear
 * error instead of retrying forever.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import { AMQP_URL, startNode, uniqueName, waitForMembership } from '../helpers/nodes.js';
import { amqpValues, connectionPids, cleanupAmqp, rabbitmqctl } from '../helpers/amqp.js';
import { amqpFixture, connectEach, inbox, startNodes } from '../helpers/fixtures.js';
import { amqpOf } from '../helpers/transports.js';
import { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js';
import { ErrorCodes } from '../../src/errors.js';

test('bus.kind=amqp: an AmqpTransport per node, its connection named after the instance; fanout and direct exchanges coexist under one prefix', async (t) => {
  const { opened, prefix } = amqpFixture(t, 'gw-amqp-config');
  const [fanout] = await startNodes(opened, 1, amqpValues(prefix, 'fanout'));
  const [direct] = await startNodes(opened, 1, amqpValues(prefix, 'direct'));
  const [fanout2] = await startNodes(opened, 1, amqpValues(prefix, 'fanout'));
  assert.ok(fanout!.bus.transport instanceof AmqpTransport && direct!.bus.transport instanceof AmqpTransport);
  const name = amqpOf(fanout!.bus).connectionName;
  assert.ok(name.includes(fanout!.bus.instance));
  assert.equal((await connectionPids([name])).length, 1, 'one broker connection with that name');

  const exchanges = (await rabbitmqctl('--no-table-headers', 'list_exchanges', 'name', 'type', 'durable'))
    .split('\n')
    .filter((line) => line.startsWith(`${prefix}.`))
    .sort();
  assert.deepEqual(exchanges, [`${prefix}.direct\tdirect\ttrue`, `${prefix}.fanout\tfanout\ttrue`]);

  // The two fanout nodes form one cluster; the direct node is on its own exchange.
  await waitForMembership([fanout!, fanout2!], 2);
  assert.deepEqual(direct!.membership.gateways(), [direct!.bus.instance]);
  const [c] = await connectEach(opened, fanout2!, ['ws']);
  await fanout!.api.sendToAll('fanout to all');
  await direct!.api.sendToAll('direct to all');
  assert.deepEqual((await inbox(fanout!, c))[0], ['fanout to all']);
});

test("an exchange of another type under the mode's name fails the start with GW_ERR_BUS_BROKER", async (t) => {
  const prefix = uniqueName('gw-amqp-clash');
  t.after(() => cleanupAmqp(prefix));
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(`${prefix}.direct`, 'topic', { durable: true });
  await connection.close();
  await assert.rejects(startNode(amqpValues(prefix, 'direct')), (err: { code?: string; message?: string }) => {
    assert.equal(err.code, ErrorCodes.BUS_BROKER);
    assert.match(String(err.message), /PRECONDITION_FAILED/);
    return true;
  });
});

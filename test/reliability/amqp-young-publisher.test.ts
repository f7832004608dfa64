/**
 * A publisher that loses the broker before it has heard any node (created moments before a
 * broker restart, before the nodes' next ANNOUNCE) holds what it buffered during the outage until
 * a node announces itself on the new connection, instead of flushing it into an exchange whose
 * nodes have not re-bound their keys yet (peer-barrier.ts). The node is frozen (SIGSTOP) over the
 * restart so that the publisher is certainly back first; without the wait, the push is lost.
 *
 * The broker is a private RabbitMQ node started for this test (helpers/private-broker.ts) and
 * stopped after it: the shared broker is never stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildNode } from '../helpers/child-node.js';
import { WsTestClient } from '../helpers/clients.js';
import { sleep, uniqueName, waitFor } from '../helpers/nodes.js';
import { amqpValues } from '../helpers/amqp.js';
import { PrivateRabbit } from '../helpers/private-broker.js';
import { FaultScope } from '../helpers/faults.js';
import { createPublisher } from '../../src/publisher.js';
import { testConfig, mergeValues } from '../helpers/nodes.js';

test('a publisher that knew no node yet holds what it buffered over a broker restart until a node is back', async (t) => {
  const broker = await PrivateRabbit.start();
  const scope = new FaultScope(t);
  scope.first(async () => {
    if (broker.running) await broker.startApp().catch(() => undefined);
  });
  scope.last(() => broker.stop());
  // Announcements every 5 s: the publisher, created right after the node's first one, hears none
  // before the broker goes. nodeTimeout 15 s: the barrier waits at most 20 s, learnMs is 10 s.
  const values = mergeValues(amqpValues(uniqueName('gw-young-pub'), 'direct', { amqp: { url: broker.url } }), {
    cluster: { announceInterval: 5000, nodeTimeout: 15000 },
  });
  const node = await ChildNode.start({ values: mergeValues(values, { gateway: { listen: ['ws://127.0.0.1:0/ws'] } }) });
  scope.last(() => node.kill());
  const client = await WsTestClient.connect(node.url('ws'));
  scope.last(() => client.ws.terminate());
  const clientId = (await client.nextText()).slice('id:'.length);
  await node.api('bindUid', clientId, 'u1');

  const publisher = await createPublisher(testConfig(values));
  scope.first(() => publisher.close());
  assert.equal(publisher.membership.gateways().length, 0, 'the publisher has not heard the node yet');
  await publisher.api.sendToUid('u1', 'before');
  await client.waitForText('before');

  await broker.stopApp();
  await waitFor(() => !publisher.bus.isConnected, 10_000, 'the publisher saw the broker go');
  const during = publisher.api.sendToUid('u1', 'during');
  during.catch(() => undefined);
  node.signal('SIGSTOP');
  let frozen = true;
  scope.first(() => {
    if (frozen) node.signal('SIGCONT');
  });
  await broker.startApp();
  // The publisher reconnects within about 0.5 s; the node, frozen, cannot.
  await sleep(2000);
  assert.ok(!client.texts().includes('during'), 'nothing arrived while the node was frozen');
  node.signal('SIGCONT');
  frozen = false;
  await client.waitForText('during', 25_000);
  await during;
  assert.deepEqual(client.texts().slice(1), ['before', 'during'], 'each push once, in order');
});

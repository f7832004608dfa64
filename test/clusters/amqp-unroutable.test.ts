/**
 * Mandatory publishing on the shared RabbitMQ (no cluster needed): a message for a node key no
 * queue has bound comes back from the broker and is counted in gatewire_bus_unroutable_total
 * {kind="node"} on /metrics; one for a uid key nobody holds is not mandatory and not counted;
 * the node's own broadcast traffic is never returned while it is bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupAmqp } from '../helpers/amqp.js';
import { startNode, uniqueName, waitFor } from '../helpers/nodes.js';
import { httpGet } from '../helpers/http.js';
import type { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js';
import type { OutgoingBatch } from '../../src/transport/transport.js';

/** A batch for `keys` whose envelope is a few bytes nobody will decode (no queue gets it). */
function batch(keys: string[]): OutgoingBatch {
  const seal = (): Buffer => Buffer.from('unroutable');
  return { keys, commands: [], seal, sealer: () => seal } as unknown as OutgoingBatch;
}

test('a node-key message no queue takes is returned and counted; a uid-key one is not', async (t) => {
  const exchange = uniqueName('gwunroutable');
  const node = await startNode({
    bus: { kind: 'amqp', mode: 'direct', amqp: { exchange } },
    admin: { listen: '127.0.0.1:0' },
  });
  t.after(async () => {
    await node.stop();
    await cleanupAmqp(exchange);
  });
  const transport = node.bus.transport as AmqpTransport;
  assert.equal(transport.queueType, 'classic', 'one URL: classic queues');
  const unroutable = transport.amqpStats.unroutable;
  assert.deepEqual(unroutable, { node: 0, broadcast: 0, fanout: 0 });

  // Confirmed either way (a returned message is confirmed after its return).
  await transport.transmitAll([batch(['u.nobody-holds-this'])]);
  await transport.transmitAll([batch(['n.no-such-node'])]);
  await transport.transmitAll([batch(['g.nobody', 'n.no-such-node-either'])]);
  await waitFor(() => unroutable.node === 2, 5000, 'both node-key messages returned');
  assert.equal(unroutable.broadcast, 0, 'the broadcast key is bound by the node itself');

  const metrics = (await httpGet(`http://127.0.0.1:${node.adminPort}/metrics`)).body;
  assert.match(metrics, /gatewire_bus_unroutable_total\{kind="node",node="[^"]+"\} 2\n/);
  assert.doesNotMatch(metrics, /gatewire_bus_unroutable_total\{kind="broadcast"[^}]*\} [1-9]/);
});

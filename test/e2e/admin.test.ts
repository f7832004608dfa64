import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, wsUrl } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
import { httpGet } from '../helpers/http.js';

test('admin server: /metrics shows the named metrics, /healthz is alive, /readyz follows the bus', async (t) => {
  const node = await startNode(
    { admin: { listen: '127.0.0.1:0' } },
    {
      handler: {
        async onMessage(clientId, message, { gateway }) {
          await gateway.sendToClient(clientId, `echo ${String(message)}`);
        },
      },
    },
  );
  t.after(() => node.stop());
  const base = `http://127.0.0.1:${node.adminPort}`;
  const client = await WsTestClient.connect(wsUrl(node));
  client.send('ping');
  await client.waitForText('echo ping');
  await node.api.getAllClientCount();

  const metrics = (await httpGet(`${base}/metrics`)).body;
  for (const name of [
    'gatewire_connections{',
    'gatewire_messages_in_total',
    'gatewire_messages_out_total',
    'gatewire_bus_messages_published_total',
    'gatewire_bus_commands_consumed_total',
    'gatewire_bus_commands_per_message',
    'gatewire_bus_reconnects_total',
    'gatewire_drops_total',
    'gatewire_query_duration_seconds_bucket',
    'gatewire_membership_size{',
    'gatewire_process_resident_memory_bytes',
  ]) {
    assert.ok(metrics.includes(name), `metrics include ${name}`);
  }
  assert.match(metrics, /gatewire_messages_in_total\{node="[^"]+"\} 1\n/);
  assert.match(metrics, /gatewire_connections\{node="[^"]+"\} 1\n/);
  assert.match(metrics, /gatewire_membership_size\{node="[^"]+"\} 1\n/);
  assert.equal((await httpGet(`${base}/healthz`)).status, 200);
  assert.equal((await httpGet(`${base}/readyz`)).status, 200);
  client.close();
});

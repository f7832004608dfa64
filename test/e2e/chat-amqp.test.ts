/**
 * The chat example as README shows it on RabbitMQ: two `gatewire start` processes with
 * GATEWIRE_BUS__KIND=amqp GATEWIRE_BUS__MODE=direct on different ports carry a chat between
 * their clients.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, uniqueName } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';
import { killAll, runCli } from '../helpers/processes.js';
import { cleanupAmqp } from '../helpers/amqp.js';
import { amqpCliEnv } from '../helpers/fixtures.js';

test('two chat processes on RabbitMQ direct mode carry a chat between their clients', { timeout: 60000 }, async (t) => {
  const exchange = uniqueName('chat');
  t.after(async () => {
    killAll();
    await cleanupAmqp(exchange);
  });
  const env = amqpCliEnv(exchange);
  const ports = [await freePort(), await freePort()];
  const nodes = ports.map((port) =>
    runCli(['start', '--config', 'examples/chat/config.json', '--pid-file', ''], {
      ...env,
      GATEWIRE_GATEWAY__LISTEN: `ws://127.0.0.1:${port}/ws`,
    }),
  );
  for (const node of nodes) await node.waitForOutput('listening on');

  const a = await WsTestClient.connect(`ws://127.0.0.1:${ports[0]}/ws`);
  const idA = (await a.nextText()).replace(/^Hello /, '');
  await a.waitForText(`${idA} login`);
  const b = await WsTestClient.connect(`ws://127.0.0.1:${ports[1]}/ws`);
  const idB = (await b.nextText()).replace(/^Hello /, '');
  assert.notEqual(idA.slice(0, 12), idB.slice(0, 12), 'the clients are on different nodes');
  await a.waitForText(`${idB} login`);
  await b.waitForText(`${idB} login`);

  a.send('hello from the first node');
  await a.waitForText(`${idA} said hello from the first node`);
  await b.waitForText(`${idA} said hello from the first node`);
  b.send('and back from the second');
  await a.waitForText(`${idB} said and back from the second`);
  b.close();
  await a.waitForText(`${idB} logout`);
  a.close();
  for (const node of nodes) node.child.kill('SIGTERM');
  for (const node of nodes) assert.equal(await node.exited, 0, 'SIGTERM stops the node cleanly');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import chat from '../../examples/chat/handler.js';
import { startNode, wsUrl } from '../helpers/nodes.js';
import { WsTestClient } from '../helpers/clients.js';

test('chat example: greeting, login, said and logout reach the right clients', async (t) => {
  const node = await startNode({}, { handler: chat });
  t.after(() => node.stop());
  const a = await WsTestClient.connect(wsUrl(node));
  const helloA = await a.nextText();
  const idA = helloA.replace(/^Hello /, '');
  assert.match(idA, /^[0-9a-z]{13,32}$/);
  assert.equal(await a.nextText(), `${idA} login`);

  const b = await WsTestClient.connect(wsUrl(node));
  const idB = (await b.nextText()).replace(/^Hello /, '');
  assert.notEqual(idA, idB);
  assert.equal(await b.nextText(), `${idB} login`);
  assert.equal(await a.nextText(), `${idB} login`);

  a.send('hello everyone');
  assert.equal(await a.nextText(), `${idA} said hello everyone`);
  assert.equal(await b.nextText(), `${idA} said hello everyone`);

  b.close();
  assert.equal(await a.nextText(), `${idB} logout`);
  a.close();
});

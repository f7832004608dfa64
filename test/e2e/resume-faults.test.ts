/**
 * Resumable sessions when they cannot (or must not) be resumed, and pushes to a previous
 * clientId:
 *   - the window passed: onClose for the old clientId, the client's next 'open' has
 *     resumed: false (reason 'expired') and onConnect runs for its new clientId;
 *   - the kept pushes passed gateway.resumeBufferSize while the client was away: the session
 *     ends at once (onClose), having kept at most resumeBufferSize bytes;
 *   - a stolen token (another identity), a made-up token, a token already replaced and
 *     acknowledged: refused, and the victim's session goes on untouched;
 *   - after a resume at another node, pushes to the previous clientId are forwarded to the client.
 *
 * Note (a known limit, not asserted here): a push to the previous clientId is forwarded by the
 * old gateway, so it can arrive after pushes the same publisher sent later to the client's uid or
 * groups (seen with amqp direct and redis direct: 523,525,526,527,529,530,524,528,531 where 524
 * and 528 went to the old clientId). resume.test.ts addresses the new clientId once it is known.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';
import type { Authorizer } from '../../src/gateway/listener.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import { cleanupBus } from '../helpers/cleanup.js';
import { openFor } from '../helpers/fixtures.js';
import { startNode, testConfig, uniqueName, waitFor, waitForMembership, wsUrl } from '../helpers/nodes.js';
import { checkStream, GatewayProxy, rawHello, Recorder, TestClient } from '../helpers/resume.js';

function port(node: GatewireNode): number {
  return Number(new URL(wsUrl(node)).port);
}

/** Identity from ?user=… (none without it). */
const byUser: Authorizer = ({ query }) => (typeof query?.user === 'string' ? { identity: query.user } : true);

interface Setup {
  recorder: Recorder;
  nodes: GatewireNode[];
  proxy: GatewayProxy;
  publisher: Publisher;
  /** raw sockets closed (1000) after the test, before the nodes stop */
  raws: WebSocket[];
  /** a library client through the proxy (to the first node), bound to `uid` */
  connect(query?: string): Promise<{ client: TestClient; id: string; uid: string }>;
}

async function setup(t: TestContext, count: number, gateway: ConfigInput['gateway']): Promise<Setup> {
  const values: ConfigInput = {
    bus: { kind: 'local' },
    gateway: { pingInterval: 0, ...gateway },
    // a stop does not wait long for sessions to move away
    node: { shutdownTimeout: 3000 },
  };
  const recorder = new Recorder();
  const clients: TestClient[] = [];
  const raws: WebSocket[] = [];
  const proxy = new GatewayProxy([]);
  let publisher: Publisher | null = null;
  t.after(async () => {
    for (const c of clients) c.close();
    for (const ws of raws) ws.close(1000);
    // the close frames pass before the proxy goes (a dropped link would keep the sessions)
    await waitFor(() => proxy.flowing === 0, 2000, 'the clients closed').catch(() => undefined);
    await proxy.close();
  });
  const opened = openFor(
    t,
    () => publisher?.close(),
    () => cleanupBus(values),
  );
  const nodes: GatewireNode[] = [];
  for (let i = 0; i < count; i++)
    nodes.push(opened.node(await startNode(values, { handler: recorder.handler, authorize: byUser })));
  if (count > 1) await waitForMembership(nodes, count);
  publisher = await createPublisher(testConfig(values));
  proxy.retarget(port(nodes[0]!));
  await proxy.start();
  const connect = async (query = '') => {
    const uid = uniqueName('user');
    const client = new TestClient(`${proxy.url}?uid=${uid}${query}`);
    clients.push(client);
    await client.opened(1);
    const id = client.clientId;
    await waitFor(async () => (await nodes[0]!.api.getUidByClientId(id)) === uid, 5000, 'uid bound');
    return { client, id, uid };
  };
  return { recorder, nodes, proxy, publisher, raws, connect };
}

test('the window passes: onClose for the old clientId, then resumed: false (expired) and onConnect for the new one', async (t) => {
  const { recorder, nodes, proxy, connect } = await setup(t, 1, { resumeWindow: 1 });
  const registry = nodes[0]!.gateway!.registry;
  const { client, id } = await connect();
  proxy.refuse();
  const cutAt = Date.now();
  proxy.cut();
  await waitFor(() => registry.get(id)?.attached === false, 5000, 'the session suspended');
  assert.equal(await nodes[0]!.api.isOnline(id), true, 'a suspended session counts as online');
  await waitFor(() => recorder.of('close', id).length === 1, 5000, 'onClose when the window passed');
  const closedAfterMs = Date.now() - cutAt;
  assert.ok(closedAfterMs >= 900, `the session waited for its window (${closedAfterMs} ms)`);
  assert.equal(registry.get(id), undefined);
  proxy.acceptAgain();
  const open = await client.opened(2);
  assert.equal(open.resumed, false);
  assert.equal(open.reason, 'expired');
  assert.notEqual(open.clientId, id);
  assert.deepEqual(recorder.of('connect'), [
    { type: 'connect', clientId: id },
    { type: 'connect', clientId: open.clientId },
  ]);
  assert.deepEqual(recorder.of('close'), [{ type: 'close', clientId: id }]);
  assert.deepEqual(recorder.of('resume'), []);
  t.diagnostic(
    `[resume window 1 s] session ended ${closedAfterMs} ms after the cut; new session: reason ${open.reason}`,
  );
});

test('kept pushes pass resumeBufferSize while the client is away: the session ends at once, bounded', async (t) => {
  const bound = 4096;
  const { recorder, nodes, proxy, publisher, connect } = await setup(t, 1, {
    resumeWindow: 60,
    resumeBufferSize: bound,
  });
  const registry = nodes[0]!.gateway!.registry;
  const { client, id, uid } = await connect();
  proxy.refuse();
  proxy.cut();
  await waitFor(() => registry.get(id)?.attached === false, 5000, 'the session suspended');
  const chunk = 'x'.repeat(1000);
  let maxKept = 0;
  let pushedBytes = 0;
  let overAt = 0;
  for (let i = 0; i < 10; i++) {
    await publisher.api.sendToUid(uid, `${i}:${chunk}`);
    pushedBytes += chunk.length + 2;
    if (overAt === 0 && pushedBytes > bound) overAt = Date.now();
    await waitFor(
      () => (registry.get(id)?.resume?.sent ?? i + 1) >= i + 1 || recorder.of('close', id).length > 0,
      5000,
      `push ${i} kept`,
    );
    maxKept = Math.max(maxKept, registry.get(id)?.resume?.bytes ?? 0);
  }
  assert.ok(maxKept <= bound, `kept at most ${bound} bytes (${maxKept})`);
  await waitFor(() => recorder.of('close', id).length === 1, 2000, 'onClose once the kept pushes overflowed');
  const endedMs = Date.now() - overAt;
  assert.equal(registry.get(id), undefined);
  proxy.acceptAgain();
  const open = await client.opened(2);
  assert.equal(open.resumed, false);
  assert.ok(open.reason === 'overflow' || open.reason === 'expired', `reason ${open.reason}`);
  assert.notEqual(open.clientId, id);
  assert.deepEqual(recorder.of('connect', open.clientId), [{ type: 'connect', clientId: open.clientId }]);
  assert.deepEqual(recorder.of('close'), [{ type: 'close', clientId: id }]);
  t.diagnostic(
    `[resume buffer ${bound} B] ${pushedBytes} B pushed while away, at most ${maxKept} B kept; session ended ${endedMs} ms after the overflow; new session: reason ${open.reason}`,
  );
});

test('a stolen, made-up or replaced token is refused; the victim goes on', async (t) => {
  const { recorder, nodes, proxy, publisher, raws, connect } = await setup(t, 2, { resumeWindow: 60 });
  const [a, b] = nodes as [GatewireNode, GatewireNode];
  const registry = a.gateway!.registry;
  const { client: victim, id } = await connect('&user=alice');
  let pushes = 0;
  const stillReceives = async (what: string) => {
    const text = `still ${++pushes}`;
    await publisher.api.sendToClient(id, text);
    await waitFor(() => victim.texts.includes(text), 5000, `the victim still receives (${what})`);
    assert.equal(victim.clientId, id);
    assert.equal(registry.get(id)?.attached, true, `the victim's session is attached (${what})`);
  };
  const refused: string[] = [];
  const hello = async (node: GatewireNode, user: string, token: string, seq: number) => {
    const { ws, welcome } = await rawHello(`${wsUrl(node)}?user=${user}`, { token, seq });
    raws.push(ws);
    assert.equal(welcome.resumed, false);
    assert.notEqual(welcome.clientId, id);
    refused.push(String(welcome.reason));
    return { ws, welcome };
  };
  const victimToken = victim.token;

  // Stolen: the victim's current token, another identity (at the victim's gateway, and at another node).
  const thief = await hello(a, 'mallory', victimToken, 0);
  assert.equal(thief.welcome.reason, 'refused');
  await stillReceives('stolen token at its gateway');
  assert.equal((await hello(b, 'mallory', victimToken, 0)).welcome.reason, 'refused');
  await stillReceives('stolen token at another node');

  // Made up: the victim's clientId with a random secret; a gone client's clientId.
  const madeUp = `${id}.${randomBytes(32).toString('base64url')}`;
  assert.equal((await hello(a, 'alice', madeUp, 0)).welcome.reason, 'refused');
  const goneId = String(thief.welcome.clientId);
  thief.ws.close(1000);
  await waitFor(() => recorder.of('close', goneId).length === 1, 5000, "the thief's own session ended");
  const gone = `${goneId}.${randomBytes(32).toString('base64url')}`;
  assert.equal((await hello(a, 'mallory', gone, 0)).welcome.reason, 'expired');
  await stillReceives('made-up tokens');

  // Replaced: the victim resumes (a new token), acknowledges it; the old token is refused.
  proxy.cut();
  const reopen = await victim.opened(2);
  assert.equal(reopen.resumed, true);
  assert.notEqual(victim.token, victimToken);
  await waitFor(() => registry.get(id)?.resume?.previousToken === null, 5000, 'the new token acknowledged');
  assert.equal((await hello(a, 'alice', victimToken, 0)).welcome.reason, 'refused');
  await stillReceives('replaced token');

  assert.deepEqual(recorder.of('close', id), []);
  assert.deepEqual(recorder.of('resume'), []);
  t.diagnostic(`[resume tokens] ${refused.length} hellos not resumed (${refused.join(', ')}); the victim kept ${id}`);
});

test('after a resume at another node, pushes to the previous clientId reach the client once, in order', async (t) => {
  const { nodes, proxy, publisher, connect } = await setup(t, 2, { resumeWindow: 60 });
  const [, b] = nodes as [GatewireNode, GatewireNode];
  const { client, id } = await connect();
  proxy.retarget(port(b));
  proxy.cut();
  const open = await client.opened(2);
  assert.equal(open.resumed, true);
  assert.equal(open.previousClientId, id);
  const count = 200;
  for (let n = 1; n <= count; n++) await publisher.api.sendToClient(id, `old:${n}`);
  await publisher.api.sendToClient(id, 'old:end');
  await waitFor(() => client.texts.includes('old:end'), 5000, 'the forwarded end marker');
  const numbers = client.numbers('old:');
  const stream = checkStream(numbers, count);
  assert.deepEqual(stream, { exact: true, repeats: 0, missing: 0, inOrder: true, firstDisorder: '' });
  t.diagnostic(`[resume forward] ${numbers.length} of ${count} pushes to the previous clientId, in order, 0 repeats`);
});

/**
 * On Redis, in both modes: bindUid (or joinGroup) on one node followed at once by sendToUid (or
 * sendToGroup) from another node reaches the client. bindUid resolves only after Redis confirmed
 * the SUBSCRIBE, so there is no window in which the push could go to nobody. Repeated with fresh
 * uids and groups so that a race, if there were one, would show.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BusMode } from '../../src/config/formats.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import { testConfig, uniqueName } from '../helpers/nodes.js';
import { cleanupRedis } from '../helpers/cleanup.js';
import { connectEach, openFor, startPair } from '../helpers/fixtures.js';
import { redisValues } from '../reliability/redis-support.js';

const ROUNDS = 25;

for (const mode of ['fanout', 'direct'] as BusMode[]) {
  describe(`redis ${mode}: bind on one node, push at once from another`, () => {
    test('bindUid on node A, then sendToUid from node B and from a publisher', async (t) => {
      const prefix = uniqueName('gwredis');
      let publisher: Publisher | undefined;
      const opened = openFor(
        t,
        () => publisher?.close(),
        () => cleanupRedis(prefix),
      );
      const values = redisValues(mode, prefix, {
        gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'] },
      });
      const [a, b] = await startPair(opened, values);
      publisher = await createPublisher(testConfig(values));
      const [ws, tcp] = await connectEach(opened, a, ['ws', 'tcp']);
      for (let i = 0; i < ROUNDS; i++) {
        const uid = `user-${mode}-${i}`;
        await a.api.bindUid(ws.id, uid);
        await b.api.sendToUid(uid, `b:${i}`);
        // bound through the other node's API, pushed from a process without clients
        await b.api.bindUid(tcp.id, `${uid}-tcp`);
        await publisher.api.sendToUid(`${uid}-tcp`, `p:${i}`);
      }
      await ws.client.until(() => ws.client.texts().length === ROUNDS + 1, 5000, `${ROUNDS} pushes on ws`);
      await tcp.client.until(() => tcp.client.texts().length === ROUNDS + 1, 5000, `${ROUNDS} pushes on tcp`);
      assert.deepEqual(
        ws.client.texts().slice(1),
        Array.from({ length: ROUNDS }, (_, i) => `b:${i}`),
      );
      assert.deepEqual(
        tcp.client.texts().slice(1),
        Array.from({ length: ROUNDS }, (_, i) => `p:${i}`),
      );
    });

    test('joinGroup on node A, then sendToGroup from node B', async (t) => {
      const prefix = uniqueName('gwredis');
      const opened = openFor(t, () => cleanupRedis(prefix));
      const [a, b] = await startPair(opened, redisValues(mode, prefix));
      const [member] = await connectEach(opened, a, ['ws']);
      for (let i = 0; i < ROUNDS; i++) {
        const group = `room-${mode}-${i}`;
        await a.api.joinGroup(member.id, group);
        await b.api.sendToGroup(group, `g:${i}`);
      }
      await member.client.until(() => member.client.texts().length === ROUNDS + 1, 5000, `${ROUNDS} group pushes`);
      assert.deepEqual(
        member.client.texts().slice(1),
        Array.from({ length: ROUNDS }, (_, i) => `g:${i}`),
      );
    });
  });
}

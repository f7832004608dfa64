/**
 * Redis connections killed under load (CLIENT KILL by connection name, only this test's nodes).
 *
 * Three gateway nodes and a publisher, nine WebSocket clients, each bound to its own uid and all
 * in groups. A gateway node and the publisher push continuously (sendToUid round robin, and
 * sendToGroup). Then:
 *   fault 1: every connection of every node and of the publisher is killed at the same moment
 *            (publishers and subscribers: commands wait, then every node resubscribes);
 *   fault 2: only the subscriber connections of two nodes are killed while the senders' own
 *            connections stay up (the senders keep publishing while those two resubscribe).
 * Afterwards every uid and group is reachable again from every node, and every push the API
 * accepted (its promise resolved) reached its client exactly once, in order per sender: 0 lost.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BusMode } from '../../src/config/formats.js';
import type { GatewayApi } from '../../src/api/gateway-api.js';
import { redisOf } from '../helpers/transports.js';
import { createPublisher } from '../../src/publisher.js';
import { sleep, testConfig, waitFor } from '../helpers/nodes.js';
import { connectionsOf, killConnections, redisValues } from './redis-support.js';
import { RedisScope, reconnectCounts, startNodes, waitReconnected } from '../helpers/faults.js';
import { connectTargets, tallyDeliveries, type DeliveryTarget } from '../helpers/deliveries.js';

/** pushes issued before each fault and after the last one (a few hundred ms of traffic) */
const PHASE = 300;

interface Target extends DeliveryTarget {
  expected: { text: string; seq: number; sender: string }[];
}

for (const mode of ['direct', 'fanout'] as BusMode[]) {
  describe(`redis ${mode}: connections killed while pushes flow`, () => {
    test('every node reconnects and resubscribes; every accepted push is delivered exactly once', async (t) => {
      const scope = new RedisScope(t);
      const { opened, prefix, admin } = scope;
      const values = redisValues(mode, prefix);
      const nodes = await startNodes(opened, values, 3);
      const publisher = scope.publisher(await createPublisher(testConfig(values)));
      await publisher.waitForGateways(3);
      const buses = [...nodes.map((n) => n.bus), publisher.bus];
      const instances = buses.map((b) => b.instance);

      // Nine clients: three per node, each with its own uid, all in `everyone`, one per node in `mixed`.
      const targets = (await connectTargets(opened, nodes, ['everyone'])) as Target[];
      const mixed = targets.filter((_, i) => i % 3 === 0);

      // ---- traffic ----------------------------------------------------------------------
      const senders: { name: string; api: GatewayApi }[] = [
        { name: 'node1', api: nodes[1]!.api },
        { name: 'publisher', api: publisher.api },
      ];
      let seq = 0;
      let issued = 0;
      let accepted = 0;
      const rejected: string[] = [];
      const settled: Promise<void>[] = [];
      /** issue time and acceptance time of every push */
      const timings: { seq: number; issuedAt: number; acceptedAt: number }[] = [];
      const push = (send: () => Promise<void>, text: string, to: Target[], sender: string, s: number): void => {
        issued += 1;
        const issuedAt = Date.now();
        settled.push(
          send().then(
            () => {
              accepted += 1;
              timings.push({ seq: s, issuedAt, acceptedAt: Date.now() });
              for (const target of to) target.expected.push({ text, seq: s, sender });
            },
            (err: Error) => {
              rejected.push(`${text}: ${err.message}`);
            },
          ),
        );
      };
      let running = true;
      const pump = async (sender: { name: string; api: GatewayApi }): Promise<void> => {
        while (running) {
          const s = ++seq;
          const target = targets[s % targets.length]!;
          const text = `${sender.name}:u:${s}`;
          push(() => sender.api.sendToUid(target.uid, text), text, [target], sender.name, s);
          if (s % 4 === 0) {
            const gtext = `${sender.name}:g:${s}`;
            push(() => sender.api.sendToGroup('mixed', gtext), gtext, mixed, sender.name, s);
          }
          await sleep(2);
        }
      };
      const pumps = senders.map((s) => pump(s));
      /**
       * Waits until PHASE more pushes than `after` (the seq then) were issued, and every client got
       * one issued after it.
       */
      const flowingSince = (after: number, what: string): Promise<void> =>
        waitFor(
          () =>
            seq >= after + PHASE &&
            targets.every((target) => target.expected.some((e) => e.seq > after && target.arrivals.has(e.text))),
          10_000,
          what,
        );

      /**
       * Kills `connections` at once (pushes flowing to every client first) and waits until each of
       * `affected` reconnected: what was killed, the seq and time of the kill, the buses' recovery.
       */
      const inject = async (
        connections: Awaited<ReturnType<typeof connectionsOf>>,
        affected: typeof buses,
        what: string,
      ): Promise<{ injected: number; seqAtKill: number; killAt: number; busRecovery: number }> => {
        const reconnects = reconnectCounts(affected);
        const seqAtKill = seq;
        const killAt = Date.now();
        const injected = await killConnections(admin, connections);
        await waitReconnected(affected, reconnects, 10000, what);
        return { injected, seqAtKill, killAt, busRecovery: Date.now() - killAt };
      };

      // ---- fault 1: every connection of every node and of the publisher -------------------
      await flowingSince(0, 'pushes flowing to every client');
      const all = await connectionsOf(admin, instances);
      assert.equal(all.length, 2 * buses.length, 'a pub and a sub connection per bus');
      const fault1 = await inject(all, buses, 'every bus to reconnect');

      // ---- fault 2: only the subscribers of nodes 0 and 2, the senders' connections stay -----
      await flowingSince(seq, 'pushes after fault 1 reaching every client');
      const subs = await connectionsOf(admin, [buses[0]!.instance, buses[2]!.instance], 'sub');
      assert.equal(subs.length, 2);
      assert.ok(
        subs.every((c) => c.sub > 0),
        'the killed connections are subscribers',
      );
      const fault2 = await inject(subs, [buses[0]!, buses[2]!], 'nodes 0 and 2 to resubscribe');

      await flowingSince(seq, 'pushes after fault 2 reaching every client');
      running = false;
      await Promise.all(pumps);
      await Promise.all(settled);

      // ---- every accepted push arrives (bounded wait; the counts below say what is missing) ----
      await waitFor(
        () => targets.every((target) => target.expected.every((e) => target.arrivals.has(e.text))),
        15000,
        'every accepted push to arrive',
      ).catch((err: Error) => console.log(err.message));
      const { received, lost, duplicates, outOfOrder } = tallyDeliveries(
        targets,
        senders.map((sender) => sender.name),
      );

      /** From the kill until every client got a push issued after the kill. */
      const reachableAfter = (killAt: number, seqAtKill: number): number => {
        let latest = 0;
        for (const target of targets) {
          const first = Math.min(
            ...target.expected
              .filter((e) => e.seq > seqAtKill && target.arrivals.has(e.text))
              .map((e) => target.arrivals.get(e.text)!),
          );
          latest = Math.max(latest, first);
        }
        return latest - killAt;
      };
      const longestWait = Math.max(...timings.map((x) => x.acceptedAt - x.issuedAt));
      const replayed = buses.reduce((sum, b) => sum + redisOf(b).redisStats.replayed, 0);
      const recoveries = buses.reduce((sum, b) => sum + redisOf(b).redisStats.recoveries, 0);
      const gaps = buses.reduce((sum, b) => sum + redisOf(b).redisStats.gaps, 0);
      console.log(
        `redis ${mode} CLIENT KILL: injected ${fault1.injected} connections (all) + ${fault2.injected} (subscribers of 2 nodes); ` +
          `sent ${issued}, accepted ${accepted}, rejected ${rejected.length}, expected deliveries ${targets.reduce((s, x) => s + x.expected.length, 0)}, ` +
          `received ${received}, lost ${lost}, duplicates ${duplicates}; recoveries ${recoveries}, replayed from the log ${replayed}, gaps past the window ${gaps}; ` +
          `recovery: fault 1 buses ${fault1.busRecovery} ms, every client reached ${reachableAfter(fault1.killAt, fault1.seqAtKill)} ms; ` +
          `fault 2 buses ${fault2.busRecovery} ms, every client reached ${reachableAfter(fault2.killAt, fault2.seqAtKill)} ms; longest wait of an accepted push ${longestWait} ms`,
      );
      assert.deepEqual(rejected, []);
      assert.equal(lost, 0);
      assert.equal(duplicates, 0);
      assert.equal(
        received,
        targets.reduce((sum, x) => sum + x.expected.length, 0),
        'exactly the accepted pushes arrived',
      );
      assert.deepEqual(outOfOrder, [], 'pushes from one sender on one stream arrive in the order sent');
      assert.equal(gaps, 0);
      // Each bus's subscriber dropped in fault 1, nodes 0 and 2 again in fault 2.
      assert.equal(recoveries, buses.length + 2);

      // ---- every uid and group reachable again, from every node and the publisher ----------
      const apis = [...nodes.map((n) => n.api), publisher.api];
      for (const [i, api] of apis.entries()) {
        for (const target of targets) await api.sendToUid(target.uid, `after:${i}:${target.uid}`);
        await api.sendToGroup('everyone', `after:${i}:everyone`);
        await api.sendToGroup('mixed', `after:${i}:mixed`);
      }
      for (const target of targets) {
        const want = apis.flatMap((_, i) => [`after:${i}:${target.uid}`, `after:${i}:everyone`]);
        if (mixed.includes(target)) want.push(...apis.map((_, i) => `after:${i}:mixed`));
        await target.conn.client.until(
          () => want.every((w) => target.arrivals.has(w)),
          10000,
          `${target.uid} reachable`,
        );
      }
    });
  });
}

/**
 * What the clients of a fault test received, against what the API accepted for them. Pushes are
 * texts `<sender>:<stream>:<seq>` (stream u: to the uid, g: to a group); each target's first text
 * is the id greeting and is skipped.
 */
import type { Connected } from '../e2e/support.js';
import type { WsTestClient } from './clients.js';
import type { GatewireNode } from '../../src/node.js';
import { connectWs, type Opened } from './fixtures.js';

export interface DeliveryTarget {
  conn: Connected<WsTestClient>;
  uid: string;
  /** pushes the API accepted for this client, in the order they were issued */
  expected: { text: string; seq: number }[];
  /** text -> when it arrived */
  arrivals: Map<string, number>;
}

/**
 * Three clients per node, each bound to its own uid `u-<node>-<i>`, all in `groups`, the first of
 * each node also in `mixed`; each records when every text arrives.
 */
export async function connectTargets(
  opened: Opened,
  nodes: GatewireNode[],
  groups: string[] = [],
): Promise<DeliveryTarget[]> {
  const targets: DeliveryTarget[] = [];
  for (const [n, node] of nodes.entries()) {
    for (let i = 0; i < 3; i++) {
      const conn = await connectWs(opened, node);
      const target: DeliveryTarget = { conn, uid: `u-${n}-${i}`, expected: [], arrivals: new Map() };
      conn.client.ws.on('message', (data: Buffer) => target.arrivals.set(data.toString('utf8'), Date.now()));
      await node.api.bindUid(conn.id, target.uid);
      for (const group of groups) await node.api.joinGroup(conn.id, group);
      if (i === 0) await node.api.joinGroup(conn.id, 'mixed');
      targets.push(target);
    }
  }
  return targets;
}

export interface DeliveryTally {
  received: number;
  /** accepted pushes that never arrived */
  lost: number;
  /** arrivals past the first of each text */
  duplicates: number;
  /** texts that were never issued (only counted when `issued` is given) */
  unknown: number;
  /** `<sender> <stream> to <uid>` where sequence numbers went backwards */
  outOfOrder: string[];
}

export function tallyDeliveries(
  targets: DeliveryTarget[],
  senderNames: string[],
  issued?: ReadonlySet<string>,
): DeliveryTally {
  const tally: DeliveryTally = { received: 0, lost: 0, duplicates: 0, unknown: 0, outOfOrder: [] };
  for (const target of targets) {
    const texts = target.conn.client.texts().slice(1); // after the id greeting
    tally.received += texts.length;
    const counts = new Map<string, number>();
    for (const text of texts) counts.set(text, (counts.get(text) ?? 0) + 1);
    for (const e of target.expected) if (!counts.has(e.text)) tally.lost += 1;
    for (const n of counts.values()) if (n > 1) tally.duplicates += n - 1;
    if (issued !== undefined) for (const text of counts.keys()) if (!issued.has(text)) tally.unknown += 1;
    // In order per sender and stream: sequence numbers only grow.
    for (const sender of senderNames) {
      for (const stream of ['u', 'g']) {
        const seqs = texts.filter((x) => x.startsWith(`${sender}:${stream}:`)).map((x) => Number(x.split(':')[2]));
        if (seqs.some((x, i) => i > 0 && x < seqs[i - 1]!))
          tally.outOfOrder.push(`${sender} ${stream} to ${target.uid}`);
      }
    }
  }
  return tally;
}

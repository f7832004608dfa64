/**
 * A steady flow of numbered pushes for the fault tests: several pushers (nodes or publishers)
 * send to uids and groups whose clients are known, while the test breaks the broker. Each push
 * records whether its pusher's bus was disconnected when the API was called (it then waits in the
 * bounded buffer: "accepted during the outage") and whether the API accepted it. Afterwards the
 * report says, per push and per target client, what arrived, what is missing, what came twice,
 * and whether each client saw each pusher's pushes in the order sent.
 */
import type { GatewayApi } from '../../src/api/gateway-api.js';
import type { Bus } from '../../src/transport/bus.js';
import type { WsTestClient, TcpTestClient } from '../helpers/clients.js';
import { sleep, startNode, testConfig, waitFor, waitForMembership } from '../helpers/nodes.js';
import { boundKeys, rabbitmqctl, type Ctl } from '../helpers/amqp.js';
import { amqpOf } from '../helpers/transports.js';
import {
  outageClock,
  place,
  reconnectCounts,
  waitReconnected,
  type FaultScope,
  type OutageClock,
  type Placement,
} from '../helpers/faults.js';
import type { ConfigInput } from '../../src/config/load.js';
import type { GatewireNode } from '../../src/node.js';
import { createPublisher, type Publisher } from '../../src/publisher.js';
import { connectTcp, connectWs, idHandler, type Opened } from '../e2e/support.js';

type Client = WsTestClient | TcpTestClient;

export interface Pusher {
  name: string;
  api: GatewayApi;
  bus: Bus;
}

export interface Target {
  kind: 'uid' | 'group';
  name: string;
  /** every client that must get a push to it */
  clients: Client[];
}

interface Push {
  text: string;
  pusher: string;
  /** position in its pusher's sequence */
  index: number;
  /** position in the whole flow (PushFlow.pushes) */
  seq: number;
  target: Target;
  whileDown: boolean;
  /** true: resolved, false: rejected, undefined: pending */
  accepted?: boolean;
  error?: string;
}

export interface FlowReport {
  issued: number;
  issuedWhileDown: number;
  accepted: number;
  rejected: number;
  /** (push, client) pairs expected */
  deliveries: number;
  received: number;
  lost: number;
  lostWhileDown: number;
  duplicates: number;
  outOfOrder: number;
  errors: Record<string, number>;
  lostSamples: string[];
}

export type { Push };

export class PushFlow {
  readonly pushes: Push[] = [];
  private readonly promises: Promise<void>[] = [];
  private running = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly pushers: Pusher[],
    private readonly targets: Target[],
    /** when set, only pushes this returns true for are counted (e.g. issued after a moment) */
    private readonly tag = 'flow',
  ) {}

  /** Starts pushing: every `intervalMs`, each pusher sends one push to each target. */
  start(intervalMs = 5): void {
    this.running = true;
    this.loop = (async () => {
      const counters = new Map<string, number>();
      while (this.running) {
        for (const pusher of this.pushers) {
          for (const target of this.targets) {
            const index = counters.get(pusher.name) ?? 0;
            counters.set(pusher.name, index + 1);
            this.issue(pusher, target, index);
          }
        }
        await sleep(intervalMs);
      }
    })();
  }

  /** Waits until `count` more pushes than now are issued (10 s at most). */
  async issued(count: number, what: string): Promise<void> {
    const from = this.pushes.length;
    await waitFor(() => this.pushes.length >= from + count, 10_000, what);
  }

  /** Stops issuing and waits until the API settled every push (accepted or rejected). */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await Promise.all(this.promises);
  }

  private issue(pusher: Pusher, target: Target, index: number): void {
    const text = `${this.tag}:${pusher.name}:${index}`;
    const push: Push = {
      text,
      pusher: pusher.name,
      index,
      seq: this.pushes.length,
      target,
      whileDown: !pusher.bus.isConnected,
    };
    this.pushes.push(push);
    const call =
      target.kind === 'uid' ? pusher.api.sendToUid(target.name, text) : pusher.api.sendToGroup(target.name, text);
    this.promises.push(
      call.then(
        () => {
          push.accepted = true;
        },
        (err: unknown) => {
          push.accepted = false;
          push.error = String((err as { code?: string }).code ?? err);
        },
      ),
    );
  }

  /** Pairs (accepted push, target client) that have not arrived, among `pushes`. */
  missing(filter: (p: Push) => boolean = () => true): number {
    // One set of texts per client per call (texts() copies; a lookup per push would be quadratic).
    const received = new Map<Client, Set<string>>();
    const has = (client: Client, text: string): boolean => {
      let set = received.get(client);
      if (set === undefined) received.set(client, (set = new Set(client.texts())));
      return set.has(text);
    };
    let n = 0;
    for (const push of this.pushes) {
      if (push.accepted !== true || !filter(push)) continue;
      for (const client of push.target.clients) if (!has(client, push.text)) n += 1;
    }
    return n;
  }

  report(filter: (p: Push) => boolean = () => true): FlowReport {
    const r: FlowReport = {
      issued: 0,
      issuedWhileDown: 0,
      accepted: 0,
      rejected: 0,
      deliveries: 0,
      received: 0,
      lost: 0,
      lostWhileDown: 0,
      duplicates: 0,
      outOfOrder: 0,
      errors: {},
      lostSamples: [],
    };
    const counts = new Map<Client, Map<string, number>>();
    const countsOf = (client: Client): Map<string, number> => {
      let m = counts.get(client);
      if (m === undefined) {
        m = new Map();
        for (const t of client.texts()) m.set(t, (m.get(t) ?? 0) + 1);
        counts.set(client, m);
      }
      return m;
    };
    for (const push of this.pushes) {
      if (!filter(push)) continue;
      r.issued += 1;
      if (push.whileDown) r.issuedWhileDown += 1;
      if (push.accepted !== true) {
        r.rejected += 1;
        r.errors[push.error ?? 'pending'] = (r.errors[push.error ?? 'pending'] ?? 0) + 1;
        continue;
      }
      r.accepted += 1;
      for (const client of push.target.clients) {
        r.deliveries += 1;
        const n = countsOf(client).get(push.text) ?? 0;
        if (n === 0) {
          r.lost += 1;
          if (push.whileDown) r.lostWhileDown += 1;
          if (r.lostSamples.length < 5) r.lostSamples.push(`${push.text} -> ${push.target.kind} ${push.target.name}`);
        } else {
          r.received += 1;
          r.duplicates += n - 1;
        }
      }
    }
    // Order: per client and pusher, the first arrival of each push follows the sending order.
    const prefix = `${this.tag}:`;
    for (const client of new Set(this.targets.flatMap((t) => t.clients))) {
      const last = new Map<string, number>();
      const seen = new Set<string>();
      for (const text of client.texts()) {
        if (!text.startsWith(prefix) || seen.has(text)) continue;
        seen.add(text);
        const [, pusher, index] = text.split(':');
        const i = Number(index);
        if ((last.get(pusher!) ?? -1) > i) r.outOfOrder += 1;
        last.set(pusher!, i);
      }
    }
    return r;
  }
}

/**
 * The cluster of the fault tests: two nodes A and B (closed with `opened`) and a publisher on
 * `values`, each knowing both gateways. The caller closes the publisher.
 */
export async function startPairAndPublisher(
  opened: Opened,
  values: ConfigInput,
): Promise<{ a: GatewireNode; b: GatewireNode; publisher: Publisher }> {
  const a = opened.node(await startNode(values, { handler: idHandler() }));
  const b = opened.node(await startNode(values, { handler: idHandler() }));
  const publisher = await createPublisher(testConfig(values));
  await waitForMembership([a, b], 2);
  await publisher.waitForGateways(2);
  return { a, b, publisher };
}

/** Pushers named after the keys of `sources` (nodes or publishers), in that order. */
export function pushersOf(sources: Record<string, { api: GatewayApi; bus: Bus }>): Pusher[] {
  return Object.entries(sources).map(([name, source]) => ({ name, api: source.api, bus: source.bus }));
}

/** The uids, then the groups, of a placement, as push targets. */
export function targetsOf(placement: Placement): Target[] {
  const targets: Target[] = [];
  for (const kind of ['uid', 'group'] as const)
    for (const [name, members] of Object.entries((kind === 'uid' ? placement.uids : placement.groups) ?? {}))
      targets.push({ kind, name, clients: members.map((m) => m.client) });
  return targets;
}

/** A push whose text each of the clients must get. */
export type Probe = [text: string, send: () => Promise<void>, clients: Client[]];

/** Sends each probe in turn and waits until every one of its clients got it. */
export async function runProbes(probes: Probe[]): Promise<void> {
  for (const [text, send, clients] of probes) {
    await send();
    for (const client of clients) await client.waitForText(text, 10_000);
  }
}

export interface FaultCluster {
  a: GatewireNode;
  b: GatewireNode;
  publisher: Publisher;
  /** every bus of the cluster, named */
  buses: [string, Bus][];
  /** pushes from nodeA, nodeB and the publisher to every uid and group */
  flow: PushFlow;
  /** a push to every uid and group, each from a process other than the one holding it */
  probes: Probe[];
  /** the keys bound to the queue of A and of B */
  keysOf: () => Promise<string[][]>;
  /** when each bus went down and came back */
  clocks: Map<string, OutageClock>;
  /**
   * After a fault: waits until every bus reconnected (60 s at most), lets 300 more pushes be
   * issued, stops the flow and sends the probes. Returns when every bus was back (allUpAt), the
   * first push issued after that (recoveredSeq) and when every probe had arrived (reachableAt).
   */
  recover: () => Promise<{ allUpAt: number; recoveredSeq: number; reachableAt: number }>;
}

/**
 * startPairAndPublisher on `values` (the publisher closed with `scope`), then clients a1 (ws) and
 * a2 (tcp) on A, b1 (ws) on B, placed by their own nodes: uids ua (a1), ua2 (a2), ub (b1), groups
 * g1 (a1, b1) and g2 (a2). `ctl` reads the bindings of the broker the nodes use.
 */
export async function startFaultCluster(
  scope: FaultScope,
  values: ConfigInput,
  ctl: Ctl = rabbitmqctl,
): Promise<FaultCluster> {
  const pair = await startPairAndPublisher(scope.opened, values);
  const { a, b } = pair;
  const p = scope.publisher(pair.publisher);
  const a1 = await connectWs(scope.opened, a);
  const a2 = await connectTcp(scope.opened, a);
  const b1 = await connectWs(scope.opened, b);
  const placement = { uids: { ua: [a1], ua2: [a2], ub: [b1] }, groups: { g1: [a1, b1], g2: [a2] } };
  await place(placement);
  const buses: [string, Bus][] = [
    ['nodeA', a.bus],
    ['nodeB', b.bus],
    ['publisher', p.bus],
  ];
  const clocks = new Map(buses.map(([name, bus]) => [name, outageClock(bus)]));
  const reconnectsBefore = reconnectCounts(buses.map(([, bus]) => bus));
  const flow = new PushFlow(pushersOf({ nodeA: a, nodeB: b, publisher: p }), targetsOf(placement));
  const probes: Probe[] = [
    ['probe ua', () => b.api.sendToUid('ua', 'probe ua'), [a1.client]],
    ['probe ua2', () => p.api.sendToUid('ua2', 'probe ua2'), [a2.client]],
    ['probe ub', () => a.api.sendToUid('ub', 'probe ub'), [b1.client]],
    ['probe g1', () => p.api.sendToGroup('g1', 'probe g1'), [a1.client, b1.client]],
    ['probe g2', () => b.api.sendToGroup('g2', 'probe g2'), [a2.client]],
  ];
  return {
    a,
    b,
    publisher: p,
    buses,
    flow,
    probes,
    keysOf: () => Promise.all([a, b].map((n) => boundKeys(amqpOf(n.bus).exchange, amqpOf(n.bus).queue, ctl))),
    clocks,
    recover: async () => {
      await waitReconnected(
        buses.map(([, bus]) => bus),
        reconnectsBefore,
        60_000,
        'every bus reconnected',
      );
      const allUpAt = Date.now();
      const recoveredSeq = flow.pushes.length;
      await flow.issued(300, 'pushes after the recovery');
      await flow.stop();
      // Every bound uid and group is reachable again, from every process.
      await runProbes(probes);
      return { allUpAt, recoveredSeq, reachableAt: Date.now() };
    },
  };
}

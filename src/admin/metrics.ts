/**
 * Prometheus metrics of one node. Hot paths only bump plain counters (gateway.counters,
 * bus.stats, …); the metrics read them when scraped, so serving traffic pays nothing for them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Bus } from '../transport/bus.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Membership } from '../cluster/membership.js';
import type { Requests } from '../cluster/requests.js';
import type { Worker } from '../worker/worker.js';
import type { Directory } from '../cluster/directory.js';

/** What the metrics read (a GatewireNode): the parts of one node, read when scraped. */
export interface MetricsSource {
  identity: { id: string };
  bus: Bus;
  gateway: Gateway | null;
  membership: Membership;
  requests: Requests;
  worker: Worker | null;
  /** the holder directory, on a node in direct mode on a broker (bus.directory=auto) */
  directory: Directory | null;
}

/** gatewire_drops_total by reason: clients disconnected and messages dropped, as counted so far. */
export function dropCounts(node: Pick<MetricsSource, 'bus' | 'gateway' | 'requests'>): Record<string, number> {
  const stats = node.bus.stats;
  return {
    ...(node.gateway?.counters.drops ?? {}),
    bus_decode: stats.decodeErrors,
    bus_signature: stats.signatureErrors,
    bus_malformed: stats.malformedCommands,
    bus_duplicate: stats.duplicatesDropped,
    bus_replay: stats.replaysRefused,
    bus_legacy: stats.legacyRefused,
    bus_refused_by_broker: stats.messagesRefused,
    bus_too_large: stats.commandsTooLarge,
    deadline_expired: node.requests.expired,
  };
}

/** The RabbitMQ transport's own counters (amqp-transport.ts amqpStats), if that is the bus's. */
function amqpStatsOf(bus: Bus): { queueOverflowDropped: number; unroutable: Record<string, number> } | undefined {
  return (bus.transport as { amqpStats?: { queueOverflowDropped: number; unroutable: Record<string, number> } })
    .amqpStats;
}

/** A Prometheus counter that follows a monotonic number owned elsewhere. */
function followCounter(registry: Registry, name: string, help: string, read: () => number): void {
  let last = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now > last) this.inc(now - last);
      last = now;
    },
  });
}

/** A Prometheus gauge that shows a number owned elsewhere. */
function followGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** The same for numbers kept per label value (e.g. drops by reason). */
function followLabelledCounter(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  read: () => Record<string, number>,
): void {
  const last = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      for (const [value, now] of Object.entries(read())) {
        const before = last.get(value) ?? 0;
        if (now > before) this.inc({ [label]: value }, now - before);
        last.set(value, now);
      }
    },
  });
}

export function createMetrics(node: MetricsSource): { registry: Registry; queryLatency: Histogram } {
  const registry = new Registry();
  registry.setDefaultLabels({ node: node.identity.id });
  collectDefaultMetrics({ register: registry, prefix: 'gatewire_' });
  const bus = node.bus;
  const gateway = node.gateway;

  const worker = node.worker;
  const gauges: [name: string, help: string, read: () => number][] = [
    ['gatewire_connections', 'Client connections held by this gateway.', () => gateway?.registry.size ?? 0],
    ['gatewire_uids', 'Distinct uids bound to clients of this gateway.', () => gateway?.registry.uids.size ?? 0],
    ['gatewire_groups', 'Groups with a member on this gateway.', () => gateway?.registry.groups.size ?? 0],
    [
      'gatewire_membership_size',
      'Live nodes this node knows of, itself included.',
      () => node.membership.list().length,
    ],
    ['gatewire_bus_connected', '1 while the bus is connected.', () => (bus.isConnected ? 1 : 0)],
    [
      'gatewire_bus_buffered_commands',
      'Commands waiting for the broker (bounded by bus.maxBufferedCommands).',
      () => bus.stats.buffered,
    ],
    [
      'gatewire_directory_routing',
      '1 while the holder directory routes pushes (direct mode, bus.directory=auto); 0 while it sends by key.',
      () => (node.directory?.routing === true ? 1 : 0),
    ],
    [
      'gatewire_bus_commands_per_message',
      'Average commands per published broker message (batching).',
      () => (bus.stats.messagesPublished === 0 ? 0 : bus.stats.commandsPublished / bus.stats.messagesPublished),
    ],
  ];
  for (const [name, help, read] of gauges) followGauge(registry, name, help, read);
  const counters: [name: string, help: string, read: () => number][] = [
    [
      'gatewire_connections_opened_total',
      'Client connections accepted.',
      () => gateway?.counters.connectionsOpened ?? 0,
    ],
    ['gatewire_connections_closed_total', 'Client connections closed.', () => gateway?.counters.connectionsClosed ?? 0],
    ['gatewire_messages_in_total', 'Messages received from clients.', () => gateway?.counters.messagesIn ?? 0],
    ['gatewire_messages_out_total', 'Messages queued to clients.', () => gateway?.counters.messagesOut ?? 0],
    [
      'gatewire_bus_queue_dropped_total',
      'Messages node queues dropped for their byte bound (bus.amqp.maxQueueBytes), as counted by this node.',
      () => amqpStatsOf(bus)?.queueOverflowDropped ?? 0,
    ],
    [
      'gatewire_queries_incomplete_total',
      'Cluster requests that missed the answer of at least one node (timed out, or gone).',
      () => node.requests.incomplete,
    ],
    ['gatewire_bus_messages_published_total', 'Broker messages published.', () => bus.stats.messagesPublished],
    [
      'gatewire_bus_commands_published_total',
      'Commands published (several ride in one broker message).',
      () => bus.stats.commandsPublished,
    ],
    ['gatewire_bus_messages_consumed_total', 'Broker messages consumed.', () => bus.stats.messagesConsumed],
    ['gatewire_bus_commands_consumed_total', 'Commands consumed.', () => bus.stats.commandsConsumed],
    [
      'gatewire_bus_pushes_consumed_total',
      'Targets of the commands consumed (a send to n uids, clients or groups counts n; merged sends carry many).',
      () => bus.stats.pushesConsumed,
    ],
    ['gatewire_bus_reconnects_total', 'Broker reconnects.', () => bus.stats.reconnects],
    [
      'gatewire_query_timeouts_total',
      'Cluster queries where some node did not answer in time.',
      () => node.requests.timeouts,
    ],
    [
      'gatewire_directory_resets_total',
      'Times the holder directory was dropped and every node asked again after an event-loop stall.',
      () => node.directory?.stats.resets ?? 0,
    ],
    ['gatewire_worker_events_total', 'Client events handled by this worker.', () => worker?.eventsHandled ?? 0],
    [
      'gatewire_worker_handler_errors_total',
      'Handler callbacks that threw or rejected.',
      () => worker?.handlerErrors ?? 0,
    ],
  ];
  for (const [name, help, read] of counters) followCounter(registry, name, help, read);
  followLabelledCounter(
    registry,
    'gatewire_drops_total',
    'Clients disconnected or messages dropped, by reason.',
    'reason',
    () => dropCounts(node),
  );
  followLabelledCounter(
    registry,
    'gatewire_bus_unroutable_total',
    'Broker messages for a node key or the broadcast key (every message in fanout mode) that no queue took (RabbitMQ returned them), by kind of key.',
    'kind',
    () => amqpStatsOf(bus)?.unroutable ?? {},
  );
  followLabelledCounter(
    registry,
    'gatewire_directory_sends_total',
    'Commands sent in direct mode, by how: "directory" (to the holders\' node keys) or "key" (by their own keys, while the directory cannot answer).',
    'path',
    (): Record<string, number> => {
      const stats = node.directory?.stats;
      return stats === undefined ? {} : { directory: stats.routed, key: stats.byKey };
    },
  );
  const queryLatency = new Histogram({
    name: 'gatewire_query_duration_seconds',
    help: 'Time to gather the answers of a cluster query.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  return { registry, queryLatency };
}

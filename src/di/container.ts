/**
 * Builds the dependency-injection container of one node. Each area binds its own tokens; the
 * roles decide which parts exist. An application can rebind any token before the node starts.
 *
 * Folder di/ (layer 5, the top: may import any layer; nothing below imports it): tokens.ts,
 * this container, bus.module.ts (the broker adapter by bus.kind), container-view.ts (what
 * node.ts and publisher.ts read). Flow: config -> buildContainer -> node/publisher.
 */
import 'reflect-metadata';
import { Container, ContainerModule } from 'inversify';
import { TOKENS } from './tokens.js';
import { busModule } from './bus.module.js';
import type { GatewireConfig } from '../config/load.js';
import { createLogger } from '../logger.js';
import { createNodeIdentity } from '../cluster/node-identity.js';
import { defaultLocalHub } from '../transport/local/local-hub.js';
import { Membership } from '../cluster/membership.js';
import { WIRE_VERSION } from '../protocol/envelope.js';
import { Requests } from '../cluster/requests.js';
import { CommandDispatcher } from '../cluster/command-dispatcher.js';
import { Directory } from '../cluster/directory.js';
import { GatewayApi } from '../api/gateway-api.js';
import { Gateway } from '../gateway/gateway.js';
import { Worker } from '../worker/worker.js';
import { AmqpEventConsumer } from '../events/event-consumer.js';
import { AmqpEventProducer } from '../events/event-producer.js';
import type { Bus } from '../transport/bus.js';
import { resolveQueueType } from '../transport/amqp/amqp-topology.js';
import { parseAmqpUrls } from '../transport/amqp/amqp-urls.js';
import type { SessionCluster } from '../gateway/takeover.js';
import { Op } from '../protocol/commands.js';

export interface ContainerOptions {
  /** true for a publisher: no roles, no announcements */
  publisher?: boolean;
}

const coreModule = (config: GatewireConfig) =>
  new ContainerModule(({ bind }) => {
    const identity = createNodeIdentity(config.node.id);
    bind(TOKENS.Config).toConstantValue(config);
    bind(TOKENS.Identity).toConstantValue(identity);
    bind(TOKENS.Logger).toConstantValue(createLogger(config.log.level, { node: identity.id }));
    bind(TOKENS.LocalHub).toConstantValue(defaultLocalHub);
    bind(TOKENS.Authorizer).toConstantValue(null);
  });

const clusterModule = (options: ContainerOptions) =>
  new ContainerModule(({ bind }) => {
    bind(TOKENS.Requests)
      .toDynamicValue(
        (ctx) =>
          new Requests(
            ctx.get(TOKENS.Bus),
            {
              timeoutMs: ctx.get(TOKENS.Config).cluster.queryTimeout,
              maxClockSkewMs: ctx.get(TOKENS.Config).bus.maxClockSkew,
            },
            ctx.get(TOKENS.Logger).child({ component: 'requests' }),
          ),
      )
      .inSingletonScope();
    bind(TOKENS.Membership)
      .toDynamicValue((ctx) => {
        const config = ctx.get(TOKENS.Config);
        const identity = ctx.get(TOKENS.Identity);
        const gateway = ctx.get(TOKENS.Gateway, { optional: true }) ?? null;
        const roles = options.publisher ? [] : config.node.roles;
        return new Membership(
          ctx.get(TOKENS.Bus),
          {
            announceInterval: config.cluster.announceInterval,
            nodeTimeout: config.cluster.nodeTimeout,
            announce: !options.publisher,
          },
          () => ({
            i: identity.instance,
            n: identity.id,
            ro: [...roles],
            ad: config.gateway.advertisedAddress || (gateway?.urls[0] ?? ''),
            st: identity.startedAt,
            cc: gateway?.registry.size ?? 0,
            uc: gateway?.registry.uids.size ?? 0,
            gc: gateway?.registry.groups.size ?? 0,
            iv: config.cluster.announceInterval,
            wv: WIRE_VERSION,
          }),
          ctx.get(TOKENS.Logger).child({ component: 'membership' }),
        );
      })
      .inSingletonScope();
    bind(TOKENS.CommandDispatcher)
      .toDynamicValue((ctx) => {
        const dispatcher = new CommandDispatcher(
          ctx.get(TOKENS.Bus),
          ctx.get(TOKENS.Gateway, { optional: true }) ?? null,
          ctx.get(TOKENS.Membership),
          ctx.get(TOKENS.Requests),
          ctx.get(TOKENS.Logger).child({ component: 'dispatcher' }),
        );
        dispatcher.directory = ctx.get(TOKENS.Directory, { optional: true }) ?? null;
        return dispatcher;
      })
      .inSingletonScope();
    bind(TOKENS.Api)
      .toDynamicValue((ctx) => {
        const api = new GatewayApi(
          ctx.get(TOKENS.Bus),
          ctx.get(TOKENS.Membership),
          ctx.get(TOKENS.Requests),
          ctx.get(TOKENS.Gateway, { optional: true }) ?? null,
          ctx.get(TOKENS.Config).cluster.strictQueries,
        );
        api.directory = ctx.get(TOKENS.Directory, { optional: true }) ?? null;
        return api;
      })
      .inSingletonScope();
  });

/** How a gatewire.v1 session moves between gateways (gateway/takeover.ts): asks over the bus. */
function sessionCluster(bus: Bus, requests: Requests): SessionCluster {
  return {
    ask: (owner, q, a) => requests.ask({ op: Op.QUERY, q, a, t: owner, r: 0, f: '' }, owner),
    publish: (cmd) => bus.publish(cmd),
    lastSeqs: () => Object.fromEntries(bus.lastApplied),
  };
}

/**
 * The holder directory (cluster/directory.ts): on nodes in direct mode on a broker, unless
 * bus.directory=off. A publisher keeps none: membership does not list it, so nodes could not tell
 * when to stop waiting for its acks; it sends by key.
 */
/** A peer taken for dead keeps its entries this long: the node queues' x-expires (ms). */
const RETAIN_MS = 60000;

const directoryModule = new ContainerModule(({ bind }) => {
  bind(TOKENS.Directory)
    .toDynamicValue((ctx) => {
      const cluster = ctx.get(TOKENS.Config).cluster;
      // Two announcement periods: after a (re)connect every live peer has announced itself (and
      // been asked) within one, since nodes answer a newcomer's announcement at once.
      const settleMs = 2 * cluster.announceInterval;
      return new Directory(
        ctx.get(TOKENS.Bus),
        ctx.get(TOKENS.Membership),
        { settleMs, stallMs: Math.round(cluster.nodeTimeout / 2), askAgainMs: 2 * settleMs, retainMs: RETAIN_MS },
        ctx.get(TOKENS.Logger).child({ component: 'directory' }),
      );
    })
    .inSingletonScope();
});

function keepsDirectory(config: GatewireConfig, options: ContainerOptions): boolean {
  const bus = config.bus;
  return !options.publisher && bus.mode === 'direct' && bus.kind !== 'local' && bus.directory === 'auto';
}

const gatewayModule = new ContainerModule(({ bind }) => {
  bind(TOKENS.Gateway)
    .toDynamicValue(
      (ctx) =>
        new Gateway(
          ctx.get(TOKENS.Config).gateway,
          ctx.get(TOKENS.Identity).instance,
          ctx.get(TOKENS.Bus),
          ctx.get(TOKENS.Authorizer),
          ctx.get(TOKENS.Logger).child({ component: 'gateway' }),
          sessionCluster(ctx.get(TOKENS.Bus), ctx.get(TOKENS.Requests)),
        ),
    )
    .inSingletonScope();
});

const workerModule = new ContainerModule(({ bind }) => {
  bind(TOKENS.Worker)
    .toDynamicValue(
      (ctx) =>
        new Worker(
          ctx.get(TOKENS.Handler),
          ctx.get(TOKENS.Api),
          ctx.get(TOKENS.Identity).id,
          ctx.get(TOKENS.Logger).child({ component: 'worker' }),
        ),
    )
    .inSingletonScope();
});

/** Split roles: client events travel through RabbitMQ queues between gateway and worker processes. */
const eventsModule = (config: GatewireConfig) =>
  new ContainerModule(({ bind }) => {
    const options = (ctx: { get: <T>(id: import('inversify').ServiceIdentifier<T>) => T }) => ({
      url: config.bus.amqp.url,
      prefix: config.bus.amqp.exchange,
      partitions: config.worker.partitions,
      maxPendingEvents: config.worker.maxPendingEvents,
      prefetch: config.worker.prefetch,
      instance: ctx.get(TOKENS.Identity).instance,
      secret: config.bus.secret,
      // The same type as the node queues: quorum on a cluster (several URLs), so partitions
      // outlive a broker node; classic with one URL (the arguments existing queues were made with).
      queueType: resolveQueueType(config.bus.amqp.queueType, parseAmqpUrls(config.bus.amqp.url).length > 1),
    });
    if (config.node.roles.includes('gateway')) {
      bind(TOKENS.EventProducer)
        .toDynamicValue(
          (ctx) => new AmqpEventProducer(options(ctx), ctx.get(TOKENS.Logger).child({ component: 'events' })),
        )
        .inSingletonScope();
    } else {
      bind(TOKENS.EventConsumer)
        .toDynamicValue(
          (ctx) =>
            new AmqpEventConsumer(
              options(ctx),
              ctx.get(TOKENS.Worker),
              ctx.get(TOKENS.Api),
              ctx.get(TOKENS.Membership),
              config.cluster.announceInterval * 2,
              ctx.get(TOKENS.Logger).child({ component: 'events' }),
            ),
        )
        .inSingletonScope();
    }
  });

export function buildContainer(config: GatewireConfig, options: ContainerOptions = {}): Container {
  const container = new Container();
  container.load(coreModule(config), busModule, clusterModule(options));
  if (keepsDirectory(config, options)) container.load(directoryModule);
  if (!options.publisher && config.node.roles.includes('gateway')) container.load(gatewayModule);
  if (!options.publisher && config.node.roles.includes('worker')) container.load(workerModule);
  if (!options.publisher && config.node.roles.length === 1) container.load(eventsModule(config));
  return container;
}

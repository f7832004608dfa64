/**
 * The one place where the bus implementation is chosen from the configuration. No other code
 * knows which broker or which mode runs.
 */
import { ContainerModule } from 'inversify';
import { TOKENS } from './tokens.js';
import { Bus, type BusOptions } from '../transport/bus.js';
import type { GatewireConfig } from '../config/load.js';
import { LocalTransport } from '../transport/local/local-transport.js';
import { RedisTransport } from '../transport/redis/redis-transport.js';
import { AmqpTransport } from '../transport/amqp/amqp-transport.js';
import { ErrorCodes, GatewireError } from '../errors.js';

export function busOptions(config: GatewireConfig, instance: string, startedAt = Date.now()): BusOptions {
  return {
    instance,
    mode: config.bus.mode,
    secret: config.bus.secret,
    uidBuckets: config.bus.uidBuckets,
    groupBuckets: config.bus.groupBuckets,
    maxBufferedCommands: config.bus.maxBufferedCommands,
    maxCommandsPerMessage: config.bus.maxCommandsPerMessage,
    startedAt,
    maxMessageBytes: config.bus.maxMessageBytes,
    maxClockSkewMs: config.bus.maxClockSkew,
    maxMessageAgeMs: config.bus.maxMessageAge,
    acceptSignedV1: config.bus.acceptSignedV1,
  };
}

export const busModule = new ContainerModule(({ bind }) => {
  // The broker adapter, chosen from bus.kind; an application may rebind TOKENS.Transport to its own.
  bind(TOKENS.Transport)
    .toDynamicValue((ctx) => {
      const config = ctx.get(TOKENS.Config);
      const identity = ctx.get(TOKENS.Identity);
      const options = busOptionsOf(config, identity.instance, identity.startedAt);
      const log = ctx.get(TOKENS.Logger).child({ component: 'bus' });
      switch (config.bus.kind) {
        case 'local':
          return new LocalTransport(options, ctx.get(TOKENS.LocalHub));
        case 'amqp':
          return new AmqpTransport(options, log, {
            url: config.bus.amqp.url,
            exchange: config.bus.amqp.exchange,
            prefetch: config.bus.amqp.prefetch,
            // A peer silent past nodeTimeout is dead anyway; plus one full reconnect delay (5 s).
            peerWaitMs: config.cluster.nodeTimeout + 5000,
            // A process this young may know no peer only because no ANNOUNCE reached it yet.
            peerLearnMs: 2 * config.cluster.announceInterval,
            // Outlasts any reconnect (and the peers' patience) by far; a dead node's queue goes after it.
            queueExpiresMs: Math.max(60000, 4 * config.cluster.nodeTimeout),
            queueMaxBytes: config.bus.amqp.maxQueueBytes,
            queueType: config.bus.amqp.queueType,
          });
        case 'redis':
          return new RedisTransport(options, log, {
            url: config.bus.redis.url,
            cluster: config.bus.redis.cluster,
            prefix: config.bus.redis.prefix,
            replayWindowMs: config.bus.redis.replayWindow,
            waitReplicas: config.bus.redis.waitReplicas,
            waitTimeoutMs: config.bus.redis.waitTimeout,
          });
        default:
          throw new GatewireError(
            ErrorCodes.INVALID_CONFIG,
            `bus.kind ${String(config.bus.kind)} is not available in this build`,
          );
      }
    })
    .inSingletonScope();
  bind(TOKENS.Bus)
    .toDynamicValue((ctx) => {
      const config = ctx.get(TOKENS.Config);
      const identity = ctx.get(TOKENS.Identity);
      const log = ctx.get(TOKENS.Logger).child({ component: 'bus' });
      return new Bus(busOptionsOf(config, identity.instance, identity.startedAt), log, ctx.get(TOKENS.Transport));
    })
    .inSingletonScope();
});

/** The bus options of a node; the in-process bus always routes by key (it costs nothing). */
function busOptionsOf(config: GatewireConfig, instance: string, startedAt: number): BusOptions {
  const options = busOptions(config, instance, startedAt);
  return config.bus.kind === 'local' ? { ...options, mode: 'direct' } : options;
}

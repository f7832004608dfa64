/**
 * The one place where the bus implementation is chosen from the configuration. No other code
 * knows which broker or which mode runs.
 */
import { ContainerModule } from 'inversify';
import { TOKENS } from './tokens.js';
import type { BusOptions } from '../transport/bus.js';
import type { GatewireConfig } from '../config/load.js';
import { LocalBus } from '../transport/local/local-bus.js';
import { RedisBus } from '../transport/redis/redis-bus.js';
import { AmqpBus } from '../transport/amqp/amqp-bus.js';

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
  bind(TOKENS.Bus)
    .toDynamicValue((ctx) => {
      const config = ctx.get(TOKENS.Config);
      const identity = ctx.get(TOKENS.Identity);
      const options = busOptions(config, identity.instance, identity.startedAt);
      const log = ctx.get(TOKENS.Logger).child({ component: 'bus' });
      switch (config.bus.kind) {
        case 'local':
          return new LocalBus(options, log, ctx.get(TOKENS.LocalHub));
        case 'amqp':
          return new AmqpBus(options, log, {
            url: config.bus.amqp.url,
            exchange: config.bus.amqp.exchange,
            prefetch: config.bus.amqp.prefetch,
            // A peer silent past nodeTimeout is dead anyway; plus one full reconnect delay (5 s).
            peerWaitMs: config.cluster.nodeTimeout + 5000,
            // Outlasts any reconnect (and the peers' patience) by far; a dead node's queue goes after it.
            queueExpiresMs: Math.max(60000, 4 * config.cluster.nodeTimeout),
            queueMaxBytes: config.bus.amqp.maxQueueBytes,
          });
        case 'redis':
          return new RedisBus(options, log, {
            url: config.bus.redis.url,
            prefix: config.bus.redis.prefix,
            replayWindowMs: config.bus.redis.replayWindow,
          });
        default:
          throw new Error(`bus.kind ${config.bus.kind} is not available in this build`);
      }
    })
    .inSingletonScope();
});

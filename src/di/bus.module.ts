/**
 * The one place where the bus implementation is chosen from the configuration. No other code
 * knows which broker or which mode runs.
 */
import { ContainerModule } from 'inversify';
import { TOKENS } from './tokens.js';
import type { BusOptions } from '../bus/bus.js';
import type { GatewireConfig } from '../config/load.js';
import { LocalBus } from '../bus/local/local-bus.js';

export function busOptions(config: GatewireConfig, instance: string): BusOptions {
  return {
    instance,
    mode: config.bus.mode,
    secret: config.bus.secret,
    uidBuckets: config.bus.uidBuckets,
    groupBuckets: config.bus.groupBuckets,
    maxBufferedCommands: config.bus.maxBufferedCommands,
    maxCommandsPerMessage: config.bus.maxCommandsPerMessage,
  };
}

export const busModule = new ContainerModule(({ bind }) => {
  bind(TOKENS.Bus)
    .toDynamicValue((ctx) => {
      const config = ctx.get(TOKENS.Config);
      const options = busOptions(config, ctx.get(TOKENS.Identity).instance);
      const log = ctx.get(TOKENS.Logger).child({ component: 'bus' });
      switch (config.bus.kind) {
        case 'local':
          return new LocalBus(options, log, ctx.get(TOKENS.LocalHub));
        default:
          throw new Error(`bus.kind ${config.bus.kind} is not available in this build`);
      }
    })
    .inSingletonScope();
});

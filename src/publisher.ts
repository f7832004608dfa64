/**
 * A publisher: a process with no clients and no handler (a cron job, an HTTP app, the CLI) that
 * joins the bus and uses the same push and query API.
 */
import { TOKENS } from './di/tokens.js';
import { buildContainer } from './di/container.js';
import { loadConfig, type ConfigInput, type GatewireConfig } from './config/load.js';
import type { GatewayApi } from './api/gateway-api.js';
import type { Bus } from './transport/bus.js';
import type { Membership } from './cluster/membership.js';
import type { Container } from 'inversify';

export class Publisher {
  constructor(readonly container: Container) {}

  get api(): GatewayApi {
    return this.container.get(TOKENS.Api);
  }
  get bus(): Bus {
    return this.container.get(TOKENS.Bus);
  }
  get membership(): Membership {
    return this.container.get(TOKENS.Membership);
  }

  /**
   * Waits until at least `count` gateways announced themselves (a fresh publisher knows the
   * cluster only after the first announcements), or `timeoutMs` passed.
   */
  async waitForGateways(count = 1, timeoutMs = 3000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.membership.gateways().length < count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.membership.gateways().length;
  }

  /** Sends what is pending, then leaves the bus. */
  async close(): Promise<void> {
    await this.membership.stop();
    await this.bus.close();
  }
}

/** Connects a publisher to the bus of `config` (a loaded config, or values for loadConfig). */
export async function createPublisher(
  config?: GatewireConfig | ConfigInput,
  configure?: (c: Container) => void,
): Promise<Publisher> {
  const loaded = isFullConfig(config) ? config : loadConfig({ values: config });
  const container = buildContainer(loaded, { publisher: true });
  configure?.(container);
  container.get(TOKENS.CommandDispatcher).attach();
  await container.get(TOKENS.Bus).start();
  container.get(TOKENS.Membership).start();
  return new Publisher(container);
}

function isFullConfig(config: GatewireConfig | ConfigInput | undefined): config is GatewireConfig {
  const c = config as GatewireConfig | undefined;
  return (
    c !== undefined &&
    Array.isArray(c.node?.roles) &&
    typeof c.bus?.kind === 'string' &&
    typeof c.cluster?.queryTimeout === 'number'
  );
}

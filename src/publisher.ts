/**
 * A publisher: a process with no clients and no handler (a cron job, an HTTP app, the CLI) that
 * joins the bus and uses the same push and query API.
 */
import { TOKENS } from './di/tokens.js';
import { buildContainer } from './di/container.js';
import { loadConfig, type ConfigInput, type GatewireConfig } from './config/load.js';
import { ContainerView } from './di/container-view.js';
import type { Container } from 'inversify';

export class Publisher extends ContainerView {
  /**
   * Waits until at least `count` gateways announced themselves (a fresh publisher knows the
   * cluster only after the first announcements), or `timeoutMs` passed.
   */
  async waitForGateways(count = 1, timeoutMs = 3000): Promise<number> {
    const membership = this.membership;
    if (membership.gateways().length < count) {
      // A gateway is counted from its first announcement on, which is when membership emits 'join'.
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          membership.off('join', joined);
          resolve();
        };
        const joined = (): void => {
          if (membership.gateways().length >= count) done();
        };
        const timer = setTimeout(done, timeoutMs);
        membership.on('join', joined);
      });
    }
    return membership.gateways().length;
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

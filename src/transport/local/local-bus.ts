import type { Logger } from 'pino';
import { Bus, type BusOptions, type OutgoingBatch } from '../bus.js';
import type { Command } from '../../protocol/commands.js';
import { LocalHub, type LocalSubscriber } from './local-hub.js';

/**
 * The embedded default: no broker. Commands are handed over as objects (no encoding) through a
 * LocalHub that routes by key like a direct exchange, so the routing and binding logic is the
 * same code that runs on a broker.
 */
export class LocalBus extends Bus implements LocalSubscriber {
  constructor(
    options: BusOptions,
    log: Logger,
    private readonly hub: LocalHub,
  ) {
    // The in-process bus always routes by key: it costs nothing and exercises direct mode.
    super({ ...options, mode: 'direct' }, log);
    this.keysPerMessage = Number.POSITIVE_INFINITY;
  }

  accept(commands: Command[], sender: string): void {
    this.stats.messagesConsumed += 1;
    this.countConsumed(commands);
    this.deliver(commands, sender);
  }

  protected async connect(): Promise<void> {
    this.setConnected(true);
    await this.replaySubscriptions();
  }

  protected async disconnect(): Promise<void> {
    this.hub.unbindAll(this);
    this.setConnected(false);
  }

  protected async transmitAll(batches: OutgoingBatch[]): Promise<void> {
    for (const batch of batches) this.hub.route(batch.keys, batch.commands, this.instance);
  }

  protected async bindKey(key: string): Promise<void> {
    this.hub.bind(key, this);
  }

  protected async unbindKey(key: string): Promise<void> {
    this.hub.unbind(key, this);
  }
}

/**
 * The embedded default: no broker. Commands are handed over as objects (no encoding) through a
 * LocalHub that routes by key like a direct exchange, so the routing and binding logic is the
 * same code that runs on a broker. The bus above it runs in direct mode (container.ts).
 */
import type { Command } from '../../protocol/commands.js';
import type { BusOptions } from '../bus.js';
import type { OutgoingBatch, Presence, Transport, TransportHooks } from '../transport.js';
import type { LocalHub, LocalSubscriber } from './local-hub.js';

export class LocalTransport implements Transport, LocalSubscriber {
  /** Everything goes in one message: the hub copies it to every subscriber of any of its keys. */
  readonly keysPerMessage = Number.POSITIVE_INFINITY;
  readonly defaultMaxMessageBytes = Number.POSITIVE_INFINITY;
  private hooks: TransportHooks | null = null;
  private seq = 0;

  constructor(
    private readonly options: BusOptions,
    private readonly hub: LocalHub,
  ) {}

  accept(commands: Command[], sender: string, seq: number): void {
    this.hooks?.receiveDecoded(commands, sender, seq);
  }

  async connect(hooks: TransportHooks): Promise<void> {
    this.hooks = hooks;
    hooks.setConnected(true);
    await hooks.replaySubscriptions();
  }

  closing(): void {}

  async disconnect(): Promise<void> {
    this.hub.unbindAll(this);
    this.hooks?.setConnected(false);
  }

  async transmitAll(batches: OutgoingBatch[]): Promise<void> {
    // Numbered as a broker's messages are (a session takeover tells repeats by the number).
    for (const batch of batches) this.hub.route(batch.keys, batch.commands, this.options.instance, ++this.seq);
  }

  async bindKey(key: string): Promise<void> {
    this.hub.bind(key, this);
  }

  async unbindKey(key: string): Promise<void> {
    this.hub.unbind(key, this);
  }

  /** Every node is in this process: none is ever gone without leaving. */
  async probe(): Promise<Presence> {
    return 'unknown';
  }

  peerAnnounced(): void {}

  peerLeft(): void {}
}

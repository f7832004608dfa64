/**
 * A broker adapter's link to the bus above it (transport.ts): the hooks it was given at connect and
 * the two closing states every adapter keeps. One class for every adapter, so that "is the bus
 * connected", "the bus is closing" and the error of a closed bus mean the same on each broker.
 */
import { ErrorCodes, GatewireError } from '../errors.js';
import type { TransportHooks } from './transport.js';

export class BusLink {
  private hooks: TransportHooks | null = null;
  /** the bus is closing: no new waiting, what is in flight only */
  isClosing = false;
  /** disconnect() was called: nothing reconnects any more */
  stopping = false;

  /** `adapter` names the broker in the error of a use before connect ('AMQP', 'Redis'). */
  constructor(private readonly adapter: string) {}

  /** At connect: the bus's hooks, and a fresh start (a bus may connect again after closing). */
  attach(hooks: TransportHooks): void {
    this.hooks = hooks;
    this.stopping = false;
    this.isClosing = false;
  }

  /** Whether the bus counts as connected (the adapter's setup is done). */
  get isConnected(): boolean {
    return this.hooks?.isConnected === true;
  }

  /** The bus's hooks; a use before connect() is a programming error. */
  get bus(): TransportHooks {
    if (this.hooks === null) {
      throw new GatewireError(ErrorCodes.NOT_RUNNING, `the ${this.adapter} transport is not connected to a bus`);
    }
    return this.hooks;
  }

  /**
   * The bus is closing. While the broker is unreachable, what still waits is failed at once with
   * BUS_CLOSED (`failAll`): a shutdown must not wait for a broker that may never come back. While
   * connected, it goes out first and disconnect waits for the broker (the adapter's close timeout).
   */
  closing(failAll: (err: GatewireError) => void): void {
    this.isClosing = true;
    if (!this.isConnected) failAll(this.closedError(`the ${this.adapter} broker was unreachable when the bus closed`));
  }

  /** What waits is rejected with this when the bus closes (or closes with the broker unreachable). */
  closedError(message: string): GatewireError {
    return new GatewireError(ErrorCodes.BUS_CLOSED, message);
  }
}

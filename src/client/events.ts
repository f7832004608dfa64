/**
 * The client's typed events, and an emitter whose listeners can never throw out of it: what a
 * listener throws is passed to the 'error' listeners (what an 'error' listener throws is dropped).
 */
import type { ReceivedData } from './frames.js';

/** Given to 'open' after every `welcome`. */
export interface OpenEvent {
  clientId: string;
  /** whether the session went on (false: a new session; what the old one held is lost) */
  resumed: boolean;
  /** the clientId before a resume at another gateway */
  previousClientId?: string;
  /** why a hello with a token was not resumed: 'expired', 'overflow', 'refused', 'unreachable' */
  reason?: string;
}

export interface ReconnectingEvent {
  /** 1 for the first retry after a drop, counting up until a `welcome` */
  attempt: number;
  delayMs: number;
}

export interface CloseEvent {
  code: number;
  reason: string;
}

export interface GatewireClientEvents {
  open: OpenEvent;
  message: ReceivedData;
  reconnecting: ReconnectingEvent;
  close: CloseEvent;
  error: Error;
}

export type Listener<T> = (value: T) => void;

export class ClientEvents {
  private readonly listeners = new Map<keyof GatewireClientEvents, Set<Listener<never>>>();

  on<K extends keyof GatewireClientEvents>(event: K, listener: Listener<GatewireClientEvents[K]>): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return this;
  }

  off<K extends keyof GatewireClientEvents>(event: K, listener: Listener<GatewireClientEvents[K]>): this {
    this.listeners.get(event)?.delete(listener as Listener<never>);
    return this;
  }

  once<K extends keyof GatewireClientEvents>(event: K, listener: Listener<GatewireClientEvents[K]>): this {
    const wrapper: Listener<GatewireClientEvents[K]> = (value) => {
      this.off(event, wrapper);
      listener(value);
    };
    return this.on(event, wrapper);
  }

  protected emit<K extends keyof GatewireClientEvents>(event: K, value: GatewireClientEvents[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<GatewireClientEvents[K]>)(value);
      } catch (err) {
        if (event !== 'error') this.emit('error', toError(err));
      }
    }
  }
}

/** An Error with a `code` (GW_CLIENT_…). */
export function codedError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

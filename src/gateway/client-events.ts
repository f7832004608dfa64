/**
 * The client events a gateway hands to the worker (in this process, or the event producer of
 * split roles): built from the client as it is when the event happens.
 */
import type { Payload } from '../protocol/commands.js';
import type { ClientEvent, EventSink } from '../protocol/client-event.js';
import type { Client } from './client.js';

export class ClientEvents {
  /** where events go; null: nowhere (a gateway without a worker set yet) */
  sink: EventSink | null = null;

  constructor(private readonly instance: string) {}

  emit(client: Client, type: 'connect' | 'websocketConnect' | 'message' | 'close', data?: Payload): void {
    if (this.sink === null) return;
    const base = this.base(client);
    let event: ClientEvent;
    if (type === 'message') event = { ...base, type, data: data! };
    else if (type === 'websocketConnect') event = { ...base, type, request: client.request! };
    else event = { ...base, type };
    this.sink.dispatch(event);
  }

  resume(client: Client, previousClientId: string): void {
    this.sink?.dispatch({ ...this.base(client), type: 'resume', previousClientId });
  }

  request(client: Client, requestId: number | string, data: Payload): void {
    this.sink?.dispatch({ ...this.base(client), type: 'request', requestId, data });
  }

  private base(client: Client) {
    const root = client.resume?.root;
    return {
      clientId: client.id,
      gateway: this.instance,
      remoteAddress: client.remoteAddress,
      remotePort: client.remotePort,
      session: client.session,
      sessionVersion: client.sessionVersion,
      // Events of one resumed session keep one order (worker chains, event partitions).
      ...(root !== undefined && root !== client.id ? { root } : {}),
    };
  }
}

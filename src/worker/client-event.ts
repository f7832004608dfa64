/**
 * A client event as the gateway hands it to a worker (in process, or over the bus when the
 * roles run in separate processes).
 */
import type { Payload, Session } from '../protocol/commands.js';
import type { ClientRequestInfo } from '../gateway/client.js';

interface EventBase {
  clientId: string;
  /** instance tag of the gateway process holding the client */
  gateway: string;
  remoteAddress: string;
  remotePort: number;
  /** the session as the gateway holds it when the event happens */
  session: Session;
  /** the gateway's version of that session (bumped by every write) */
  sessionVersion: number;
}

export type ClientEvent =
  | (EventBase & { type: 'connect' })
  | (EventBase & { type: 'websocketConnect'; request: ClientRequestInfo })
  | (EventBase & { type: 'message'; data: Payload })
  | (EventBase & { type: 'close' });

export interface EventSink {
  dispatch(event: ClientEvent): void;
}

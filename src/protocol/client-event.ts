/**
 * A client event as the gateway hands it to a worker (in process, or over the bus when the
 * roles run in separate processes).
 */
import type { Payload, Session } from './commands.js';

/** What a WebSocket client's upgrade request said (its onWebSocketConnect event carries it). */
export interface ClientRequestInfo {
  url: string;
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, string>;
}

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
  /**
   * A resumed gatewire.v1 session's first clientId, when it has another one now (a takeover by
   * another gateway): the events of one session keep one order under it.
   */
  root?: string;
}

export type ClientEvent =
  | (EventBase & { type: 'connect' })
  | (EventBase & { type: 'websocketConnect'; request: ClientRequestInfo })
  | (EventBase & { type: 'message'; data: Payload })
  | (EventBase & { type: 'close' })
  | (EventBase & { type: 'resume'; previousClientId: string })
  | (EventBase & { type: 'request'; requestId: number | string; data: Payload });

export interface EventSink {
  dispatch(event: ClientEvent): void;
}

/** Where a worker reads a client's session from, and tells what it wrote (split roles). */
export interface SessionSource {
  read(event: ClientEvent): Promise<Session>;
  wrote(clientId: string, session: Session, version: number): void;
  forget(clientId: string): void;
}

export interface DispatchOptions {
  /** checked when the event's turn comes; false leaves it unhandled */
  guard?: () => boolean;
  sessions?: SessionSource;
}

/** What runs client events (the worker): resolves false when an event was left unhandled. */
export interface EventRunner {
  handle(event: ClientEvent, options?: DispatchOptions): Promise<boolean>;
}

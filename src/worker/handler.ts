/**
 * The application's Events handler: what a worker runs. Every callback is optional except
 * onMessage; each client callback gets the client id, its arguments, and a context.
 */
import type { Payload, Session } from '../protocol/commands.js';
import type { PushApi } from '../protocol/push-api.js';
import type { ClientRequestInfo } from '../gateway/client.js';

export interface EventContext {
  /** the push and query API */
  gateway: PushApi;
  clientId: string;
  /** the client's session; changes are written back when the handler finishes */
  session: Session;
  remoteAddress: string;
  remotePort: number;
  /** instance tag of the gateway process that holds the client */
  gatewayNode: string;
}

export interface WorkerContext {
  gateway: PushApi;
  /** this process's node id */
  nodeId: string;
}

export interface EventHandler {
  onWorkerStart?(ctx: WorkerContext): unknown;
  onConnect?(clientId: string, ctx: EventContext): unknown;
  onWebSocketConnect?(clientId: string, request: ClientRequestInfo, ctx: EventContext): unknown;
  onMessage(clientId: string, message: Payload, ctx: EventContext): unknown;
  /**
   * A gatewire.v1 client's session came back at another gateway with a new clientId
   * (docs/client-protocol.md); uid, groups and session came with it. A resume at the same
   * gateway keeps the clientId and calls nothing.
   */
  onResume?(clientId: string, info: { previousClientId: string }, ctx: EventContext): unknown;
  /**
   * A gatewire.v1 client's request (`client.request(data)`): what this returns (text or bytes;
   * anything else as JSON, undefined as '') is the reply; what it throws rejects the request with
   * the error's message.
   */
  onRequest?(clientId: string, data: Payload, ctx: EventContext): unknown;
  onClose?(clientId: string, ctx: EventContext): unknown;
  onWorkerStop?(ctx: WorkerContext): unknown;
}

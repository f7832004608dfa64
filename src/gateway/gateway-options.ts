/** A gateway's options (the gateway.* keys of the configuration) and its counters. */

/** What a gateway is told (the gateway.* keys of the configuration; docs/operations.md, Tuning). */
export interface GatewayOptions {
  /** listener URLs (listen-url.ts) */
  listen: string[];
  pingInterval: number;
  pingNotResponseLimit: number;
  pingData: string;
  maxPayload: number;
  sendBufferSize: number;
  maxMessagesPerSecond: number;
  staticDir: string;
  tls: { key: string; cert: string };
  /** gatewire.v1 sessions (docs/client-protocol.md): seconds a dropped one waits (0: none) */
  resumeWindow: number;
  /** bytes a session keeps for its resume */
  resumeBufferSize: number;
}

export interface GatewayCounters {
  connectionsOpened: number;
  connectionsClosed: number;
  messagesIn: number;
  messagesOut: number;
  /** disconnected clients by reason (a DropReason) */
  drops: Record<string, number>;
}

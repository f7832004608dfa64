/**
 * Every error gatewire raises on purpose carries a stable `code`. Codes are part of the public
 * contract: they are never renamed or reused for another meaning. The client codes
 * (PAYLOAD_TOO_LARGE … HEARTBEAT_TIMEOUT) name why the gateway disconnected a client: they are
 * logged with the disconnect (gateway/drop-reason.ts), not thrown to a caller.
 */

export const ErrorCodes = {
  /** A call (push or query API, CLI option, helper) got an argument it cannot use (a TypeError). */
  INVALID_ARGUMENT: 'GW_ERR_INVALID_ARGUMENT',
  /** The configuration failed validation at start. */
  INVALID_CONFIG: 'GW_ERR_INVALID_CONFIG',
  /** A listener URL could not be understood. */
  INVALID_LISTEN_URL: 'GW_ERR_INVALID_LISTEN_URL',
  /** The worker's handler module could not be loaded or lacks onMessage. */
  HANDLER_LOAD: 'GW_ERR_HANDLER_LOAD',
  /** The gateway.authorizer module does not export a function as default. */
  AUTHORIZER_LOAD: 'GW_ERR_AUTHORIZER_LOAD',
  /** start() was called on a node that was started before: a node starts once. */
  ALREADY_STARTED: 'GW_ERR_ALREADY_STARTED',
  /** `gatewire stop`: the signalled process did not exit in time. */
  STOP_TIMEOUT: 'GW_ERR_STOP_TIMEOUT',
  /** The bus is not connected and its bounded buffer of outgoing commands is full. */
  BUS_BUFFER_FULL: 'GW_ERR_BUS_BUFFER_FULL',
  /** The bus was closed while a command was waiting to go out. */
  BUS_CLOSED: 'GW_ERR_BUS_CLOSED',
  /** The bus did not reach its broker within bus.connectTimeout at start. */
  BUS_CONNECT_TIMEOUT: 'GW_ERR_BUS_CONNECT_TIMEOUT',
  /** The broker refused or failed an operation (bind, publish). */
  BUS_BROKER: 'GW_ERR_BUS_BROKER',
  /** A bus message could not be decoded. */
  BUS_DECODE: 'GW_ERR_BUS_DECODE',
  /** A bus message was unsigned or wrongly signed while a secret is configured. */
  BUS_SIGNATURE: 'GW_ERR_BUS_SIGNATURE',
  /** One command cannot fit in a broker message (bus.maxMessageBytes): the call is refused. */
  MESSAGE_TOO_LARGE: 'GW_ERR_MESSAGE_TOO_LARGE',
  /** The broker refused a message (e.g. larger than its own limit): it was dropped. */
  BUS_REFUSED: 'GW_ERR_BUS_REFUSED',
  /** The node that holds the client is not live (taken for dead, or gone): the call did nothing. */
  NODE_UNREACHABLE: 'GW_ERR_NODE_UNREACHABLE',
  /** A cluster query asked with `strict` missed the answer of at least one node. */
  QUERY_INCOMPLETE: 'GW_ERR_QUERY_INCOMPLETE',
  /** A request to one node (the owner of a client) got no answer in time. */
  REQUEST_TIMEOUT: 'GW_ERR_REQUEST_TIMEOUT',
  /** A remote node answered a request with an error. */
  REMOTE: 'GW_ERR_REMOTE',
  /** The node is not running (not started yet, or stopped). */
  NOT_RUNNING: 'GW_ERR_NOT_RUNNING',
  /** A client sent a message larger than gateway.maxPayload. */
  PAYLOAD_TOO_LARGE: 'GW_ERR_PAYLOAD_TOO_LARGE',
  /** A client stopped reading and its send buffer passed gateway.sendBufferSize. */
  SEND_BUFFER_FULL: 'GW_ERR_SEND_BUFFER_FULL',
  /** A client sent more messages per second than gateway.maxMessagesPerSecond. */
  RATE_LIMITED: 'GW_ERR_RATE_LIMITED',
  /** A client sent bytes that break the listener's protocol. */
  PROTOCOL: 'GW_ERR_PROTOCOL',
  /** A client showed no sign of life for gateway.pingNotResponseLimit heartbeat periods. */
  HEARTBEAT_TIMEOUT: 'GW_ERR_HEARTBEAT_TIMEOUT',
  /**
   * Redis (bus.redis.waitReplicas): the message was published, but fewer replicas than asked
   * confirmed it in time; the call is not taken as accepted (a failover now may lose it).
   */
  BUS_NOT_REPLICATED: 'GW_ERR_BUS_NOT_REPLICATED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class GatewireError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GatewireError';
    this.code = code;
  }
}

/** A bad API argument: a TypeError (as callers expect) that also carries a code. */
export class InvalidArgumentError extends TypeError {
  readonly code = ErrorCodes.INVALID_ARGUMENT;
  constructor(message: string) {
    super(message);
    this.name = 'TypeError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether a connect failed because nothing listens on the port (ECONNREFUSED: a broker restarting). */
export function isConnectRefused(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'ECONNREFUSED';
}

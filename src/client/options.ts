/**
 * The client's options, its error codes, its states and what it needs of a WebSocket class.
 */

/** The subprotocol the client asks for. */
export const PROTOCOL = 'gatewire.v1';

/** The `code` of the errors the client throws or rejects with. */
export const ClientErrorCodes = {
  /** send() or request() while the client holds maxQueuedMessages messages or maxQueuedBytes */
  QUEUE_FULL: 'GW_CLIENT_QUEUE_FULL',
  /** no reply within the request's timeoutMs */
  TIMEOUT: 'GW_CLIENT_TIMEOUT',
  /** the server's handler threw; the message is the handler's error message */
  REQUEST_FAILED: 'GW_CLIENT_REQUEST_FAILED',
  /** the request had been sent in a session that could not be resumed: its reply is lost */
  NOT_RECOVERED: 'GW_CLIENT_NOT_RECOVERED',
  /** the client is closed (or closed while the request waited) */
  CLOSED: 'GW_CLIENT_CLOSED',
  /** send() or request() with something that is neither text nor bytes */
  INVALID_ARGUMENT: 'GW_CLIENT_INVALID_ARGUMENT',
} as const;

/** What the client needs of a WebSocket: the browser's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** ws only: drop the TCP connection at once */
  terminate?(): void;
  onopen: ((event: never) => void) | null;
  onmessage: ((event: never) => void) | null;
  onclose: ((event: never) => void) | null;
  onerror: ((event: never) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

export interface GatewireClientOptions {
  /** the WebSocket class. @default globalThis.WebSocket */
  WebSocket?: WebSocketConstructor;
  /** reconnect delays: random(0, min(maxDelayMs, minDelayMs × 2^(attempt − 1))). @default 250 */
  minDelayMs?: number;
  /** @default 10000 */
  maxDelayMs?: number;
  /** a number in [0, 1) (for tests). @default Math.random */
  random?: () => number;
  /** the most messages (and requests) the client holds: queued, or sent and not acknowledged. @default 1000 */
  maxQueuedMessages?: number;
  /** the most bytes of them it holds. @default 1048576 */
  maxQueuedBytes?: number;
  /** acknowledge at most this often while messages arrive (and at once after each welcome). @default 100 */
  ackIntervalMs?: number;
  /** a link with no frame for this long is dead. @default 2 × welcome.heartbeat + 5 s; 10000 after own ping */
  heartbeatTimeoutMs?: number;
  /** when the server has no heartbeat, the client pings this often. @default 15000 */
  pingIntervalMs?: number;
  /** a connection that has no welcome after this long is dropped and retried. @default 10000 */
  helloTimeoutMs?: number;
  /** the same as helloTimeoutMs */
  openTimeoutMs?: number;
  /** the default timeoutMs of request(). @default 10000 */
  requestTimeoutMs?: number;
}

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Server close codes after which the client reconnects; any other close by the server is final. */
export const RESUMABLE_CLOSE_CODES: ReadonlySet<number> = new Set([1001, 1005, 1006, 1012, 1013]);

export type ResolvedOptions = Required<Omit<GatewireClientOptions, 'heartbeatTimeoutMs' | 'openTimeoutMs'>>;

export function resolveOptions(options: GatewireClientOptions): ResolvedOptions {
  const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!WebSocket) throw new TypeError('GatewireClient: no WebSocket class (pass options.WebSocket)');
  return {
    WebSocket,
    minDelayMs: options.minDelayMs ?? 250,
    maxDelayMs: options.maxDelayMs ?? 10000,
    random: options.random ?? Math.random,
    maxQueuedMessages: options.maxQueuedMessages ?? 1000,
    maxQueuedBytes: options.maxQueuedBytes ?? 1024 * 1024,
    ackIntervalMs: options.ackIntervalMs ?? 100,
    pingIntervalMs: options.pingIntervalMs ?? 15000,
    helloTimeoutMs: options.helloTimeoutMs ?? options.openTimeoutMs ?? 10000,
    requestTimeoutMs: options.requestTimeoutMs ?? 10000,
  };
}

/** The delay before retry `attempt` (1, 2, …): full jitter, random(0, min(max, min × 2^(attempt − 1))). */
export function backoffDelay(attempt: number, options: Pick<ResolvedOptions, 'minDelayMs' | 'maxDelayMs' | 'random'>) {
  const ceiling = Math.min(options.maxDelayMs, options.minDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(Math.min(Math.max(options.random(), 0), 1) * ceiling);
}

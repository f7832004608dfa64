/**
 * What a listener needs from the gateway, and what the gateway needs from a listener.
 */
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { ClientRequestInfo } from './client.js';
import type { TcpProtocol } from './listen-url.js';

export interface AuthorizationRequest {
  /** 'ws' for WebSocket upgrades (with url, headers, query), 'tcp' for raw TCP connections */
  transport: 'ws' | 'tcp';
  remoteAddress: string;
  remotePort: number;
  url?: string;
  origin?: string;
  headers?: Record<string, string | string[] | undefined>;
  query?: Record<string, string>;
}

/**
 * Decides who may connect: true lets the client in; false rejects with HTTP 401; a number
 * rejects with that HTTP status (e.g. 403); `{ identity }` lets it in as that identity, which a
 * gatewire.v1 session keeps: a resume must be let in as the same identity
 * (docs/client-protocol.md). TCP connections that are refused are closed.
 */
export type Authorizer = (
  request: AuthorizationRequest,
) => boolean | number | { identity: string } | Promise<boolean | number | { identity: string }>;

/** What an authorization hook lets in: yes, an HTTP status to refuse with, or yes with an identity. */
export type Admission = true | number | { identity: string };

export interface ConnectionAcceptor {
  authorize(request: AuthorizationRequest): Promise<Admission>;
  acceptWebSocket(ws: WebSocket, socket: Socket, request: ClientRequestInfo, identity?: string | null): void;
  acceptTcp(socket: Socket, protocol: TcpProtocol): void;
}

export interface Listener {
  /** the URL it listens on, with the real port when 0 was asked */
  readonly url: string;
  readonly port: number;
  start(): Promise<void>;
  /** Stops accepting; open connections stay. */
  stop(): Promise<void>;
}

/** Listens on host:port; resolves with the real port (the one the system chose when 0 was asked). */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

/** host:port for a URL (an IPv6 host in brackets). */
export function urlAuthority(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The acceptor's verdict; a hook that throws is logged and counts as 500. */
export async function verdictOf(
  acceptor: ConnectionAcceptor,
  request: AuthorizationRequest,
  log: Logger,
  onThrow: string,
): Promise<Admission> {
  try {
    return await acceptor.authorize(request);
  } catch (err) {
    log.error({ err }, onThrow);
    return 500;
  }
}

/** Whether an authorization hook's answer lets the client in as an identity. */
export function isIdentity(value: unknown): value is { identity: string } {
  return value !== null && typeof value === 'object' && typeof (value as { identity?: unknown }).identity === 'string';
}

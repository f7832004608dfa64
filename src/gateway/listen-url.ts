import { ErrorCodes, GatewireError } from '../errors.js';

export type TcpProtocol = 'text' | 'frame';

export type ListenSpec =
  | { kind: 'ws'; secure: boolean; host: string; port: number; path: string; url: string }
  | { kind: 'tcp'; secure: boolean; host: string; port: number; protocol: TcpProtocol; url: string };

/**
 * Parses a listener URL: ws://host:port/path, wss://…, tcp://host:port?protocol=text|frame,
 * tls://… (TCP over TLS). Port 0 asks the system for a free port.
 */
export function parseListenUrl(url: string): ListenSpec {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new GatewireError(ErrorCodes.INVALID_LISTEN_URL, `listener URL ${JSON.stringify(url)} is not a URL`);
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  if (scheme !== 'ws' && scheme !== 'wss' && scheme !== 'tcp' && scheme !== 'tls') {
    throw new GatewireError(
      ErrorCodes.INVALID_LISTEN_URL,
      `listener URL ${url} has scheme ${scheme}; allowed: ws, wss, tcp, tls`,
    );
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new GatewireError(ErrorCodes.INVALID_LISTEN_URL, `listener URL ${url} has no host`);
  const port = portOf(parsed, url, scheme);
  if (port === null) {
    throw new GatewireError(
      ErrorCodes.INVALID_LISTEN_URL,
      `listener URL ${url} has no port (use :0 for any free port)`,
    );
  }
  if (scheme === 'ws' || scheme === 'wss') {
    return { kind: 'ws', secure: scheme === 'wss', host, port, path: parsed.pathname || '/', url };
  }
  if (scheme === 'tcp' || scheme === 'tls') {
    const protocol = parsed.searchParams.get('protocol') ?? 'text';
    if (protocol !== 'text' && protocol !== 'frame') {
      throw new GatewireError(
        ErrorCodes.INVALID_LISTEN_URL,
        `listener URL ${url} has protocol=${protocol}; allowed: text, frame`,
      );
    }
    return { kind: 'tcp', secure: scheme === 'tls', host, port, protocol, url };
  }
  throw new GatewireError(
    ErrorCodes.INVALID_LISTEN_URL,
    `listener URL ${url} has scheme ${scheme}; allowed: ws, wss, tcp, tls`,
  );
}

/**
 * The port written in the URL, or null if none is. WHATWG URLs drop a port equal to the scheme's
 * default (ws 80, wss 443), so `ws://0.0.0.0:80/ws` parses with port ''; the written text tells.
 */
function portOf(parsed: URL, url: string, scheme: string): number | null {
  if (parsed.port !== '') return Number(parsed.port);
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*:\d+(?:[/?#]|$)/i.test(url)) return null;
  return scheme === 'wss' ? 443 : 80;
}

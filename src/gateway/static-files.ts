import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/**
 * Where a page gets the client library (`gatewire/client`, docs/api.md) from a gateway that
 * serves static files: `<script type="module">import { GatewireClient } from
 * '/gatewire/client/gatewire-client.js'</script>`, no CDN and no build step. The files are the
 * package's own compiled ones.
 */
export const CLIENT_LIBRARY_PATH = '/gatewire/client/';
const CLIENT_LIBRARY_DIR = fileURLToPath(new URL('../client/', import.meta.url));

/**
 * Serves files from one folder (GET and HEAD only; no path outside the folder), and the client
 * library under CLIENT_LIBRARY_PATH.
 */
export function serveStatic(root: string, req: IncomingMessage, res: ServerResponse): void {
  if (root === '' || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404).end();
    return;
  }
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  } catch {
    res.writeHead(400).end();
    return;
  }
  let base = path.resolve(root);
  if (pathname.startsWith(CLIENT_LIBRARY_PATH) && pathname.endsWith('.js')) {
    base = CLIENT_LIBRARY_DIR.replace(/[\\/]$/, '');
    pathname = `/${pathname.slice(CLIENT_LIBRARY_PATH.length)}`;
  }
  if (pathname.endsWith('/')) pathname += 'index.html';
  const file = path.resolve(base, `.${pathname}`);
  if (!file.startsWith(base + path.sep)) {
    res.writeHead(404).end();
    return;
  }
  fs.readFile(file, (err, data) => {
    if (err) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    res.end(req.method === 'HEAD' ? undefined : data);
  });
}

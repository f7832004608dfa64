import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { EventHandler } from './handler.js';
import { ErrorCodes, GatewireError } from '../errors.js';

/**
 * Imports the handler module: its default export, or its named exports. `fresh` adds a query
 * to the URL so a reload gets the file as it is on disk now, not the cached module.
 */
export async function loadHandler(modulePath: string, fresh = false): Promise<EventHandler> {
  if (modulePath === '') {
    throw new GatewireError(
      ErrorCodes.HANDLER_LOAD,
      'worker.handler is empty: name the module with the Events handler',
    );
  }
  const url = pathToFileURL(path.resolve(modulePath));
  if (fresh) url.search = `?reload=${Date.now()}-${Math.random().toString(36).slice(2)}`;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url.href)) as Record<string, unknown>;
  } catch (err) {
    throw new GatewireError(
      ErrorCodes.HANDLER_LOAD,
      `cannot load worker.handler ${modulePath}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const candidate = (mod.default && typeof mod.default === 'object' ? mod.default : mod) as Partial<EventHandler>;
  if (typeof candidate.onMessage !== 'function') {
    throw new GatewireError(ErrorCodes.HANDLER_LOAD, `worker.handler ${modulePath} has no onMessage function`);
  }
  return candidate as EventHandler;
}

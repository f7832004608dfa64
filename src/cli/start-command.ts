import { loadConfig, type ConfigInput } from '../config/load.js';
import { createNode } from '../node.js';
import type { Role } from '../config/formats.js';

export interface StartArgs {
  config?: string;
  role?: string;
}

/** `gatewire start`: runs a node from config and env until SIGINT/SIGTERM; SIGHUP reloads the handler. */
export async function startCommand(args: StartArgs): Promise<void> {
  const values: ConfigInput = {};
  if (args.role !== undefined) {
    values.node = { roles: (args.role === 'all' ? ['gateway', 'worker'] : args.role.split(',')) as Role[] };
  }
  const config = loadConfig({ files: args.config ? [args.config] : [], values });
  const node = await createNode({ config });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    node.log.info({ signal }, 'shutting down');
    node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        node.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    node.reload().catch((err: unknown) => node.log.error({ err }, 'reload failed; the previous handler stays'));
  });
  await node.start();
  for (const url of node.urls) process.stderr.write(`gatewire: listening on ${url}\n`);
}

import cluster from 'node:cluster';
import { loadConfig, type ConfigInput } from '../config/load.js';
import { createNode } from '../node.js';
import type { Role } from '../config/formats.js';
import { Supervisor } from './supervisor.js';
import { pidFileFor, removePidFile, writePidFile } from './pid-files.js';
import { shutDown } from './shutdown.js';
import { InvalidArgumentError } from '../errors.js';

export interface StartArgs {
  config?: string;
  role?: string;
  gateways?: string;
  workers?: string;
  pidFile?: string;
}

function count(value: string | undefined, name: string): number {
  if (value === undefined) return 0;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(`--${name} must be a whole number, got ${JSON.stringify(value)}.`);
  return n;
}

/**
 * `gatewire start`: runs a node from config and env until SIGINT/SIGTERM; SIGHUP reloads the
 * handler. With --gateways/--workers it runs a supervisor that forks those processes instead.
 */
export async function startCommand(args: StartArgs): Promise<void> {
  const supervised = cluster.isWorker && process.env.GATEWIRE_SUPERVISED === '1';
  const configFile = supervised ? process.env.GATEWIRE_SUPERVISED_CONFIG : args.config;
  const values: ConfigInput = {};
  if (args.role !== undefined && !supervised) {
    values.node = { roles: (args.role === 'all' ? ['gateway', 'worker'] : args.role.split(',')) as Role[] };
  }
  const config = loadConfig({ files: configFile ? [configFile] : [], values });
  const pidPattern = args.pidFile ?? config.node.pidFile;

  if (!supervised && (args.gateways !== undefined || args.workers !== undefined)) {
    // The supervisor is no node: it goes by node.id when one is set, else by its process id.
    const id = config.node.id || `supervisor-${process.pid}`;
    const supervisor = new Supervisor({
      gateways: count(args.gateways, 'gateways'),
      workers: count(args.workers, 'workers'),
      pidFile: pidFileFor(pidPattern, id),
      id,
      configFile: args.config,
      shutdownTimeout: config.node.shutdownTimeout,
    });
    await supervisor.start();
    return;
  }

  // Output is best effort: a reader that closed stdout or stderr (EPIPE) must not crash the
  // node, whether gatewire or the application's console.log wrote.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const node = await createNode({ config });
  const id = node.identity.id;
  const pidFile = supervised ? '' : pidFileFor(pidPattern, id);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    shutDown({
      signal,
      timeoutMs: config.node.shutdownTimeout,
      log: node.log,
      stop: () => node.stop(),
      afterStop: () => {
        removePidFile(pidFile);
      },
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    node.reload().catch((err: unknown) => node.log.error({ err }, 'reload failed; the previous handler stays'));
  });
  // Before the start, so a second node of the same id from this folder stops here (exit 2).
  writePidFile(pidFile, id);
  try {
    await node.start();
  } catch (err) {
    // A signal during the start stopped it: the shutdown ends the process, not this error.
    if (stopping) return;
    node.log.error({ err }, 'start failed');
    removePidFile(pidFile);
    throw err;
  }
  if (supervised) {
    process.send?.({ type: 'ready' });
  } else {
    for (const url of node.urls) process.stderr.write(`gatewire: listening on ${url}\n`);
    // The page a browser opens: WebSocket listeners serve gateway.staticDir over HTTP.
    if (config.gateway.staticDir !== '') {
      for (const url of node.urls.filter((u) => /^wss?:/.test(u))) {
        const page = new URL(url);
        process.stderr.write(`gatewire: page at ${page.protocol === 'wss:' ? 'https' : 'http'}://${page.host}/\n`);
      }
    }
  }
}

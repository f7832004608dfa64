import { loadConfig } from '../config/load.js';
import { ErrorCodes, GatewireError } from '../errors.js';
import { alive, selectNodes, type RunningNode, type Selection } from './pid-files.js';

export interface SignalArgs extends Selection {
  config?: string;
}

function targets(args: SignalArgs): RunningNode[] {
  const pattern = args.pidFile ?? loadConfig({ files: args.config ? [args.config] : [] }).node.pidFile;
  return selectNodes(pattern, args);
}

/** `gatewire reload`: SIGHUP to the node(s) or supervisor(s) (handler re-import, or rolling worker restart). */
export function reloadCommand(args: SignalArgs): void {
  for (const node of targets(args)) {
    process.kill(node.pid, 'SIGHUP');
    process.stderr.write(`gatewire: reload signalled to ${node.id} (pid ${node.pid})\n`);
  }
}

/** `gatewire stop`: SIGTERM to the node(s) or supervisor(s), then waits (up to 60 s) until they are gone. */
export async function stopCommand(args: SignalArgs): Promise<void> {
  const nodes = targets(args);
  for (const node of nodes) process.kill(node.pid, 'SIGTERM');
  // Another process's exit raises no event here: polling with signal 0 is the way to see it.
  const deadline = Date.now() + 60000;
  let waiting = nodes;
  while (waiting.length > 0) {
    for (const node of waiting.filter((n) => !alive(n.pid)))
      process.stderr.write(`gatewire: ${node.id} (pid ${node.pid}) stopped\n`);
    waiting = waiting.filter((n) => alive(n.pid));
    if (waiting.length === 0) break;
    if (Date.now() > deadline)
      throw new GatewireError(
        ErrorCodes.STOP_TIMEOUT,
        `${waiting.map((n) => `process ${n.pid}`).join(', ')} did not stop within 60 s`,
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

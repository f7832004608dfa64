import { loadConfig } from '../config/load.js';
import { readPidFile } from './supervisor.js';
import { ErrorCodes, GatewireError } from '../errors.js';

export interface SignalArgs {
  config?: string;
  pidFile?: string;
}

function pidOf(args: SignalArgs): number {
  const file = args.pidFile ?? loadConfig({ files: args.config ? [args.config] : [] }).node.pidFile;
  return readPidFile(file);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `gatewire reload`: SIGHUP to the node or supervisor (handler re-import, or rolling worker restart). */
export function reloadCommand(args: SignalArgs): void {
  const pid = pidOf(args);
  process.kill(pid, 'SIGHUP');
  process.stderr.write(`gatewire: reload signalled to ${pid}\n`);
}

/** `gatewire stop`: SIGTERM to the node or supervisor, then waits (up to 60 s) until it is gone. */
export async function stopCommand(args: SignalArgs): Promise<void> {
  const pid = pidOf(args);
  process.kill(pid, 'SIGTERM');
  // Another process's exit raises no event here: polling with signal 0 is the way to see it.
  const deadline = Date.now() + 60000;
  while (alive(pid)) {
    if (Date.now() > deadline)
      throw new GatewireError(ErrorCodes.STOP_TIMEOUT, `process ${pid} did not stop within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  process.stderr.write(`gatewire: ${pid} stopped\n`);
}

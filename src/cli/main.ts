/**
 * The gatewire command line:
 *   gatewire start [--config FILE] [--role gateway|worker|all] [--gateways N --workers M] [--pid-file F]
 *   gatewire reload | stop [--pid-file F] [--config FILE]
 *   gatewire status [--config FILE] [--json]
 *   gatewire push (--client ID | --uid UID | --group G | --all) (TEXT | --file FILE | --stdin) [--config FILE]
 *
 * Folder cli/ (layer 5, the top: may import any layer; nothing below imports it). Flow:
 * main -> one command module (start, supervisor, signal, status, push) -> node.ts or
 * publisher.ts -> shutdown.ts on signals.
 */
import { parseArgs } from 'node:util';
import { startCommand } from './start-command.js';
import { pushCommand } from './push-command.js';
import { reloadCommand, stopCommand } from './signal-command.js';
import { statusCommand } from './status-command.js';

const USAGE = `usage:
  gatewire start [--config FILE] [--role gateway|worker|all] [--gateways N --workers M] [--pid-file FILE]
  gatewire reload [--pid-file FILE]      re-import the handler (one process) or restart the workers one at a time
  gatewire stop [--pid-file FILE]        stop the node or the whole supervised cluster
  gatewire status [--config FILE] [--json]   the live cluster, read from the bus
  gatewire push (--client ID | --uid UID | --group G | --all) (TEXT | --file FILE | --stdin) [--config FILE]
Configuration also comes from config/<NODE_ENV>.json and GATEWIRE_* environment variables (see README).`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { values } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string' },
          role: { type: 'string' },
          gateways: { type: 'string' },
          workers: { type: 'string' },
          'pid-file': { type: 'string' },
        },
        strict: true,
      });
      await startCommand({ ...values, pidFile: values['pid-file'] });
      return -1; // keeps running
    }
    case 'reload':
    case 'stop': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string' }, 'pid-file': { type: 'string' } },
        strict: true,
      });
      const args = { config: values.config, pidFile: values['pid-file'] };
      if (command === 'reload') reloadCommand(args);
      else await stopCommand(args);
      return 0;
    }
    case 'status': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string' }, json: { type: 'boolean' } },
        strict: true,
      });
      await statusCommand(values);
      return 0;
    }
    case 'push': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string' },
          client: { type: 'string', multiple: true },
          uid: { type: 'string', multiple: true },
          group: { type: 'string', multiple: true },
          all: { type: 'boolean' },
          file: { type: 'string' },
          stdin: { type: 'boolean' },
        },
        allowPositionals: true,
        strict: true,
      });
      await pushCommand({ ...values, message: positionals.length > 0 ? positionals.join(' ') : undefined });
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`gatewire: unknown command ${command}\n${USAGE}\n`);
      return 2;
  }
}

export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: unknown) => {
      // The stable code (src/errors.ts) first, so scripts and operators can match on it.
      const code = (err as { code?: unknown } | null)?.code;
      const prefix = typeof code === 'string' && code.startsWith('GW_ERR_') ? `${code}: ` : '';
      process.stderr.write(`gatewire: ${prefix}${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    },
  );
}

/**
 * The gatewire command line:
 *   gatewire start [--config FILE] [--role gateway|worker|all]
 *   gatewire push (--client ID | --uid UID | --group G | --all) (TEXT | --file FILE | --stdin) [--config FILE]
 */
import { parseArgs } from 'node:util';
import { startCommand } from './start-command.js';
import { pushCommand } from './push-command.js';

const USAGE = `usage:
  gatewire start [--config FILE] [--role gateway|worker|all]
  gatewire push (--client ID | --uid UID | --group G | --all) (TEXT | --file FILE | --stdin) [--config FILE]
Configuration also comes from config/<NODE_ENV>.json and GATEWIRE_* environment variables (see README).`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string' }, role: { type: 'string' } },
        strict: true,
      });
      await startCommand(values);
      return -1; // keeps running
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
      process.stderr.write(`gatewire: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    },
  );
}

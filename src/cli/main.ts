/**
 * The gatewire command line:
 *   gatewire start [--config FILE] [--role gateway|worker|all] [--gateways N --workers M] [--pid-file F]
 *   gatewire reload | stop [--node ID | --all] [--pid-file F] [--config FILE]
 *   gatewire status [--config FILE] [--json] [--verbose]
 *   gatewire push (--client ID | --uid UID | --group G | --all) (TEXT | --file FILE | --stdin) [--config FILE] [--verbose]
 * Every command takes --help. Exit codes: 0 done, 1 failed, 2 a usage mistake (unknown option,
 * the local bus for push/status, several nodes and none chosen) or a coded gatewire error.
 *
 * Folder cli/ (layer 5, the top: may import any layer; nothing below imports it). Flow:
 * main -> one command module (start, supervisor, signal, status, push), imported only when it
 * runs (a push loads no gateway) -> node.ts or publisher.ts -> shutdown.ts on signals.
 */
import { parseArgs } from 'node:util';
import { UsageError } from './cli-output.js';

interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  /** shown after the option in --help, e.g. FILE */
  arg?: string;
  help: string;
}

interface CommandSpec {
  usage: string;
  about: string;
  options: Record<string, OptionSpec>;
  positionals?: string;
  /** resolves to the exit code; -1: the process keeps running */
  run: (values: Record<string, unknown>, positionals: string[]) => Promise<number>;
}

const CONFIG: OptionSpec = {
  type: 'string',
  arg: 'FILE',
  help: 'a JSON configuration file (with config/<NODE_ENV>.json and GATEWIRE_* env)',
};
const VERBOSE: OptionSpec = {
  type: 'boolean',
  help: 'log info lines too (on stderr; by default only warnings and errors)',
};
const SELECT: Record<string, OptionSpec> = {
  node: { type: 'string', arg: 'ID', help: 'the node with this id (one of several started from this folder)' },
  all: { type: 'boolean', help: 'every node started from this folder' },
  'pid-file': { type: 'string', arg: 'FILE', help: 'the process recorded in this file (as given to start --pid-file)' },
  config: CONFIG,
};

const str = (v: unknown): string | undefined => v as string | undefined;
const strs = (v: unknown): string[] | undefined => v as string[] | undefined;
const bool = (v: unknown): boolean | undefined => v as boolean | undefined;

async function signal(command: 'stop' | 'reload', values: Record<string, unknown>): Promise<number> {
  const { reloadCommand, stopCommand } = await import('./signal-command.js');
  const args = {
    config: str(values.config),
    pidFile: str(values['pid-file']),
    node: str(values.node),
    all: bool(values.all),
  };
  if (command === 'reload') reloadCommand(args);
  else await stopCommand(args);
  return 0;
}

const COMMANDS: Record<string, CommandSpec> = {
  start: {
    usage: 'gatewire start [--config FILE] [--role gateway|worker|all] [--gateways N --workers M] [--pid-file FILE]',
    about:
      'Runs a node until SIGINT/SIGTERM (SIGHUP re-imports the handler); with --gateways/--workers, a supervisor that forks those processes.',
    options: {
      config: CONFIG,
      role: { type: 'string', arg: 'ROLES', help: 'gateway, worker or all (node.roles)' },
      gateways: { type: 'string', arg: 'N', help: 'supervise N gateway processes (they share the ports)' },
      workers: { type: 'string', arg: 'M', help: 'supervise M worker processes' },
      'pid-file': {
        type: 'string',
        arg: 'FILE',
        help: 'where to record the process id (node.pidFile, default .gatewire/{id}.pid; "" : nowhere)',
      },
    },
    async run(values) {
      const { startCommand } = await import('./start-command.js');
      await startCommand({
        config: str(values.config),
        role: str(values.role),
        gateways: str(values.gateways),
        workers: str(values.workers),
        pidFile: str(values['pid-file']),
      });
      return -1;
    },
  },
  reload: {
    usage: 'gatewire reload [--node ID | --all] [--pid-file FILE] [--config FILE]',
    about:
      'Re-imports the handler of a node, or restarts the workers of a supervised cluster one at a time (SIGHUP). With one node running from this folder, that one; with several, name one with --node or use --all.',
    options: SELECT,
    run: (values) => signal('reload', values),
  },
  stop: {
    usage: 'gatewire stop [--node ID | --all] [--pid-file FILE] [--config FILE]',
    about:
      'Stops a node or a whole supervised cluster (SIGTERM) and waits until it is gone. With one node running from this folder, that one; with several, name one with --node or use --all.',
    options: SELECT,
    run: (values) => signal('stop', values),
  },
  status: {
    usage: 'gatewire status [--config FILE] [--json] [--verbose]',
    about:
      'Prints the live cluster, read from the bus (amqp or redis): id, roles, address, clients, uids, groups, uptime of every node.',
    options: { config: CONFIG, json: { type: 'boolean', help: 'print JSON instead of a table' }, verbose: VERBOSE },
    async run(values) {
      const { statusCommand } = await import('./status-command.js');
      await statusCommand({ config: str(values.config), json: bool(values.json), verbose: bool(values.verbose) });
      return 0;
    },
  },
  push: {
    usage:
      'gatewire push (--client ID | --uid UID | --group G | --all) (TEXT | --file FILE | --stdin) [--config FILE] [--verbose]',
    about:
      'Pushes one message through the bus (amqp or redis) and prints one line once the broker confirmed it. Text is sent as text, --file and --stdin as bytes.',
    positionals: 'TEXT',
    options: {
      client: { type: 'string', multiple: true, arg: 'ID', help: 'to this client (repeatable)' },
      uid: { type: 'string', multiple: true, arg: 'UID', help: 'to every client bound to this uid (repeatable)' },
      group: { type: 'string', multiple: true, arg: 'G', help: 'to every client in this group (repeatable)' },
      all: { type: 'boolean', help: 'to every client' },
      file: { type: 'string', arg: 'FILE', help: "the message is this file's bytes" },
      stdin: { type: 'boolean', help: 'the message is the bytes read from stdin' },
      config: CONFIG,
      verbose: VERBOSE,
    },
    async run(values, positionals) {
      const { pushCommand } = await import('./push-command.js');
      await pushCommand({
        config: str(values.config),
        client: strs(values.client),
        uid: strs(values.uid),
        group: strs(values.group),
        all: bool(values.all),
        file: str(values.file),
        stdin: bool(values.stdin),
        verbose: bool(values.verbose),
        message: positionals.length > 0 ? positionals.join(' ') : undefined,
      });
      return 0;
    },
  },
};

const USAGE = `usage:
  ${COMMANDS.start!.usage}
  ${COMMANDS.reload!.usage}
  ${COMMANDS.stop!.usage}
  ${COMMANDS.status!.usage}
  ${COMMANDS.push!.usage}
Each command takes --help. Configuration also comes from config/<NODE_ENV>.json and GATEWIRE_*
environment variables (see README).`;

function commandHelp(name: string, spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([option, o]) => [`--${option}${o.arg ? ` ${o.arg}` : ''}`, o.help]);
  rows.push(['-h, --help', 'this help']);
  const width = Math.max(...rows.map(([left]) => left!.length));
  return [
    `usage: ${spec.usage}`,
    '',
    spec.about,
    '',
    'options:',
    ...rows.map(([left, help]) => `  ${left!.padEnd(width)}  ${help}`),
    '',
    `(gatewire ${name}: configuration also from config/<NODE_ENV>.json and GATEWIRE_* env, see README)`,
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    const topic = command === 'help' ? rest[0] : undefined;
    const spec = topic === undefined ? undefined : COMMANDS[topic];
    process.stdout.write(`${spec ? commandHelp(topic!, spec) : USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (spec === undefined) {
    process.stderr.write(`gatewire: unknown command ${command}\n${USAGE}\n`);
    return 2;
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    const options = Object.fromEntries(
      Object.entries(spec.options).map(([name, o]) => [name, { type: o.type, multiple: o.multiple === true }]),
    );
    parsed = parseArgs({
      args: rest,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: spec.positionals !== undefined,
      strict: true,
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`gatewire ${command}: ${message}\n(gatewire ${command} --help lists the options)\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`${commandHelp(command, spec)}\n`);
    return 0;
  }
  return spec.run(parsed.values, parsed.positionals);
}

export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof UsageError) {
        process.stderr.write(`gatewire: ${err.message}\n`);
        process.exit(err.exitCode);
      }
      // The stable code (src/errors.ts) first, so scripts and operators can match on it.
      const code = (err as { code?: unknown } | null)?.code;
      const prefix = typeof code === 'string' && code.startsWith('GW_ERR_') ? `${code}: ` : '';
      process.stderr.write(`gatewire: ${prefix}${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    },
  );
}

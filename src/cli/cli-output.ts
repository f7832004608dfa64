/**
 * What the short commands (push, status) print: their result alone on stdout; log lines go to
 * stderr, warnings and errors only unless --verbose. Also the error that ends a command with
 * exit code 2 and one sentence (a usage mistake, not a failure of the cluster).
 */
import { pino, type Logger } from 'pino';
import type { Container } from 'inversify';
import { StdoutDestination } from '../logger.js';
import { TOKENS } from '../di/tokens.js';
import type { GatewireConfig } from '../config/load.js';

/** A mistake in how the command was called or where: exit 2, the message alone on stderr. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

/** The level of a short command's log: at most `warn`, `info` or more with --verbose. */
export function cliLogLevel(configured: string, verbose: boolean): string {
  const values = pino.levels.values;
  const floor = verbose ? 'info' : 'warn';
  const configuredValue = values[configured] ?? values.info!;
  // verbose: the more detailed of info and the configured level; otherwise the quieter of warn and it
  if (verbose) return configuredValue < values.info! ? configured : 'info';
  return configuredValue > values[floor]! ? configured : floor;
}

/** A logger on stderr (file descriptor 2, never blocking: see logger.ts). */
export function stderrLogger(level: string): Logger {
  const destination = new StdoutDestination(2);
  process.once('exit', () => destination.flushSync());
  return pino({ level, base: { pid: process.pid } }, destination);
}

/** For createPublisher: the container logs on stderr at the command's level. */
export function logToStderr(config: GatewireConfig, verbose: boolean): (container: Container) => void {
  return (container) => {
    container.rebind(TOKENS.Logger).toConstantValue(stderrLogger(cliLogLevel(config.log.level, verbose)));
  };
}

/** push and status talk to other processes: the in-process bus reaches none. */
export function requireSharedBus(config: GatewireConfig, command: string): void {
  if (config.bus.kind === 'local')
    throw new UsageError(
      `${command} needs a shared bus: the local bus (bus.kind "local", the default) cannot reach other processes; set bus.kind to amqp or redis (GATEWIRE_BUS__KIND).`,
    );
}

/**
 * Loads and checks the configuration (schema.ts, formats.ts), the one place a node's settings
 * come from. Folder config/ (layer 5, the top: may import any layer; nothing below imports it;
 * the lower layers get their options as plain values, e.g. GatewayOptions, BusOptions). Flow:
 * schema defaults < config/<NODE_ENV>.json < files < values < env -> convict validation (the
 * formats throw plain errors, wrapped here into GW_ERR_INVALID_CONFIG) -> cross-key rules.
 * Relative paths in a file resolve from the file's folder (file-paths.ts); from values and env,
 * from the working directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import convict from 'convict';
import { schema } from './schema.js';
import { registerFormats, type BusKind, type Role } from './formats.js';
import type { GatewayOptions } from '../gateway/gateway.js';
import type { BusOptions } from '../transport/bus.js';
import { ErrorCodes, GatewireError } from '../errors.js';
import { isLoopbackHost, parseHostPort } from './host-port.js';
import { resolveFilePaths } from './file-paths.js';
import { SEVERAL_URLS, redisUrls } from '../transport/redis/redis-util.js';
import type { AmqpQueueType } from '../transport/amqp/amqp-topology.js';

export interface GatewireConfig {
  node: { id: string; pidFile: string; roles: Role[]; shutdownTimeout: number };
  /** what the gateway is told (GatewayOptions), and what the node uses itself */
  gateway: GatewayOptions & { advertisedAddress: string; authorizer: string };
  worker: { handler: string; partitions: number; maxPendingEvents: number; prefetch: number };
  /** the bus's options (BusOptions) as configured, and the broker's */
  bus: Pick<
    BusOptions,
    'mode' | 'secret' | 'uidBuckets' | 'groupBuckets' | 'maxBufferedCommands' | 'maxCommandsPerMessage'
  > & {
    kind: BusKind;
    /** 'auto': nodes keep a holder directory in direct mode (cluster/directory.ts) */
    directory: 'auto' | 'off';
    maxMessageBytes: number;
    maxClockSkew: number;
    maxMessageAge: number;
    acceptSignedV1: boolean;
    connectTimeout: number;
    /** url: one URL, or several comma-separated (a list in a config file is joined so) */
    amqp: { url: string; exchange: string; prefetch: number; maxQueueBytes: number; queueType: AmqpQueueType };
    redis: {
      /** one URL, or the seed nodes of a cluster (comma-separated, or a list from a config file) */
      url: string | string[];
      cluster: boolean;
      prefix: string;
      replayWindow: number;
      waitReplicas: number;
      waitTimeout: number;
    };
  };
  cluster: { announceInterval: number; nodeTimeout: number; queryTimeout: number; strictQueries: boolean };
  admin: { listen: string; token: string };
  log: { level: string };
}

/** A partial configuration, as an application passes it in code. */
export type ConfigInput = DeepPartial<GatewireConfig>;
type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K];
};

export interface LoadOptions {
  /** Extra JSON files applied after config/<NODE_ENV>.json, in order. */
  files?: string[];
  /** Values from code, applied above files (env still wins). */
  values?: ConfigInput;
  /** Environment to read; default process.env. Tests pass {} to be independent of the shell. */
  env?: NodeJS.ProcessEnv;
  /** Folder holding the per-environment overlays; default ./config of the working directory. */
  configDir?: string;
}

/**
 * Loads the configuration: schema defaults < config/<NODE_ENV>.json < files < values < env
 * (convict re-applies the environment after every load, so env always wins).
 * Throws a GatewireError (GW_ERR_INVALID_CONFIG) naming every bad or unknown key.
 */
export function loadConfig(options: LoadOptions = {}): GatewireConfig {
  registerFormats();
  const env = options.env ?? process.env;
  const config = convict(schema, { env, args: [] });
  const configDir = options.configDir ?? path.resolve('config');
  const overlays: string[] = [];
  const nodeEnv = env.NODE_ENV;
  if (nodeEnv) {
    const overlay = path.join(configDir, `${nodeEnv}.json`);
    if (fs.existsSync(overlay)) overlays.push(overlay);
  }
  overlays.push(...(options.files ?? []));
  // Relative paths in a file are taken from the file's folder (file-paths.ts).
  const files = overlays.map((file) => ({
    file,
    content: resolveFilePaths(readConfigFile(file), path.dirname(path.resolve(file))),
  }));
  try {
    for (const { content } of files) config.load(content);
    if (options.values) config.load(options.values);
    config.validate({ allowed: 'strict' });
  } catch (err) {
    throw new GatewireError(
      ErrorCodes.INVALID_CONFIG,
      `Invalid configuration: ${attributeToFiles((err as Error).message, files)}`,
    );
  }
  const result = config.getProperties() as GatewireConfig;
  // A list of broker URLs in a config file: one string, as env gives it.
  const amqpUrl = result.bus.amqp.url as string | string[];
  if (Array.isArray(amqpUrl)) result.bus.amqp.url = amqpUrl.join(',');
  if (result.node.roles.length === 0) {
    throw new GatewireError(
      ErrorCodes.INVALID_CONFIG,
      'Invalid configuration: node.roles: must name at least one role (gateway, worker)',
    );
  }
  if (result.node.roles.length === 1 && result.bus.kind !== 'amqp') {
    throw new GatewireError(
      ErrorCodes.INVALID_CONFIG,
      `Invalid configuration: node.roles: a ${result.node.roles[0]}-only node hands client events over RabbitMQ queues and needs bus.kind=amqp (got ${result.bus.kind})`,
    );
  }
  if (result.bus.kind === 'redis' && !result.bus.redis.cluster && redisUrls(result.bus.redis.url).length > 1) {
    throw new GatewireError(ErrorCodes.INVALID_CONFIG, SEVERAL_URLS);
  }
  if (nodeEnv === 'production') {
    const kept = defaultSecrets(result);
    if (kept.length > 0) {
      throw new GatewireError(
        ErrorCodes.INVALID_CONFIG,
        `Invalid configuration: ${kept.join(', ')}: must be set when NODE_ENV=production (${kept.length === 1 ? 'it keeps its' : 'they keep their'} default)`,
      );
    }
  }
  return result;
}

/**
 * Reads and parses one JSON configuration file. Every failure names the file; a syntax error
 * also gives the line and column (1-based) where JSON.parse stopped.
 */
function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`;
    throw new GatewireError(ErrorCodes.INVALID_CONFIG, `Invalid configuration: config file ${file} ${why}`);
  }
  // An editor's byte order mark is no syntax error.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const where = syntaxErrorPlace(message, text);
    throw new GatewireError(
      ErrorCodes.INVALID_CONFIG,
      `Invalid configuration: config file ${file}: JSON syntax error${where ? ` at line ${where.line}, column ${where.column}` : ''}: ${message}`,
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new GatewireError(
      ErrorCodes.INVALID_CONFIG,
      `Invalid configuration: config file ${file} must hold a JSON object (sections and keys)`,
    );
  }
  return parsed as Record<string, unknown>;
}

/**
 * Where JSON.parse stopped, from its message: "(line L column C)" where V8 gives it, else
 * "at position N" (a string index), else the end of the text for "Unexpected end of JSON input".
 */
function syntaxErrorPlace(message: string, text: string): { line: number; column: number } | null {
  const given = /line (\d+) column (\d+)/.exec(message);
  if (given) return { line: Number(given[1]), column: Number(given[2]) };
  const at = /at position (\d+)/.exec(message);
  const position = at ? Number(at[1]) : /end of JSON input/.test(message) ? text.length : null;
  if (position === null) return null;
  const before = text.slice(0, position);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { line: before.split('\n').length, column: position - lineStart + 1 };
}

/**
 * Prefixes each line of a validation error with the config files that bring it: every file is
 * validated alone (on the defaults, without env), and a line it shares with the whole is its
 * doing. Lines no file brings (env, values from code) stay as they are.
 */
function attributeToFiles(message: string, files: { file: string; content: Record<string, unknown> }[]): string {
  if (files.length === 0) return message;
  const problemsOf = files.map(({ file, content }) => {
    const alone = convict(schema, { env: {}, args: [] });
    try {
      alone.load(content);
      alone.validate({ allowed: 'strict' });
      return { file, lines: new Set<string>() };
    } catch (err) {
      return { file, lines: new Set((err as Error).message.split('\n')) };
    }
  });
  return message
    .split('\n')
    .map((line) => {
      const from = problemsOf.filter((p) => p.lines.has(line)).map((p) => p.file);
      return from.length > 0 ? `config file ${from.join(', ')}: ${line}` : line;
    })
    .join('\n');
}

/**
 * The secrets (sensitive keys) this configuration uses that still hold their defaults: bus.secret
 * for a broker bus, the URL (credentials) of the broker in use, and admin.token for an admin
 * server that listens beyond loopback (one on 127.0.0.1 or ::1 is reachable from this machine
 * only, and a node without an admin server needs no token). Only names, never values.
 */
function defaultSecrets(config: GatewireConfig): string[] {
  const kind = config.bus.kind;
  const inUse = (key: string): boolean => {
    if (key === 'bus.secret') return kind !== 'local';
    if (key === 'admin.token')
      return config.admin.listen !== '' && !isLoopbackHost(parseHostPort(config.admin.listen).host);
    if (key.startsWith('bus.amqp.')) return kind === 'amqp';
    if (key.startsWith('bus.redis.')) return kind === 'redis';
    return true;
  };
  const valueOf = (key: string): unknown =>
    key.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], config);
  return describeConfig()
    .filter(
      (row) => row.sensitive && inUse(row.key) && JSON.stringify(valueOf(row.key)) === JSON.stringify(row.default),
    )
    .map((row) => row.key);
}

/** Flat list of every key with its env name, default and doc: the README reference is made from it. */
export function describeConfig(): { key: string; env: string; default: unknown; doc: string; sensitive: boolean }[] {
  const rows: { key: string; env: string; default: unknown; doc: string; sensitive: boolean }[] = [];
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [key, value] of Object.entries(node)) {
      const leaf = value as Record<string, unknown>;
      if ('doc' in leaf && 'env' in leaf) {
        rows.push({
          key: prefix + key,
          env: leaf.env as string,
          default: leaf.default,
          doc: leaf.doc as string,
          sensitive: leaf.sensitive === true,
        });
      } else {
        walk(leaf, `${prefix}${key}.`);
      }
    }
  };
  walk(schema as unknown as Record<string, unknown>, '');
  return rows;
}

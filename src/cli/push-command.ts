import fs from 'node:fs';
import { loadConfig } from '../config/load.js';
import { createPublisher } from '../publisher.js';
import { InvalidArgumentError } from '../errors.js';
import { logToStderr, requireSharedBus } from './cli-output.js';

export interface PushArgs {
  config?: string;
  client?: string[];
  uid?: string[];
  group?: string[];
  all?: boolean;
  file?: string;
  stdin?: boolean;
  message?: string;
  verbose?: boolean;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** What the push went to, for the result line. */
function target(args: PushArgs): string {
  const list = (kind: string, names: string[]): string => `${kind}${names.length > 1 ? 's' : ''} ${names.join(', ')}`;
  if (args.client?.length) return list('client', args.client);
  if (args.uid?.length) return list('uid', args.uid);
  if (args.group?.length) return list('group', args.group);
  return 'every client';
}

/**
 * `gatewire push`: one push from the command line, as a publisher. Text stays text; --file and
 * --stdin send bytes. Returns once the broker confirmed it; prints one line, the result.
 */
export async function pushCommand(args: PushArgs): Promise<void> {
  const targets = [args.client?.length, args.uid?.length, args.group?.length, args.all ? 1 : 0].filter((n) => n).length;
  if (targets !== 1) throw new InvalidArgumentError('push needs exactly one of --client, --uid, --group or --all.');
  const sources = [args.message !== undefined, args.file !== undefined, args.stdin === true].filter(Boolean).length;
  if (sources !== 1) throw new InvalidArgumentError('push needs exactly one message: text, --file FILE or --stdin.');
  const config = loadConfig({ files: args.config ? [args.config] : [] });
  requireSharedBus(config, 'push');
  const data: string | Buffer =
    args.message !== undefined
      ? args.message
      : args.file !== undefined
        ? fs.readFileSync(args.file)
        : await readStdin();
  const publisher = await createPublisher(config, logToStderr(config, args.verbose === true));
  try {
    const api = publisher.api;
    if (args.client?.length) await Promise.all(args.client.map((id) => api.sendToClient(id, data)));
    else if (args.uid?.length) await api.sendToUid(args.uid, data);
    else if (args.group?.length) await api.sendToGroup(args.group, data);
    else await api.sendToAll(data);
  } finally {
    await publisher.close();
  }
  const size = typeof data === 'string' ? `${Buffer.byteLength(data)} bytes of text` : `${data.length} bytes`;
  process.stdout.write(`pushed ${size} to ${target(args)} (${config.bus.kind})\n`);
}

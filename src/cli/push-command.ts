import fs from 'node:fs';
import { loadConfig } from '../config/load.js';
import { createPublisher } from '../publisher.js';
import { InvalidArgumentError } from '../errors.js';

export interface PushArgs {
  config?: string;
  client?: string[];
  uid?: string[];
  group?: string[];
  all?: boolean;
  file?: string;
  stdin?: boolean;
  message?: string;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `gatewire push`: one push from the command line, as a publisher. Text stays text; --file and --stdin send bytes. */
export async function pushCommand(args: PushArgs): Promise<void> {
  const targets = [args.client?.length, args.uid?.length, args.group?.length, args.all ? 1 : 0].filter((n) => n).length;
  if (targets !== 1) throw new InvalidArgumentError('push needs exactly one of --client, --uid, --group or --all.');
  const sources = [args.message !== undefined, args.file !== undefined, args.stdin === true].filter(Boolean).length;
  if (sources !== 1) throw new InvalidArgumentError('push needs exactly one message: text, --file FILE or --stdin.');
  const data: string | Buffer =
    args.message !== undefined
      ? args.message
      : args.file !== undefined
        ? fs.readFileSync(args.file)
        : await readStdin();
  const config = loadConfig({ files: args.config ? [args.config] : [] });
  const publisher = await createPublisher(config);
  try {
    const api = publisher.api;
    if (args.client?.length) await Promise.all(args.client.map((id) => api.sendToClient(id, data)));
    else if (args.uid?.length) await api.sendToUid(args.uid, data);
    else if (args.group?.length) await api.sendToGroup(args.group, data);
    else await api.sendToAll(data);
  } finally {
    await publisher.close();
  }
}

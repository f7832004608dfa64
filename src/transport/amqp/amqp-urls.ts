/**
 * The broker URLs of bus.amqp.url: one URL, or the nodes of a RabbitMQ cluster as a
 * comma-separated string (env, config) or a list (config file, code). Every RabbitMQ connection
 * of gatewire (the bus, publishers, the split roles' event queues) takes the whole list and
 * connects to one of its nodes; after a failed attempt or a lost connection it tries the next,
 * round the list, so a dead broker node is left at the next attempt.
 *
 * Where a process starts in the list: at a place drawn from its instance tag (new at every
 * start), so the nodes of a gatewire cluster spread their connections over the broker nodes
 * instead of all loading the first. A queue is created on (classic) or led by (quorum, leader
 * locator client-local, RabbitMQ's default) the broker node its process is connected to, so
 * this also spreads the queues and the work of routing to them.
 */
import { bucketOf } from '../../protocol/routing-keys.js';

/** The URLs of a bus.amqp.url value, in order: split on commas, trimmed, empty entries left out. */
export function parseAmqpUrls(value: string | readonly string[]): string[] {
  const entries = typeof value === 'string' ? value.split(',') : value.flatMap((entry) => entry.split(','));
  return entries.map((entry) => entry.trim()).filter((entry) => entry !== '');
}

/** Why `url` cannot be a RabbitMQ URL, or null when it can (amqp:// or amqps://, with a host). */
export function amqpUrlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:')
    return `has scheme ${parsed.protocol} (amqp: or amqps: expected)`;
  if (parsed.hostname === '') return 'names no host';
  return null;
}

/**
 * The configuration's check of bus.amqp.url (a convict format): a non-empty string or list of
 * strings, each entry a RabbitMQ URL. The error names the bad entry by its place and host, never
 * by its text (it may hold a password).
 */
export function checkAmqpUrls(value: unknown): void {
  const isList = Array.isArray(value) && value.every((entry) => typeof entry === 'string');
  if (typeof value !== 'string' && !isList) throw new Error('must be a RabbitMQ URL or a list of them');
  const urls = parseAmqpUrls(value as string | string[]);
  if (urls.length === 0) throw new Error('must name at least one RabbitMQ URL');
  urls.forEach((url, i) => {
    const problem = amqpUrlProblem(url);
    if (problem === null) return;
    let host = '';
    try {
      host = ` (host ${new URL(url).host})`;
    } catch {
      // unparsable: no host to name
    }
    throw new Error(`entry ${i + 1} of ${urls.length}${host} ${problem}`);
  });
}

/** host:port of a URL, for logs (never its credentials); '?' when it cannot be parsed. */
export function brokerHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '?';
  }
}

/** Round-robin over the URLs of one connection owner, starting at a place drawn from `seed`. */
export class BrokerUrls {
  readonly urls: string[];
  private index: number;

  constructor(value: string | readonly string[], seed: string) {
    this.urls = parseAmqpUrls(value);
    if (this.urls.length === 0) this.urls.push(typeof value === 'string' ? value : '');
    this.index = this.urls.length > 1 ? bucketOf(seed, this.urls.length) : 0;
  }

  /** Several broker nodes were given (a cluster). */
  get clustered(): boolean {
    return this.urls.length > 1;
  }

  /** The URL the next attempt uses. */
  get current(): string {
    return this.urls[this.index]!;
  }

  /** The next attempt uses the next URL (the current one failed or its connection was lost). */
  advance(): void {
    this.index = (this.index + 1) % this.urls.length;
  }
}

/**
 * Connects to the first of the URLs that answers, trying them in turn from a place drawn from
 * `seed`: for connection owners that keep no place of their own between attempts (the split
 * roles' event queues).
 */
export async function connectFirst<T>(
  value: string | readonly string[],
  seed: string,
  connect: (url: string) => Promise<T>,
): Promise<T> {
  const urls = new BrokerUrls(value, seed);
  let failure: unknown;
  for (let i = 0; i < urls.urls.length; i++) {
    try {
      return await connect(urls.current);
    } catch (err) {
      failure = err;
      urls.advance();
    }
  }
  throw failure;
}

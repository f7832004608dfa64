/** Small pieces of the Redis transport: error kinds, closing a client, bounded waits, turn batches. */
import type { Redis } from 'ioredis';
import { ErrorCodes, GatewireError } from '../../errors.js';

/** Most channels in one SUBSCRIBE. */
const MAX_BATCH = 5000;

export function noop(): void {}

export const SEVERAL_URLS =
  'Invalid configuration: bus.redis.url: several URLs are the seed nodes of a Redis Cluster and need bus.redis.cluster=true';

/** bus.redis.url as a list: a list, or one string of comma-separated URLs (env). */
export function redisUrls(url: string | string[]): string[] {
  const list = Array.isArray(url) ? url : url.split(',');
  return list.map((each) => each.trim()).filter((each) => each !== '');
}

export function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

/**
 * A cluster's answer while a slot's master fails over or moves: the same call succeeds once the
 * cluster has settled (or ioredis's redirections ran out while it had not).
 */
export function isTransientClusterError(err: unknown): boolean {
  return (
    err instanceof Error &&
    /^(CLUSTERDOWN|TRYAGAIN|MOVED|ASK|LOADING|MASTERDOWN|READONLY)\b|Too many Cluster redirections|Connection is closed|isn't writeable|Cluster isn't ready/.test(
      err.message,
    )
  );
}

/** What Redis will refuse again on the next attempt: credentials and ACLs. */
export function isRefusal(err: Error): boolean {
  return /NOAUTH|WRONGPASS|NOPERM|invalid password|invalid username/i.test(err.message);
}

/** Closes a client for good: QUIT when it is up, then drop the socket and any reconnect timer. */
export async function shut(
  client:
    | Pick<Redis, 'status' | 'quit' | 'disconnect'>
    | { status: string; quit(): Promise<unknown>; disconnect(): void }
    | null,
): Promise<void> {
  if (client === null) return;
  if (client.status === 'ready') await withTimeout(client.quit(), 1000).catch(() => undefined);
  client.disconnect();
  // disconnectTimeout 0 leaves ioredis one zero-delay timer after disconnect(): let it run.
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new GatewireError(ErrorCodes.BUS_BROKER, `timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Values added within one event-loop turn, handed to `send` together on the next (setImmediate),
 * in chunks of at most MAX_BATCH. Each add() settles with its chunk.
 */
export class TurnBatch<T> {
  private items: { value: T; resolve: () => void; reject: (err: Error) => void }[] = [];
  private scheduled = false;

  constructor(private readonly send: (values: T[]) => Promise<unknown>) {}

  add(value: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.items.push({ value, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.run());
      }
    });
  }

  private run(): void {
    this.scheduled = false;
    const items = this.items;
    this.items = [];
    for (let i = 0; i < items.length; i += MAX_BATCH) {
      const chunk = items.slice(i, i + MAX_BATCH);
      this.send(chunk.map((item) => item.value)).then(
        () => {
          for (const item of chunk) item.resolve();
        },
        (err: Error) => {
          for (const item of chunk) item.reject(err);
        },
      );
    }
  }
}

/**
 * Request/reply over the bus: scatter a query (or a per-client command that wants an answer) and
 * gather the replies. A gather waits for every expected node, at most cluster.queryTimeout;
 * nodes that miss it are named in a warning and counted, never waited on forever.
 */
import type { Logger } from 'pino';
import { Op, type Command, type Reply } from '../bus/commands.js';
import type { Bus } from '../bus/bus.js';
import { ErrorCodes, GatewireError } from '../errors.js';

interface Gathering {
  expected: Set<string>;
  replies: Map<string, unknown>;
  finish: () => void;
  fail: (err: Error) => void;
}

export interface GatherResult {
  replies: Map<string, unknown>;
  /** expected nodes that did not answer in time */
  missing: string[];
}

/** A command that asks, before the request fields are filled in. */
export type AskingCommand = Command & { r?: number; f?: string };

export class Requests {
  private nextId = 1;
  private readonly open = new Map<number, Gathering>();
  /** how many gathers ended with nodes missing */
  timeouts = 0;
  /** called with the seconds each gather took (the admin server's histogram) */
  observeLatency: ((seconds: number) => void) | null = null;

  constructor(
    private readonly bus: Bus,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  /** Sends `command` and gathers one reply from each of `expected`. */
  gather(command: AskingCommand, expected: readonly string[]): Promise<GatherResult> {
    const id = this.nextId++;
    (command as { r: number; f: string }).r = id;
    (command as { r: number; f: string }).f = this.bus.instance;
    const started = process.hrtime.bigint();
    const observe = (): void => this.observeLatency?.(Number(process.hrtime.bigint() - started) / 1e9);
    return new Promise<GatherResult>((resolve, reject) => {
      const replies = new Map<string, unknown>();
      const expectedSet = new Set(expected);
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.open.delete(id);
        observe();
      };
      const gathering: Gathering = {
        expected: expectedSet,
        replies,
        finish: () => {
          done();
          resolve({ replies, missing: [] });
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      if (expectedSet.size === 0) {
        resolve({ replies, missing: [] });
        return;
      }
      this.open.set(id, gathering);
      timer = setTimeout(() => {
        done();
        const missing = [...expectedSet].filter((node) => !replies.has(node));
        this.timeouts += 1;
        this.log.warn({ missing, op: command.op }, 'nodes did not answer within cluster.queryTimeout');
        resolve({ replies, missing });
      }, this.timeoutMs);
      this.bus.publish(command).catch((err: Error) => gathering.fail(err));
    });
  }

  /** Asks one node; rejects with REQUEST_TIMEOUT if it does not answer, REMOTE if it failed. */
  async ask(command: AskingCommand, node: string): Promise<unknown> {
    const { replies, missing } = await this.gather(command, [node]);
    if (missing.length > 0) {
      throw new GatewireError(ErrorCodes.REQUEST_TIMEOUT, `node ${node} did not answer within cluster.queryTimeout`);
    }
    const reply = replies.get(node) as { v?: unknown; e?: string };
    if (reply.e !== undefined) throw new GatewireError(ErrorCodes.REMOTE, `node ${node} failed: ${reply.e}`);
    return reply.v;
  }

  onReply(reply: Reply): void {
    const gathering = this.open.get(reply.r);
    if (gathering === undefined || !gathering.expected.has(reply.f)) return;
    gathering.replies.set(reply.f, reply.e !== undefined ? { e: reply.e } : { v: reply.v });
    if (gathering.replies.size === gathering.expected.size) gathering.finish();
  }

  /** A node that left will not answer: stop waiting for it. */
  forget(node: string): void {
    for (const gathering of this.open.values()) {
      if (gathering.expected.delete(node) && gathering.replies.size >= gathering.expected.size) gathering.finish();
    }
  }

  /** Replies to a request from another node. */
  reply(request: { r?: number; f?: string }, value: unknown, error?: string): void {
    if (request.r === undefined || typeof request.f !== 'string') return;
    const reply: Reply = { op: Op.REPLY, r: request.r, f: this.bus.instance, t: request.f };
    if (error !== undefined) reply.e = error;
    else reply.v = value ?? null;
    this.bus.publish(reply).catch((err: Error) => this.log.warn({ err: err.message }, 'reply not sent'));
  }
}

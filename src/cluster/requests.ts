/**
 * Request/reply over the bus: scatter a query (or a per-client command that wants an answer) and
 * gather the replies. A gather waits for every expected node, at most cluster.queryTimeout;
 * nodes that miss it are named in the result, a warning and a counter, never waited on forever,
 * and a caller that asked for `strict` gets a GW_ERR_QUERY_INCOMPLETE error naming them.
 *
 * A node that died without a word (SIGKILL, a host lost) is not waited for until the timeout:
 * while a gather waits, the nodes that have not answered after probeDelayMs are probed through the
 * broker (their queue's consumer, their subscription: Bus.probe); a node absent in two probes
 * probeConfirmMs apart counts as missing at once and is reported (onAbsent) so that later
 * requests do not wait for it either. A node that is merely slow still has its consumer and is
 * waited for up to the timeout.
 *
 * A per-client command carries a deadline (dl: sent + queryTimeout, the asker's clock) by which
 * its owner must start applying it, or drop it (command-dispatcher.ts). The asker waits for the
 * answer until the deadline plus bus.maxClockSkew (the owner's clock may be behind) plus half a
 * timeout for the apply and the answer, so a call this side gave up on is never applied later.
 */
import type { Logger } from 'pino';
import { Op, type Command, type Reply } from '../protocol/commands.js';
import type { Bus } from '../transport/bus.js';
import { commandBytes } from '../protocol/command-size.js';
import { ErrorCodes, GatewireError } from '../errors.js';

interface Gathering {
  expected: Set<string>;
  replies: Map<string, unknown>;
  /** answers that came in parts (Reply.pi/pc): node -> parts so far */
  parts: Map<string, unknown[]>;
  /** expected nodes the broker showed gone, or (for a command with a deadline) membership gave up on */
  absent: Set<string>;
  /** the command's deadline, if it has one (GatherOptions.deadline) */
  deadline: number | undefined;
  /** replies + absent reached expected: finish */
  check: () => void;
  fail: (err: Error) => void;
}

export interface GatherResult {
  replies: Map<string, unknown>;
  /** expected nodes that did not answer (in time, or because the broker showed them gone) */
  missing: string[];
  /** those of `missing` the broker showed gone */
  gone: string[];
}

export interface GatherOptions {
  /** reject with GW_ERR_QUERY_INCOMPLETE when any node misses its answer */
  strict?: boolean;
  /** ms to wait for the answers. @default the queryTimeout */
  waitMs?: number;
  /**
   * A command with this deadline (ms since 1970): a node shown gone is given up on only after it
   * (plus bus.maxClockSkew), since a node that merely reconnects could still apply it until then.
   */
  deadline?: number;
}

/** A command that asks, before the request fields are filled in. */
export type AskingCommand = Command & { r?: number; f?: string; dl?: number };

export interface RequestsOptions {
  /** cluster.queryTimeout */
  timeoutMs: number;
  /** ms before nodes that have not answered are probed. @default min(750, timeoutMs / 3) */
  probeDelayMs?: number;
  /** ms between the two probes that must both find a node gone. @default 500 */
  probeConfirmMs?: number;
  /** bus.maxClockSkew: an owner enforcing a deadline allows for it */
  maxClockSkewMs?: number;
}

/** The error of a strict gather that missed answers; `missing` names the nodes. */
export class QueryIncompleteError extends GatewireError {
  constructor(readonly missing: string[]) {
    super(
      ErrorCodes.QUERY_INCOMPLETE,
      `no answer from ${missing.length} node(s): ${missing.join(', ')} (cluster.queryTimeout, or gone)`,
    );
  }
}

export class Requests {
  private nextId = 1;
  private readonly open = new Map<number, Gathering>();
  /** how many gathers ended with nodes missing */
  timeouts = 0;
  /** how many gathers missed answers (timed out or gone); the metric gatewire_queries_incomplete_total */
  incomplete = 0;
  /** per-client commands this node dropped for a passed deadline */
  expired = 0;
  /** called with the seconds each gather took (the admin server's histogram) */
  observeLatency: ((seconds: number) => void) | null = null;
  /** told of a node the broker showed gone (membership then stops waiting for it) */
  onAbsent: ((node: string) => void) | null = null;
  /** nodes already known gone (membership's suspects): counted missing at once */
  isGone: ((node: string) => boolean) | null = null;

  private readonly timeoutMs: number;
  private readonly probeDelayMs: number;
  private readonly probeConfirmMs: number;
  readonly maxClockSkewMs: number;

  constructor(
    private readonly bus: Bus,
    options: RequestsOptions | number,
    private readonly log: Logger,
  ) {
    const opts = typeof options === 'number' ? { timeoutMs: options } : options;
    this.timeoutMs = opts.timeoutMs;
    this.probeDelayMs = opts.probeDelayMs ?? Math.min(750, Math.floor(opts.timeoutMs / 3));
    this.probeConfirmMs = opts.probeConfirmMs ?? 500;
    this.maxClockSkewMs = opts.maxClockSkewMs ?? 1000;
  }

  /** The deadline a per-client command carries: its owner must start applying it by then. */
  deadline(): number {
    return Date.now() + this.timeoutMs;
  }

  /** How long an asker waits for the answer to a command with a deadline (see the header). */
  get askWaitMs(): number {
    return this.timeoutMs + this.maxClockSkewMs + Math.floor(this.timeoutMs / 2);
  }

  /** Sends `command` and gathers one reply from each of `expected`. */
  gather(command: AskingCommand, expected: readonly string[], options: GatherOptions = {}): Promise<GatherResult> {
    const id = this.nextId++;
    command.r = id;
    command.f = this.bus.instance;
    const started = process.hrtime.bigint();
    const observe = (): void => this.observeLatency?.(Number(process.hrtime.bigint() - started) / 1e9);
    return new Promise<GatherResult>((resolve, reject) => {
      const replies = new Map<string, unknown>();
      const expectedSet = new Set(expected);
      const absent = new Set<string>();
      if (this.isGone !== null) for (const node of expectedSet) if (this.isGone(node)) absent.add(node);
      const timers: NodeJS.Timeout[] = [];
      const done = (): void => {
        for (const timer of timers) clearTimeout(timer);
        this.open.delete(id);
        observe();
      };
      const end = (missing: string[]): void => {
        done();
        if (missing.length > 0) {
          this.incomplete += 1;
          this.log.warn(
            { missing, op: command.op, gone: [...absent] },
            'a cluster request missed answers (cluster.queryTimeout, or nodes gone)',
          );
          if (options.strict) {
            reject(new QueryIncompleteError(missing));
            return;
          }
        }
        resolve({ replies, missing, gone: missing.filter((node) => absent.has(node)) });
      };
      const gathering: Gathering = {
        expected: expectedSet,
        replies,
        parts: new Map(),
        absent,
        deadline: options.deadline,
        check: () => {
          const missing: string[] = [];
          for (const node of expectedSet) {
            if (replies.has(node)) continue;
            if (!absent.has(node)) return;
            missing.push(node);
          }
          const holdUntil =
            missing.length > 0 && options.deadline !== undefined ? options.deadline + this.maxClockSkewMs : 0;
          if (Date.now() < holdUntil) {
            timers.push(setTimeout(() => this.open.get(id)?.check(), holdUntil - Date.now()));
            return;
          }
          end(missing);
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      if (expectedSet.size === 0) {
        resolve({ replies, missing: [], gone: [] });
        return;
      }
      this.open.set(id, gathering);
      if (absent.size > 0) {
        // Nothing to wait for if every node expected is known gone.
        gathering.check();
        if (!this.open.has(id)) return;
      }
      timers.push(
        setTimeout(() => {
          const missing = [...expectedSet].filter((node) => !replies.has(node));
          this.timeouts += 1;
          end(missing);
        }, options.waitMs ?? this.timeoutMs),
      );
      if (this.probeDelayMs < this.timeoutMs) timers.push(setTimeout(() => this.probeSilent(id), this.probeDelayMs));
      this.bus.publish(command).catch((err: Error) => gathering.fail(err));
    });
  }

  /** Asks one node; rejects with REQUEST_TIMEOUT if it does not answer, REMOTE if it failed. */
  async ask(command: AskingCommand, node: string): Promise<unknown> {
    const waitMs = command.op === Op.QUERY ? this.timeoutMs : this.askWaitMs;
    if (command.op !== Op.QUERY) command.dl ??= this.deadline();
    const { replies, missing, gone } = await this.gather(command, [node], { waitMs, deadline: command.dl });
    const unreachable = (): GatewireError =>
      new GatewireError(
        ErrorCodes.NODE_UNREACHABLE,
        `node ${node} is gone (no consumer on the broker, or taken for dead) and the call's deadline passed: it did not take effect`,
      );
    if (gone.length > 0) throw unreachable();
    if (missing.length > 0) {
      throw new GatewireError(
        ErrorCodes.REQUEST_TIMEOUT,
        `node ${node} did not answer within ${waitMs} ms; the call carried a deadline and will not take effect later`,
      );
    }
    if (!replies.has(node)) throw unreachable();
    const reply = replies.get(node) as { v?: unknown; e?: string };
    if (reply.e !== undefined) throw new GatewireError(ErrorCodes.REMOTE, `node ${node} failed: ${reply.e}`);
    return reply.v;
  }

  onReply(reply: Reply): void {
    const gathering = this.open.get(reply.r);
    if (gathering === undefined || !gathering.expected.has(reply.f) || gathering.replies.has(reply.f)) return;
    if (reply.pc !== undefined && reply.pc > 1 && reply.e === undefined) {
      // An answer in parts: complete once every part is in (they arrive in order).
      const parts = gathering.parts.get(reply.f) ?? [];
      parts[reply.pi ?? 0] = reply.v;
      gathering.parts.set(reply.f, parts);
      if (parts.filter((p) => p !== undefined).length < reply.pc) return;
      gathering.parts.delete(reply.f);
      gathering.replies.set(reply.f, { v: joinParts(parts) });
    } else {
      gathering.replies.set(reply.f, reply.e !== undefined ? { e: reply.e } : { v: reply.v });
    }
    gathering.check();
  }

  /**
   * A node that left, or was taken for dead (`silent`), will not answer: stop waiting for it. One
   * that left said so and took its clients with it: it is no longer expected. One taken for dead
   * may only be slow (a blocked event loop, a frozen process) and still hold clients: it counts as
   * missing, and for a command with a deadline only once the deadline has passed, since it may
   * still apply it until then.
   */
  forget(node: string, silent = false): void {
    for (const gathering of this.open.values()) {
      if (!gathering.expected.has(node)) continue;
      if (silent || gathering.deadline !== undefined) gathering.absent.add(node);
      else gathering.expected.delete(node);
      gathering.check();
    }
  }

  /**
   * Replies to a request from another node. An answer too large for one broker message goes in
   * parts (lists and maps are cut; the asker joins them).
   */
  reply(request: { r?: number; f?: string }, value: unknown, error?: string): void {
    if (request.r === undefined || typeof request.f !== 'string') return;
    const base = { op: Op.REPLY, r: request.r, f: this.bus.instance, t: request.f } as const;
    if (error !== undefined) {
      this.send({ ...base, e: error });
      return;
    }
    const reply: Reply = { ...base, v: value ?? null };
    const budget = this.bus.maxCommandBytes;
    if (commandBytes(reply) <= budget) {
      this.send(reply);
      return;
    }
    const parts = splitValue(value, Math.floor(budget / 2));
    if (parts === null) {
      this.send({ ...base, e: 'the answer is too large for one broker message (bus.maxMessageBytes)' });
      return;
    }
    parts.forEach((part, i) => this.send({ ...base, v: part, pi: i, pc: parts.length }));
  }

  private send(reply: Reply): void {
    this.bus.publish(reply).catch((err: Error) => this.log.warn({ err: err.message }, 'reply not sent'));
  }

  /**
   * Probes the nodes that have not answered yet; one the broker shows absent twice in a row
   * (probeConfirmMs apart: a reconnect is not a death) counts as missing now.
   */
  private probeSilent(id: number): void {
    const gathering = this.open.get(id);
    if (gathering === undefined) return;
    const silent = [...gathering.expected].filter(
      (node) => !gathering.replies.has(node) && !gathering.absent.has(node),
    );
    for (const node of silent) {
      void this.probeTwice(node).then((gone) => {
        if (!gone || this.open.get(id) !== gathering || gathering.replies.has(node)) return;
        gathering.absent.add(node);
        this.onAbsent?.(node);
        gathering.check();
      });
    }
  }

  private async probeTwice(node: string): Promise<boolean> {
    if ((await this.bus.probe(node)) !== 'absent') return false;
    await new Promise((resolve) => setTimeout(resolve, this.probeConfirmMs));
    return (await this.bus.probe(node)) === 'absent';
  }
}

/** Cuts a list or a map into parts of about `budget` bytes each (null: neither, cannot cut). */
function splitValue(value: unknown, budget: number): unknown[] | null {
  const sizeOf = (v: unknown): number => 3 * (JSON.stringify(v)?.length ?? 4) + 16;
  if (Array.isArray(value)) {
    const parts: unknown[][] = [];
    let part: unknown[] = [];
    let bytes = 0;
    for (const item of value) {
      const size = sizeOf(item);
      if (size > budget) return null;
      if (part.length > 0 && bytes + size > budget) {
        parts.push(part);
        part = [];
        bytes = 0;
      }
      part.push(item);
      bytes += size;
    }
    parts.push(part);
    return parts;
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    const parts: Record<string, unknown>[] = [];
    let part: Record<string, unknown> = {};
    let count = 0;
    let bytes = 0;
    for (const [key, item] of Object.entries(value)) {
      const size = sizeOf(item) + 3 * key.length + 5;
      if (size > budget) return null;
      if (count > 0 && bytes + size > budget) {
        parts.push(part);
        part = {};
        count = 0;
        bytes = 0;
      }
      part[key] = item;
      count += 1;
      bytes += size;
    }
    parts.push(part);
    return parts;
  }
  return null;
}

/** The whole answer from its parts: lists concatenated, maps merged. */
function joinParts(parts: unknown[]): unknown {
  if (parts.every(Array.isArray)) return (parts as unknown[][]).flat();
  return Object.assign({}, ...(parts as Record<string, unknown>[]));
}

/**
 * The commands of one event-loop turn on their way to the broker: queued in order, merged where
 * adjacent sends carry the same data, split where a send names more keys or bytes than one broker
 * message carries, cut into broker messages bounded in commands, keys and bytes, and handed to the
 * transport in one call per turn, under one promise per turn (a large command gets its own).
 */
import { Op, type Command, type SendToClients, type SendToUids } from '../protocol/commands.js';
import { commandBytes, listBytes } from '../protocol/command-size.js';
import { splitSend } from './split-send.js';
import { ErrorCodes, GatewireError, errorMessage } from '../errors.js';
import { deferred, type Batch, type Deferred } from './outgoing-batch.js';
import type { BusOptions, BusStats } from './bus-options.js';
import type { OutgoingBatch } from './transport.js';

/** What the queue needs from its bus. */
export interface SendQueueHost {
  readonly options: BusOptions;
  readonly stats: BusStats;
  readonly isConnected: boolean;
  readonly keysPerMessage: number;
  readonly maxMessageBytes: number;
  readonly maxCommandBytes: number;
  keysOf(command: Command): string[];
  /**
   * Sends are routed to node keys by a holder directory: each node's commands of a turn are
   * gathered into its own messages (see byNode).
   */
  readonly nodeRouting: boolean;
  targetKey(op: number, target: string): string;
  batch(keys: string[], commands: Command[], bytes: number, done: Deferred | null): Batch;
  transmitAll(batches: OutgoingBatch[]): Promise<unknown>;
}

interface Pending {
  command: Command;
  keys: string[];
  /** upper bound of the command's encoded size */
  bytes: number;
  /** targets of a send merged from several calls (see merge), to refuse a repeated one */
  targets?: Set<string>;
  /** a large command's own promise (it travels alone); null: the turn's shared promise */
  done: Deferred | null;
}

/**
 * Most targets one merged send collects (fanout, or where a message carries many keys).
 * @default 1000 (about 20 KB of uids per command)
 */
const MERGE_LIMIT = 1000;

/**
 * A command larger than this travels in a message of its own with a promise of its own, so that
 * a broker refusing it fails exactly its caller. @default 65536
 */
const SOLO_BYTES = 64 * 1024;

export class SendQueue {
  private pending: Pending[] = [];
  /**
   * The one promise of every command queued in this turn: they travel together and are
   * confirmed (or fail) together, so one promise serves them all (no promise per command).
   */
  private pendingDone: Deferred | null = null;
  private flushScheduled = false;
  private closed = false;
  /** commands published but not yet confirmed by the broker */
  private unconfirmed = 0;
  /** ids of calls split into several group sends (SendToGroups.k) */
  private splitCalls = 0;

  constructor(private readonly host: SendQueueHost) {}

  private readonly scheduledFlush = (): void => void this.flushNow();

  /** Sends what is queued, then refuses anything more; what cannot be sent is rejected by the caller (close). */
  async close(): Promise<void> {
    await this.flushNow();
    this.closed = true;
  }

  /** Rejects what is still queued (the bus closed). */
  failQueued(err: Error): void {
    this.pendingDone?.reject(err);
    for (const entry of this.pending) entry.done?.reject(err);
    this.pendingDone = null;
    this.pending = [];
  }

  /**
   * Queues a command; commands queued in the same event-loop turn travel together. Resolves once
   * the broker confirmed the messages that carry it. A send to many targets is cut into commands
   * that each reach only the targets of their own keys and fit one broker message. Rejects at
   * once with BUS_BUFFER_FULL while disconnected with maxBufferedCommands commands waiting, and
   * with MESSAGE_TOO_LARGE when a command cannot fit in one broker message.
   */
  publish(command: Command): Promise<void> {
    if (this.closed) {
      return Promise.reject(new GatewireError(ErrorCodes.BUS_CLOSED, 'the bus is closed'));
    }
    if (!this.host.isConnected && this.unconfirmed + this.pending.length >= this.host.options.maxBufferedCommands) {
      return Promise.reject(
        new GatewireError(
          ErrorCodes.BUS_BUFFER_FULL,
          `the broker is unreachable and ${this.host.options.maxBufferedCommands} commands already wait (bus.maxBufferedCommands)`,
        ),
      );
    }
    const keys = this.host.keysOf(command);
    const budget = this.host.maxCommandBytes;
    let bytes = commandBytes(command);
    let done: Deferred | null = null;
    if (keys.length <= this.host.keysPerMessage && bytes <= budget) {
      // The hot path: one command that fits.
      if (bytes > SOLO_BYTES) {
        done = deferred();
        this.pending.push({ command, keys, bytes, done });
      } else if (!this.merge(command, keys, bytes, budget)) {
        this.pending.push({ command, keys, bytes, done: null });
      }
    } else {
      let parts: Pending[];
      try {
        parts = splitSend(command, keys, bytes, budget, {
          keysPerMessage: this.host.options.mode === 'fanout' ? Number.POSITIVE_INFINITY : this.host.keysPerMessage,
          maxMessageBytes: this.host.maxMessageBytes,
          targetKey: (op, target) => this.host.targetKey(op, target),
          nextCallId: () => ++this.splitCalls,
        }).map((part) => ({ ...part, done: null }));
      } catch (err) {
        if ((err as GatewireError).code === ErrorCodes.MESSAGE_TOO_LARGE) this.host.stats.commandsTooLarge += 1;
        return Promise.reject(err);
      }
      bytes = 0;
      for (const part of parts) bytes = Math.max(bytes, part.bytes);
      if (bytes > SOLO_BYTES) done = deferred();
      for (const part of parts) {
        part.done = done;
        if (done !== null || !this.merge(part.command, part.keys, part.bytes, budget)) this.pending.push(part);
      }
    }
    this.host.stats.buffered = this.unconfirmed + this.pending.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.scheduledFlush);
    }
    if (done !== null) return done.promise;
    this.pendingDone ??= deferred();
    return this.pendingDone.promise;
  }

  /**
   * Folds a send into the send queued just before it when both carry the same data to the same
   * kind of target (uids, or client ids): an application that pushes one notification to many
   * users in a loop then costs one command, framed once on each gateway, instead of one per user.
   * Only adjacent sends are merged, so the order of everything a client receives is unchanged; a
   * target already in the merged send is not merged again (it must get the data twice); a client
   * has at most one uid, so no client gets a merged send twice. In direct mode the merged keys
   * must still fit in one broker message (keysPerMessage), so where each message carries one key
   * only sends to the same key merge; the merged command must fit the byte budget too.
   */
  private merge(command: Command, keys: string[], bytes: number, budget: number): boolean {
    if (command.op !== Op.SEND_TO_UIDS && command.op !== Op.SEND_TO_CLIENTS) return false;
    const last = this.pending[this.pending.length - 1];
    if (last === undefined || last.done !== null || last.command.op !== command.op || last.command.d !== command.d)
      return false;
    const incoming = command.op === Op.SEND_TO_UIDS ? command.u : command.c;
    const prior = last.command as SendToUids | SendToClients;
    let list = prior.op === Op.SEND_TO_UIDS ? prior.u : prior.c;
    if (list.length + incoming.length > MERGE_LIMIT) return false;
    const added = listBytes(incoming) - 5;
    if (last.bytes + added > budget || bytes > budget) return false;
    let addedKeys = 0;
    if (this.host.options.mode === 'direct') {
      for (const key of keys) if (!last.keys.includes(key)) addedKeys += 1;
      if (last.keys.length + addedKeys > this.host.keysPerMessage) return false;
    }
    let targets = last.targets;
    if (targets === undefined) {
      targets = new Set(list);
      // A private copy: the queued command may be the caller's object.
      list = [...list];
      last.command =
        prior.op === Op.SEND_TO_UIDS
          ? { op: Op.SEND_TO_UIDS, u: list, d: prior.d }
          : { op: Op.SEND_TO_CLIENTS, c: list, d: prior.d };
      last.keys = [...last.keys];
      last.targets = targets;
    }
    for (const target of incoming) if (targets.has(target)) return false;
    for (const target of incoming) {
      targets.add(target);
      list.push(target);
    }
    last.bytes += added;
    if (addedKeys > 0) for (const key of keys) if (!last.keys.includes(key)) last.keys.push(key);
    return true;
  }

  async flushNow(): Promise<void> {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const shared = this.pendingDone;
    const count = this.pending.length;
    let batches: Batch[] | null = this.toBatches(this.host.nodeRouting ? byNode(this.pending) : this.pending);
    this.pending = [];
    this.pendingDone = null;
    this.unconfirmed += count;
    // Runs of batches under one promise: the turn's shared one, or a large command's own.
    const sharedRuns: Promise<void>[] = [];
    const sent: Promise<void>[] = [];
    let start = 0;
    for (let i = 1; i <= batches.length; i++) {
      if (i < batches.length && batches[i]!.done === batches[start]!.done) continue;
      const own = batches[start]!.done;
      const outcome = this.transmitRun(start === 0 && i === batches.length ? batches : batches.slice(start, i));
      sent.push(outcome.then(noop, noop));
      if (own === null) sharedRuns.push(outcome);
      else
        outcome.then(
          () => own.resolve(),
          (err: Error) => own.reject(err),
        );
      start = i;
    }
    // Nothing here holds the commands while the broker confirms (many may be in flight).
    batches = null;
    if (shared !== null) {
      if (sharedRuns.length === 1)
        sharedRuns[0]!.then(
          () => shared.resolve(),
          (err: Error) => shared.reject(err),
        );
      else
        Promise.all(sharedRuns).then(
          () => shared.resolve(),
          (err: Error) => shared.reject(err),
        );
    }
    try {
      await (sent.length === 1 ? sent[0] : Promise.all(sent));
    } finally {
      this.unconfirmed -= count;
      this.host.stats.buffered = this.unconfirmed + this.pending.length;
    }
  }

  /**
   * One transmitAll; counts what the broker confirmed; rejects with a GatewireError. Keeps only
   * counts, not the batches, while the broker confirms.
   */
  private transmitRun(batches: Batch[]): Promise<void> {
    let commands = 0;
    for (const batch of batches) commands += batch.commands.length;
    const messages = batches.length;
    let sending: Promise<unknown>;
    try {
      sending = this.host.transmitAll(batches);
    } catch (err) {
      return Promise.reject(asBusError(err));
    }
    return sending.then(
      () => {
        this.host.stats.messagesPublished += messages;
        this.host.stats.commandsPublished += commands;
      },
      (err: unknown) => {
        throw asBusError(err);
      },
    );
  }

  /**
   * Cuts the queued commands into broker messages, keeping their order: a message ends when it
   * holds maxCommandsPerMessage commands, when its keys would pass keysPerMessage or its bytes the
   * budget, and around a large command (which travels alone). A command with more keys than one
   * message may carry (keysPerMessage dropped between publish and flush) is sent once per key.
   */
  private toBatches(pending: Pending[]): Batch[] {
    const batches: Batch[] = [];
    const max = this.host.options.maxCommandsPerMessage;
    const keyLimit = this.host.keysPerMessage;
    const budget = this.host.maxCommandBytes;
    // Where a directory routes, a message to one node's key carries nothing for another node
    // (as CC it would be queued for both: each node would receive every node's pushes).
    const perNode = this.host.nodeRouting;
    let nodeKeyed = false;
    let commands: Command[] = [];
    let bytes = 0;
    // The batch's distinct keys: a Set to look up (a batch may carry many), in order in `keys`.
    let keys: string[] = [];
    const keySet = new Set<string>();
    const close = (): void => {
      if (commands.length > 0) batches.push(this.host.batch(keys, commands, bytes, null));
      commands = [];
      keys = [];
      bytes = 0;
      keySet.clear();
    };
    for (const entry of pending) {
      const { command, keys: commandKeys } = entry;
      if (entry.done !== null) {
        close();
        batches.push(this.host.batch(commandKeys, [command], entry.bytes, entry.done));
        continue;
      }
      const entryNodeKeyed = perNode && commandKeys.every(isNodeKey);
      // A command for several nodes travels as one message to all of them (below): its copies
      // share one sequence number, which a session moving between them relies on (takeover.ts).
      if (commandKeys.length > keyLimit && !entryNodeKeyed) {
        close();
        for (const key of commandKeys) batches.push(this.host.batch([key], [command], entry.bytes, null));
        continue;
      }
      let added = 0;
      for (const key of commandKeys) if (!keySet.has(key)) added += 1;
      if (
        commands.length >= max ||
        (keySet.size + added > keyLimit && !(entryNodeKeyed && added === 0)) ||
        (commands.length > 0 && bytes + entry.bytes > budget) ||
        (perNode && commands.length > 0 && (entryNodeKeyed || nodeKeyed) && !sameKeys(commandKeys, keySet))
      )
        close();
      if (commands.length === 0) nodeKeyed = entryNodeKeyed;
      commands.push(command);
      bytes += entry.bytes;
      for (const key of commandKeys) {
        if (keySet.has(key)) continue;
        keySet.add(key);
        keys.push(key);
      }
    }
    close();
    return batches;
  }
}

function noop(): void {}

/** Whether `keys` (distinct) are exactly the keys in `set`. */
function sameKeys(keys: string[], set: ReadonlySet<string>): boolean {
  return keys.length === set.size && keys.every((key) => set.has(key));
}

function isNodeKey(key: string): boolean {
  return key.startsWith('n.');
}

/**
 * Gathers the commands of a turn that go to one node key by node, each node's in the order
 * issued, so that each node gets its share of the turn in as few messages as possible. Reordering
 * is only between different nodes' shares: any other command is a barrier, sent after everything
 * before it and before everything after it, since it may reach the same nodes: one sent by
 * another key (a broadcast, a uid or group key), a large command with its own promise, and a
 * command for several nodes, which travels as one message to all of them (so that its copies
 * share one sequence number: a session moving from one of them to another tells by it what the
 * old node had, gateway/takeover.ts). Where a message carries one key only (Redis), publish()
 * has already cut such a command by its targets' own keys, bound on every holder.
 */
function byNode(pending: Pending[]): Pending[] {
  const out: Pending[] = [];
  const shares = new Map<string, Pending[]>();
  const flush = (): void => {
    for (const share of shares.values()) for (const entry of share) out.push(entry);
    shares.clear();
  };
  for (const entry of pending) {
    const keys = entry.keys;
    if (entry.done !== null || keys.length !== 1 || !isNodeKey(keys[0]!)) {
      flush();
      out.push(entry);
      continue;
    }
    let share = shares.get(keys[0]!);
    if (share === undefined) shares.set(keys[0]!, (share = []));
    share.push(entry);
  }
  flush();
  return out;
}

function asBusError(err: unknown): GatewireError {
  return err instanceof GatewireError
    ? err
    : new GatewireError(ErrorCodes.BUS_BROKER, `publish failed: ${errorMessage(err)}`);
}

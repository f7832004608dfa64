/**
 * What arrives from the broker: decoded and verified (envelope.ts), refused when it is version 1
 * outside a rolling upgrade, dropped when it is not new (replay-guard.ts), its malformed commands
 * dropped alone (command-check.ts), the receive rule applied for commands that arrived on one of
 * several keys, counted, and handed to the node.
 */
import type { Logger } from 'pino';
import { Op, type Command } from '../protocol/commands.js';
import { LEGACY_WIRE_VERSION, decodeEnvelope, type DecodedEnvelope } from '../protocol/envelope.js';
import { commandProblem } from '../protocol/command-check.js';
import { ownerOf } from '../protocol/identity.js';
import { nodeKey } from '../protocol/routing-keys.js';
import { ErrorCodes, errorMessage, type GatewireError } from '../errors.js';
import type { ReplayGuard, Verdict } from './replay-guard.js';
import type { BusOptions, BusStats } from './bus-options.js';

/** What the receiving side needs from its bus. */
export interface InboundHost {
  readonly options: BusOptions;
  readonly stats: BusStats;
  readonly log: Logger;
  readonly guard: ReplayGuard;
  readonly legacyAllowed: boolean;
  readonly legacyPeers: boolean;
  /** the first of the command's keys this node holds */
  firstHeldKey(command: Command): string | undefined;
  deliver(commands: Command[], sender: string, seq: number): void;
}

export class Inbound {
  /** when refusals were last logged, so a flood of replays does not flood the log */
  private refusalLoggedAt = 0;
  private readonly ownKey: string;

  constructor(private readonly host: InboundHost) {
    this.ownKey = nodeKey(host.options.instance);
  }

  /**
   * Handles one incoming broker message; true if it was new and applied. `viaKey` is the key it
   * arrived on, for transports that publish a multi-key command once per key: the command is
   * applied only for the first of its keys this node holds, so a node holding several of them
   * applies it once. A copy that this rule filters out entirely is not marked as seen.
   */
  receive(data: Uint8Array, viaKey?: string): boolean {
    this.host.stats.messagesConsumed += 1;
    let decoded: DecodedEnvelope;
    try {
      decoded = decodeEnvelope(data, this.host.options.secret);
    } catch (err) {
      const code = (err as GatewireError).code;
      if (code === ErrorCodes.BUS_SIGNATURE) this.host.stats.signatureErrors += 1;
      else this.host.stats.decodeErrors += 1;
      this.host.log.warn({ code, err: errorMessage(err), bytes: data.length }, 'dropped an unreadable bus message');
      return false;
    }
    if (decoded.version === LEGACY_WIRE_VERSION) {
      if (!this.acceptsLegacy(decoded.commands)) {
        this.host.stats.legacyRefused += 1;
        this.logRefusal('legacy', decoded);
        return false;
      }
    } else if (decoded.seq !== 0) {
      const verdict = this.host.guard.check(decoded);
      if (verdict !== 'new') {
        if (verdict === 'duplicate') this.host.stats.duplicatesDropped += 1;
        else this.host.stats.replaysRefused += 1;
        this.logRefusal(verdict, decoded);
        return false;
      }
    }
    let commands = decoded.commands;
    // A command with a field missing or of the wrong type is dropped alone (before anything,
    // the receive rule included, reads its fields); the rest of the message runs.
    if (commands.some((cmd) => commandProblem(cmd as unknown as Record<string, unknown>) !== null)) {
      commands = commands.filter((cmd) => {
        const problem = commandProblem(cmd as unknown as Record<string, unknown>);
        if (problem === null) return true;
        this.host.stats.malformedCommands += 1;
        this.host.log.warn({ op: cmd.op, problem, sender: decoded.sender }, 'dropped a malformed bus command');
        return false;
      });
    }
    // A command with one key arrived on that key; only one with several may arrive more than once.
    // What came by this node's own key (a holder directory routed it here) came once.
    if (viaKey !== undefined && viaKey !== this.ownKey && commands.some(hasSeveralKeys)) {
      const before = commands.length;
      commands = commands.filter((cmd) => !hasSeveralKeys(cmd) || this.host.firstHeldKey(cmd) === viaKey);
      // Every command was for another of this node's keys: its own copy is still to come.
      if (before > 0 && commands.length === 0) return false;
    }
    if (decoded.version !== LEGACY_WIRE_VERSION && decoded.seq !== 0) this.host.guard.accept(decoded);
    for (const cmd of commands)
      if (cmd.op === Op.LEAVE && cmd.i === decoded.sender) this.host.guard.left(decoded.sender);
    this.countConsumed(commands);
    if (commands.length > 0) this.host.deliver(commands, decoded.sender, decoded.seq);
    return true;
  }

  countConsumed(commands: Command[]): void {
    this.host.stats.commandsConsumed += commands.length;
    let pushes = 0;
    for (const cmd of commands) pushes += targetCount(cmd);
    this.host.stats.pushesConsumed += pushes;
  }

  /** Version 1 is read while a 0.1 peer is live, and its announcements always (to learn of it). */
  private acceptsLegacy(commands: Command[]): boolean {
    if (!this.host.legacyAllowed) return false;
    return this.host.legacyPeers || commands.every((cmd) => cmd.op === Op.ANNOUNCE || cmd.op === Op.LEAVE);
  }

  private logRefusal(verdict: Verdict | 'legacy', decoded: DecodedEnvelope): void {
    const now = Date.now();
    const fields = {
      verdict,
      sender: decoded.sender.slice(0, 64),
      epoch: decoded.epoch,
      seq: decoded.seq,
      time: decoded.time,
    };
    // Repeats after a reconnect are normal (debug); anything else is worth a warning, at most
    // one a second (a flood of replays must not flood the log; the counters have them all).
    if (verdict === 'duplicate') {
      this.host.log.debug(fields, 'dropped a repeated bus message');
    } else if (now - this.refusalLoggedAt >= 1000) {
      this.refusalLoggedAt = now;
      this.host.log.warn(fields, 'refused a bus message (replayed, stale or from an unknown wire version)');
    }
  }
}

/**
 * Whether a command may have several routing keys (sent once per key where a message carries one
 * key; see receive). Sends to clients have one key per owner node: several only if their ids
 * name more than one node.
 */
function hasSeveralKeys(cmd: Command): boolean {
  switch (cmd.op) {
    case Op.SEND_TO_UIDS:
      return cmd.u.length > 1;
    case Op.SEND_TO_GROUPS:
      return cmd.g.length > 1;
    case Op.SEND_TO_CLIENTS: {
      const c = cmd.c;
      if (c.length < 2) return false;
      const owner = ownerOf(c[0]!);
      for (let i = 1; i < c.length; i++) if (ownerOf(c[i]!) !== owner) return true;
      return false;
    }
    default:
      return false;
  }
}

function targetCount(cmd: Command): number {
  switch (cmd.op) {
    case Op.SEND_TO_UIDS:
      return cmd.u.length;
    case Op.SEND_TO_CLIENTS:
      return cmd.c.length;
    case Op.SEND_TO_GROUPS:
      return cmd.g.length;
    default:
      return 1;
  }
}

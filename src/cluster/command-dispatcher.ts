/**
 * Hands every command that arrives on the bus to the part of the node it is for: the gateway
 * (pushes, binds, sessions, queries), membership (announcements), requests (replies).
 * A malformed command is counted and logged; the rest of its message still runs.
 *
 * Folder cluster/ (layer 2: imports protocol and transport only): who is in the cluster
 * (membership.ts), requests and their replies (requests.ts), and this dispatcher. Flow: bus
 * -> dispatcher -> membership / requests / the CommandTarget (the gateway, bound from above).
 */
import type { Logger } from 'pino';
import { Op, isClientCommand, type ClientCommand, type Command, type DirectoryCommand } from '../protocol/commands.js';
import type { Bus } from '../transport/bus.js';
import type { Query, SendToAll, SendToClients, SendToGroups, SendToUids } from '../protocol/commands.js';
import type { Membership } from './membership.js';
import type { Requests } from './requests.js';
import { ErrorCodes, GatewireError, errorMessage } from '../errors.js';

/**
 * What the dispatcher hands commands to: the gateway of this process (gateway.ts implements it).
 * An interface, so that the cluster layer does not depend on the gateway above it.
 */
export interface CommandTarget {
  /** whether this process holds the client (per-client commands are the owner's alone) */
  owns(clientId: string): boolean;
  /** a send, applied synchronously (the hot path) */
  push(cmd: SendToClients | SendToAll | SendToUids | SendToGroups, sender: string, seq: number): void;
  /** any other command; session writes resolve to the new version */
  apply(cmd: Command): Promise<number | null | void>;
  /** a query about what this process holds */
  answer(query: Pick<Query, 'q' | 'a'>): unknown;
}

/** Queries about one client (a[0]): only its owner answers. */
const OWNER_QUERIES: ReadonlySet<string> = new Set(['client', 'takeover', 'release']);

/** Where directory commands go (directory.ts), when this process keeps a directory. */
export interface DirectoryTarget {
  onCommand(cmd: DirectoryCommand): void;
}

export class CommandDispatcher {
  /** commands that could not be applied (malformed fields) */
  malformed = 0;
  directory: DirectoryTarget | null = null;

  constructor(
    private readonly bus: Bus,
    private readonly gateway: CommandTarget | null,
    private readonly membership: Membership,
    private readonly requests: Requests,
    private readonly log: Logger,
  ) {
    membership.on('leave', (instance: string, why: 'left' | 'silent') => requests.forget(instance, why === 'silent'));
    requests.onAbsent = (instance) => membership.suspect(instance);
    requests.isGone = (instance) => membership.isSuspect(instance);
  }

  attach(): void {
    this.bus.onCommands((commands, sender, seq) => {
      for (const command of commands) this.handle(command, sender, seq);
    });
  }

  private handle(cmd: Command, sender: string, seq: number): void {
    try {
      if (isClientCommand(cmd)) {
        this.applyClientCommand(cmd);
        return;
      }
      switch (cmd.op) {
        case Op.REPLY:
          if (cmd.t === this.bus.instance) this.requests.onReply(cmd);
          return;
        case Op.ANNOUNCE:
          // A message announces its own sender only (a node cannot speak for another).
          if (cmd.n.i === sender) this.membership.onAnnounce(cmd.n);
          return;
        case Op.LEAVE:
          if (cmd.i === sender) this.membership.onLeave(cmd.i);
          return;
        case Op.DIR_HELLO:
        case Op.DIR_STATE:
        case Op.DIR_UPDATE:
        case Op.DIR_ACK:
        case Op.DIR_DROP:
          // As announcements: a node speaks for itself only, and only what is meant for this one counts.
          if (cmd.i !== sender || (cmd.op !== Op.DIR_UPDATE && cmd.t !== this.bus.instance)) return;
          this.directory?.onCommand(cmd);
          return;
        case Op.QUERY: {
          const gateway = this.gateway;
          if (gateway === null) return;
          if (cmd.t !== undefined && cmd.t !== this.bus.instance) return;
          if (OWNER_QUERIES.has(cmd.q) && !gateway.owns(String(cmd.a[0]))) return;
          if (!Array.isArray(cmd.a)) throw new GatewireError(ErrorCodes.BUS_DECODE, 'query arguments are not an array');
          this.requests.reply(cmd, gateway.answer(cmd));
          return;
        }
        case Op.SEND_TO_CLIENTS:
        case Op.SEND_TO_ALL:
        case Op.SEND_TO_UIDS:
        case Op.SEND_TO_GROUPS:
          // The hot path: synchronous, no promise per command (a throw lands in the catch below).
          this.gateway?.push(cmd, sender, seq);
          return;
        default:
          if (this.gateway === null) return;
          this.gateway.apply(cmd).catch((err: unknown) => this.malformedCommand(cmd, err));
      }
    } catch (err) {
      this.malformedCommand(cmd, err);
    }
  }

  /** Per-client commands are the owner's alone (in fanout mode every node sees them). */
  private applyClientCommand(cmd: ClientCommand): void {
    if (this.gateway === null || typeof cmd.c !== 'string' || !this.gateway.owns(cmd.c)) return;
    const asks = 'r' in cmd && cmd.r !== undefined;
    // Past its deadline the asker gives up (requests.ts): applying it now would make a call
    // that failed take effect after all.
    if ('dl' in cmd && typeof cmd.dl === 'number' && Date.now() > cmd.dl) {
      this.requests.expired += 1;
      this.log.warn(
        { op: cmd.op, clientId: cmd.c, lateMs: Date.now() - cmd.dl },
        'dropped a command past its deadline (the caller gave up on it)',
      );
      if (asks) this.requests.reply(cmd as { r: number; f: string }, null, 'expired: arrived past its deadline');
      return;
    }
    this.gateway.apply(cmd).then(
      (value) => asks && this.requests.reply(cmd as { r: number; f: string }, value ?? true),
      (err: unknown) => {
        this.log.warn({ op: cmd.op, clientId: cmd.c, err: errorMessage(err) }, 'command failed');
        if (asks) this.requests.reply(cmd as { r: number; f: string }, null, errorMessage(err));
      },
    );
  }

  private malformedCommand(cmd: Command, err: unknown): void {
    this.malformed += 1;
    this.log.warn({ op: (cmd as { op?: unknown }).op, err: errorMessage(err) }, 'dropped a malformed bus command');
  }
}

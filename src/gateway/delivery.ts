/**
 * Delivery of sends to the clients this gateway holds (DESIGN §4, "Writes"): each message is framed
 * once for all its clients, the last text message is reused when the next send carries the same
 * text, a client in several groups of one send (or of the parts of one split send) gets it once.
 * Synchronous, with no promise per command: this is the hot path.
 */
import {
  Op,
  type Payload,
  type SendToAll,
  type SendToClients,
  type SendToGroups,
  type SendToUids,
} from '../protocol/commands.js';
import type { Client } from './client.js';
import type { ClientRegistry } from './client-registry.js';
import { OutgoingMessage } from './outgoing-message.js';

export class Delivery {
  /** the message of the last send, reused by a next send of the same data (messageOf) */
  private lastMessage: OutgoingMessage | null = null;
  /**
   * The latest split sendToGroup (SendToGroups.k) of each sender and the clients it reached: its
   * parts arrive one after another, and a client in groups of two parts gets the payload once.
   */
  private readonly splitSends = new Map<string, { k: number; reached: Set<Client>; at: number }>();
  /** the bus message of the send being delivered (resumable sessions keep it with the message) */
  private sender = '';
  private seq = 0;

  constructor(
    private readonly registry: ClientRegistry,
    /** counts every message queued to a client */
    private readonly counted: () => void,
  ) {}

  /**
   * The message for `data`, framed once: the last one is reused when the next send carries the
   * same text (one notification pushed to many users arrives as one command per uid in direct
   * mode, each with its own decoded copy of the data).
   */
  private messageOf(data: Payload): OutgoingMessage {
    // Text only: strings cannot change, while bytes may be changed by their owner between sends
    // (an in-process publisher's Buffer), and the frame is a copy of what they were.
    if (typeof data !== 'string') return new OutgoingMessage(data);
    const last = this.lastMessage;
    if (last !== null && last.data === data) return last;
    const message = new OutgoingMessage(data);
    this.lastMessage = message;
    return message;
  }

  /**
   * Delivers a send to the clients it names that this gateway holds; synchronous, with no promise
   * per command (the hot path: the dispatcher calls it directly). Each message is framed once.
   */
  push(cmd: SendToClients | SendToAll | SendToUids | SendToGroups, sender = '', seq = 0): void {
    this.sender = sender;
    this.seq = seq;
    switch (cmd.op) {
      case Op.SEND_TO_CLIENTS: {
        let message: OutgoingMessage | undefined;
        for (const id of cmd.c) {
          const client = this.registry.get(id);
          if (client === undefined) continue;
          message ??= this.messageOf(cmd.d);
          this.deliver(client, message);
        }
        return;
      }
      case Op.SEND_TO_ALL: {
        const exclude = cmd.x && cmd.x.length > 0 ? new Set(cmd.x) : null;
        const message = new OutgoingMessage(cmd.d);
        for (const client of this.registry.clients.values()) {
          if (exclude === null || !exclude.has(client.id)) this.deliver(client, message);
        }
        return;
      }
      case Op.SEND_TO_UIDS: {
        let message: OutgoingMessage | undefined;
        for (const uid of cmd.u) {
          const holders = this.registry.uids.get(uid);
          if (holders === undefined) continue;
          message ??= this.messageOf(cmd.d);
          for (const client of holders) this.deliver(client, message);
        }
        return;
      }
      case Op.SEND_TO_GROUPS: {
        const exclude = cmd.x && cmd.x.length > 0 ? new Set(cmd.x) : null;
        let message: OutgoingMessage | undefined;
        // A client in several of the groups gets the message once, also across the parts of a
        // split call.
        const seen = cmd.k !== undefined ? this.reachedBy(sender, cmd.k) : cmd.g.length > 1 ? new Set<Client>() : null;
        for (const group of cmd.g) {
          const members = this.registry.groups.get(group);
          if (members === undefined) continue;
          message ??= this.messageOf(cmd.d);
          for (const client of members) {
            if (exclude !== null && exclude.has(client.id)) continue;
            if (seen !== null) {
              if (seen.has(client)) continue;
              seen.add(client);
            }
            this.deliver(client, message);
          }
        }
        return;
      }
    }
  }

  /** The clients already reached by split call `k` of `sender` (a new call starts afresh). */
  private reachedBy(sender: string, k: number): Set<Client> {
    const now = Date.now();
    const state = this.splitSends.get(sender);
    if (state !== undefined && state.k === k) return state.reached;
    // Calls of senders gone quiet are forgotten (they hold client references).
    for (const [name, old] of this.splitSends) if (now - old.at > 60000) this.splitSends.delete(name);
    const fresh = { k, reached: new Set<Client>(), at: now };
    this.splitSends.set(sender, fresh);
    return fresh.reached;
  }

  private deliver(client: Client, message: OutgoingMessage): void {
    this.counted();
    client.send(message, this.sender, this.seq);
  }
}

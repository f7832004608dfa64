/**
 * A send to more keys or bytes than one broker message carries, cut into commands that each carry
 * only the targets of their own keys (docs/wire-format.md, "Sizes and splitting").
 */
import { Op, type Command, type SendToClients, type SendToGroups, type SendToUids } from '../protocol/commands.js';
import { exactCommandBytes, listBytes } from '../protocol/command-size.js';
import { ErrorCodes, GatewireError } from '../errors.js';

export interface SplitLimits {
  /** keys one part may carry (infinite in fanout mode) */
  keysPerMessage: number;
  /** for the refusal's message */
  maxMessageBytes: number;
  /** the key of one target (a uid's, a group's, a client's node's), '' in fanout mode */
  targetKey(op: number, target: string): string;
  /** a new call id for a send to groups cut into several parts */
  nextCallId(): number;
}

/** One part of a split send. */
export interface Part {
  command: Command;
  keys: string[];
  /** upper bound of its encoded size */
  bytes: number;
}

/**
 * Cuts a send to many targets into commands that each carry only the targets of their own keys,
 * at most keysPerMessage keys and `budget` bytes each, in the order of the targets' keys: bytes
 * on the bus grow with the number of targets, not with its square. Sends to groups that need
 * several commands carry the call's id (k), so a client in groups of two of them gets the
 * payload once. Any other command that does not fit is refused (MESSAGE_TOO_LARGE).
 */
export function splitSend(
  command: Command,
  keys: string[],
  estimate: number,
  budget: number,
  limits: SplitLimits,
): Part[] {
  let targets: string[];
  if (command.op === Op.SEND_TO_UIDS) targets = command.u;
  else if (command.op === Op.SEND_TO_GROUPS) targets = command.g;
  else if (command.op === Op.SEND_TO_CLIENTS) targets = command.c;
  else {
    const exact = estimate > budget ? exactCommandBytes(command) : estimate;
    if (exact > budget) throw tooLarge(limits, command, exact);
    return [{ command, keys, bytes: exact }];
  }
  let base = estimate - listBytes(targets) + 5;
  if (base > budget) {
    // The bound says no; the exact size of the command without its targets decides.
    base = exactCommandBytes({
      ...command,
      [command.op === Op.SEND_TO_UIDS ? 'u' : command.op === Op.SEND_TO_GROUPS ? 'g' : 'c']: [],
    } as Command);
    if (base > budget) throw tooLarge(limits, command, base + listBytes(targets));
  }
  // Targets by key, keys in order of first appearance.
  const byKey = new Map<string, string[]>();
  for (const target of targets) {
    const key = limits.targetKey(command.op, target);
    const list = byKey.get(key);
    if (list === undefined) byKey.set(key, [target]);
    else list.push(target);
  }
  const parts: Part[] = [];
  let partKeys: string[] = [];
  let partTargets: string[] = [];
  let bytes = base;
  const close = (): void => {
    if (partTargets.length === 0) return;
    parts.push({ command: withTargets(command, partTargets), keys: partKeys, bytes });
    partKeys = [];
    partTargets = [];
    bytes = base;
  };
  const keyLimit = limits.keysPerMessage;
  for (const [key, list] of byKey) {
    if (partKeys.length >= keyLimit) close();
    if (key !== '') partKeys.push(key);
    for (const target of list) {
      const size = 3 * target.length + 5;
      if (partTargets.length > 0 && bytes + size > budget) {
        close();
        if (key !== '') partKeys.push(key);
      }
      partTargets.push(target);
      bytes += size;
    }
  }
  close();
  for (const part of parts) if (part.bytes > budget) throw tooLarge(limits, command, part.bytes);
  if (command.op === Op.SEND_TO_GROUPS && parts.length > 1) {
    const k = limits.nextCallId();
    for (const part of parts) (part.command as SendToGroups).k = k;
  }
  return parts;
}

export function tooLarge(limits: { maxMessageBytes: number }, command: Command, bytes: number): GatewireError {
  return new GatewireError(
    ErrorCodes.MESSAGE_TOO_LARGE,
    `a bus command (op ${command.op}) of ${bytes} bytes cannot fit in one broker message of ${limits.maxMessageBytes} bytes (bus.maxMessageBytes); send less data per call`,
  );
}

/** The same send with other targets (a part of a split call). */
function withTargets(command: SendToUids | SendToGroups | SendToClients, targets: string[]): Command {
  switch (command.op) {
    case Op.SEND_TO_UIDS:
      return { op: Op.SEND_TO_UIDS, u: targets, d: command.d };
    case Op.SEND_TO_CLIENTS:
      return { op: Op.SEND_TO_CLIENTS, c: targets, d: command.d };
    case Op.SEND_TO_GROUPS:
      return command.x !== undefined
        ? { op: Op.SEND_TO_GROUPS, g: targets, d: command.d, x: command.x }
        : { op: Op.SEND_TO_GROUPS, g: targets, d: command.d };
  }
}

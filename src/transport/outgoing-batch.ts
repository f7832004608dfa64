/** One broker message on its way out (transport.ts OutgoingBatch), and the promises of calls. */
import type { Command } from '../protocol/commands.js';
import { packCommands } from '../protocol/envelope.js';
import type { OutgoingBatch } from './transport.js';

/** Seals packed commands: (body, sequence number or 0 for a first seal) -> envelope and its sequence number. */
export type Sealer = (body: Buffer, seq: number) => { envelope: Buffer; seq: number };

export interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A large command's own promise may be rejected before its caller awaits it.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/**
 * The commands are packed once, on first use; the envelope around them is sealed at every
 * (re)send, with the present time and the sequence number it got the first time.
 */
export class Batch implements OutgoingBatch {
  private body: Buffer | undefined;
  private seq = 0;

  constructor(
    readonly keys: string[],
    readonly commands: Command[],
    private readonly estimate: number,
    /** a large command's own promise, or null for the turn's */
    readonly done: Deferred | null,
    private readonly sealWith: Sealer,
    private readonly overhead: number,
  ) {}

  get bytes(): number {
    return (this.body?.length ?? this.estimate) + this.overhead;
  }

  seal(): Buffer {
    this.body ??= packCommands(this.commands);
    const { envelope, seq } = this.sealWith(this.body, this.seq);
    this.seq = seq;
    return envelope;
  }

  sealer(): () => Buffer {
    const body = (this.body ??= packCommands(this.commands));
    const sealWith = this.sealWith;
    let seq = this.seq;
    return () => {
      const sealed = sealWith(body, seq);
      seq = sealed.seq;
      return sealed.envelope;
    };
  }
}

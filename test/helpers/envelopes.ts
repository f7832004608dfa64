/**
 * Envelopes as a program outside the cluster writes them (docs/wire-format.md): each sender name
 * has an epoch (this test process's start) and numbers its messages 1, 2, 3, …
 */
import { createHmac } from 'node:crypto';
import { Packr } from 'msgpackr';
import { encodeEnvelope, type EnvelopeHeader } from '../../src/protocol/envelope.js';
import type { Command } from '../../src/protocol/commands.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const started = Date.now();
const sequences = new Map<string, number>();

/** The next header of `sender`: its sequence number grows by one at every call. */
export function nextHeader(sender: string): EnvelopeHeader {
  const seq = (sequences.get(sender) ?? 0) + 1;
  sequences.set(sender, seq);
  return { sender, epoch: started, seq, time: Date.now() };
}

/** An envelope of `sender`'s next message. */
export function envelopeFrom(sender: string, commands: Command[], secret = ''): Buffer {
  return encodeEnvelope(nextHeader(sender), commands, secret);
}

/** The signature of docs/wire-format.md, computed here apart from the code under test. */
export function documentedSignature(secret: string, header: EnvelopeHeader, body: Uint8Array): Buffer {
  const sender = Buffer.from(header.sender, 'utf8');
  const fixed = Buffer.alloc(1 + 2 + sender.length + 24);
  fixed[0] = 2;
  fixed.writeUInt16BE(sender.length, 1);
  sender.copy(fixed, 3);
  fixed.writeBigUInt64BE(BigInt(header.epoch), 3 + sender.length);
  fixed.writeBigUInt64BE(BigInt(header.seq), 11 + sender.length);
  fixed.writeBigUInt64BE(BigInt(header.time), 19 + sender.length);
  return createHmac('sha256', secret).update(fixed).update(body).digest();
}

/**
 * What docs/wire-format.md tells another language to do, with a general MessagePack encoder:
 * [2, sender, epoch, seq, time, bin(commands), bin(hmac) or nil]. `secret` null: unsigned.
 */
export function foreignEnvelope(
  sender: string,
  commands: unknown[],
  secret: string | null,
  header: EnvelopeHeader = nextHeader(sender),
): Buffer {
  const body = packr.pack(commands);
  const signature = secret === null ? null : documentedSignature(secret, header, body);
  return packr.pack([2, header.sender, header.epoch, header.seq, header.time, body, signature]);
}

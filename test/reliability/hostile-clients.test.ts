/**
 * Hostile clients, thousands of generated cases per kind (seeded: GATEWIRE_TEST_SEED replays a
 * run; the seed is printed):
 *   - WebSocket, at the byte level after a real upgrade: bad opcodes, reserved bits, unmasked
 *     client frames, bad lengths, fragmented or oversized control frames, broken fragment
 *     sequences, bad close frames (all close 1002, invalid UTF-8 in a close reason 1007);
 *     invalid UTF-8 in text frames, whole or split across fragments (1007); oversized frames and
 *     fragmented messages (1009); random bytes (whatever they are, a valid close code or none);
 *   - TCP text listener: garbage lines (delivered, exactly one message per newline), endless
 *     lines and lines past maxPayload (connection closed, nothing delivered);
 *   - TCP frame listener: random frames (delivered), length prefixes past maxPayload (closed),
 *     random bytes (the outcome a reference framer predicts).
 * The node stays up, each offending connection ends the way it must, nothing leaks (only the
 * canaries are left), and the canaries (one ws, one tcp) are served both ways after every batch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startNode, tcpPort, waitFor, wsUrl } from '../helpers/nodes.js';
import { Opened, connectTcp, connectWs, idHandler, type Connected } from '../e2e/support.js';
import { Prng, TEST_SEED } from '../helpers/prng.js';
import { RawWs, wsFrame, type Outcome } from '../helpers/raw-ws.js';
import type { GatewireNode } from '../../src/node.js';
import type { TcpTestClient, WsTestClient } from '../helpers/clients.js';

const MAX_PAYLOAD = 4096;
const CONCURRENCY = 64;
/** wait for a reaction that must come (only reached when something is wrong) */
const MUST_REACT_MS = 5000;
/** wait for a reaction that may not come (incomplete input) */
const MAY_REACT_MS = 150;

interface Tally {
  cases: number;
  failures: string[];
  outcomes: Record<string, number>;
}

interface Harness {
  node: GatewireNode;
  wsCanary: Connected<WsTestClient>;
  tcpCanary: Connected<TcpTestClient>;
  /** messages the handler got, per clientId, and the longest (bytes; text: UTF-16 units) */
  received: Map<string, { count: number; maxLen: number }>;
  batches: number;
}

async function harness(t: { after: (fn: () => Promise<void>) => void }): Promise<Harness> {
  const opened = new Opened();
  t.after(() => opened.closeAll());
  const received = new Map<string, { count: number; maxLen: number }>();
  const handler = idHandler({
    async onMessage(clientId, message, { gateway }) {
      const bytes = typeof message === 'string' ? Buffer.from(message) : Buffer.from(message);
      const entry = received.get(clientId) ?? { count: 0, maxLen: 0 };
      entry.count += 1;
      // Text is decoded from UTF-8 (invalid bytes become U+FFFD, which takes 3 bytes again): its
      // length in UTF-16 units is at most the number of bytes received.
      entry.maxLen = Math.max(entry.maxLen, typeof message === 'string' ? message.length : bytes.length);
      received.set(clientId, entry);
      if (bytes.subarray(0, 6).toString('latin1') === 'probe-') await gateway.sendToClient(clientId, message);
    },
    onClose(clientId) {
      setTimeout(() => received.delete(clientId), 60_000).unref();
    },
  });
  const node = opened.node(
    await startNode(
      {
        gateway: {
          listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text', 'tcp://127.0.0.1:0?protocol=frame'],
          maxPayload: MAX_PAYLOAD,
        },
      },
      { handler },
    ),
  );
  const wsCanary = await connectWs(opened, node);
  const tcpCanary = await connectTcp(opened, node, 'text');
  return { node, wsCanary, tcpCanary, received, batches: 0 };
}

/** The canaries are pushed to and answered after every batch. */
async function canaries(h: Harness, label: string): Promise<void> {
  h.batches += 1;
  const text = `canary-${label}-${h.batches}`;
  await h.node.api.sendToClient(h.wsCanary.id, text);
  await h.node.api.sendToClient(h.tcpCanary.id, text);
  await h.wsCanary.client.waitForText(text);
  await h.tcpCanary.client.waitForText(text);
  h.wsCanary.client.send(`probe-${text}`);
  h.tcpCanary.client.send(`probe-${text}`);
  await h.wsCanary.client.waitForText(`probe-${text}`);
  await h.tcpCanary.client.waitForText(`probe-${text}`);
}

/** Runs `count` cases, CONCURRENCY at a time, with the canaries checked after each batch. */
async function run(
  h: Harness,
  label: string,
  count: number,
  prng: Prng,
  makeCase: (prng: Prng, index: number) => () => Promise<{ outcome: string; failure?: string }>,
): Promise<Tally> {
  const tally: Tally = { cases: 0, failures: [], outcomes: {} };
  for (let start = 0; start < count; start += CONCURRENCY) {
    const batch: Promise<void>[] = [];
    for (let i = start; i < Math.min(count, start + CONCURRENCY); i++) {
      const runCase = makeCase(prng, i);
      batch.push(
        runCase().then(
          ({ outcome, failure }) => {
            tally.cases += 1;
            tally.outcomes[outcome] = (tally.outcomes[outcome] ?? 0) + 1;
            if (failure !== undefined) tally.failures.push(`${label} #${i}: ${failure}`);
          },
          (err: unknown) => {
            tally.cases += 1;
            tally.failures.push(`${label} #${i}: ${(err as Error).message}`);
          },
        ),
      );
    }
    await Promise.all(batch);
    await canaries(h, label);
  }
  // Nothing of the hostile connections is left: only the canaries are held.
  await waitFor(() => h.node.gateway!.registry.size === 2, 10_000, `${label}: only the canaries left`);
  return tally;
}

function outcomeName(o: Outcome): string {
  return o.kind === 'close' ? `close ${o.code ?? 'no code'}` : o.kind;
}

// ---- WebSocket ------------------------------------------------------------------------------

type WsCase = { writes: Buffer[]; expect: number | 'open' | 'any' };

function wsCase(
  h: Harness,
  make: (prng: Prng, i: number) => WsCase,
): (prng: Prng, i: number) => () => Promise<{ outcome: string; failure?: string }> {
  const port = Number(new URL(wsUrl(h.node)).port);
  return (prng, i) => {
    const c = make(prng, i);
    return async () => {
      const ws = await RawWs.connect(port);
      try {
        for (const bytes of c.writes) ws.send(bytes);
        if (c.expect === 'open') {
          // Accepted input: a probe sent after it is answered (so the server read it all as valid).
          ws.send(wsFrame({ opcode: 1, payload: Buffer.from(`probe-${i}`) }));
          const echoed = await ws.echo(`probe-${i}`, MUST_REACT_MS);
          const o = echoed ? null : await ws.outcome(0);
          return {
            outcome: echoed ? 'accepted' : outcomeName(o!),
            failure: echoed ? undefined : `expected it accepted, got ${outcomeName(o!)} for ${hex(c.writes)}`,
          };
        }
        const o = await ws.outcome(c.expect === 'any' ? MAY_REACT_MS : MUST_REACT_MS);
        const name = outcomeName(o);
        if (c.expect === 'any') {
          // Whatever random bytes are, the server answers with a close code a server may send
          // (a protocol error, or the echo of a valid close), or waits for more.
          const ok = o.kind === 'open' || (o.kind === 'close' && (o.code === null || isServerCloseCode(o.code)));
          return { outcome: name, failure: ok ? undefined : `random frame ${hex(c.writes)} -> ${name}` };
        }
        const want = `close ${c.expect}`;
        return {
          outcome: name,
          failure: name === want ? undefined : `expected ${want}, got ${name} for ${hex(c.writes)}`,
        };
      } finally {
        ws.destroy();
      }
    };
  };
}

function isServerCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
  );
}

function hex(writes: Buffer[]): string {
  const all = Buffer.concat(writes);
  return all.subarray(0, 24).toString('hex') + (all.length > 24 ? `… (${all.length} bytes)` : '');
}

const DATA_OPCODES = [0x1, 0x2];
const BAD_OPCODES = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15];

function closePayload(code: number, reason: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, reason]);
}

function invalidCloseCode(prng: Prng): number {
  switch (prng.int(5)) {
    case 0:
      return prng.int(1000);
    case 1:
      return prng.pick([1004, 1005, 1006]);
    case 2:
      return prng.range(1015, 2999);
    default:
      return prng.range(5000, 65535);
  }
}

/** Malformed frames: every one is a protocol error (1002), or 1007 for a close reason that is not UTF-8. */
function malformedFrame(prng: Prng, i: number): WsCase {
  const small = (): Buffer => Buffer.from(prng.ascii(prng.int(20)));
  switch (i % 8) {
    case 0: // bad opcode
      return {
        writes: [wsFrame({ opcode: prng.pick(BAD_OPCODES), fin: prng.bool(), payload: small() })],
        expect: 1002,
      };
    case 1: // reserved bits without an extension
      return {
        writes: [wsFrame({ opcode: prng.pick([1, 2, 9, 10]), rsv: prng.range(1, 7), payload: small() })],
        expect: 1002,
      };
    case 2: // an unmasked client frame
      return {
        writes: [wsFrame({ opcode: prng.pick([1, 2, 9, 10]), mask: false, payload: small() })],
        expect: 1002,
      };
    case 3: // a fragmented control frame
      return {
        writes: [wsFrame({ opcode: prng.pick([9, 10]), fin: false, payload: small() })],
        expect: 1002,
      };
    case 4: // a control frame longer than 125 bytes, or a close frame of 1 byte
      return prng.bool()
        ? {
            writes: [wsFrame({ opcode: prng.pick([8, 9, 10]), payload: prng.bytes(prng.range(126, 400)) })],
            expect: 1002,
          }
        : { writes: [wsFrame({ opcode: 8, payload: prng.bytes(1) })], expect: 1002 };
    case 5: // a continuation with nothing to continue, or a new message inside a fragmented one
      return prng.bool()
        ? { writes: [wsFrame({ opcode: 0, fin: prng.bool(), payload: small() })], expect: 1002 }
        : {
            writes: [
              wsFrame({ opcode: prng.pick(DATA_OPCODES), fin: false, payload: small() }),
              wsFrame({ opcode: prng.pick(DATA_OPCODES), fin: prng.bool(), payload: small() }),
            ],
            expect: 1002,
          };
    case 6: // a close frame with a code no one may send, or a reason that is not UTF-8
      return prng.bool(0.75)
        ? { writes: [wsFrame({ opcode: 8, payload: closePayload(invalidCloseCode(prng), small()) })], expect: 1002 }
        : {
            writes: [wsFrame({ opcode: 8, payload: closePayload(1000, Buffer.concat([small(), invalidUtf8(prng)])) })],
            expect: 1007,
          };
    default: // a length no server takes: past 2^53, or past maxPayload in the 16- or 64-bit form
      if (prng.bool()) {
        return {
          writes: [
            wsFrame({
              opcode: prng.pick(DATA_OPCODES),
              declaredLength64: [prng.range(0x200000, 0xffffffff), prng.next()],
            }),
          ],
          expect: 1009,
        };
      }
      return {
        writes: [
          prng.bool()
            ? wsFrame({
                opcode: prng.pick(DATA_OPCODES),
                lengthForm: '16',
                declaredLength: prng.range(MAX_PAYLOAD + 1, 0xffff),
              })
            : wsFrame({
                opcode: prng.pick(DATA_OPCODES),
                declaredLength64: [prng.int(0x200000), prng.next()],
                lengthForm: '64',
              }),
        ],
        expect: 1009,
      };
  }
}

/** One invalid UTF-8 sequence. */
function invalidUtf8(prng: Prng): Buffer {
  switch (prng.int(7)) {
    case 0: // a continuation byte with no lead
      return Buffer.from([prng.range(0x80, 0xbf)]);
    case 1: // bytes that never appear in UTF-8
      return Buffer.from([prng.pick([0xc0, 0xc1, 0xf5, 0xf6, 0xf7, 0xf8, 0xfb, 0xfc, 0xfe, 0xff])]);
    case 2: // overlong encodings
      return Buffer.from(
        prng.pick([
          [0xc0, 0x80],
          [0xc1, 0xbf],
          [0xe0, 0x80, 0x80],
          [0xe0, 0x9f, 0xbf],
          [0xf0, 0x80, 0x80, 0x80],
          [0xf0, 0x8f, 0xbf, 0xbf],
        ]),
      );
    case 3: // UTF-16 surrogates
      return Buffer.from([0xed, prng.range(0xa0, 0xbf), prng.range(0x80, 0xbf)]);
    case 4: // past U+10FFFF
      return Buffer.from([0xf4, prng.range(0x90, 0xbf), prng.range(0x80, 0xbf), prng.range(0x80, 0xbf)]);
    case 5: // a lead byte followed by too few continuation bytes, then ASCII
      return Buffer.from(
        prng.pick([
          [0xe2, 0x82, 0x41],
          [0xf0, 0x9f, 0x98, 0x41],
          [0xc3, 0x41],
          [0xe2, 0x41],
        ]),
      );
    default: // a sequence cut off at the very end (only invalid at the end of the message)
      return Buffer.from(prng.pick([[0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xc3]]));
  }
}

/** Valid UTF-8 that is not ASCII (for sequences split across fragments). */
const VALID_MULTIBYTE = ['é', '€', '𝄞', '中文', 'ü', '😀'].map((s) => Buffer.from(s));

function utf8Case(prng: Prng, i: number): WsCase {
  const prefix = Buffer.from(prng.ascii(prng.int(40)));
  const suffix = Buffer.from(prng.ascii(prng.int(40)));
  if (i % 10 === 9) {
    // Control: valid text whose multi-byte characters are split across fragments is accepted.
    const text = Buffer.concat([prefix, prng.pick(VALID_MULTIBYTE), prng.pick(VALID_MULTIBYTE), suffix]);
    const cut = prefix.length + 1;
    return {
      writes: [
        wsFrame({ opcode: 1, fin: false, payload: text.subarray(0, cut) }),
        wsFrame({ opcode: 0, payload: text.subarray(cut) }),
      ],
      expect: 'open',
    };
  }
  const bad = invalidUtf8(prng);
  // A cut-off sequence is only invalid at the end; elsewhere it is followed by ASCII anyway.
  const payload = Buffer.concat([prefix, bad, i % 7 === 6 ? Buffer.alloc(0) : suffix]);
  if (i % 2 === 0) return { writes: [wsFrame({ opcode: 1, payload })], expect: 1007 };
  // The same, fragmented: the split may fall inside the invalid sequence.
  const cut = prng.range(1, Math.max(1, payload.length - 1));
  return {
    writes: [
      wsFrame({ opcode: 1, fin: false, payload: payload.subarray(0, cut) }),
      wsFrame({ opcode: 0, payload: payload.subarray(cut) }),
    ],
    expect: 1007,
  };
}

function oversizedCase(prng: Prng, i: number): WsCase {
  switch (i % 4) {
    case 0: // one frame just past the limit, sent whole
      return {
        writes: [
          wsFrame({
            opcode: prng.pick(DATA_OPCODES),
            payload: Buffer.from(prng.ascii(prng.range(MAX_PAYLOAD + 1, MAX_PAYLOAD + 64))),
          }),
        ],
        expect: 1009,
      };
    case 1: {
      // a fragmented message whose parts fit but whose total does not
      const first = prng.range(1, MAX_PAYLOAD);
      const second = prng.range(MAX_PAYLOAD - first + 1, MAX_PAYLOAD);
      return {
        writes: [
          wsFrame({ opcode: prng.pick(DATA_OPCODES), fin: false, payload: Buffer.from(prng.ascii(first)) }),
          wsFrame({ opcode: 0, payload: Buffer.from(prng.ascii(second)) }),
        ],
        expect: 1009,
      };
    }
    case 2: // only the header of a huge frame: refused before any payload
      return {
        writes: [wsFrame({ opcode: prng.pick(DATA_OPCODES), declaredLength: prng.range(MAX_PAYLOAD + 1, 50_000_000) })],
        expect: 1009,
      };
    default: // control: exactly the limit is accepted
      return { writes: [wsFrame({ opcode: 1, payload: Buffer.from(prng.ascii(MAX_PAYLOAD)) })], expect: 'open' };
  }
}

function randomCase(prng: Prng): WsCase {
  return { writes: [prng.bytes(prng.range(1, 64))], expect: 'any' };
}

// ---- TCP -------------------------------------------------------------------------------------

/** A raw TCP client that learns its clientId from the greeting, then sends whatever it is given. */
class RawTcp {
  data: Buffer = Buffer.alloc(0);
  closedByServer = false;
  private closing = false;
  readonly closed: Promise<void>;
  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => (this.data = Buffer.concat([this.data, chunk])));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        if (!this.closing) this.closedByServer = true;
        resolve();
      }),
    );
    socket.on('end', () => {
      if (!this.closing) this.closedByServer = true;
    });
  }
  static async connect(port: number): Promise<RawTcp> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.setNoDelay(true);
    return new RawTcp(socket);
  }
  /** Waits until `needle` arrived or the server closed (bounded); true if it arrived. */
  async waitFor(needle: string, ms = MUST_REACT_MS): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.data.includes(needle)) {
      if (this.closedByServer || Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return true;
  }
  /** Waits for the server to close (bounded); true if it did. */
  async serverClosed(ms = MUST_REACT_MS): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closed, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
    return this.closedByServer;
  }
  /** The clientId from the "id:<clientId>" greeting (text: a line; frame: a length-prefixed message). */
  async id(protocol: 'text' | 'frame'): Promise<string> {
    const deadline = Date.now() + MUST_REACT_MS;
    for (;;) {
      const text = protocol === 'text' ? this.data.toString('latin1') : this.data.subarray(4).toString('latin1');
      const match = /^id:([0-9a-z]+)\n?/.exec(text);
      if (match && (protocol === 'frame' ? this.data.length >= 4 + this.data.readUInt32BE(0) : text.includes('\n'))) {
        return match[1]!;
      }
      if (Date.now() > deadline) throw new Error('no id greeting');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }
  /** Writes `bytes` in random pieces (the server must reassemble them). */
  async write(bytes: Buffer, prng: Prng): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      const n = Math.min(bytes.length - offset, prng.range(1, 2048));
      if (this.socket.destroyed) return;
      this.socket.write(bytes.subarray(offset, offset + n));
      offset += n;
      if (prng.bool(0.2)) await new Promise((resolve) => setImmediate(resolve));
    }
  }
  end(): void {
    this.closing = true;
    this.socket.destroy();
  }
}

/** A random line of bytes without a newline, at most `max` long (a trailing \r is not counted). */
function garbageLine(prng: Prng, max: number): Buffer {
  const length = prng.bool(0.1) ? max : prng.int(Math.min(max, 300) + 1);
  const line = prng.bytes(length);
  for (let i = 0; i < line.length; i++) if (line[i] === 0x0a) line[i] = 0x0b;
  return line;
}

function frameOf(payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.length);
  return Buffer.concat([header, payload]);
}

/** What the frame listener must do with `bytes`: messages delivered, and whether it closes. */
function referenceFramer(bytes: Buffer): { messages: number; closes: boolean; pending: number } {
  let offset = 0;
  let messages = 0;
  while (bytes.length - offset >= 4) {
    const length = bytes.readUInt32BE(offset);
    if (length > MAX_PAYLOAD) return { messages, closes: true, pending: 0 };
    if (bytes.length - offset - 4 < length)
      return { messages, closes: false, pending: 4 + length - (bytes.length - offset) };
    messages += 1;
    offset += 4 + length;
  }
  return { messages, closes: false, pending: bytes.length - offset === 0 ? 0 : 4 - (bytes.length - offset) };
}

/** Zeros that complete a header and a body left open at the end of `bytes` (empty if none). */
function completion(bytes: Buffer): Buffer {
  let filler = Buffer.alloc(0);
  for (let step = 0; step < 2; step++) {
    const r = referenceFramer(Buffer.concat([bytes, filler]));
    if (r.closes || r.pending === 0) break;
    filler = Buffer.concat([filler, Buffer.alloc(r.pending)]);
  }
  return filler;
}

// ---- the tests -------------------------------------------------------------------------------

function report(label: string, tally: Tally, extra = ''): void {
  console.log(
    `[hostile ${label}] seed ${TEST_SEED}: ${tally.cases} cases, outcomes ${JSON.stringify(tally.outcomes)}, failures ${tally.failures.length}${extra}`,
  );
  if (tally.failures.length > 0) console.log(`  e.g. ${tally.failures.slice(0, 5).join('\n  ')}`);
}

test('hostile WebSocket frames: malformed (1002/1007), invalid UTF-8 (1007), oversized (1009), random; the node serves on', async (t) => {
  const h = await harness(t);
  const prng = new Prng(TEST_SEED);
  const dropsBefore = { ...h.node.gateway!.counters.drops };
  const results: [string, Tally][] = [];
  results.push(['ws malformed frames', await run(h, 'ws-malformed', 3200, prng, wsCase(h, malformedFrame))]);
  results.push(['ws invalid utf-8', await run(h, 'ws-utf8', 2000, prng, wsCase(h, utf8Case))]);
  results.push(['ws oversized', await run(h, 'ws-oversized', 1600, prng, wsCase(h, oversizedCase))]);
  results.push(['ws random bytes', await run(h, 'ws-random', 2000, prng, wsCase(h, randomCase))]);
  const drops = h.node.gateway!.counters.drops;
  const delta = (reason: string): number => (drops[reason] ?? 0) - (dropsBefore[reason] ?? 0);
  for (const [label, tally] of results) report(label, tally);
  console.log(
    `  node counters: drops protocol_error +${delta('protocol_error')}, max_payload +${delta('max_payload')}; canary batches ${h.batches}, all served; clients left: the 2 canaries`,
  );
  for (const [, tally] of results) assert.deepEqual(tally.failures, []);
  // Every close the server sent for an error was counted as a drop.
  const closes = (code: number): number =>
    results.reduce((n, [, tally]) => n + (tally.outcomes[`close ${code}`] ?? 0), 0);
  assert.equal(delta('max_payload'), closes(1009), 'each 1009 counted as max_payload');
  assert.equal(delta('protocol_error'), closes(1002) + closes(1007), 'each 1002/1007 counted as protocol_error');
});

test('hostile TCP text: garbage lines delivered one per newline; endless and over-long lines closed, nothing delivered', async (t) => {
  const h = await harness(t);
  const prng = new Prng(TEST_SEED + 1);
  const port = tcpPort(h.node, 'text');
  const garbage = await run(h, 'tcp-text-garbage', 2000, prng, (p, i) => {
    const lines = Array.from({ length: p.range(1, 8) }, () => garbageLine(p, MAX_PAYLOAD));
    const bytes = Buffer.concat(lines.flatMap((line) => [line, Buffer.from('\n')]));
    return async () => {
      const c = await RawTcp.connect(port);
      try {
        const id = await c.id('text');
        await c.write(bytes, p);
        c.socket.write(`probe-${i}\n`);
        if (!(await c.waitFor(`probe-${i}\n`)))
          return { outcome: 'no echo', failure: `no echo (server closed: ${c.closedByServer})` };
        const got = h.received.get(id);
        const want = lines.length + 1;
        if (got?.count !== want)
          return { outcome: 'miscounted', failure: `handler got ${got?.count} messages, sent ${want}` };
        return {
          outcome: 'delivered',
          failure: got.maxLen > MAX_PAYLOAD ? `a message of ${got.maxLen} bytes got through` : undefined,
        };
      } finally {
        c.end();
      }
    };
  });
  const endless = await run(h, 'tcp-text-endless', 1200, prng, (p, i) => {
    const valid = Array.from({ length: p.int(3) }, () => garbageLine(p, 200));
    const kind = i % 2 === 0 ? 'endless' : 'too long';
    const long = p.bytes(p.range(MAX_PAYLOAD + 1, 3 * MAX_PAYLOAD)).map((b) => (b === 0x0a || b === 0x0d ? 0x20 : b));
    const bytes = Buffer.concat([
      ...valid.flatMap((line) => [line, Buffer.from('\n')]),
      long,
      kind === 'endless' ? Buffer.alloc(0) : Buffer.from('\n'),
    ]);
    return async () => {
      const c = await RawTcp.connect(port);
      try {
        const id = await c.id('text');
        await c.write(bytes, p);
        if (!(await c.serverClosed()))
          return { outcome: 'open', failure: `${kind} line of ${long.length} bytes: connection not closed` };
        const got = h.received.get(id)?.count ?? 0;
        return {
          outcome: `closed (${kind})`,
          failure: got === valid.length ? undefined : `handler got ${got} messages, expected ${valid.length}`,
        };
      } finally {
        c.end();
      }
    };
  });
  report('tcp text garbage lines', garbage);
  report(
    'tcp text endless/over-long lines',
    endless,
    `; node drops max_payload ${h.node.gateway!.counters.drops.max_payload ?? 0}`,
  );
  assert.deepEqual(garbage.failures, []);
  assert.deepEqual(endless.failures, []);
  assert.equal(h.node.gateway!.counters.drops.max_payload, endless.cases);
});

test('hostile TCP frames: random frames delivered, length prefixes past maxPayload closed, random bytes as a reference framer predicts', async (t) => {
  const h = await harness(t);
  const prng = new Prng(TEST_SEED + 2);
  const port = tcpPort(h.node, 'frame');
  const makeCase = (p: Prng, i: number): (() => Promise<{ outcome: string; failure?: string }>) => {
    let bytes: Buffer;
    switch (i % 3) {
      case 0: // valid frames of random sizes and content
        bytes = Buffer.concat(
          Array.from({ length: p.range(1, 6) }, () => frameOf(p.bytes(p.bool(0.1) ? MAX_PAYLOAD : p.int(300)))),
        );
        break;
      case 1: // valid frames, then a length past maxPayload (with or without a body)
        {
          const length = p.bool(0.2) ? 0xffffffff : p.range(MAX_PAYLOAD + 1, p.bool() ? 2 * MAX_PAYLOAD : 0xfffffffe);
          const header = Buffer.alloc(4);
          header.writeUInt32BE(length);
          bytes = Buffer.concat([
            ...Array.from({ length: p.int(3) }, () => frameOf(p.bytes(p.int(100)))),
            header,
            p.bytes(p.int(64)),
          ]);
        }
        break;
      default: // random bytes
        bytes = p.bytes(p.range(1, 64));
    }
    // Random bytes may end inside a header or a body: complete it with zeros (which may itself
    // make a length past maxPayload), so the probe frame after it is read as a frame.
    const filler = completion(bytes);
    const expected = referenceFramer(Buffer.concat([bytes, filler]));
    return async () => {
      const c = await RawTcp.connect(port);
      try {
        const id = await c.id('frame');
        await c.write(Buffer.concat([bytes, filler]), p);
        if (expected.closes) {
          if (!(await c.serverClosed())) return { outcome: 'open', failure: `expected a close for ${hex([bytes])}` };
          const got = h.received.get(id)?.count ?? 0;
          return {
            outcome: 'closed',
            failure: got === expected.messages ? undefined : `handler got ${got}, expected ${expected.messages}`,
          };
        }
        c.socket.write(frameOf(Buffer.from(`probe-${i}`)));
        if (!(await c.waitFor(`probe-${i}`)))
          return { outcome: 'no echo', failure: `no echo for ${hex([bytes])} (server closed: ${c.closedByServer})` };
        const got = h.received.get(id)?.count ?? 0;
        const want = expected.messages + 1;
        return {
          outcome: 'delivered',
          failure: got === want ? undefined : `handler got ${got}, expected ${want} for ${hex([bytes])}`,
        };
      } finally {
        c.end();
      }
    };
  };
  const tally = await run(h, 'tcp-frame', 3000, prng, makeCase);
  report('tcp frames', tally, `; node drops max_payload ${h.node.gateway!.counters.drops.max_payload ?? 0}`);
  assert.deepEqual(tally.failures, []);
  assert.equal(h.node.gateway!.counters.drops.max_payload ?? 0, tally.outcomes.closed ?? 0);
});

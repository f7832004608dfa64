/**
 * Slow consumers under load (e2e/limits.test.ts has the single-client case). A node in a child
 * process (so its memory is its own) pushes 8 KiB messages to everyone in rounds, while eight
 * fast clients (ws and tcp) read everything and two clients (one ws, one tcp) stop reading.
 * The slow ones are disconnected once what waits for them passes gateway.sendBufferSize; no
 * client ever has more than that waiting; the fast ones get every message, in order, and are
 * never disconnected; the node's memory stays bounded and returns to its baseline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import WebSocket from 'ws';
import { waitFor } from '../helpers/nodes.js';
import { ChildNode, type ChildStats } from '../helpers/child-node.js';

const SEND_BUFFER = 512 * 1024;
const MESSAGE_BYTES = 8 * 1024;
const PER_ROUND = 32;
const ROUNDS_AFTER_CUT = 60;
const MAX_ROUNDS = 800;
const FAST_WS = 6;
const FAST_TCP = 2;

/** A reader that checks the sequence of "seq:<n>:…" messages and counts them. */
class SeqReader {
  count = 0;
  outOfOrder = 0;
  closed = false;
  private last = -1;
  onText(text: string): void {
    if (!text.startsWith('seq:')) return;
    const n = Number(text.slice(4, text.indexOf(':', 4)));
    if (n !== this.last + 1) this.outOfOrder += 1;
    this.last = n;
    this.count += 1;
  }
}

const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MB`;

test('slow clients under load: cut at the send-buffer limit, memory bounded, fast clients get everything', async (t) => {
  const node = await ChildNode.start({
    values: {
      gateway: { listen: ['ws://127.0.0.1:0/ws', 'tcp://127.0.0.1:0?protocol=text'], sendBufferSize: SEND_BUFFER },
    },
    handler: 'quiet',
    execArgv: ['--expose-gc'],
    label: 'slow-client node',
  });
  const sockets: net.Socket[] = [];
  const websockets: WebSocket[] = [];
  t.after(async () => {
    for (const ws of websockets) ws.terminate();
    for (const s of sockets) s.destroy();
    await node.stop();
  });
  const baseline = await node.gc();

  const fast: SeqReader[] = [];
  for (let i = 0; i < FAST_WS; i++) {
    const reader = new SeqReader();
    const ws = new WebSocket(node.url('ws'));
    websockets.push(ws);
    ws.on('message', (data: Buffer) => reader.onText(data.toString('latin1', 0, 16)));
    ws.on('close', () => (reader.closed = true));
    ws.on('error', () => undefined);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    fast.push(reader);
  }
  for (let i = 0; i < FAST_TCP; i++) {
    const reader = new SeqReader();
    const socket = net.connect(node.port('tcp', 'text'), '127.0.0.1');
    sockets.push(socket);
    let pending = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      pending += chunk;
      let index: number;
      while ((index = pending.indexOf('\n')) !== -1) {
        reader.onText(pending.slice(0, 16));
        pending = pending.slice(index + 1);
      }
    });
    socket.on('close', () => (reader.closed = true));
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    fast.push(reader);
  }
  // The slow ones: connected, then never read again.
  const slowWs = new WebSocket(node.url('ws'));
  websockets.push(slowWs);
  slowWs.on('error', () => undefined);
  await new Promise((resolve, reject) => slowWs.once('open', resolve).once('error', reject));
  slowWs.pause();
  const slowTcp = net.connect(node.port('tcp', 'text'), '127.0.0.1');
  sockets.push(slowTcp);
  slowTcp.on('error', () => undefined);
  await new Promise((resolve) => slowTcp.once('connect', resolve));
  slowTcp.pause();
  await waitFor(async () => (await node.stats()).clients === FAST_WS + FAST_TCP + 2, 5000, 'every client registered');

  const padding = 'x'.repeat(MESSAGE_BYTES - 24);
  let seq = 0;
  let rounds = 0;
  let cutAtRound = -1;
  let maxBuffered = 0;
  const peak = { rss: baseline.rss, heapUsed: baseline.heapUsed, arrayBuffers: baseline.arrayBuffers };
  let stats: ChildStats = await node.stats();
  while (rounds < MAX_ROUNDS) {
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < PER_ROUND; i++) sends.push(node.api('sendToAll', `seq:${seq++}:${padding}`));
    await Promise.all(sends);
    rounds += 1;
    // The fast clients read the round before the next one (so they are never the slow ones).
    await waitFor(
      () => fast.every((r) => r.count >= seq || r.closed),
      20_000,
      `round ${rounds} read by the fast clients`,
    );
    stats = await node.stats();
    maxBuffered = Math.max(maxBuffered, stats.maxBuffered);
    // Live memory: after a full GC (garbage of earlier rounds is not what the node holds).
    const live = await node.gc();
    peak.rss = Math.max(peak.rss, live.rss);
    peak.heapUsed = Math.max(peak.heapUsed, live.heapUsed);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, live.arrayBuffers);
    if (cutAtRound < 0 && (stats.counters.drops.send_buffer ?? 0) >= 2) cutAtRound = rounds;
    if (cutAtRound >= 0 && rounds >= cutAtRound + ROUNDS_AFTER_CUT) break;
  }
  const final = await node.gc();
  const frameBytes = MESSAGE_BYTES + 4; // largest framing overhead (ws 16-bit length header)

  console.log(
    `[slow clients] injected: 2 clients (ws, tcp) that stop reading, beside ${FAST_WS} ws + ${FAST_TCP} tcp fast readers; sendBufferSize ${SEND_BUFFER} bytes\n` +
      `  sent ${seq} pushes of ${MESSAGE_BYTES} bytes to all (${rounds} rounds of ${PER_ROUND}); slow clients cut by round ${cutAtRound} (${mb(cutAtRound * PER_ROUND * MESSAGE_BYTES)} pushed to each, most of it held by the kernel's socket buffers)\n` +
      `  fast clients received ${fast.map((r) => r.count).join(', ')} of ${seq} each, out of order ${fast.reduce((n, r) => n + r.outOfOrder, 0)}, disconnected ${fast.filter((r) => r.closed).length}; lost 0 expected\n` +
      `  most bytes ever waiting for one client: ${maxBuffered} (limit ${SEND_BUFFER}); drops ${JSON.stringify(stats.counters.drops)}\n` +
      `  node memory: baseline after gc rss ${mb(baseline.rss)} heap ${mb(baseline.heapUsed)} buffers ${mb(baseline.arrayBuffers)}; peak (after a GC at the end of each round) rss ${mb(peak.rss)} heap ${mb(peak.heapUsed)} buffers ${mb(peak.arrayBuffers)}; after gc rss ${mb(final.rss)} heap ${mb(final.heapUsed)} buffers ${mb(final.arrayBuffers)}`,
  );
  assert.ok(cutAtRound > 0, 'the slow clients were disconnected');
  assert.equal(stats.counters.drops.send_buffer, 2, 'exactly the two slow clients were cut for their send buffer');
  assert.equal(stats.clients, FAST_WS + FAST_TCP, 'the fast clients are all still connected');
  assert.ok(
    maxBuffered <= SEND_BUFFER + frameBytes,
    `never more than sendBufferSize (+ the message that passed it) waited for a client: ${maxBuffered}`,
  );
  for (const reader of fast) {
    assert.equal(reader.closed, false);
    assert.equal(reader.count, seq, 'every push reached every fast client');
    assert.equal(reader.outOfOrder, 0);
  }
  // Bounded: what the node may hold for its clients is at most sendBufferSize each (shared frames
  // make it far less); after the slow clients are gone and a GC, it is back near the baseline.
  const clientsEver = FAST_WS + FAST_TCP + 2;
  assert.ok(
    peak.arrayBuffers - baseline.arrayBuffers <= clientsEver * (SEND_BUFFER + frameBytes) + 8 * 1048576,
    'buffer memory bounded by the send buffers',
  );
  assert.ok(final.arrayBuffers - baseline.arrayBuffers < 4 * 1048576, 'buffer memory back near the baseline');
  assert.ok(final.heapUsed - baseline.heapUsed < 16 * 1048576, 'heap back near the baseline');
});

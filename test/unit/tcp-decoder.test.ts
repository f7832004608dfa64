/**
 * The TCP decoders: newline-delimited text and 4-byte big-endian length-prefixed frames, across
 * any chunking, with maxPayload enforced (an oversized message is an error the gateway turns
 * into a closed connection).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpDecoder } from '../../src/gateway/tcp-decoder.js';
import { GatewireError } from '../../src/errors.js';

function frame(payload: Buffer | string): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(4);
  header.writeUInt32BE(bytes.length);
  return Buffer.concat([header, bytes]);
}

/** Feeds `stream` in pieces of `size` bytes and collects every message. */
function feed(decoder: TcpDecoder, stream: Buffer, size: number): (string | Uint8Array)[] {
  const out: (string | Uint8Array)[] = [];
  for (let i = 0; i < stream.length; i += size) out.push(...decoder.push(stream.subarray(i, i + size)));
  return out;
}

function isTooLarge(err: unknown): boolean {
  return err instanceof GatewireError && err.code === 'GW_ERR_PAYLOAD_TOO_LARGE' && /maxPayload/.test(err.message);
}

/** Pushing `chunk` breaks the limit: what came complete before it is returned, then nothing more. */
function tooLarge(decoder: TcpDecoder, chunk: Buffer, before: (string | Uint8Array)[] = []): void {
  assert.deepEqual(decoder.push(chunk), before);
  assert.ok(isTooLarge(decoder.error), `error ${String(decoder.error)}`);
  assert.deepEqual(decoder.push(Buffer.from('more\n')), [], 'nothing is decoded after the error');
}

test('text: lines split on \\n, \\r\\n accepted, empty lines kept, UTF-8 decoded across chunk borders', () => {
  const stream = Buffer.from('hello\nwörld ✓\r\n\nlast line\n', 'utf8');
  const expected = ['hello', 'wörld ✓', '', 'last line'];
  for (const size of [1, 2, 3, 5, 7, stream.length]) {
    assert.deepEqual(feed(new TcpDecoder('text', 1024), stream, size), expected, `chunks of ${size}`);
  }
  const decoder = new TcpDecoder('text', 1024);
  assert.deepEqual(decoder.push(Buffer.from('no newline yet')), []);
  assert.deepEqual(decoder.push(Buffer.from(' ... now\nand more')), ['no newline yet ... now']);
  assert.deepEqual(decoder.push(Buffer.from('\n')), ['and more']);
  // a lone \r inside a line stays
  assert.deepEqual(new TcpDecoder('text', 1024).push(Buffer.from('a\rb\n')), ['a\rb']);
});

test('text: maxPayload bounds a line, also one that never ends', () => {
  const max = 16;
  assert.deepEqual(new TcpDecoder('text', max).push(Buffer.from(`${'x'.repeat(max)}\n`)), ['x'.repeat(max)]);
  assert.deepEqual(new TcpDecoder('text', max).push(Buffer.from(`${'x'.repeat(max)}\r\n`)), ['x'.repeat(max)]);
  tooLarge(new TcpDecoder('text', max), Buffer.from(`${'x'.repeat(max + 1)}\n`));
  // without a newline: fine up to the limit, an error past it, whatever the chunks
  const endless = new TcpDecoder('text', max);
  assert.deepEqual(endless.push(Buffer.from('x'.repeat(10))), []);
  assert.deepEqual(endless.push(Buffer.from('x'.repeat(6))), []);
  assert.equal(endless.error, null);
  tooLarge(endless, Buffer.from('x'));
  // lines complete before an oversized one are delivered, however the bytes were cut into chunks
  // (then the gateway closes the connection)
  tooLarge(new TcpDecoder('text', max), Buffer.from(`ok\n${'x'.repeat(max + 1)}\n`), ['ok']);
  tooLarge(new TcpDecoder('text', max), Buffer.from(`ok\n${'x'.repeat(max + 1)}`), ['ok']);
});

test('frame: length-prefixed payloads across chunk borders, as bytes', () => {
  const payloads = [Buffer.from([0x00, 0x0a, 0xff]), Buffer.alloc(0), Buffer.from('text ✓'), Buffer.alloc(300, 7)];
  const stream = Buffer.concat(payloads.map((p) => frame(p)));
  for (const size of [1, 2, 3, 4, 5, 11, stream.length]) {
    const messages = feed(new TcpDecoder('frame', 1024), stream, size);
    assert.equal(messages.length, payloads.length, `chunks of ${size}`);
    messages.forEach((m, i) => {
      assert.ok(m instanceof Uint8Array, 'frames are delivered as bytes');
      assert.deepEqual(Buffer.from(m), payloads[i]);
    });
  }
});

test('frame: the delivered bytes do not change when more data arrives', () => {
  const decoder = new TcpDecoder('frame', 1024);
  const chunk = Buffer.concat([frame('first'), frame('sec').subarray(0, 5)]);
  const [first] = decoder.push(chunk);
  chunk.fill(0); // the socket may reuse its buffer
  const [second] = decoder.push(frame('sec').subarray(5));
  assert.equal(Buffer.from(first as Uint8Array).toString(), 'first');
  assert.equal(Buffer.from(second as Uint8Array).toString(), 'sec');
});

test('frame: maxPayload is checked from the header alone', () => {
  const max = 16;
  assert.equal(new TcpDecoder('frame', max).push(frame(Buffer.alloc(max))).length, 1);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(max + 1);
  tooLarge(new TcpDecoder('frame', max), header);
  header.writeUInt32BE(0xffffffff);
  tooLarge(new TcpDecoder('frame', max), header);
  // frames complete before an oversized header are delivered
  const before = new TcpDecoder('frame', max);
  assert.equal(before.push(Buffer.concat([frame('a'), frame('b'), header])).length, 2);
  assert.ok(isTooLarge(before.error));
  // a header split over two chunks: checked once complete
  const split = new TcpDecoder('frame', max);
  header.writeUInt32BE(max + 1);
  assert.deepEqual(split.push(header.subarray(0, 2)), []);
  tooLarge(split, header.subarray(2));
});

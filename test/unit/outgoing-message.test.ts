/**
 * OutgoingMessage frames a message once per wire format: the WebSocket frame (header forms for
 * 7-bit, 16-bit and 64-bit lengths; text vs binary opcode; FIN set, no mask), the TCP text line
 * and the TCP length-prefixed frame. Checked byte by byte and with ws's own frame parser.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as wsModule from 'ws';
import { OutgoingMessage } from '../../src/gateway/outgoing-message.js';

interface ReceiverLike {
  on(event: 'message', listener: (data: Buffer | Buffer[], isBinary: boolean) => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
  write(chunk: Buffer): void;
}
const Receiver = (
  wsModule as unknown as { Receiver: new (options: { isServer: boolean; maxPayload?: number }) => ReceiverLike }
).Receiver;

/** Parses `frame` as a client would (ws's Receiver): the payload and whether it is binary. */
function parseAsClient(frame: Buffer): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve, reject) => {
    const receiver = new Receiver({ isServer: false, maxPayload: 0 });
    receiver.on('message', (data, isBinary) =>
      resolve({ data: Array.isArray(data) ? Buffer.concat(data) : data, binary: isBinary }),
    );
    receiver.on('error', reject);
    receiver.write(frame);
  });
}

function payloadOf(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 7 + 3) & 0xff;
  return bytes;
}

const CASES: { length: number; header: number[] }[] = [
  { length: 0, header: [0, 0] },
  { length: 125, header: [125] },
  { length: 126, header: [126, 0, 126] },
  { length: 65535, header: [126, 0xff, 0xff] },
  { length: 65536, header: [127, 0, 0, 0, 0, 0, 1, 0, 0] },
];

for (const { length, header } of CASES) {
  test(`ws frame of a ${length}-byte payload: header, opcode and bytes`, async () => {
    const payload = payloadOf(length);
    const binary = new OutgoingMessage(payload).wsFrame;
    const lengthHeader = length === 0 ? [0] : header;
    assert.deepEqual([...binary.subarray(0, 1 + lengthHeader.length)], [0x82, ...lengthHeader]);
    assert.equal(binary.length, 1 + lengthHeader.length + length);
    assert.deepEqual(binary.subarray(1 + lengthHeader.length), payload);
    assert.equal(binary[1]! & 0x80, 0, 'server frames are not masked');
    assert.deepEqual(await parseAsClient(binary), { data: payload, binary: true });

    // the same length as text: opcode 0x1, same length header
    const text = 'a'.repeat(length);
    const textFrame = new OutgoingMessage(text).wsFrame;
    assert.deepEqual([...textFrame.subarray(0, 1 + lengthHeader.length)], [0x81, ...lengthHeader]);
    assert.equal(textFrame.subarray(1 + lengthHeader.length).toString('utf8'), text);
    const parsed = await parseAsClient(textFrame);
    assert.equal(parsed.binary, false);
    assert.equal(parsed.data.toString('utf8'), text);
  });
}

test('text length is counted in UTF-8 bytes, not characters', async () => {
  // 63 three-byte characters = 189 bytes: needs the 16-bit length form
  const text = '€'.repeat(63);
  const frame = new OutgoingMessage(text).wsFrame;
  assert.deepEqual([...frame.subarray(0, 4)], [0x81, 126, 0, 189]);
  assert.equal(frame.length, 4 + 189);
  assert.equal((await parseAsClient(frame)).data.toString('utf8'), text);
  const emoji = new OutgoingMessage('héllo ✓ 😀');
  assert.equal(emoji.length, Buffer.byteLength('héllo ✓ 😀'));
  assert.deepEqual(emoji.lengthPrefixed.subarray(4), Buffer.from('héllo ✓ 😀', 'utf8'));
});

test('TCP text line and length-prefixed frame', () => {
  const bytes = Buffer.from([0x00, 0x0a, 0xff]);
  const message = new OutgoingMessage(bytes);
  assert.deepEqual([...message.textLine], [0x00, 0x0a, 0xff, 0x0a]);
  assert.deepEqual([...message.lengthPrefixed], [0, 0, 0, 3, 0x00, 0x0a, 0xff]);
  const text = new OutgoingMessage('hi');
  assert.deepEqual([...text.textLine], [0x68, 0x69, 0x0a]);
  assert.deepEqual([...text.lengthPrefixed], [0, 0, 0, 2, 0x68, 0x69]);
  const empty = new OutgoingMessage('');
  assert.deepEqual([...empty.textLine], [0x0a]);
  assert.deepEqual([...empty.lengthPrefixed], [0, 0, 0, 0]);
  assert.deepEqual([...empty.wsFrame], [0x81, 0]);
  const big = new OutgoingMessage(payloadOf(70000)).lengthPrefixed;
  assert.equal(big.readUInt32BE(0), 70000);
  assert.deepEqual(big.subarray(4), payloadOf(70000));
});

test('text stays text and bytes stay binary, whatever the byte container', () => {
  assert.equal(new OutgoingMessage('x').binary, false);
  assert.equal(new OutgoingMessage(Buffer.from('x')).binary, true);
  assert.equal(new OutgoingMessage(new Uint8Array([1])).binary, true);
  // a view into a larger buffer: only its own bytes are framed
  const backing = Buffer.from([9, 9, 1, 2, 3, 9, 9]);
  const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, 3);
  const message = new OutgoingMessage(view);
  assert.deepEqual([...message.wsFrame], [0x82, 3, 1, 2, 3]);
  assert.deepEqual([...message.lengthPrefixed], [0, 0, 0, 3, 1, 2, 3]);
  assert.deepEqual([...message.textLine], [1, 2, 3, 0x0a]);
});

test('each form is framed once and then reused (a broadcast frames once)', () => {
  for (const data of ['shared text', Buffer.from('shared bytes')]) {
    const message = new OutgoingMessage(data);
    assert.equal(message.wsFrame, message.wsFrame);
    assert.equal(message.textLine, message.textLine);
    assert.equal(message.lengthPrefixed, message.lengthPrefixed);
    // the forms are independent buffers with the same payload
    assert.deepEqual(message.wsFrame.subarray(2), message.lengthPrefixed.subarray(4));
    assert.deepEqual(message.textLine.subarray(0, -1), message.lengthPrefixed.subarray(4));
  }
  // asking for the bytes first, then a frame, gives the same frame as asking for the frame first
  const a = new OutgoingMessage('order ✓');
  void a.bytes;
  assert.deepEqual(a.wsFrame, new OutgoingMessage('order ✓').wsFrame);
});

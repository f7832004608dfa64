/**
 * Client, the write path of one connection, on a fake socket: messages queued in one turn are
 * written in one call when the turn ends, framed for the client's protocol; a client that stops
 * reading overflows its send buffer (but one large message to an idle client is written); close
 * writes what is queued and its last data, then ends; destroy drops everything; a session that
 * changes its socket within one turn has what it queued for the new socket written.
 */
import { test, mock, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { Client, type ClientTransport } from '../../src/gateway/client.js';
import { WriteScheduler } from '../../src/gateway/write-scheduler.js';
import { OutgoingMessage } from '../../src/gateway/outgoing-message.js';

/** A socket that records writes and calls; `writableLength` is what the kernel has not taken. */
function fakeSocket() {
  const socket = {
    writes: [] as string[],
    calls: [] as string[],
    writableLength: 0,
    destroyed: false,
    write(data: Buffer) {
      socket.writes.push(data.toString());
      return true;
    },
    cork: () => socket.calls.push('cork'),
    uncork: () => socket.calls.push('uncork'),
    end: () => socket.calls.push('end'),
    destroy() {
      socket.destroyed = true;
      socket.calls.push('destroy');
    },
  };
  return socket;
}

function clientOf(t: TestContext, transport: ClientTransport = { kind: 'tcp', protocol: 'text' }, bufferSize = 100) {
  mock.timers.enable({ apis: ['setImmediate'] });
  t.after(() => mock.timers.reset());
  const socket = fakeSocket();
  const overflowed: Client[] = [];
  const client = new Client(
    'aaaaaaaaaaaa1',
    socket as unknown as Socket,
    transport,
    '127.0.0.1',
    1234,
    null,
    new WriteScheduler(),
    bufferSize,
    (c) => overflowed.push(c),
  );
  return { client, socket, overflowed };
}

const text = (data: string) => new OutgoingMessage(data);

test('messages queued in one turn are written in one call when the turn ends, framed as text lines', (t) => {
  const { client, socket } = clientOf(t);
  client.send(text('a'));
  client.send(text('b'));
  assert.deepEqual(socket.writes, []);
  assert.equal(client.bufferedBytes, 4);
  mock.timers.tick(0);
  assert.deepEqual(socket.writes, ['a\nb\n']);
  assert.equal(client.bufferedBytes, 0);
  client.send(text('c'));
  mock.timers.tick(0);
  assert.deepEqual(socket.writes, ['a\nb\n', 'c\n']);
});

test('a client that stops reading overflows; one large message to an idle client is still written', (t) => {
  const { client, socket, overflowed } = clientOf(t, { kind: 'tcp', protocol: 'text' }, 10);
  client.send(text('x'.repeat(50)));
  assert.deepEqual(overflowed, []);
  mock.timers.tick(0);
  assert.equal(socket.writes.length, 1);
  socket.writableLength = 51; // the kernel has not taken it
  client.send(text('y'));
  assert.deepEqual(overflowed, [client]);
});

test('close writes what is queued, then its data, then ends; later sends are dropped', (t) => {
  const { client, socket } = clientOf(t);
  client.send(text('queued'));
  client.close('bye');
  assert.deepEqual(socket.writes, ['queued\n', 'bye\n']);
  assert.deepEqual(socket.calls, ['end']);
  client.send(text('late'));
  client.close('again');
  mock.timers.tick(0);
  assert.deepEqual(socket.writes, ['queued\n', 'bye\n']);
});

test('destroy drops what is queued and destroys the socket', (t) => {
  const { client, socket } = clientOf(t, { kind: 'tcp', protocol: 'frame' });
  client.send(text('never'));
  client.destroy();
  mock.timers.tick(0);
  assert.deepEqual(socket.writes, []);
  assert.deepEqual(socket.calls, ['destroy']);
});

test('a session that drops its socket and takes a new one in the same turn has its new frames written', (t) => {
  const ws = { send: () => undefined, close: () => undefined, terminate: () => undefined };
  const { client, socket } = clientOf(t, { kind: 'ws', ws: ws as unknown as WebSocket }, 1 << 20);
  // A push is queued for the old socket, then a resume in the same turn drops that socket
  // (resumable.ts dropSocket) and attaches the new one, whose welcome is queued at once.
  client.send(text('for the old socket'));
  client.detach();
  const fresh = fakeSocket();
  client.socket = fresh as unknown as Socket;
  client.attached = true;
  client.queueFrame(text('welcome').wsFrame);
  client.send(text('replayed'));
  mock.timers.tick(0);
  assert.deepEqual(socket.writes, []);
  assert.deepEqual(fresh.writes, [text('welcome').wsFrame.toString() + text('replayed').wsFrame.toString()]);
  client.send(text('later'));
  mock.timers.tick(0);
  assert.equal(fresh.writes.length, 2, 'the next turn writes as usual');
});

test('a WebSocket client: frames on the socket, close data and code through the ws', (t) => {
  const ws = {
    calls: [] as unknown[][],
    send: (...args: unknown[]) => ws.calls.push(['send', ...args]),
    close: (...args: unknown[]) => ws.calls.push(['close', ...args]),
  };
  const { client, socket } = clientOf(t, { kind: 'ws', ws: ws as unknown as WebSocket });
  client.send(text('hi'));
  mock.timers.tick(0);
  assert.deepEqual(socket.writes, [text('hi').wsFrame.toString()]);
  client.close('bye', 4000, 'done');
  assert.deepEqual(ws.calls, [
    ['send', 'bye', { binary: false }],
    ['close', 4000, 'done'],
  ]);
});

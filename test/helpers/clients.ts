/**
 * Real WebSocket and TCP test clients that record what they receive, with awaitable reads.
 */
import net from 'node:net';
import WebSocket from 'ws';

export interface Received {
  data: string | Buffer;
  binary: boolean;
}

abstract class RecordingClient {
  readonly received: Received[] = [];
  closed = false;
  private waiters: (() => void)[] = [];
  private readIndex = 0;

  protected record(data: string | Buffer, binary: boolean): void {
    this.received.push({ data, binary });
    this.wake();
  }

  protected markClosed(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when `check` holds (re-checked on every message and on close). */
  async until(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        const last = this.received.slice(-5).map((r) => r.data.toString());
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last received: ${JSON.stringify(last)}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The next message not yet read by next(). */
  async next(timeoutMs = 5000): Promise<Received> {
    await this.until(() => this.received.length > this.readIndex, timeoutMs, 'next message');
    return this.received[this.readIndex++]!;
  }

  /** The next message as text. */
  async nextText(timeoutMs = 5000): Promise<string> {
    return (await this.next(timeoutMs)).data.toString();
  }

  /** Waits for a text message equal to `text` (skipping others). */
  async waitForText(text: string, timeoutMs = 5000): Promise<void> {
    await this.until(() => this.texts().includes(text), timeoutMs, `message ${JSON.stringify(text)}`);
  }

  texts(): string[] {
    return this.received.map((r) => r.data.toString());
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    await this.until(() => this.closed, timeoutMs, 'close');
  }
}

export class WsTestClient extends RecordingClient {
  closeCode: number | undefined;
  constructor(readonly ws: WebSocket) {
    super();
    ws.on('message', (data: Buffer, isBinary: boolean) =>
      this.record(isBinary ? data : data.toString('utf8'), isBinary),
    );
    ws.on('close', (code) => {
      this.closeCode = code;
      this.markClosed();
    });
    ws.on('error', () => undefined);
  }

  static async connect(url: string, options: WebSocket.ClientOptions = {}): Promise<WsTestClient> {
    const ws = new WebSocket(url, options);
    const client = new WsTestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return client;
  }

  send(data: string | Buffer): void {
    this.ws.send(data);
  }

  close(): void {
    this.ws.close();
  }
}

export class TcpTestClient extends RecordingClient {
  private buffer = Buffer.alloc(0);
  constructor(
    readonly socket: net.Socket,
    readonly protocol: 'text' | 'frame',
  ) {
    super();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.markClosed());
    socket.on('error', () => undefined);
  }

  static async connect(port: number, protocol: 'text' | 'frame' = 'text', host = '127.0.0.1'): Promise<TcpTestClient> {
    const socket = net.connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return new TcpTestClient(socket, protocol);
  }

  send(data: string | Buffer): void {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.protocol === 'text') {
      this.socket.write(Buffer.concat([bytes, Buffer.from('\n')]));
    } else {
      const header = Buffer.alloc(4);
      header.writeUInt32BE(bytes.length);
      this.socket.write(Buffer.concat([header, bytes]));
    }
  }

  close(): void {
    this.socket.end();
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (this.protocol === 'text') {
      let index: number;
      while ((index = this.buffer.indexOf(0x0a)) !== -1) {
        this.record(this.buffer.subarray(0, index).toString('utf8'), false);
        this.buffer = this.buffer.subarray(index + 1);
      }
    } else {
      while (this.buffer.length >= 4) {
        const length = this.buffer.readUInt32BE(0);
        if (this.buffer.length < 4 + length) break;
        this.record(Buffer.from(this.buffer.subarray(4, 4 + length)), true);
        this.buffer = this.buffer.subarray(4 + length);
      }
    }
  }
}

/**
 * One client connection, WebSocket or TCP, as the gateway sees it: identity, uid, groups and
 * session, plus the write path (queue, coalesced flush, send-buffer limit).
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Payload, Session } from '../protocol/commands.js';
import type { OutgoingMessage } from './outgoing-message.js';
import type { WriteScheduler } from './write-scheduler.js';
import type { TcpProtocol } from './listen-url.js';
import type { ResumeState } from './resume-state.js';

/** WebSocket close codes used by the gateway. */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  PROTOCOL_ERROR: 1002,
} as const;

export type ClientTransport = { kind: 'ws'; ws: WebSocket } | { kind: 'tcp'; protocol: TcpProtocol };

export type { ClientRequestInfo } from '../protocol/client-event.js';
import type { ClientRequestInfo } from '../protocol/client-event.js';

export class Client {
  uid: string | null = null;
  readonly groups = new Set<string>();
  readonly session: Session = {};
  /** bumped by every session write; events carry it so workers can tell a stale snapshot */
  sessionVersion = 0;
  /** heartbeat periods without any sign of life */
  missedPings = 0;
  /** messages received in the current rate-limit second */
  messagesThisSecond = 0;
  closed = false;
  /**
   * A gatewire.v1 client's session (docs/client-protocol.md); null for raw WebSocket and TCP
   * clients. Its messages are counted and kept until acknowledged, and it may outlive a socket.
   */
  resume: ResumeState | null = null;
  /** false while the session is suspended (no socket) or frozen for a takeover */
  attached = true;
  /** a close or destroy of a session without a socket ends it at once (no close event will come) */
  onDetachedClose: ((client: Client) => void) | null = null;
  /** a push kept while the session has no socket passed resumeBufferSize: the session ends */
  onDetachedOverflow: ((client: Client) => void) | null = null;

  private queue: Buffer[] = [];
  private queuedBytes = 0;

  constructor(
    readonly id: string,
    /** the socket and transport change when a resumed session takes a new connection */
    public socket: Socket,
    public transport: ClientTransport,
    public remoteAddress: string,
    public remotePort: number,
    /** the upgrade request; released (null) once the websocketConnect event has carried it */
    public request: ClientRequestInfo | null,
    private readonly scheduler: WriteScheduler,
    private readonly sendBufferSize: number,
    /** called when the send buffer overflows: the gateway disconnects the client */
    private readonly onOverflow: (client: Client) => void,
  ) {}

  /**
   * Queues a message; it is written when the current event-loop turn ends. `sender` and `seq`
   * name the bus message it came in (a resumable session keeps them with the message).
   */
  send(message: OutgoingMessage, sender = '', seq = 0): void {
    if (this.closed) return;
    const resume = this.resume;
    if (resume !== null) {
      resume.record({ message, control: false, sender, seq });
      if (this.attached && resume.holding === null) this.queueFrame(message.v1Frame);
      else if (resume.overflowed) this.onDetachedOverflow?.(this);
      return;
    }
    this.queueFrame(
      this.transport.kind === 'ws'
        ? message.wsFrame
        : this.transport.protocol === 'text'
          ? message.textLine
          : message.lengthPrefixed,
    );
  }

  /** Queues a frame as it is (a gatewire.v1 control, or a kept message written again after a resume). */
  queueFrame(frame: Buffer): void {
    if (this.closed || !this.attached) return;
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    // Over the limit with something already waiting: the client is not keeping up. One message
    // larger than the limit, to a client that has read everything, is still written.
    const waiting = this.queuedBytes + this.socket.writableLength;
    if (waiting > this.sendBufferSize && waiting > frame.length) {
      this.onOverflow(this);
      return;
    }
    if (this.queue.length === 1) this.scheduler.mark(this);
  }

  /**
   * Writes everything queued in one system call. Up to COALESCE_BYTES the frames are copied into
   * one buffer and written once: a stream write costs far more per chunk than copying a small
   * frame (a broadcast burst queues hundreds of 70-byte frames per client). Larger queues go out
   * corked, as one writev of the frames themselves.
   */
  flush(): void {
    const queue = this.queue;
    const count = queue.length;
    if (count === 0 || this.closed || !this.attached) return;
    const bytes = this.queuedBytes;
    this.queue = [];
    this.queuedBytes = 0;
    const socket = this.socket;
    if (socket.destroyed) return;
    if (count === 1) {
      socket.write(queue[0]!);
    } else if (bytes <= COALESCE_BYTES) {
      socket.write(Buffer.concat(queue, bytes));
    } else {
      socket.cork();
      for (let i = 0; i < count; i++) socket.write(queue[i]!);
      socket.uncork();
    }
  }

  /** GatewayWorker's closeClient: write what is queued, then `data`, then close. */
  close(data?: Payload, code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.closed) return;
    if (!this.attached) return this.endDetached();
    this.flush();
    if (data !== undefined) {
      // Written directly: the close must follow it in the same turn.
      if (this.transport.kind === 'ws') this.transport.ws.send(data, { binary: typeof data !== 'string' });
      else this.socket.write(tcpFrame(this.transport.protocol, data));
    }
    this.closed = true;
    this.scheduler.forget(this);
    if (this.transport.kind === 'ws') this.transport.ws.close(code, reason);
    else this.socket.end();
  }

  /** GatewayWorker's destroyClient: drop the connection now, nothing more is written. */
  destroy(): void {
    if (this.closed && this.socket.destroyed) return;
    if (!this.attached && !this.closed) return this.endDetached();
    this.closed = true;
    this.queue = [];
    this.scheduler.forget(this);
    if (this.transport.kind === 'ws') this.transport.ws.terminate();
    else this.socket.destroy();
  }

  private endDetached(): void {
    this.closed = true;
    this.onDetachedClose?.(this);
  }

  /**
   * A resumable session loses its connection but not itself: the socket is dropped, nothing more
   * is written to it, and the session waits for its client (resumable.ts suspends it).
   */
  detach(): void {
    this.attached = false;
    this.queue = [];
    this.queuedBytes = 0;
    this.scheduler.forget(this);
  }

  /** Cuts the connection of a resumable session without ending it (its close event suspends it). */
  cut(): void {
    if (this.transport.kind === 'ws') this.transport.ws.terminate();
    else this.socket.destroy();
  }

  get bufferedBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }
}

/** Queued bytes up to which a flush copies the frames into one buffer instead of a writev. */
const COALESCE_BYTES = 256 * 1024;

function tcpFrame(protocol: TcpProtocol, data: Payload): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  if (protocol === 'text') return Buffer.concat([bytes, Buffer.from('\n')]);
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(bytes.length, 0);
  return Buffer.concat([header, bytes]);
}

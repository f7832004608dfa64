/**
 * The control protocol between the benchmark runner and its server child processes (Node IPC).
 * Both servers (gatewire and Socket.IO) speak it, so every scenario drives them the same way.
 *
 *   runner -> child   { id, req }          one request
 *   child  -> runner  { id, ok, value }    its answer (or { id, ok: false, error })
 *   child  -> runner  { ready, port }      once, when the server listens
 */

/** Which clients a push loop addresses. */
export type Target =
  | { kind: 'all' }
  /** uid i of the loop is `${prefix}${i % count}` */
  | { kind: 'uid'; prefix: string; count: number };

export type Request =
  /** CPU time of the whole process (µs, all threads), memory, clients held, bus counters */
  | { type: 'stats' }
  /** forced full garbage collections, then stats */
  | { type: 'gc' }
  /**
   * Issues `n` pushes in a loop, yielding to the event loop after every `chunk` calls; answers
   * once every call was made (delivery is what the clients count).
   */
  | { type: 'burst'; target: Target; n: number; chunk: number; size: number }
  /**
   * Issues pushes at a fixed rate for `durationMs`; each payload starts with `@<µs>@`, the
   * intended send time on the monotonic clock, so clients read the latency from the message.
   */
  | { type: 'paced'; target: Target; rate: number; durationMs: number; size: number }
  /**
   * Starts a numbered stream (reconnect storm): pushes at `rate` per second until `streamStop`,
   * push j to uid `${prefix}${j % count}` with the payload `#<k>#` padded to `size`, where k is
   * the push's number for that uid (from 1), so a client can tell a lost or repeated message.
   * Answers at once.
   */
  | { type: 'streamStart'; prefix: string; count: number; rate: number; size: number }
  /** pushes issued so far by the stream (StreamResult) */
  | { type: 'streamIssued' }
  /** stops the stream; answers with the pushes it issued (StreamResult) */
  | { type: 'streamStop' }
  /** starts the V8 CPU profiler (inspector) */
  | { type: 'profileStart' }
  /** stops it and writes the profile to `file` (.cpuprofile, for Chrome DevTools or profile-summary.js) */
  | { type: 'profileStop'; file: string }
  /** writes a V8 heap snapshot to `file` (after a full GC), for memory breakdowns */
  | { type: 'heapSnapshot'; file: string }
  /** graceful stop, then exit */
  | { type: 'stop' };

export interface ServerStats {
  /** process.cpuUsage(): user and system µs since start, every thread of the process */
  cpuUser: number;
  cpuSystem: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** connected clients */
  clients: number;
  /** clients whose uid binding (gatewire bindUid resolved; Socket.IO join) is done */
  bound: number;
  /** gatewire bus counters; null for Socket.IO */
  bus: {
    messagesConsumed: number;
    commandsConsumed: number;
    pushesConsumed: number;
    messagesPublished: number;
    commandsPublished: number;
    /** the holder directory (direct mode, bus.directory=auto): whether it routes, and its sends so far */
    directory: { routing: boolean; routed: number; byKey: number } | null;
  } | null;
  /** push calls that failed (rejected promises) */
  errors: number;
  /** gatewire.v1 sessions resumed here, taken over from another gateway, and hellos with a token that got a new session; null for Socket.IO */
  sessions: { resumed: number; takenOver: number; notResumed: number } | null;
}

export interface BurstResult {
  issued: number;
  issueMs: number;
}

export interface PacedResult {
  issued: number;
  /** how far the send loop ran behind its schedule at worst, ms */
  maxLagMs: number;
}

export interface StreamResult {
  issued: number;
  /** how far the send loop ran behind its schedule at worst, ms */
  maxLagMs: number;
}

export interface Envelope {
  id: number;
  req: Request;
}

export type Answer = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

export interface Ready {
  ready: true;
  port: number;
  pid: number;
}

/** The monotonic clock in µs: CLOCK_MONOTONIC is system-wide, so processes can compare it. */
export function monoMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** The payload of a burst: `size` bytes of ASCII. */
export function burstPayload(size: number): string {
  return 'x'.repeat(size);
}

/** The payload of a numbered push: `#<k>#` then padding up to `size` bytes. */
export function numberedPayload(k: number, size: number): string {
  const head = `#${k}#`;
  return head.length >= size ? head : head + 'x'.repeat(size - head.length);
}

/** The payload of a paced push: `@<µs>@` then padding up to `size` bytes. */
export function stampedPayload(micros: number, size: number): string {
  const head = `@${micros}@`;
  return head.length >= size ? head : head + 'x'.repeat(size - head.length);
}

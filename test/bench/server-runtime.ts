/**
 * What both benchmark servers share: the IPC loop and the push loops. Each server supplies only
 * how it pushes (sendToAll / sendToUid, io.emit / io.to(room).emit) and what it holds, so the
 * loops that drive gatewire and Socket.IO are the same code.
 */
import fs from 'node:fs';
import v8 from 'node:v8';
import { Session } from 'node:inspector/promises';
import type {
  Answer,
  BurstResult,
  Envelope,
  PacedResult,
  Ready,
  Request,
  ServerStats,
  StreamResult,
  Target,
} from './protocol.js';
import { burstPayload, monoMicros, numberedPayload, stampedPayload } from './protocol.js';

export interface BenchServer {
  /** to every client this server (or the cluster) holds */
  sendToAll(payload: string): void;
  /** to the clients bound to `uid`, wherever they are */
  sendToUid(uid: string, payload: string): void;
  clients(): number;
  bound(): number;
  busStats(): ServerStats['bus'];
  errors(): number;
  /** gatewire.v1 session counters (gatewire only) */
  sessions?(): ServerStats['sessions'];
  stop(): Promise<void>;
}

const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function uidsOf(target: Target): string[] {
  if (target.kind !== 'uid') return [];
  return Array.from({ length: target.count }, (_, i) => `${target.prefix}${i}`);
}

function stats(server: BenchServer): ServerStats {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  return {
    cpuUser: cpu.user,
    cpuSystem: cpu.system,
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    clients: server.clients(),
    bound: server.bound(),
    bus: server.busStats(),
    errors: server.errors(),
    sessions: server.sessions?.() ?? null,
  };
}

async function burst(server: BenchServer, req: Extract<Request, { type: 'burst' }>): Promise<BurstResult> {
  const payload = burstPayload(req.size);
  const uids = uidsOf(req.target);
  const all = req.target.kind === 'all';
  const started = monoMicros();
  let i = 0;
  while (i < req.n) {
    const end = Math.min(req.n, i + req.chunk);
    if (all) for (; i < end; i++) server.sendToAll(payload);
    else for (; i < end; i++) server.sendToUid(uids[i % uids.length]!, payload);
    if (i < req.n) await yieldTurn();
  }
  return { issued: i, issueMs: (monoMicros() - started) / 1000 };
}

async function paced(server: BenchServer, req: Extract<Request, { type: 'paced' }>): Promise<PacedResult> {
  const uids = uidsOf(req.target);
  const all = req.target.kind === 'all';
  const total = Math.round((req.rate * req.durationMs) / 1000);
  const intervalUs = 1e6 / req.rate;
  const start = monoMicros();
  let sent = 0;
  let maxLagMs = 0;
  while (sent < total) {
    const now = monoMicros();
    const due = Math.min(total, Math.floor((now - start) / intervalUs) + 1);
    if (due > sent) maxLagMs = Math.max(maxLagMs, (now - (start + sent * intervalUs)) / 1000);
    for (; sent < due; sent++) {
      // The stamp is the intended send time: a loop that runs late shows up as latency.
      const payload = stampedPayload(Math.round(start + sent * intervalUs), req.size);
      if (all) server.sendToAll(payload);
      else server.sendToUid(uids[sent % uids.length]!, payload);
    }
    if (sent < total) await sleep(1);
  }
  return { issued: sent, maxLagMs };
}

/** The numbered stream of a reconnect storm (streamStart to streamStop). */
interface Stream {
  issued: number;
  maxLagMs: number;
  stopped: boolean;
  done: Promise<void>;
}

let stream: Stream | null = null;

/** Pushes at a fixed rate until stopped; push j goes to uid j % count as that uid's number j / count + 1. */
function startStream(server: BenchServer, req: Extract<Request, { type: 'streamStart' }>): Stream {
  const uids = uidsOf({ kind: 'uid', prefix: req.prefix, count: req.count });
  const intervalUs = 1e6 / req.rate;
  const state: Stream = { issued: 0, maxLagMs: 0, stopped: false, done: Promise.resolve() };
  const run = async (): Promise<void> => {
    const start = monoMicros();
    while (!state.stopped) {
      const now = monoMicros();
      const due = Math.floor((now - start) / intervalUs) + 1;
      if (due > state.issued)
        state.maxLagMs = Math.max(state.maxLagMs, (now - (start + state.issued * intervalUs)) / 1000);
      for (let j = state.issued; j < due; j++) {
        server.sendToUid(uids[j % uids.length]!, numberedPayload(Math.floor(j / uids.length) + 1, req.size));
      }
      state.issued = Math.max(state.issued, due);
      await sleep(1);
    }
  };
  state.done = run();
  return state;
}

let profiler: Session | null = null;

async function handle(server: BenchServer, req: Request): Promise<unknown> {
  switch (req.type) {
    case 'profileStart':
      profiler ??= new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
      await profiler.post('Profiler.start');
      return null;
    case 'profileStop': {
      if (profiler === null) throw new Error('the profiler was not started');
      const { profile } = await profiler.post('Profiler.stop');
      profiler.disconnect();
      fs.writeFileSync(req.file, JSON.stringify(profile));
      return null;
    }
    case 'stats':
      return stats(server);
    case 'gc': {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (gc === undefined) throw new Error('the server runs without --expose-gc');
      for (let i = 0; i < 3; i++) {
        gc();
        await sleep(50);
      }
      return stats(server);
    }
    case 'heapSnapshot':
      (globalThis as { gc?: () => void }).gc?.();
      return v8.writeHeapSnapshot(req.file);
    case 'burst':
      return burst(server, req);
    case 'paced':
      return paced(server, req);
    case 'streamStart':
      if (stream !== null && !stream.stopped) throw new Error('a stream is running');
      stream = startStream(server, req);
      return null;
    case 'streamIssued':
      return { issued: stream?.issued ?? 0, maxLagMs: stream?.maxLagMs ?? 0 } satisfies StreamResult;
    case 'streamStop': {
      if (stream === null) throw new Error('no stream was started');
      stream.stopped = true;
      await stream.done;
      return { issued: stream.issued, maxLagMs: stream.maxLagMs } satisfies StreamResult;
    }
    case 'stop':
      await server.stop();
      setImmediate(() => process.exit(0));
      return null;
  }
}

/** Answers the runner's requests until it says stop or goes away. */
export function serve(server: BenchServer, port: number): void {
  const send = (message: Answer | Ready): void => {
    process.send?.(message);
  };
  process.on('message', (message: Envelope) => {
    handle(server, message.req).then(
      (value) => send({ id: message.id, ok: true, value: value ?? null }),
      (err: unknown) =>
        send({ id: message.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
  // The runner died or let go: never outlive it.
  process.on('disconnect', () => process.exit(0));
  send({ ready: true, port, pid: process.pid });
}

/** Reads the child's options (JSON in argv[2]). */
export function childOptions<T>(): T {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('a benchmark server takes its options as JSON in argv[2]');
  return JSON.parse(raw) as T;
}

/** A failure before `serve` is reported to the runner and ends the child. */
export function failStart(err: unknown): void {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`benchmark server failed to start: ${text}\n`);
  // Exit once the message is out (or at once without an IPC channel).
  if (process.send === undefined) process.exit(1);
  process.send({ ready: false, error: text }, undefined, {}, () => process.exit(1));
  setTimeout(() => process.exit(1), 1000);
}

/**
 * Shared pieces of the direct-mode lever measurements (issue 16): the push records, CPU readers
 * for the private brokers and for this process, the receiver child process, repeats with medians
 * and the table.
 *
 * A push is one record `[u8 uid length][uid][u16 payload length][payload]`; a broker message
 * carries one or more records, so a receiver counts pushes, not messages, whatever the lever.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Payload bytes of one push: about the size of a small notification (issue 16: about 80 B). */
export const PAYLOAD_BYTES = 80;
/** Distinct uids bound across the node queues or channels (issue 16: 2,000). */
export const UIDS = 2000;
/** Receiving nodes: the uids are spread over them (uid i on node i % NODES). */
export const NODES = 3;
/** Measured repeats of each scenario (after one smaller unmeasured warm-up). */
export const REPEATS = 3;
/** `--quick`: a tenth of the size, one run, no warm-up (to try the harness, not to measure). */
export const QUICK = process.argv.includes('--quick');

const PAYLOAD = Buffer.alloc(PAYLOAD_BYTES, 0x61);

export function uidOf(i: number): string {
  return `u${i % UIDS}`;
}

export function nodeOfUid(i: number): number {
  return (i % UIDS) % NODES;
}

/** Bytes of the record for push i. */
export function recordBytes(i: number): number {
  return 1 + Buffer.byteLength(uidOf(i)) + 2 + PAYLOAD_BYTES;
}

/** Writes the record of push i into `buf` at `offset`; returns the offset after it. */
export function writeRecord(buf: Buffer, offset: number, i: number, payload: Buffer = PAYLOAD): number {
  const uid = uidOf(i);
  buf[offset] = uid.length;
  offset += 1;
  offset += buf.write(uid, offset, 'latin1');
  buf.writeUInt16BE(payload.length, offset);
  offset += 2;
  offset += payload.copy(buf, offset);
  return offset;
}

/** One message carrying the records of the pushes `indexes`. */
export function messageOf(indexes: readonly number[], payload: Buffer = PAYLOAD): Buffer {
  let size = 0;
  for (const i of indexes) size += 1 + uidOf(i).length + 2 + payload.length;
  const buf = Buffer.allocUnsafe(size);
  let offset = 0;
  for (const i of indexes) offset = writeRecord(buf, offset, i, payload);
  return buf;
}

/** Pushes (records) in a message; reads each uid as a receiver must to route it. */
export function countRecords(buf: Buffer): number {
  let offset = 0;
  let n = 0;
  while (offset < buf.length) {
    const uidLength = buf[offset]!;
    offset += 1 + uidLength;
    offset += 2 + buf.readUInt16BE(offset);
    n += 1;
  }
  return n;
}

// ---- CPU -----------------------------------------------------------------------------------

const CLOCK_TICKS = 100; // USER_HZ on Linux: /proc/<pid>/stat counts in 10 ms ticks

/** utime + stime of a process from /proc, in µs (10 ms resolution). */
export function procCpuUs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1e6) / CLOCK_TICKS;
}

/** The beam.smp process of a private RabbitMQ node: its pid file, or the command line naming it. */
export function beamPidOf(nodeName: string, dir: string): number {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'rabbitmq.pid'), 'utf8').trim());
    if (pid > 0 && fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('beam')) return pid;
  } catch {
    // not written (yet): look for it
  }
  const name = nodeName.split('@')[0]!;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'latin1');
      if (cmd.includes('beam') && cmd.includes(name)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no beam.smp process for ${nodeName}`);
}

export function selfCpuUs(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

// ---- receiver child ------------------------------------------------------------------------

export type ReceiverSetup =
  | { kind: 'amqp'; url: string; queues: string[]; prefetch: number }
  | { kind: 'redis'; url: string; channels: string[][] };

export interface Received {
  pushes: number;
  messages: number;
  cpuUs: number;
}

/**
 * The receiving nodes, in a child process of their own so that their CPU is theirs: RabbitMQ
 * consumers on the node queues (acks per turn, as the node queue does), or Redis subscriber
 * connections (one per node).
 */
export class Receiver {
  private waiting: ((r: Received) => void) | null = null;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (msg: { type: string } & Received) => {
      if (msg.type === 'done' && this.waiting !== null) {
        const resolve = this.waiting;
        this.waiting = null;
        resolve(msg);
      }
    });
  }

  static async start(setup: ReceiverSetup): Promise<Receiver> {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'receiver.js');
    const child = fork(file, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const receiver = new Receiver(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('receiver not ready within 60 s')), 60_000);
      child.once('exit', (code) => reject(new Error(`receiver exited (${code})`)));
      child.on('message', (msg: { type: string; error?: string }) => {
        if (msg.type === 'ready') {
          clearTimeout(timer);
          resolve();
        } else if (msg.type === 'error') {
          clearTimeout(timer);
          reject(new Error(msg.error));
        }
      });
      child.send({ type: 'setup', setup });
    });
    return receiver;
  }

  /** Arms the count: resolves `done` once `pushes` records arrived (or after `timeoutMs`). */
  async expect(pushes: number, timeoutMs = 60_000): Promise<{ done: Promise<Received> }> {
    const done = new Promise<Received>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`receiver: ${pushes} pushes not in within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
    });
    await new Promise<void>((resolve) => {
      const onArmed = (msg: { type: string }): void => {
        if (msg.type === 'armed') {
          this.child.off('message', onArmed);
          resolve();
        }
      };
      this.child.on('message', onArmed);
      this.child.send({ type: 'expect', pushes });
    });
    return { done };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

// ---- repeats and the table -----------------------------------------------------------------

/** One measured run of a scenario. */
export interface Run {
  pushes: number;
  messages: number;
  wallMs: number;
  brokerUs: number;
  senderUs: number;
  receiverUs: number;
}

export interface Row {
  family: string;
  scenario: string;
  /** pushes per broker message (or per script call), as sent */
  perMessage: string;
  runs: Run[];
  note?: string;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** "median (min–max)" of a per-push figure over the runs. */
function perPush(runs: Run[], pick: (r: Run) => number, unit = 1): string {
  const values = runs.map((r) => pick(r) / r.pushes / unit);
  return `${fmt(median(values))} (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})`;
}

function rate(runs: Run[]): string {
  const values = runs.map((r) => (r.pushes * 1000) / r.wallMs);
  const k = (v: number): string => `${(v / 1000).toFixed(v >= 100_000 ? 0 : 1)}k`;
  return `${k(median(values))} (${k(Math.min(...values))}–${k(Math.max(...values))})`;
}

export function table(rows: Row[], unitLabel = 'push'): string {
  const lines = [
    `| family | scenario | ${unitLabel}es per msg | broker µs/${unitLabel} | sender µs/${unitLabel} | receiver µs/${unitLabel} | ${unitLabel}es/s | ${unitLabel}es × runs |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const { runs } = row;
    if (runs.length === 0) {
      lines.push(`| ${row.family} | ${row.scenario} | ${row.perMessage} | failed: ${row.note ?? ''} | | | | |`);
      continue;
    }
    lines.push(
      `| ${row.family} | ${row.scenario} | ${row.perMessage} | ${perPush(runs, (r) => r.brokerUs)} | ${perPush(
        runs,
        (r) => r.senderUs,
      )} | ${perPush(runs, (r) => r.receiverUs)} | ${rate(runs)} | ${runs[0]!.pushes.toLocaleString('en')} × ${runs.length} |`,
    );
  }
  return lines.join('\n');
}

/** Runs `once` (size `pushes`) after a warm-up of a tenth of the size; REPEATS measured runs. */
export async function repeat(
  family: string,
  scenario: string,
  perMessage: string,
  pushes: number,
  once: (pushes: number) => Promise<Run>,
): Promise<Row> {
  const row: Row = { family, scenario, perMessage, runs: [] };
  try {
    if (QUICK) row.runs.push(await once(Math.round(pushes / 10)));
    else {
      await once(Math.round(pushes / 10));
      for (let r = 0; r < REPEATS; r++) row.runs.push(await once(pushes));
    }
    const m = row.runs.map((x) => x.brokerUs / x.pushes);
    process.stderr.write(
      `${family} ${scenario} [${perMessage}/msg]: broker ${m.map((v) => v.toFixed(2)).join(', ')} µs/push; ` +
        `${row.runs.map((x) => Math.round((x.pushes * 1000) / x.wallMs)).join(', ')} /s; load ${loadAverage()}\n`,
    );
  } catch (err) {
    row.note = (err as Error).message;
    process.stderr.write(`${family} ${scenario}: FAILED ${row.note}\n`);
  }
  return row;
}

/**
 * As `repeat` for several variants at once, run in turn (a warm-up of each, then each variant
 * once per round): for costs that drift with the broker's history (bind tables), the drift then
 * falls on every variant alike instead of on the last ones.
 */
export async function repeatInterleaved(
  family: string,
  pushes: number,
  variants: { scenario: string; perMessage: string; once: (pushes: number) => Promise<Run> }[],
): Promise<Row[]> {
  const rows: Row[] = variants.map((v) => ({ family, scenario: v.scenario, perMessage: v.perMessage, runs: [] }));
  const rounds = QUICK ? 1 : REPEATS;
  try {
    if (!QUICK) for (const v of variants) await v.once(Math.round(pushes / 10));
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < variants.length; k++) {
        rows[k]!.runs.push(await variants[k]!.once(QUICK ? Math.round(pushes / 10) : pushes));
      }
    }
  } catch (err) {
    for (const row of rows) {
      row.note = (err as Error).message;
      row.runs = [];
    }
    process.stderr.write(`${family}: FAILED ${(err as Error).message}\n`);
  }
  for (const row of rows) {
    process.stderr.write(
      `${family} ${row.scenario} [${row.perMessage}/msg]: broker ${row.runs.map((x) => (x.brokerUs / x.pushes).toFixed(2)).join(', ')} µs/op; ` +
        `${row.runs.map((x) => Math.round((x.pushes * 1000) / x.wallMs)).join(', ')} /s; load ${loadAverage()}\n`,
    );
  }
  return rows;
}

/** Runs `rows` and prints its table when the module at `url` is the program (`node <file>`). */
export async function printWhenMain(url: string, rows: () => Promise<Row[]>): Promise<void> {
  if (process.argv[1] === undefined || url !== pathToFileURL(process.argv[1]).href) return;
  process.stdout.write(`${table(await rows())}\n`);
}

export function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

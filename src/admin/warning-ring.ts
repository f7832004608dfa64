/**
 * The node's last warnings for the admin dashboard: a bounded ring of the warn, error and fatal
 * lines its logger wrote (tapLogLines in logger.ts). Lines below log.level are never written, so
 * with log.level error or above only errors show; lines below warn are skipped before parsing.
 * Nothing is kept but the ring, so memory stays bounded whatever the node logs.
 */

/** One warning as the dashboard shows it. */
export interface WarningEntry {
  /** ms since epoch */
  time: number;
  level: 'warn' | 'error' | 'fatal';
  /** the logger's component binding (gateway, worker, bus, …), '' when none */
  component: string;
  msg: string;
  /** the line's other fields as JSON (err as its message alone), shortened */
  detail: string;
}

/** pino's level numbers */
const LEVELS: Record<number, WarningEntry['level']> = { 40: 'warn', 50: 'error', 60: 'fatal' };
/** Fields every line has, or shown apart: left out of `detail`. */
const SKIPPED = new Set(['level', 'time', 'pid', 'hostname', 'node', 'component', 'msg']);
const MAX_MSG = 500;
const MAX_DETAIL = 300;

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A warning from one pino JSON line, or null for lines below warn and lines that are not JSON. */
export function parseWarning(line: string): WarningEntry | null {
  // pino writes level first: a line below warn costs a regular expression, not a parse.
  const head = /^\{"level":(\d+)/.exec(line);
  if (head === null || Number(head[1]) < 40) return null;
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  const level = Number(fields.level);
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (SKIPPED.has(key)) continue;
    const err = value as { message?: unknown } | null;
    rest[key] = key === 'err' && typeof err === 'object' && err !== null && 'message' in err ? err.message : value;
  }
  return {
    time: typeof fields.time === 'number' ? fields.time : Date.now(),
    level: LEVELS[level] ?? (level >= 60 ? 'fatal' : level >= 50 ? 'error' : 'warn'),
    component: typeof fields.component === 'string' ? fields.component : '',
    msg: shorten(String(fields.msg ?? ''), MAX_MSG),
    detail: Object.keys(rest).length === 0 ? '' : shorten(JSON.stringify(rest), MAX_DETAIL),
  };
}

export class WarningRing {
  private readonly entries: WarningEntry[] = [];
  private next = 0;
  /** warnings seen in all, those pushed out of the ring included */
  total = 0;

  constructor(readonly capacity = 50) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
  }

  /** A log line (LineTap): kept when it is a warning or worse. */
  readonly add = (line: string): void => {
    const entry = parseWarning(line);
    if (entry !== null) this.push(entry);
  };

  push(entry: WarningEntry): void {
    this.total += 1;
    if (this.entries.length < this.capacity) this.entries.push(entry);
    else this.entries[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The kept warnings, newest first. */
  list(): WarningEntry[] {
    const oldestFirst =
      this.entries.length < this.capacity
        ? this.entries
        : [...this.entries.slice(this.next), ...this.entries.slice(0, this.next)];
    return [...oldestFirst].reverse();
  }
}

/**
 * Per-second rates of this node's counters for the admin dashboard: the dashboard samples the
 * counters at a fixed interval (2 s), this keeps the last samples (5 minutes) and turns each pair
 * in a row into rates. Pure: the caller passes the time and the counters.
 */

/** The counters sampled (monotonic, as this node counts them). */
export interface CounterSample {
  /**
   * push targets this node took from the bus (bus.stats.pushesConsumed): a send to n clients,
   * uids or groups counts n, any other command (announcements included) 1
   */
  pushes: number;
  /** messages queued to this gateway's clients (gateway.counters.messagesOut) */
  deliveries: number;
  /** clients disconnected and messages dropped, every reason summed (gatewire_drops_total) */
  drops: number;
  /** messages from this gateway's clients (gateway.counters.messagesIn) */
  messagesIn: number;
}

export type CounterName = keyof CounterSample;
export const COUNTER_NAMES: readonly CounterName[] = ['pushes', 'deliveries', 'drops', 'messagesIn'];

/** Per-second rates over the interval that ends at `time`. */
export type RatePoint = { time: number } & CounterSample;

/**
 * Rates between two samples: (b - a) / seconds between them. A counter that went down (a
 * restart of what counts it) counts from zero; no time between them gives zeros.
 */
export function ratesBetween(
  a: { time: number; counters: CounterSample },
  b: { time: number; counters: CounterSample },
): RatePoint {
  const seconds = (b.time - a.time) / 1000;
  const point = { time: b.time } as RatePoint;
  for (const name of COUNTER_NAMES) {
    const before = a.counters[name];
    const now = b.counters[name];
    const delta = now >= before ? now - before : now;
    point[name] = seconds > 0 ? delta / seconds : 0;
  }
  return point;
}

export class RateHistory {
  private readonly points: RatePoint[] = [];
  private last: { time: number; counters: CounterSample } | null = null;

  /** @param size rate points kept (150: 5 minutes at one sample every 2 s) */
  constructor(readonly size = 150) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('size must be a positive integer');
  }

  /** Records the counters as of `time` (ms); from the second sample on, adds a rate point. */
  add(time: number, counters: CounterSample): void {
    const sample = { time, counters: { ...counters } };
    if (this.last !== null && time > this.last.time) {
      this.points.push(ratesBetween(this.last, sample));
      if (this.points.length > this.size) this.points.splice(0, this.points.length - this.size);
    }
    if (this.last === null || time > this.last.time) this.last = sample;
  }

  /** Rate points, oldest first. */
  series(): RatePoint[] {
    return [...this.points];
  }

  /** The newest rate point, or zeros before the second sample. */
  current(): RatePoint {
    return this.points.at(-1) ?? { time: this.last?.time ?? 0, pushes: 0, deliveries: 0, drops: 0, messagesIn: 0 };
  }

  /** The counters of the newest sample (zeros before the first). */
  totals(): CounterSample {
    return this.last?.counters ?? { pushes: 0, deliveries: 0, drops: 0, messagesIn: 0 };
  }
}

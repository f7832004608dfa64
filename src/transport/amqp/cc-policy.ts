/**
 * How many routing keys one message may carry (direct mode): the routing key plus the CC header.
 *
 * A message with several keys reaches each bound queue once, so a turn's commands to many uids
 * could travel in a few messages. But RabbitMQ 3.10 routes a multi-key message by matching every
 * binding of the exchange against every key, while a single-key message is one lookup. Measured on
 * the 2-core reference machine (amqplib publisher and consumer, one direct exchange):
 *
 *   bindings on the exchange     200      2,000     8,000
 *   1 key per message          0.12 ms   0.10 ms   0.05 ms   per message
 *   CC, 2 keys                 0.31 ms   0.51 ms   3.45 ms   per message
 *   CC, 100 keys               0.94 ms   4.78 ms  14.86 ms   per message
 *
 * i.e. about 20 ns per (binding, key) pair. Per key, CC beats separate messages while the exchange
 * holds up to a few thousand bindings, and loses badly beyond (at 100,000 uid keys a 100-key
 * message would cost around 200 ms of broker time). So the bus uses CC, up to
 * AMQP_KEYS_PER_MESSAGE keys, while the estimated number of bindings is at most
 * CC_MAX_BINDINGS, and one key per message above it. Commands with the same key are batched
 * into one message either way.
 *
 * The estimate comes from the membership announcements every node sends on the bus: a node binds
 * its node key, `all`, and one key per uid and group it holds (at most uidBuckets / groupBuckets
 * keys with buckets). Nodes not heard from for staleMs are left out. Publishers bind two keys and
 * are not counted.
 */

/** Most keys in one message: routing key + 99 in CC (content header ≤ 26 KiB, far below frame_max). */
export const AMQP_KEYS_PER_MESSAGE = 100;

/** Estimated bindings on the exchange above which each message carries one key. @default 2500 */
export const CC_MAX_BINDINGS = 2500;

interface Holding {
  keys: number;
  at: number;
}

export class CcPolicy {
  private readonly nodes = new Map<string, Holding>();

  constructor(
    private readonly uidBuckets: number,
    private readonly groupBuckets: number,
    private readonly staleMs: number,
    private readonly maxBindings = CC_MAX_BINDINGS,
  ) {}

  /** A node announced that it holds `uids` uids and `groups` groups. */
  announced(instance: string, uids: number, groups: number): void {
    const u = this.uidBuckets > 0 ? Math.min(uids, this.uidBuckets) : uids;
    const g = this.groupBuckets > 0 ? Math.min(groups, this.groupBuckets) : groups;
    this.nodes.set(instance, { keys: 2 + (Number(u) || 0) + (Number(g) || 0), at: Date.now() });
  }

  left(instance: string): void {
    this.nodes.delete(instance);
  }

  /** Estimated bindings on the exchange now. */
  estimatedBindings(): number {
    const now = Date.now();
    let sum = 0;
    for (const [instance, holding] of this.nodes) {
      if (now - holding.at > this.staleMs) this.nodes.delete(instance);
      else sum += holding.keys;
    }
    return sum;
  }

  /** Keys one message may carry now. */
  keysPerMessage(): number {
    return this.estimatedBindings() <= this.maxBindings ? AMQP_KEYS_PER_MESSAGE : 1;
  }
}

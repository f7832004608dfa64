/**
 * The routing keys bound on this process's queue (direct mode): queue.bind/unbind on the binder
 * channels, waiting for the next session while disconnected, and after a reconnect the unbinding
 * of keys released while down (the queue outlived the connection with its bindings).
 *
 * When the queue outlived the connection (the transport checks: ownQueueSurvived, amqp-probe.ts),
 * its bindings did too: the replay after the reconnect binds only the keys not bound on it before,
 * instead of every key (100,000 keys are 15–30 s of a broker's binding work; a connection blip of
 * many nodes at once multiplies that). Otherwise (a new queue: the broker restarted, or the queue
 * expired) every key is bound again.
 */
import { ErrorCodes, GatewireError, errorMessage } from '../../errors.js';
import { checkBindableKey } from './amqp-topology.js';
import { binderFor, type Session } from './amqp-session.js';

/** What the bindings need from their transport. */
export interface BindingsHost {
  /** the live session, or null while disconnected */
  live(): Session | null;
  /** the live session, once there is one (rejects when the bus closes) */
  currentSession(): Promise<Session>;
}

export class KeyBindings {
  /** keys bound on this process's queue at the broker as far as this process knows */
  private readonly brokerBound = new Set<string>();
  /** queue.bind confirmed by the broker; binds found in place on a queue that survived a reconnect */
  readonly stats = { bound: 0, kept: 0 };

  constructor(private readonly host: BindingsHost) {}

  /** After a reconnect to a new queue (or one not known to have survived): nothing is bound on it. */
  queueIsNew(): void {
    this.brokerBound.clear();
  }

  async bind(key: string): Promise<void> {
    checkBindableKey(key);
    for (;;) {
      const session = await this.host.currentSession();
      // Bound on this queue before, and the queue is the same (queueIsNew clears otherwise).
      if (this.brokerBound.has(key)) {
        this.stats.kept += 1;
        return;
      }
      try {
        await binderFor(session, key).bindQueue(session.queue, session.exchange, key);
        this.brokerBound.add(key);
        this.stats.bound += 1;
      } catch (err) {
        if (session.alive) throw brokerError('bind', key, err);
        continue; // the connection died: bind on the next one
      }
      // bind-ok from a connection that died since: bind again (idempotent) on the next one.
      if (session.alive) return;
    }
  }

  async unbind(key: string): Promise<void> {
    const session = this.host.live();
    // No connection: the key stays in brokerBound and is unbound right after the reconnect.
    if (session === null || !session.alive) return;
    try {
      await binderFor(session, key).unbindQueue(session.queue, session.exchange, key);
      this.brokerBound.delete(key);
    } catch (err) {
      if (session.alive) throw brokerError('unbind', key, err);
    }
  }

  /** After a reconnect: unbinds the keys released while the connection was down. */
  async unbindReleased(session: Session, desiredKeys: string[]): Promise<void> {
    const desired = new Set(desiredKeys);
    const released = [...this.brokerBound].filter((key) => !desired.has(key));
    await Promise.all(
      released.map(async (key) => {
        await binderFor(session, key).unbindQueue(session.queue, session.exchange, key);
        this.brokerBound.delete(key);
      }),
    );
  }
}

function brokerError(what: 'bind' | 'unbind', key: string, err: unknown): GatewireError {
  return new GatewireError(ErrorCodes.BUS_BROKER, `${what} of ${key} failed: ${errorMessage(err)}`, { cause: err });
}

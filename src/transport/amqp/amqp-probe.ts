/**
 * Whether another node's queue still has a consumer (Bus.probe), and whether this process's own
 * queue outlived a lost connection, on a channel of its own: a check of a queue that does not
 * exist closes its channel (404), which must never end the session.
 */
import type { Channel } from 'amqplib';
import { errorMessage } from '../../errors.js';
import type { Presence } from '../transport.js';
import type { Session } from './amqp-session.js';

/**
 * A killed process's connection closes at once, so its queue has no consumer; a slow or frozen one
 * keeps its consumer until the broker's heartbeat gives up on it. 'absent' also when the queue is
 * gone; 'unknown' without a live session or on any other failure.
 */
export async function probeQueue(session: Session | null, queue: string): Promise<Presence> {
  if (session === null || !session.alive) return 'unknown';
  const checked = await checkQueue(session, queue);
  if (typeof checked === 'number') return checked > 0 ? 'present' : 'absent';
  return checked === 'gone' ? 'absent' : 'unknown';
}

/** checkQueue on the prober channel: the queue's consumer count, 'gone' (404) or 'unknown'. */
async function checkQueue(session: Session, queue: string): Promise<number | 'gone' | 'unknown'> {
  try {
    session.prober ??= await openProber(session);
    return (await session.prober.checkQueue(queue)).consumerCount;
  } catch (err) {
    session.prober = null;
    // 404: the queue does not exist (the broker closed the channel saying so).
    return /NOT_FOUND|404/.test(errorMessage(err)) ? 'gone' : 'unknown';
  }
}

/** A channel for checkQueue only: its closing (a 404 answer closes it) never ends the session. */
async function openProber(session: Session): Promise<Channel> {
  const channel = await session.connection.createChannel();
  channel.on('error', () => undefined);
  channel.on('close', () => {
    if (session.prober === channel) session.prober = null;
  });
  return channel;
}

/**
 * Whether this process's queue of the last connection is still there, with its bindings
 * (amqp-bindings.ts), before it is declared again: a checkQueue on the prober channel, made only
 * on a reconnect (in direct mode: the caller says) within half the queue's x-expires of the loss,
 * so that the queue cannot expire between the check and its declaration (the broker may have seen
 * the connection go up to two heartbeats before this process did).
 */
export async function ownQueueSurvived(
  session: Session,
  at: { reconnect: boolean; lostAt: number; expiresMs: number; queue: string },
): Promise<boolean> {
  if (!at.reconnect || Date.now() - at.lostAt >= at.expiresMs / 2) return false;
  // gone, or unknown: taken for a new queue, whose keys are all bound again
  return typeof (await checkQueue(session, at.queue)) === 'number';
}

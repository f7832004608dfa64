/**
 * Whether another node's queue still has a consumer (Bus.probe), on a channel of its own: a check
 * of a queue that does not exist closes its channel (404), which must never end the session.
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
  try {
    session.prober ??= await openProber(session);
    const { consumerCount } = await session.prober.checkQueue(queue);
    return consumerCount > 0 ? 'present' : 'absent';
  } catch (err) {
    session.prober = null;
    // 404: the queue does not exist (the broker closed the channel saying so).
    if (/NOT_FOUND|404/.test(errorMessage(err))) return 'absent';
    return 'unknown';
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

/**
 * One AMQP connection and the channels on it (amqp-transport.ts has the recovery that replaces it
 * as a whole). Kept apart from the transport so that what a session is, how it is opened, watched
 * and closed reads in one place, and the transport only decides when.
 */
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { bucketOf } from '../../protocol/routing-keys.js';
import { closeConnection, withHeartbeat } from './amqp-topology.js';
import { errorMessage } from '../../errors.js';

/** Parallel binder channels (amqp-transport.ts's header says why). @default 16 */
export const BIND_CHANNELS = 16;

/** One connection and what lives on it; replaced as a whole on every reconnect. */
export interface Session {
  id: number;
  connection: ChannelModel;
  consumer: Channel | null;
  publisher: ConfirmChannel | null;
  binders: Channel[];
  /** checkQueue of other nodes' queues (probe); replaced when a check closes it (404) */
  prober: Channel | null;
  exchange: string;
  queue: string;
  alive: boolean;
  /** rejects when the session dies (used to stop waiting on it) */
  dead: Promise<never>;
  kill: (err: Error) => void;
  /** last delivery not yet acknowledged; acknowledged with `multiple` once per event-loop turn */
  unacked: ConsumeMessage | null;
  ackScheduled: boolean;
  /** the connection's close, once asked for */
  closed?: Promise<void>;
}

/** TCP connect + AMQP handshake, the connection named for the broker's tools. */
export function connectBroker(url: string, connectionName: string, timeoutMs: number): Promise<ChannelModel> {
  return amqp.connect(withHeartbeat(url), {
    clientProperties: { connection_name: connectionName },
    // amqplib leaves Nagle's algorithm on: small publishes and acks would wait for the peer's
    // ACK (measured: p50 30 ms -> 2 ms cross-node at 20,000 pushes/s with it off).
    noDelay: true,
    timeout: timeoutMs,
  });
}

/** A new session on an open connection, its channels not created yet. */
export function newSession(id: number, connection: ChannelModel): Session {
  let kill!: (err: Error) => void;
  const dead = new Promise<never>((_resolve, reject) => {
    kill = reject;
  });
  dead.catch(() => undefined);
  return {
    id,
    connection,
    consumer: null,
    publisher: null,
    binders: [],
    prober: null,
    exchange: '',
    queue: '',
    alive: true,
    dead,
    kill,
    unacked: null,
    ackScheduled: false,
  };
}

/** Logs what the connection reports; `lost` is told when it closes. */
export function watchConnection(connection: ChannelModel, log: Logger, lost: (reason: string) => void): void {
  connection.on('error', (err: Error) => log.warn({ err: err.message }, 'broker connection error'));
  connection.on('handler-error', (err: Error, event: string) => log.error({ err, event }, 'bus listener failed'));
  connection.on('close', (err?: Error) => lost(`connection closed${err ? `: ${err.message}` : ''}`));
  connection.on('blocked', (reason: string) => log.warn({ reason }, 'the broker blocked publishing (resource alarm)'));
  connection.on('unblocked', () => log.info('the broker unblocked publishing'));
}

/**
 * Logs a channel's errors and tells `lost` when it closes (the loss of any channel ends the
 * session); `onError` sees the errors too (the publisher's are the broker's refusals).
 */
export function watchChannel<C extends Channel>(
  channel: C,
  role: string,
  log: Logger,
  lost: (reason: string) => void,
  onError?: (err: Error) => void,
): C {
  channel.on('error', (err: Error) => {
    log.warn({ role, err: err.message }, 'broker channel error');
    onError?.(err);
  });
  channel.on('handler-error', (err: Error, event: string) => log.error({ role, err, event }, 'bus listener failed'));
  channel.on('close', () => lost(`${role} channel closed`));
  return channel;
}

/**
 * The session's channels: consumer, confirm publisher (whose errors go to `onPublisherError` too)
 * and, in direct mode, BIND_CHANNELS binders. Returns the consumer channel.
 */
export async function openChannels(
  session: Session,
  direct: boolean,
  log: Logger,
  lost: (reason: string) => void,
  onPublisherError: (err: Error) => void,
): Promise<Channel> {
  const { connection } = session;
  const consumer = watchChannel(await connection.createChannel(), 'consumer', log, lost);
  session.consumer = consumer;
  session.publisher = watchChannel(await connection.createConfirmChannel(), 'publisher', log, lost, onPublisherError);
  if (direct) {
    for (let i = 0; i < BIND_CHANNELS; i++)
      session.binders.push(watchChannel(await connection.createChannel(), 'binder', log, lost));
  }
  return consumer;
}

/** Closes a session's connection (bounded by timeoutMs, see closeConnection); once. */
export function shutSession(session: Session, timeoutMs: number): Promise<void> {
  session.alive = false;
  session.closed ??= closeConnection(session.connection, timeoutMs);
  return session.closed;
}

/** A key always uses the same binder channel (binds of one key stay in order). */
export function binderFor(session: Session, key: string): Channel {
  return session.binders[bucketOf(key, session.binders.length)]!;
}

/** What the broker will refuse again on the next attempt: credentials, vhost, exchange type. */
export function isRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 403 || code === 406 || code === 530) return true;
  return /ACCESS.REFUSED|NOT.ALLOWED|PRECONDITION.FAILED|Expected amqp/.test(errorMessage(err));
}

/**
 * What the RabbitMQ bus is given (the DI module fills it from bus.amqp.* and cluster.*), and its
 * largest message by default.
 */
import type { AmqpQueueType } from './amqp-topology.js';
import type { BackoffOptions } from './backoff.js';

export interface AmqpBusOptions {
  /**
   * amqp://user:pass@host:port/vhost (query: heartbeat, frameMax, …); for a RabbitMQ cluster the
   * URLs of its nodes, as a list or comma-separated (amqp-urls.ts: which one is used when).
   */
  url: string | readonly string[];
  /** the node queue's type (amqp-topology.ts); auto: quorum for several URLs. @default 'auto' */
  queueType?: AmqpQueueType;
  /** exchange name prefix; the mode is appended. @default 'gatewire' */
  exchange: string;
  /** unacknowledged messages the broker may push to this node. @default 256 */
  prefetch: number;
  /** reconnect delays. @default { initialMs: 100, maxMs: 5000, factor: 2, jitter: 0.3 } */
  backoff?: BackoffOptions;
  /** ms close() waits for outstanding confirms while connected. @default 5000 */
  closeTimeoutMs?: number;
  /** ms a TCP connect + AMQP handshake may take. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * ms the broker keeps this process's queue without a consumer (x-expires): long enough to
   * outlast any reconnect, so nothing pushed meanwhile is lost. @default 60000
   */
  queueExpiresMs?: number;
  /**
   * ms a reconnected node waits for its peers' READY before flushing what waited
   * (peer-barrier.ts). @default 10000 (the DI module passes cluster.nodeTimeout + 5000)
   */
  peerWaitMs?: number;
  /**
   * ms after its first connect during which a process that knows no peer may not have heard
   * one yet (peer-barrier.ts). @default 2000 (the DI module passes 2 × cluster.announceInterval)
   */
  peerLearnMs?: number;
  /**
   * bytes of messages this process's queue holds before the broker drops the oldest
   * (x-max-length-bytes). @default 268435456 (256 MiB; bus.amqp.maxQueueBytes)
   */
  queueMaxBytes?: number;
}

/**
 * Largest message this bus sends when bus.maxMessageBytes is 0: below RabbitMQ 4's default
 * max_message_size (16 MiB; 3.x: 128 MiB). @default 8388608
 */
export const AMQP_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

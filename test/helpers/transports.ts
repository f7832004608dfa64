/**
 * The broker adapters behind a bus, for tests that look at them (an AMQP connection's name, its
 * queue, a Redis connection's name, their own counters), and buses built on one adapter.
 */
import type { Logger } from 'pino';
import { Bus, type BusOptions } from '../../src/transport/bus.js';
import { AmqpTransport, type AmqpBusOptions } from '../../src/transport/amqp/amqp-transport.js';
import { RedisTransport, type RedisBusOptions } from '../../src/transport/redis/redis-transport.js';

export function amqpOf(bus: Bus): AmqpTransport {
  if (!(bus.transport instanceof AmqpTransport)) throw new Error('not a bus on RabbitMQ');
  return bus.transport;
}

export function redisOf(bus: Bus): RedisTransport {
  if (!(bus.transport instanceof RedisTransport)) throw new Error('not a bus on Redis');
  return bus.transport;
}

export function amqpBus(options: BusOptions, log: Logger, amqp: AmqpBusOptions): Bus {
  return new Bus(options, log, new AmqpTransport(options, log, amqp));
}

export function redisBus(options: BusOptions, log: Logger, redis: RedisBusOptions): Bus {
  return new Bus(options, log, new RedisTransport(options, log, redis));
}

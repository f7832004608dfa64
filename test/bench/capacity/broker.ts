/**
 * The brokers of a capacity measurement: a private RabbitMQ or Redis on free loopback ports
 * (../../helpers/private-broker.ts), started for the measurement and stopped after, so its CPU
 * is only ours (the shared brokers serve other work) and it may be restarted. The nodes reach it
 * through a byte-counting TCP proxy on loopback, which gives the bus bytes in each direction.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { PrivateRabbit, PrivateRedis } from '../../helpers/private-broker.js';
import type { BusKind } from './model.js';

/** A TCP proxy on 127.0.0.1 that counts the bytes each way; a connection ends when either side does. */
export class ByteProxy {
  /** bytes from the nodes to the broker, and back */
  up = 0;
  down = 0;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<ByteProxy> {
    let proxy!: ByteProxy;
    const server = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      proxy.sockets.add(client).add(upstream);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      const end = (): void => {
        client.destroy();
        upstream.destroy();
        proxy.sockets.delete(client);
        proxy.sockets.delete(upstream);
      };
      client.on('data', (chunk: Buffer) => {
        proxy.up += chunk.length;
        if (!upstream.write(chunk)) client.pause();
      });
      upstream.on('data', (chunk: Buffer) => {
        proxy.down += chunk.length;
        if (!client.write(chunk)) upstream.pause();
      });
      upstream.on('drain', () => client.resume());
      client.on('drain', () => upstream.resume());
      for (const s of [client, upstream]) {
        s.on('error', end);
        s.on('close', end);
      }
    });
    server.on('error', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new ByteProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  bytes(): { up: number; down: number } {
    return { up: this.up, down: this.down };
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

/** CPU µs of a process from /proc (utime + stime; clock ticks of 1/100 s, Linux on x86). */
function procCpuUs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10000;
}

export class Broker {
  private redisInfo: Redis | null = null;

  private constructor(
    readonly kind: BusKind,
    private readonly rabbit: PrivateRabbit | null,
    private readonly redis: PrivateRedis | null,
    readonly proxy: ByteProxy,
  ) {}

  static async start(kind: BusKind): Promise<Broker> {
    if (kind === 'amqp') {
      const rabbit = await PrivateRabbit.start();
      return new Broker(kind, rabbit, null, await ByteProxy.start(rabbit.port));
    }
    const redis = await PrivateRedis.start();
    return new Broker(kind, null, redis, await ByteProxy.start(redis.port));
  }

  /** The URL the nodes use: through the proxy. */
  get url(): string {
    return this.kind === 'amqp'
      ? `amqp://guest:guest@127.0.0.1:${this.proxy.port}`
      : `redis://127.0.0.1:${this.proxy.port}`;
  }

  /** CPU µs the broker has used (RabbitMQ: beam.smp from /proc; Redis: INFO cpu, µs resolution). */
  async cpuUs(): Promise<number> {
    if (this.rabbit !== null) {
      const pid = Number(fs.readFileSync(path.join(this.rabbit.dir, 'rabbitmq.pid'), 'utf8').trim());
      return procCpuUs(pid);
    }
    if (this.redisInfo === null) {
      this.redisInfo = new Redis(this.redis!.url, { lazyConnect: true, maxRetriesPerRequest: 2 });
      this.redisInfo.on('error', () => undefined);
      await this.redisInfo.connect();
    }
    const info = await this.redisInfo.info('cpu');
    const read = (key: string): number => Number(new RegExp(`${key}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
    return (read('used_cpu_user') + read('used_cpu_sys')) * 1e6;
  }

  /**
   * Stops the broker for about a second and starts it again; resolves with the time it was back
   * (RabbitMQ: start_app returned; Redis: a new, empty server answers PING).
   */
  async restart(): Promise<number> {
    if (this.rabbit !== null) {
      await this.rabbit.stopApp();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await this.rabbit.ctl('start_app');
      return Date.now();
    }
    this.redisInfo?.disconnect();
    this.redisInfo = null;
    await this.redis!.restart(1000);
    return Date.now();
  }

  async stop(): Promise<void> {
    this.proxy.close();
    this.redisInfo?.disconnect();
    this.redisInfo = null;
    if (this.rabbit !== null) await this.rabbit.stop();
    if (this.redis !== null) await this.redis.stop();
  }
}

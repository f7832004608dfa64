/**
 * A Socket.IO 4.8 server as a benchmark child process: one HTTP server on port 0, the default
 * namespace, optionally @socket.io/redis-adapter (classic: one pattern subscription per
 * namespace; or sharded with one channel per room). A client whose URL query has `uid=` joins
 * the room of that name, Socket.IO's convention for "all sessions of a user". Driven over IPC by
 * the runner exactly like gatewire-server.ts.
 */
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { childOptions, failStart, serve } from './server-runtime.js';

export interface SocketIoServerOptions {
  /** none: in-memory adapter (one node) */
  adapter: 'none' | 'redis' | 'redis-sharded';
  redisUrl: string;
  /** channel prefix, unique per run */
  key: string;
}

async function main(): Promise<void> {
  const options = childOptions<SocketIoServerOptions>();
  const server = http.createServer();
  const io = new Server(server, { serveClient: false, transports: ['websocket'] });
  const redis: Redis[] = [];
  if (options.adapter !== 'none') {
    const pub = new Redis(options.redisUrl, { lazyConnect: false });
    const sub = pub.duplicate();
    redis.push(pub, sub);
    for (const client of redis) client.on('error', (err: Error) => process.stderr.write(`redis: ${err.message}\n`));
    io.adapter(
      options.adapter === 'redis'
        ? createAdapter(pub, sub, { key: options.key })
        : createShardedAdapter(pub, sub, { channelPrefix: options.key, subscriptionMode: 'dynamic' }),
    );
    // Commands on one connection run in order: once this answers, the adapter's subscriptions are in.
    await sub.ping();
    await pub.ping();
  }
  let clients = 0;
  let bound = 0;
  io.on('connection', (socket) => {
    clients += 1;
    const uid = socket.handshake.query.uid;
    if (typeof uid === 'string' && uid !== '') {
      void Promise.resolve(socket.join(uid))
        // Sharded: join issued the room's SSUBSCRIBE; a PING after it answers once it is in.
        .then(() => (options.adapter === 'redis-sharded' ? redis[1]!.ping() : undefined))
        .then(() => {
          bound += 1;
        });
    }
    socket.on('disconnect', () => {
      clients -= 1;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  serve(
    {
      sendToAll: (payload) => io.emit('m', payload),
      sendToUid: (uid, payload) => io.to(uid).emit('m', payload),
      clients: () => clients,
      bound: () => bound,
      busStats: () => null,
      errors: () => 0,
      stop: async () => {
        await new Promise<void>((resolve) => io.close(() => resolve()));
        for (const client of redis) client.disconnect();
      },
    },
    port,
  );
}

main().catch(failStart);

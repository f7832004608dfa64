/**
 * A client for the cron-push example: connects with the client library and prints every line it
 * gets (the greeting, then the time each time the cron job pushes). Stops after the given number
 * of pushes, or runs until Ctrl-C.
 *
 *   node dist/examples/cron-push/listen.js [pushes]
 *
 * It connects to the first URL in GATEWIRE_GATEWAY__LISTEN when that is set (the same variable
 * that moves the node to another port), else to ws://127.0.0.1:8080/ws.
 */
import WebSocket from 'ws';
import { GatewireClient } from '../../src/client/gatewire-client.js';

const pushes = process.argv[2] === undefined ? Infinity : Number(process.argv[2]);
const url = process.env.GATEWIRE_GATEWAY__LISTEN?.split(',')[0]?.trim() || 'ws://127.0.0.1:8080/ws';

const client = new GatewireClient(url, { WebSocket });
let seen = 0;
client.on('open', ({ clientId }) => console.log(`connected to ${url} as ${clientId}`));
client.on('reconnecting', ({ attempt }) => console.log(`reconnecting (attempt ${attempt})`));
client.on('message', (data) => {
  const line = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
  console.log(line);
  if (line.startsWith('It is ') && ++seen >= pushes) {
    client.close();
    process.exit(0);
  }
});
const stop = (): void => {
  client.close();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

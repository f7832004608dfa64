/**
 * The heartbeat (GatewayWorker's pingInterval, pingNotResponseLimit, pingData; DESIGN §4): each
 * period every client is pinged, and one silent for pingNotResponseLimit periods is disconnected.
 */
import type { Logger } from 'pino';
import type { ErrorCode } from '../errors.js';
import type { ClientRegistry } from './client-registry.js';
import { OutgoingMessage } from './outgoing-message.js';
import { controlText } from '../protocol/client-protocol.js';

const V1_PING = new OutgoingMessage(controlText({ t: 'ping' })).wsFrame;

/** Clients checked and pinged per event-loop turn by the heartbeat. */
const HEARTBEAT_SLICE = 256;

export interface HeartbeatOptions {
  pingNotResponseLimit: number;
  pingData: string;
}

/**
 * One heartbeat period: every client is checked and pinged, HEARTBEAT_SLICE clients per turn
 * of the event loop, so a gateway with many clients does not stall pushes while it pings.
 */
export function heartbeat(
  registry: ClientRegistry,
  options: HeartbeatOptions,
  /** counts the disconnect (drops{reason="heartbeat"}); returns its code */
  drop: () => ErrorCode,
  log: Logger,
): void {
  const limit = options.pingNotResponseLimit;
  const ping = options.pingData === '' ? null : new OutgoingMessage(options.pingData);
  const clients = [...registry.clients.values()];
  const slice = (start: number): void => {
    const end = Math.min(clients.length, start + HEARTBEAT_SLICE);
    for (let i = start; i < end; i++) {
      const client = clients[i]!;
      // A suspended session has no link to check.
      if (client.closed || !client.attached) continue;
      if (limit > 0) {
        if (client.missedPings >= limit) {
          const code = drop();
          log.info({ clientId: client.id, code }, 'no sign of life within the heartbeat limit; disconnecting');
          // A gatewire.v1 session loses its link, not itself: it waits for its client to resume.
          if (client.resume !== null) client.cut();
          else client.destroy();
          continue;
        }
        client.missedPings += 1;
      }
      if (client.transport.kind === 'ws') client.transport.ws.ping();
      // A gatewire.v1 client gets a ping control, which its library sees (a browser never sees
      // ping frames); pingData would be one more counted message for it to keep.
      if (client.resume !== null) client.queueFrame(V1_PING);
      else if (ping !== null) client.send(ping);
    }
    if (end < clients.length) setImmediate(() => slice(end));
  };
  slice(0);
}

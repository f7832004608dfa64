/**
 * A gateway's shutdown (gateway.ts stop()): raw clients are closed with 1001 (cut after 2 s if
 * the peer does not finish the close), and gatewire.v1 sessions are waited for while their
 * clients come back at other gateways, which take them over (takeover.ts).
 */
import { CloseCode, type Client } from './client.js';

/** Closes raw clients with 1001; resolves once each socket closed (at most 2 s). */
export async function closeRawClients(clients: Client[]): Promise<void> {
  const closing = clients.map(
    (client) =>
      new Promise<void>((resolve) => {
        client.socket.once('close', () => resolve());
        client.close(undefined, CloseCode.GOING_AWAY, 'server shutting down');
        // A peer that does not complete the close handshake is cut after 2 s.
        setTimeout(() => {
          client.destroy();
          resolve();
        }, 2000).unref();
      }),
  );
  await Promise.all(closing);
}

/** Waits, on the gateway's word (changed()), until no session is held here any more. */
export class SessionDrain {
  private check: (() => void) | null = null;

  /** Resolves once `held()` is empty (checked at each changed()), or after `ms`. */
  async wait(held: () => number, ms: number): Promise<void> {
    if (held() === 0 || ms <= 0) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.check = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.check = () => {
        if (held() === 0) done();
      };
    });
  }

  /** A client left the gateway. */
  changed(): void {
    this.check?.();
  }
}

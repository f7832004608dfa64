/**
 * The worker role: runs the application's handler for client events. Events of one client run
 * one after another in arrival order (a per-client chain); different clients run concurrently.
 * A handler that throws or rejects is logged with the client id; the worker goes on.
 * Changes to ctx.session are written back through the API when the handler finishes.
 */
import type { Logger } from 'pino';
import type { GatewayApi } from '../api/gateway-api.js';
import type { Session } from '../bus/commands.js';
import type { ClientEvent, EventSink } from './client-event.js';
import type { EventContext, EventHandler, WorkerContext } from './handler.js';
import { errorMessage } from '../errors.js';

export class Worker implements EventSink {
  /** the tail of each client's chain of pending events */
  private readonly chains = new Map<string, Promise<void>>();
  handlerErrors = 0;
  eventsHandled = 0;

  constructor(
    private handler: EventHandler,
    private readonly api: GatewayApi,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {}

  get currentHandler(): EventHandler {
    return this.handler;
  }

  async start(): Promise<void> {
    await this.callWorkerHook('onWorkerStart');
  }

  /** Waits for every queued event, then runs onWorkerStop. */
  async stop(): Promise<void> {
    await this.drain();
    await this.callWorkerHook('onWorkerStop');
  }

  /**
   * Swaps the handler with every client still connected: events queued before the swap finish
   * on the old one, onWorkerStop runs on the old, onWorkerStart on the new.
   */
  async replaceHandler(next: EventHandler): Promise<void> {
    await this.drain();
    await this.callWorkerHook('onWorkerStop');
    this.handler = next;
    await this.callWorkerHook('onWorkerStart');
  }

  async drain(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
  }

  dispatch(event: ClientEvent): void {
    const previous = this.chains.get(event.clientId);
    const run = (): Promise<void> => this.run(event);
    const next = previous === undefined ? run() : previous.then(run);
    this.chains.set(event.clientId, next);
    void next.then(() => {
      if (this.chains.get(event.clientId) === next) this.chains.delete(event.clientId);
    });
  }

  private async run(event: ClientEvent): Promise<void> {
    const handler = this.handler;
    const before = JSON.stringify(event.session);
    const ctx: EventContext = {
      gateway: this.api,
      clientId: event.clientId,
      session: JSON.parse(before) as Session,
      remoteAddress: event.remoteAddress,
      remotePort: event.remotePort,
      gatewayNode: event.gateway,
    };
    try {
      switch (event.type) {
        case 'connect':
          await handler.onConnect?.(event.clientId, ctx);
          break;
        case 'websocketConnect':
          await handler.onWebSocketConnect?.(event.clientId, event.request, ctx);
          break;
        case 'message':
          await handler.onMessage(event.clientId, event.data, ctx);
          break;
        case 'close':
          await handler.onClose?.(event.clientId, ctx);
          break;
      }
    } catch (err) {
      this.handlerErrors += 1;
      this.log.error({ clientId: event.clientId, event: event.type, err }, 'handler failed');
    }
    this.eventsHandled += 1;
    // Write the session back if the handler changed it (a closed client has none to write).
    if (event.type === 'close') return;
    let after: string;
    try {
      after = JSON.stringify(ctx.session ?? {});
    } catch (err) {
      this.log.error({ clientId: event.clientId, err: errorMessage(err) }, 'ctx.session is not JSON-serialisable; not saved');
      return;
    }
    if (after === before) return;
    try {
      await this.api.setSession(event.clientId, JSON.parse(after) as Session);
    } catch (err) {
      this.log.warn({ clientId: event.clientId, err: errorMessage(err) }, 'session write-back failed');
    }
  }

  private async callWorkerHook(name: 'onWorkerStart' | 'onWorkerStop'): Promise<void> {
    const ctx: WorkerContext = { gateway: this.api, nodeId: this.nodeId };
    try {
      await this.handler[name]?.(ctx);
    } catch (err) {
      this.handlerErrors += 1;
      this.log.error({ err, hook: name }, 'handler failed');
    }
  }
}

/**
 * The worker role: runs the application's handler for client events. Events of one client run
 * one after another in arrival order (a per-client chain); different clients run concurrently.
 * A handler that throws or rejects is logged with the client id; the worker goes on.
 * Changes to ctx.session are written back through the API when the handler finishes.
 *
 * Folder worker/ (layer 3, beside gateway: may import any layer up to gateway): handler.ts (the
 * application's contract), handler-loader.ts (imports it). Flow: EventSink/EventRunner ->
 * Worker -> handler, which pushes through the PushApi given to it.
 */
import type { Logger } from 'pino';
import type { PushApi } from '../protocol/push-api.js';
import type { Payload, Session } from '../protocol/commands.js';
import type { ClientEvent, DispatchOptions, EventRunner, SessionSource, EventSink } from '../protocol/client-event.js';
import type { EventContext, EventHandler, WorkerContext } from './handler.js';
import { errorMessage } from '../errors.js';

/**
 * Where a remote worker gets a client's current session: the event's snapshot may predate a
 * write made while handling the client's previous event, so a source may know better.
 */
export type { SessionSource, DispatchOptions } from '../protocol/client-event.js';

export class Worker implements EventSink, EventRunner {
  /** the tail of each client's chain of pending events */
  private readonly chains = new Map<string, Promise<void>>();
  handlerErrors = 0;
  eventsHandled = 0;

  constructor(
    private handler: EventHandler,
    private readonly api: PushApi,
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
  /**
   * Waits for every queued event (at most `drainTimeoutMs`, default 10 s, so a handler that never
   * settles cannot hold a shutdown forever), then runs onWorkerStop.
   */
  async stop(drainTimeoutMs = 10000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), drainTimeoutMs);
    });
    const late = await Promise.race([this.drain().then(() => false), timedOut]);
    clearTimeout(timer);
    if (late)
      this.log.warn(
        { clients: this.chains.size, drainTimeoutMs },
        'handlers still running at shutdown; stopping without them',
      );
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

  /** In-process events: handled in order, the session read live from the gateway's client. */
  dispatch(event: ClientEvent): void {
    void this.handle(event);
  }

  /**
   * Queues an event behind the client's earlier ones. Resolves true once handled (session
   * written back), or false if `options.guard` said no when its turn came: the event was not
   * run and its delivery stays unacknowledged, so the broker hands it to the next worker.
   */
  handle(event: ClientEvent, options: DispatchOptions = {}): Promise<boolean> {
    // A resumed session's events chain under its first clientId, so they keep one order.
    const key = event.root ?? event.clientId;
    const previous = this.chains.get(key);
    const run = (): Promise<boolean> =>
      options.guard && !options.guard() ? Promise.resolve(false) : this.run(event, options.sessions);
    const next = previous === undefined ? run() : previous.then(run, run);
    const tail = next.then(() => undefined);
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return next;
  }

  private async run(event: ClientEvent, sessions: SessionSource | undefined): Promise<boolean> {
    const handler = this.handler;
    let current = event.session;
    if (sessions) {
      try {
        current = await sessions.read(event);
      } catch (err) {
        // The gateway could not be asked: the event's own snapshot is the best there is.
        this.log.warn(
          { clientId: event.clientId, err: errorMessage(err) },
          'session read failed; using the event snapshot',
        );
      }
    }
    const before = JSON.stringify(current);
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
        case 'resume':
          await handler.onResume?.(event.clientId, { previousClientId: event.previousClientId }, ctx);
          break;
        case 'request':
          await this.answer(handler, event, ctx);
          break;
      }
    } catch (err) {
      this.handlerErrors += 1;
      this.log.error({ clientId: event.clientId, event: event.type, err }, 'handler failed');
    }
    this.eventsHandled += 1;
    // Write the session back if the handler changed it (a closed client has none to write).
    if (event.type === 'close') {
      sessions?.forget(event.clientId);
      return true;
    }
    let after: string;
    try {
      after = JSON.stringify(ctx.session ?? {});
    } catch (err) {
      this.log.error(
        { clientId: event.clientId, err: errorMessage(err) },
        'ctx.session is not JSON-serialisable; not saved',
      );
      return true;
    }
    if (after === before) return true;
    const written = JSON.parse(after) as Session;
    try {
      const version = await this.api.writeSession(event.clientId, written);
      if (version !== null) sessions?.wrote(event.clientId, written, version);
    } catch (err) {
      this.log.warn({ clientId: event.clientId, err: errorMessage(err) }, 'session write-back failed');
    }
    return true;
  }

  /** Runs onRequest; its value (or what it threw) goes back to the client as the reply. */
  private async answer(
    handler: EventHandler,
    event: ClientEvent & { type: 'request' },
    ctx: EventContext,
  ): Promise<void> {
    let ok = true;
    let reply: Payload;
    try {
      if (handler.onRequest === undefined) throw new Error('the server has no onRequest handler');
      reply = asPayload(await handler.onRequest(event.clientId, event.data, ctx));
    } catch (err) {
      ok = false;
      reply = errorMessage(err);
      this.log.debug({ clientId: event.clientId, err: reply }, 'a request failed');
    }
    await this.api
      .replyToRequest(event.clientId, event.requestId, ok, reply)
      .catch((err: unknown) => this.log.warn({ clientId: event.clientId, err: errorMessage(err) }, 'reply not sent'));
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

/** A request handler's return value as a reply: text and bytes as they are, the rest as JSON. */
function asPayload(value: unknown): Payload {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string' || value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  return JSON.stringify(value);
}

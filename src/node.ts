/**
 * A gatewire node: one process with its roles, wired by the container. Start and stop run in a
 * fixed order:
 *   start: admin server (/healthz 200, /readyz 503) -> commands -> bus connects (at most
 *          bus.connectTimeout) -> membership -> worker (onWorkerStart) -> gateway listeners
 *          -> running (/readyz 200)
 *   stop:  stop accepting -> close clients (1001) and flush -> gatewire.v1 sessions wait to be
 *          taken over by other live gateways (at most resumeWindow, node.shutdownTimeout - 5 s)
 *          -> worker drains (onWorkerStop)
 *          -> leave membership -> bus closes (pending commands go out first) -> admin server
 * A start that fails closes the admin server and the bus again; a stop during the bus connect
 * ends the connect (start() then rejects) and resolves.
 */
import type { Container } from 'inversify';
import type { Logger } from 'pino';
import { TOKENS } from './di/tokens.js';
import { ContainerView } from './di/container-view.js';
import { buildContainer } from './di/container.js';
import { loadConfig, type ConfigInput, type GatewireConfig } from './config/load.js';
import type { Gateway } from './gateway/gateway.js';
import type { Worker } from './worker/worker.js';
import type { EventHandler } from './worker/handler.js';
import type { Authorizer } from './gateway/listener.js';
import { loadHandler } from './worker/handler-loader.js';
import type { NodeIdentity } from './cluster/node-identity.js';
import type { Directory } from './cluster/directory.js';
import type { Requests } from './cluster/requests.js';
import { AdminServer } from './admin/admin-server.js';
import type { AmqpEventConsumer } from './events/event-consumer.js';
import type { AmqpEventProducer } from './events/event-producer.js';
import { createMetrics } from './admin/metrics.js';
import { Dashboard } from './admin/dashboard-api.js';
import { ErrorCodes, GatewireError } from './errors.js';
import { redactUrl } from './config/redact.js';
import { redisUrls } from './transport/redis/redis-util.js';

export interface NodeOptions {
  /** a configuration from loadConfig; default: loadConfig({ values }) */
  config?: GatewireConfig;
  /** configuration values from code, used when `config` is not given (env still applies) */
  values?: ConfigInput;
  /** the Events handler object; default: imported from worker.handler */
  handler?: EventHandler;
  /** the authorization hook; default: imported from gateway.authorizer, or none */
  authorize?: Authorizer;
  /** change bindings before anything is built, e.g. rebind TOKENS.Bus */
  configure?: (container: Container) => void;
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/** Of node.shutdownTimeout, what the rest of a shutdown keeps after the sessions' drain. */
const SESSION_DRAIN_MARGIN_MS = 5000;

export class GatewireNode extends ContainerView {
  private state: State = 'new';
  private admin: AdminServer | null = null;
  /** the start in progress, so that a stop meanwhile can wait for it */
  private starting: Promise<void> | null = null;
  /** bus.start() was called: the bus must be closed again */
  private busStarted = false;
  /** bus.start() has not settled yet */
  private connecting = false;
  private stopRequested = false;

  get config(): GatewireConfig {
    return this.container.get(TOKENS.Config);
  }
  get identity(): NodeIdentity {
    return this.container.get(TOKENS.Identity);
  }
  get gateway(): Gateway | null {
    return this.optional(TOKENS.Gateway);
  }
  get worker(): Worker | null {
    return this.optional(TOKENS.Worker);
  }
  /** the holder directory (direct mode on a broker, bus.directory=auto), or null */
  get directory(): Directory | null {
    return this.optional(TOKENS.Directory);
  }
  get requests(): Requests {
    return this.container.get(TOKENS.Requests);
  }
  /** The admin server's port (0 when admin.listen is empty). */
  get adminPort(): number {
    return this.admin?.port ?? 0;
  }
  /** a gateway-only node's queue of client events to the workers */
  get eventProducer(): AmqpEventProducer | null {
    return this.optional(TOKENS.EventProducer);
  }
  /** a worker-only node's consumer of client events */
  get eventConsumer(): AmqpEventConsumer | null {
    return this.optional(TOKENS.EventConsumer);
  }
  get log(): Logger {
    return this.container.get(TOKENS.Logger);
  }
  /** Listener URLs with their real ports. */
  get urls(): string[] {
    return this.gateway?.urls ?? [];
  }
  get running(): boolean {
    return this.state === 'running';
  }

  async start(): Promise<void> {
    if (this.state !== 'new') {
      throw new GatewireError(ErrorCodes.ALREADY_STARTED, `node cannot start: it is ${this.state}`);
    }
    this.state = 'starting';
    const starting = this.startSteps();
    this.starting = starting;
    try {
      await starting;
    } catch (err) {
      await this.undoStart();
      this.state = 'stopped';
      throw err;
    } finally {
      this.starting = null;
    }
    this.state = 'running';
    this.log.info(
      { instance: this.identity.instance, roles: this.config.node.roles, urls: this.urls, bus: this.config.bus.kind },
      'node started',
    );
  }

  private async startSteps(): Promise<void> {
    // The admin server comes first, so that an orchestrator sees the process alive (/healthz)
    // and not ready (/readyz 503) while the bus connects, which may take long or never succeed.
    if (this.config.admin.listen !== '') {
      const { registry, queryLatency } = createMetrics(this);
      this.requests.observeLatency = (seconds) => queryLatency.observe(seconds);
      const { listen, token } = this.config.admin;
      const dashboard = new Dashboard(this, this.log);
      this.admin = new AdminServer(
        { listen, token },
        this,
        registry,
        this.log.child({ component: 'admin' }),
        dashboard,
      );
      await this.admin.start();
    }
    this.container.get(TOKENS.CommandDispatcher).attach();
    await this.connectBus();
    if (this.stopRequested) throw new GatewireError(ErrorCodes.NOT_RUNNING, 'the node was stopped while it started');
    this.membership.start();
    this.directory?.start();
    const gateway = this.gateway;
    const worker = this.worker;
    if (worker) await worker.start();
    await this.eventConsumer?.start();
    if (gateway) {
      const producer = this.eventProducer;
      if (producer) await producer.start();
      gateway.setEventSink(worker ?? producer!);
      await gateway.start();
    }
  }

  /**
   * bus.start(), bounded by bus.connectTimeout (0: unbounded). On timeout the bus is closed,
   * which ends its retry loop (bus.start() then rejects, ignored here), and the start fails with
   * BUS_CONNECT_TIMEOUT naming the broker and its address without the password.
   */
  private async connectBus(): Promise<void> {
    const bus = this.bus;
    const timeoutMs = this.config.bus.connectTimeout;
    this.busStarted = true;
    this.connecting = true;
    const connected = bus.start().finally(() => {
      this.connecting = false;
    });
    if (timeoutMs === 0) {
      await connected;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      const outcome = await Promise.race([connected.then(() => 'connected' as const), timedOut]);
      if (outcome === 'connected') return;
    } finally {
      clearTimeout(timer);
    }
    connected.catch(() => undefined);
    await bus.close();
    throw new GatewireError(
      ErrorCodes.BUS_CONNECT_TIMEOUT,
      `bus.kind=${this.config.bus.kind}: no connection to ${this.brokerAddress()} within ${timeoutMs} ms (bus.connectTimeout); is the broker running and reachable from here?`,
    );
  }

  /** Where the bus connects, fit to be shown: the password is never part of it. */
  private brokerAddress(): string {
    const bus = this.config.bus;
    if (bus.kind === 'amqp') return redactUrl(bus.amqp.url);
    // Each seed node of a Redis Cluster redacted on its own.
    if (bus.kind === 'redis') return redisUrls(bus.redis.url).map(redactUrl).join(',');
    return 'the in-process bus';
  }

  /** After a failed start: closes what start() opened (the bus, the admin server). */
  private async undoStart(): Promise<void> {
    if (this.busStarted)
      await this.bus.close().catch((err: unknown) => this.log.debug({ err }, 'bus close after a failed start'));
    await this.admin?.stop();
    this.admin = null;
  }

  async stop(): Promise<void> {
    if (this.state === 'starting') {
      this.stopRequested = true;
      // A connect that may never succeed would hold the stop: closing the bus ends it.
      if (this.connecting) await this.bus.close().catch(() => undefined);
      await this.starting?.catch(() => undefined);
      // start() has settled meanwhile (TypeScript cannot see the change across the await).
      if ((this.state as State) !== 'running') {
        this.state = 'stopped';
        this.log.info('node stopped');
        return;
      }
    }
    if (this.state === 'stopped' || this.state === 'stopping' || this.state === 'new') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    // gatewire.v1 sessions wait to be taken over by other gateways, within the shutdown's bound;
    // with no other gateway alive there is nobody to take them, and they end at once.
    const others = this.membership.gateways().filter((i) => i !== this.identity.instance && this.membership.isLive(i));
    const drainMs =
      others.length === 0
        ? 0
        : Math.min(
            this.config.gateway.resumeWindow * 1000,
            Math.max(0, this.config.node.shutdownTimeout - SESSION_DRAIN_MARGIN_MS),
          );
    await this.gateway?.stop(drainMs);
    await this.eventProducer?.close();
    await this.eventConsumer?.stop();
    await this.worker?.stop();
    this.directory?.stop();
    await this.membership.stop();
    await this.bus.close();
    await this.admin?.stop();
    this.state = 'stopped';
    this.log.info('node stopped');
    this.log.flush?.();
  }

  /** Re-imports the handler module from disk and swaps it in; every client stays connected. */
  async reload(): Promise<void> {
    const worker = this.worker;
    if (worker === null) return;
    const next = await loadHandler(this.config.worker.handler, true);
    await worker.replaceHandler(next);
    this.log.info({ handler: this.config.worker.handler }, 'handler reloaded');
  }
}

/** Builds a node (not started). */
export async function createNode(options: NodeOptions = {}): Promise<GatewireNode> {
  const config = options.config ?? loadConfig({ values: options.values });
  const container = buildContainer(config);
  if (config.node.roles.includes('worker')) {
    const handler = options.handler ?? (await loadHandler(config.worker.handler));
    container.bind(TOKENS.Handler).toConstantValue(handler);
  }
  const authorize =
    options.authorize ?? (config.gateway.authorizer !== '' ? await loadAuthorizer(config.gateway.authorizer) : null);
  if (authorize) container.rebind(TOKENS.Authorizer).toConstantValue(authorize);
  options.configure?.(container);
  return new GatewireNode(container);
}

async function loadAuthorizer(modulePath: string): Promise<Authorizer> {
  const { pathToFileURL } = await import('node:url');
  const path = await import('node:path');
  const mod = (await import(pathToFileURL(path.resolve(modulePath)).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') {
    throw new GatewireError(
      ErrorCodes.AUTHORIZER_LOAD,
      `gateway.authorizer ${modulePath} must export a function as default`,
    );
  }
  return mod.default as Authorizer;
}

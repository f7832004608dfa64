/**
 * A gatewire node in a child process, for tests that must kill a node (SIGKILL), measure one
 * node's memory on its own, give it its own open-files budget, or read everything it prints.
 *
 * Parent side: ChildNode.start({ values, handler }) forks this file, which starts a node from the
 * JSON options in argv[2] and reports its listener URLs over IPC; the parent then calls the node's
 * push/query API, reads its state (stats) or forces a GC over IPC, and stops or kills it. Every
 * child is remembered and SIGKILLed when the parent exits, so none outlives a failed test.
 *
 * Child side (this file run as a script): config = testConfig(values) (env ignored, port 0, logs
 * silent unless values.log.level says otherwise); handler by name (see HANDLERS).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ConfigInput } from '../../src/config/load.js';
import { PendingAnswers } from './child-answers.js';

const SCRIPT = fileURLToPath(import.meta.url);

/** Handlers a child can run (functions cannot cross the process boundary). */
export type ChildHandlerName = 'quiet' | 'id' | 'login';

export interface ChildNodeOptions {
  values: ConfigInput;
  /** @default 'id' (each new client gets "id:<clientId>") */
  handler?: ChildHandlerName;
  /** e.g. ['--expose-gc'] so that gc() works over IPC */
  execArgv?: string[];
  /** extra environment of the child (NODE_ENV, …); the node's config ignores GATEWIRE_* env */
  env?: Record<string, string>;
  /** keep everything the child writes to stdout and stderr in `output` */
  captureOutput?: boolean;
  /** @default 20000 */
  startTimeoutMs?: number;
  /** shown in errors */
  label?: string;
}

/** What a child reports about itself (stats()). */
export interface ChildStats {
  pid: number;
  memory: NodeJS.MemoryUsage;
  clients: number;
  uids: number;
  groups: number;
  /** clients with a non-empty session */
  sessions: number;
  /** clients queued for a coalesced write */
  dirtyWrites: number;
  /** the most bytes waiting to be written to one client (queue + socket buffer) */
  maxBuffered: number;
  /** clients with an event chain in the worker */
  workerChains: number;
  /** cluster requests waiting for replies */
  openRequests: number;
  desiredKeys: string[];
  members: { instance: string; clients: number; uids: number; groups: number }[];
  /** process.getActiveResourcesInfo(), counted by kind (ref'd handles and timers only) */
  resources: Record<string, number>;
  /** timers (setTimeout/setInterval, unref'd ones included) neither fired nor cleared */
  timers: number;
  counters: {
    connectionsOpened: number;
    connectionsClosed: number;
    messagesIn: number;
    messagesOut: number;
    drops: Record<string, number>;
  };
  bus: Record<string, number>;
  /** the login handler: logins done */
  logins: number;
}

interface Request {
  id: number;
  type: 'api' | 'stats' | 'gc' | 'stop' | 'block';
  method?: string;
  args?: unknown[];
  /** block: ms the event loop is held */
  ms?: number;
}

type Answer = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string; code?: string };

interface Ready {
  ready: true;
  urls: string[];
  instance: string;
  nodeId: string;
  adminPort: number;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** SIGKILLs every child still running (also done when the test process exits). */
export function killAllChildNodes(): void {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  live.clear();
}

export class ChildNode {
  output = '';
  private readonly answers: PendingAnswers;
  /** resolves with how the child ended */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly label: string,
    readonly child: ChildProcess,
    readonly ready: Ready,
  ) {
    this.answers = new PendingAnswers(label, child);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        live.delete(child);
        this.answers.failAll(new Error(`${label} exited (${signal ?? `code ${code}`}) with a request pending`));
        resolve({ code, signal });
      };
      if (child.exitCode !== null || child.signalCode !== null) done(child.exitCode, child.signalCode);
      else child.once('exit', done);
    });
  }

  get urls(): string[] {
    return this.ready.urls;
  }
  get instance(): string {
    return this.ready.instance;
  }
  get nodeId(): string {
    return this.ready.nodeId;
  }
  get adminPort(): number {
    return this.ready.adminPort;
  }
  get pid(): number {
    return this.child.pid!;
  }
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The port of the first listener whose URL starts with `scheme` (and ends with protocol=…). */
  port(scheme: 'ws' | 'wss' | 'tcp' | 'tls', protocol?: 'text' | 'frame'): number {
    const url = this.urls.find(
      (u) => u.startsWith(`${scheme}://`) && (protocol === undefined || u.endsWith(`protocol=${protocol}`)),
    );
    if (url === undefined)
      throw new Error(`${this.label} has no ${scheme}:// listener${protocol ? ` with protocol=${protocol}` : ''}`);
    return Number(new URL(url).port);
  }

  url(scheme: 'ws' | 'wss'): string {
    const url = this.urls.find((u) => u.startsWith(`${scheme}://`));
    if (url === undefined) throw new Error(`${this.label} has no ${scheme}:// listener`);
    return url;
  }

  /** Calls node.api[method](...args) in the child. */
  api<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    return this.request({ type: 'api', method, args }) as Promise<T>;
  }

  stats(): Promise<ChildStats> {
    return this.request({ type: 'stats' }) as Promise<ChildStats>;
  }

  /** Runs a full GC in the child (needs execArgv ['--expose-gc']) and returns its memory then. */
  gc(): Promise<NodeJS.MemoryUsage> {
    return this.request({ type: 'gc' }) as Promise<NodeJS.MemoryUsage>;
  }

  /**
   * Holds the child's event loop for `ms` (a busy loop, as a slow handler would). Resolves once it
   * answers again; the answer is sent before the block starts being measured as over.
   */
  block(ms: number): Promise<void> {
    return this.request({ type: 'block', ms }) as Promise<void>;
  }

  /** Sends a signal without waiting (SIGSTOP, SIGCONT: a frozen process). */
  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** Kills the child with `signal` and waits until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.running) this.child.kill(signal);
    await this.exited;
  }

  /** Graceful stop (node.stop() in the child), SIGKILL if it takes longer than `timeoutMs`. */
  async stop(timeoutMs = 10000): Promise<void> {
    if (!this.running) return;
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      await this.request({ type: 'stop' }).catch(() => undefined);
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  private request(request: Omit<Request, 'id'>): Promise<unknown> {
    if (!this.running || !this.child.connected) return Promise.reject(new Error(`${this.label} is not running`));
    return this.answers.ask((id) =>
      this.child.send({ ...request, id }, (err) => {
        if (err) this.answers.fail(id, err);
      }),
    );
  }

  static start(options: ChildNodeOptions): Promise<ChildNode> {
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', killAllChildNodes);
    }
    const label = options.label ?? 'child node';
    const capture = options.captureOutput === true;
    const child = fork(SCRIPT, [JSON.stringify({ values: options.values, handler: options.handler ?? 'id' })], {
      execArgv: options.execArgv ?? [],
      stdio: capture ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...(options.env ?? {}) },
    });
    live.add(child);
    let output = '';
    if (capture) {
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    }
    const timeoutMs = options.startTimeoutMs ?? 20000;
    return new Promise((resolve, reject) => {
      const fail = (err: Error): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        reject(Object.assign(err, { output }));
      };
      const timer = setTimeout(() => fail(new Error(`${label} did not start within ${timeoutMs} ms`)), timeoutMs);
      const onExit = (code: number | null, signal: string | null): void =>
        fail(new Error(`${label} exited before it was ready (${signal ?? `code ${code}`}): ${output.slice(-2000)}`));
      const onMessage = (message: Ready | { ready: false; error: string }): void => {
        if (!('ready' in message)) return;
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (!message.ready) {
          fail(new Error(`${label} failed to start: ${message.error}`));
          return;
        }
        const node = new ChildNode(label, child, message);
        if (capture) {
          node.output = output;
          child.stdout!.on('data', (chunk: string) => (node.output += chunk));
          child.stderr!.on('data', (chunk: string) => (node.output += chunk));
        }
        resolve(node);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  }
}

// ---- the child ---------------------------------------------------------------------------

async function runChild(): Promise<void> {
  const { values, handler: handlerName } = JSON.parse(process.argv[2] ?? '{}') as {
    values: ConfigInput;
    handler: ChildHandlerName;
  };
  const send = (message: unknown): void => {
    process.send?.(message);
  };
  // The parent is gone (or disconnected): nothing may outlive it.
  process.on('disconnect', () => process.exit(0));
  trackTimers();
  try {
    const { testConfig } = await import('./nodes.js');
    const { createNode } = await import('../../src/node.js');
    const { idHandler } = await import('./fixtures.js');
    const config = testConfig(values);
    let logins = 0;
    const handlers = {
      quiet: { onMessage() {} },
      id: idHandler(),
      // "login <uid> <group> [<session value>]": bind, join, fill the session, answer "ok <uid>".
      login: {
        async onMessage(
          clientId: string,
          message: string | Uint8Array,
          ctx: import('../../src/worker/handler.js').EventContext,
        ) {
          const text = typeof message === 'string' ? message : Buffer.from(message).toString('utf8');
          const [verb, uid, group, value] = text.split(' ');
          if (verb !== 'login' || !uid || !group) return;
          await ctx.gateway.bindUid(clientId, uid);
          await ctx.gateway.joinGroup(clientId, group);
          // The session is written back when the handler returns.
          ctx.session.uid = uid;
          ctx.session.value = value ?? '';
          logins += 1;
          await ctx.gateway.sendToClient(clientId, `ok ${uid}`);
        },
      },
    };
    const node = await createNode({
      config,
      handler: config.node.roles.includes('worker') ? handlers[handlerName] : undefined,
    });
    await node.start();
    process.on('message', (request: Request) => {
      void (async (): Promise<Answer> => {
        try {
          switch (request.type) {
            case 'api': {
              const api = node.api as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
              const fn = api[request.method!];
              if (typeof fn !== 'function') throw new Error(`no API method ${request.method}`);
              const value = await fn.apply(node.api, request.args ?? []);
              return { id: request.id, ok: true, value: value ?? null };
            }
            case 'stats':
              return { id: request.id, ok: true, value: stats(node, logins) };
            case 'gc': {
              const gc = (globalThis as { gc?: () => void }).gc;
              if (gc === undefined) throw new Error('run the child with execArgv ["--expose-gc"]');
              for (let i = 0; i < 3; i++) {
                gc();
                await new Promise((resolve) => setImmediate(resolve));
              }
              return { id: request.id, ok: true, value: process.memoryUsage() };
            }
            case 'block': {
              // A handler or a GC pause holding the event loop: nothing else runs meanwhile.
              const until = Date.now() + (request.ms ?? 0);
              while (Date.now() < until);
              return { id: request.id, ok: true, value: null };
            }
            case 'stop':
              await node.stop();
              send({ id: request.id, ok: true, value: null });
              setImmediate(() => process.exit(0));
              return { id: -1, ok: true, value: null };
          }
        } catch (err) {
          return { id: request.id, ok: false, error: (err as Error).message, code: (err as { code?: string }).code };
        }
      })().then((answer) => {
        if (answer.id !== -1) send(answer);
      });
    });
    const ready: Ready = {
      ready: true,
      urls: node.urls,
      instance: node.identity.instance,
      nodeId: node.identity.id,
      adminPort: node.adminPort,
    };
    send(ready);
  } catch (err) {
    send({ ready: false, error: (err as Error).stack ?? String(err) });
    setImmediate(() => process.exit(1));
  }
}

function sizeOf(collection: unknown): number {
  if (collection instanceof Set || collection instanceof Map) return collection.size;
  if (Array.isArray(collection)) return collection.length;
  return 0;
}

/**
 * Timers made with the global setTimeout/setInterval and neither fired nor cleared yet.
 * process.getActiveResourcesInfo() does not list unref'd timers, so the child counts them itself.
 */
const activeTimers = new Set<unknown>();

function trackTimers(): void {
  const g = globalThis as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originalTimeout = g.setTimeout!;
  const originalInterval = g.setInterval!;
  const originalClearTimeout = g.clearTimeout!;
  const originalClearInterval = g.clearInterval!;
  const wrappedTimeout = (fn: unknown, ms?: unknown, ...args: unknown[]): unknown => {
    const timer = originalTimeout(
      (...a: unknown[]) => {
        activeTimers.delete(timer);
        (fn as (...x: unknown[]) => void)(...a);
      },
      ms,
      ...args,
    );
    activeTimers.add(timer);
    return timer;
  };
  Object.assign(wrappedTimeout, originalTimeout); // keeps setTimeout[util.promisify.custom]
  g.setTimeout = wrappedTimeout;
  g.setInterval = (...args: unknown[]): unknown => {
    const timer = originalInterval(...args);
    activeTimers.add(timer);
    return timer;
  };
  g.clearTimeout = (timer: unknown): unknown => {
    activeTimers.delete(timer);
    return originalClearTimeout(timer);
  };
  g.clearInterval = (timer: unknown): unknown => {
    activeTimers.delete(timer);
    return originalClearInterval(timer);
  };
}

function stats(node: import('../../src/node.js').GatewireNode, logins: number): ChildStats {
  const gateway = node.gateway;
  const registry = gateway?.registry;
  let sessions = 0;
  let maxBuffered = 0;
  for (const client of registry?.clients.values() ?? []) {
    if (Object.keys(client.session).length > 0) sessions += 1;
    maxBuffered = Math.max(maxBuffered, client.bufferedBytes);
  }
  const resources: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) resources[kind] = (resources[kind] ?? 0) + 1;
  const internals = (value: unknown): Record<string, unknown> => value as Record<string, unknown>;
  const scheduler = gateway ? internals(internals(gateway).scheduler) : null;
  return {
    pid: process.pid,
    memory: process.memoryUsage(),
    clients: registry?.size ?? 0,
    uids: registry?.uids.size ?? 0,
    groups: registry?.groups.size ?? 0,
    sessions,
    dirtyWrites: scheduler ? sizeOf(scheduler.dirty) : 0,
    maxBuffered,
    workerChains: node.worker ? (internals(node.worker).chains as Map<unknown, unknown>).size : 0,
    openRequests: (internals(node.requests).open as Map<unknown, unknown>).size,
    desiredKeys: node.bus.desiredKeys().sort(),
    members: node.membership
      .list()
      .map((m) => ({ instance: m.instance, clients: m.clients, uids: m.uids, groups: m.groups })),
    resources,
    timers: activeTimers.size,
    counters: gateway
      ? { ...gateway.counters, drops: { ...gateway.counters.drops } }
      : { connectionsOpened: 0, connectionsClosed: 0, messagesIn: 0, messagesOut: 0, drops: {} },
    bus: { ...node.bus.stats },
    logins,
  };
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  void runChild();
}

/**
 * Private broker processes for tests and benchmarks that stop, restart, reconfigure or poison a
 * broker (DESIGN §5: never the shared one). Each broker runs as a child process in the
 * foreground, on free loopback ports, with everything it writes (data, logs, config, cookie) in
 * its own temporary folder, which stop() removes.
 *
 * RabbitMQ: /usr/lib/rabbitmq/bin/rabbitmq-server is run directly; the /usr/sbin wrapper would
 * su to the rabbitmq user and drop the environment that makes the node private. The node gets
 * its own Erlang cookie (HOME), node name, AMQP and distribution ports, and its own env file, so
 * the machine's /etc/rabbitmq/rabbitmq-env.conf (which names the shared node) is not read.
 * It registers with the machine's epmd, as every Erlang node does; nothing else is shared.
 *
 * Every broker still running when the process exits is killed (also on SIGINT, SIGTERM and
 * SIGHUP), so an interrupted test leaves no broker behind.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const RABBIT_BIN = '/usr/lib/rabbitmq/bin';
/** The shared broker's distribution port and the range rabbitmqctl itself listens on. */
const RESERVED_PORTS = new Set([4369, 5672, 6379, 15672, 25672, ...Array.from({ length: 11 }, (_, i) => 35672 + i)]);

/** Every private broker process started here and not yet stopped. */
const running = new Set<{ child: ChildProcess; dir: string }>();
let hooksInstalled = false;

function killNow(entry: { child: ChildProcess; dir: string }): void {
  if (entry.child.exitCode === null && entry.child.signalCode === null) {
    // The broker runs in its own process group (the RabbitMQ script forks the Erlang VM, which
    // forks helpers): the whole group goes.
    try {
      process.kill(-entry.child.pid!, 'SIGKILL');
    } catch {
      entry.child.kill('SIGKILL');
    }
  }
  fs.rmSync(entry.dir, { recursive: true, force: true });
}

/** SIGKILLs every private broker still running and removes its folder (synchronous). */
export function killAllPrivateBrokers(): void {
  for (const entry of running) killNow(entry);
  running.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllPrivateBrokers);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllPrivateBrokers();
      process.off(signal, onSignal);
      // Nobody else handles the signal: die of it as the process would have without this hook.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function track(child: ChildProcess, dir: string): { child: ChildProcess; dir: string } {
  installHooks();
  const entry = { child, dir };
  running.add(entry);
  return entry;
}

/**
 * `count` distinct TCP ports free on 127.0.0.1 right now, none of them a port the shared brokers
 * or rabbitmqctl use. All are held open at once while choosing, so they differ.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < count) {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(server);
      const { port } = server.address() as net.AddressInfo;
      if (!RESERVED_PORTS.has(port)) ports.push(port);
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
  return ports;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tail(file: string, chars = 3000): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.slice(-chars);
  } catch {
    return '(no log)';
  }
}

function exitedPromise(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** Waits up to `ms` for the child to exit; true if it did. */
async function exitWithin(child: ChildProcess, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const done = await Promise.race([exitedPromise(child).then(() => true), timeout]);
  clearTimeout(timer);
  return done;
}

function randomTag(): string {
  return randomBytes(5).toString('hex');
}

// ---- RabbitMQ ------------------------------------------------------------------------------

export interface PrivateRabbitOptions {
  /** extra lines of rabbitmq.conf, e.g. 'max_message_size = 1048576' */
  config?: string[];
  /** ms to wait for the node to be up. @default 90000 */
  startTimeoutMs?: number;
  /**
   * Erlang cookie; nodes that are to form a cluster share one (private-rabbit-cluster.ts).
   * @default a random one, so nothing else can talk to the node
   */
  cookie?: string;
}

export class PrivateRabbit {
  /** ms from spawning the server to await_startup succeeding */
  startupMs = 0;

  private constructor(
    readonly nodeName: string,
    readonly port: number,
    readonly distPort: number,
    readonly dir: string,
    private readonly entry: { child: ChildProcess; dir: string },
  ) {}

  /** amqp://guest:guest@127.0.0.1:<port> */
  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.entry.child.exitCode === null && this.entry.child.signalCode === null;
  }

  /** The environment of the server and of rabbitmqctl for this node. */
  private static env(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    // Nothing RabbitMQ- or Erlang-specific of this process leaks in (it could name another node).
    for (const [key, value] of Object.entries(process.env)) {
      if (!/^(RABBITMQ_|ERL_)/.test(key)) env[key] = value;
    }
    return { ...env, HOME: dir, RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'), ...extra };
  }

  static async start(options: PrivateRabbitOptions = {}): Promise<PrivateRabbit> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gwt-rabbit-'));
    const nodeName = `gwt-${randomTag()}@localhost`;
    const [port, distPort] = (await freePorts(2)) as [number, number];
    // The cookie is what lets rabbitmqctl talk to this node and nothing else talk to it.
    const cookie = options.cookie ?? randomBytes(16).toString('hex').toUpperCase();
    fs.writeFileSync(path.join(dir, '.erlang.cookie'), cookie, { mode: 0o400 });
    fs.writeFileSync(
      path.join(dir, 'rabbitmq.conf'),
      [`listeners.tcp.default = 127.0.0.1:${port}`, 'loopback_users = none', ...(options.config ?? [])].join('\n') +
        '\n',
    );
    fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
    // Read instead of /etc/rabbitmq/rabbitmq-env.conf: only the local epmd, nothing else.
    fs.writeFileSync(path.join(dir, 'rabbitmq-env.conf'), 'ERL_EPMD_ADDRESS=127.0.0.1\n');
    const logFile = path.join(dir, 'server.log');
    const log = fs.openSync(logFile, 'a');
    const env = PrivateRabbit.env(dir, {
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(dir, 'log'),
      RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: path.join(dir, 'rabbitmq.pid'),
      // The distribution port on loopback only, like the AMQP listener.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    });
    const started = Date.now();
    const child = spawn(path.join(RABBIT_BIN, 'rabbitmq-server'), [], {
      cwd: dir,
      env,
      stdio: ['ignore', log, log],
      detached: true,
    });
    fs.closeSync(log);
    const entry = track(child, dir);
    const broker = new PrivateRabbit(nodeName, port, distPort, dir, entry);
    const deadline = started + (options.startTimeoutMs ?? 90_000);
    try {
      for (;;) {
        if (!broker.running) throw new Error(`exited (${child.signalCode ?? `code ${child.exitCode}`})`);
        // await_startup fails at once while the node is not reachable yet, and waits while it boots.
        const up = await broker.ctl('await_startup', '--timeout', '30').then(
          () => true,
          () => false,
        );
        if (up) break;
        if (Date.now() > deadline) throw new Error(`not up within ${options.startTimeoutMs ?? 90_000} ms`);
        await sleep(300);
      }
    } catch (err) {
      const text = `private RabbitMQ ${nodeName} on port ${port}: ${(err as Error).message}\n${tail(logFile)}`;
      killNow(entry);
      running.delete(entry);
      throw new Error(text);
    }
    broker.startupMs = Date.now() - started;
    return broker;
  }

  /** Runs rabbitmqctl -q -n <this node> ...args and returns its stdout; fails after 60 s. */
  ctl(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        path.join(RABBIT_BIN, 'rabbitmqctl'),
        ['-q', '-n', this.nodeName, ...args],
        { env: PrivateRabbit.env(this.dir), timeout: 60_000 },
        (err, stdout, stderr) => {
          if (err)
            reject(new Error(`rabbitmqctl -n ${this.nodeName} ${args.join(' ')} failed: ${err.message} ${stderr}`));
          else resolve(stdout);
        },
      );
    });
  }

  /** rabbitmqctl stop_app: the broker is gone for clients, the node stays. */
  async stopApp(): Promise<void> {
    await this.ctl('stop_app');
  }

  /**
   * rabbitmqctl start_app, then await_startup. Resolves with the time start_app returned (the
   * broker is up and listening then; await_startup only confirms it).
   */
  async startApp(): Promise<number> {
    await this.ctl('start_app');
    const at = Date.now();
    await this.ctl('await_startup', '--timeout', '60');
    return at;
  }

  /** SIGKILLs the node's whole process group (kill -9: no goodbye to its peers), keeps its folder. */
  async kill(): Promise<void> {
    const { child } = this.entry;
    if (!this.running) return;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
    await exitedPromise(child);
  }

  /** Stops the node (rabbitmqctl stop; killed if it lingers) and removes its folder. */
  async stop(): Promise<void> {
    const { child } = this.entry;
    if (this.running) {
      await this.ctl('stop').catch(() => undefined);
      if (!(await exitWithin(child, 15_000))) {
        killNow(this.entry);
        await exitedPromise(child);
      }
    }
    killNow(this.entry);
    running.delete(this.entry);
  }
}

// ---- Redis ---------------------------------------------------------------------------------

/** Sends PING over a plain socket; true on +PONG. */
function ping(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
    socket.on('error', () => done(false));
  });
}

export interface PrivateRedisOptions {
  /** extra redis-server arguments, e.g. ['--maxmemory', '10mb'] */
  args?: string[];
  /** ms to wait for PING. @default 20000 */
  startTimeoutMs?: number;
  /** the port to listen on (one from freePorts); @default a free one */
  port?: number;
}

export class PrivateRedis {
  private entry: { child: ChildProcess; dir: string } | null = null;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: PrivateRedisOptions,
  ) {}

  /** redis://127.0.0.1:<port> */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    const child = this.entry?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  static async start(options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gwt-redis-'));
    const port = options.port ?? ((await freePorts(1)) as [number])[0];
    const redis = new PrivateRedis(port, dir, options);
    try {
      await redis.launch();
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return redis;
  }

  private async launch(): Promise<void> {
    const logFile = path.join(this.dir, 'server.log');
    const log = fs.openSync(logFile, 'a');
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      this.dir,
      ...(this.options.args ?? []),
    ];
    const child = spawn('redis-server', args, { cwd: this.dir, stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    // The folder stays across restarts: stop() removes it, the exit hook too.
    this.entry = track(child, this.dir);
    const timeoutMs = this.options.startTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    while (!(await ping(this.port))) {
      if (!this.running || Date.now() > deadline) {
        const why = this.running
          ? `not answering PING within ${timeoutMs} ms`
          : `exited (${child.signalCode ?? `code ${child.exitCode}`})`;
        const text = `private Redis on port ${this.port}: ${why}\n${tail(logFile)}`;
        this.kill();
        throw new Error(text);
      }
      await sleep(50);
    }
  }

  /** Ends the server process (SIGTERM: a clean shutdown, nothing saved; SIGKILL if it lingers). */
  private async end(): Promise<void> {
    const entry = this.entry;
    if (entry === null) return;
    if (this.running) {
      entry.child.kill('SIGTERM');
      if (!(await exitWithin(entry.child, 10_000))) {
        entry.child.kill('SIGKILL');
        await exitedPromise(entry.child);
      }
    }
    running.delete(entry);
    this.entry = null;
  }

  private kill(): void {
    if (this.entry === null) return;
    if (this.running) this.entry.child.kill('SIGKILL');
    running.delete(this.entry);
    this.entry = null;
  }

  /** kill -9 of the server, its folder kept (restart() starts it again from there). */
  async kill9(): Promise<void> {
    const entry = this.entry;
    if (entry === null) return;
    if (this.running) {
      entry.child.kill('SIGKILL');
      await exitedPromise(entry.child);
    }
    running.delete(entry);
    this.entry = null;
  }

  /**
   * A broker restart: the server stops, and after `downMs` a new one starts on the same port
   * (empty). Resolves once it answers PING.
   */
  async restart(downMs = 0): Promise<void> {
    await this.end();
    if (downMs > 0) await sleep(downMs);
    await this.launch();
  }

  /** Stops the server and removes its folder. */
  async stop(): Promise<void> {
    await this.end();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

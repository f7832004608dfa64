/**
 * The supervisor: `gatewire start --gateways N --workers M` forks N gateway and M worker
 * processes on one machine (node:cluster, so the gateways share the listening ports) and keeps
 * them running.
 *   SIGHUP (`gatewire reload`):  restarts the workers one at a time: a new worker is started and
 *                                ready before the old one stops gracefully, so business code
 *                                changes while every client stays connected and no event is lost.
 *   SIGTERM/SIGINT (`gatewire stop`): stops the gateways (clients closed with 1001), then the
 *                                workers (so the close events are handled), then exits 0.
 * A child that dies unexpectedly is started again after 1 s.
 */
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { InvalidArgumentError } from '../errors.js';
import { removePidFile, writePidFile } from './pid-files.js';

type ChildRole = 'gateway' | 'worker';

interface Child {
  role: ChildRole;
  process: ClusterWorker;
  /** stopping on purpose: its exit is not a crash */
  retiring: boolean;
  ready: Promise<void>;
}

export interface SupervisorOptions {
  gateways: number;
  workers: number;
  /** the supervisor's pid file ('' : none), `{id}` already replaced */
  pidFile: string;
  /** the name the pid file and the messages give the supervisor */
  id: string;
  /** forwarded to every child */
  configFile?: string;
  /** node.shutdownTimeout of the children, ms: a child still alive past it (and a margin) is killed */
  shutdownTimeout: number;
}

/** How long after a child's own shutdown deadline the supervisor kills it (it should be gone). */
const KILL_MARGIN_MS = 2000;

export class Supervisor {
  private readonly children = new Set<Child>();
  private stopping = false;
  private reloading: Promise<void> | null = null;

  constructor(private readonly options: SupervisorOptions) {}

  async start(): Promise<void> {
    if (this.options.gateways + this.options.workers === 0)
      throw new InvalidArgumentError('--gateways and --workers start no process at all.');
    writePidFile(this.options.pidFile, this.options.id);
    process.on('SIGHUP', () => void this.reload());
    process.on('SIGTERM', () => void this.stop());
    process.on('SIGINT', () => void this.stop());
    const starting: Promise<void>[] = [];
    for (let i = 0; i < this.options.workers; i++) starting.push(this.fork('worker').ready);
    for (let i = 0; i < this.options.gateways; i++) starting.push(this.fork('gateway').ready);
    await Promise.all(starting);
    say(`cluster running: ${this.options.gateways} gateway(s), ${this.options.workers} worker(s); pid ${process.pid}`);
  }

  /** Replaces every worker process, one at a time. */
  reload(): Promise<void> {
    if (this.reloading) return this.reloading;
    this.reloading = (async () => {
      say('reloading workers one at a time');
      for (const old of [...this.children].filter((c) => c.role === 'worker')) {
        if (this.stopping) break;
        const next = this.fork('worker');
        await next.ready;
        await this.retire(old);
      }
      say('reload complete');
    })().finally(() => {
      this.reloading = null;
    });
    return this.reloading;
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    say('stopping the cluster');
    await this.reloading?.catch(() => undefined);
    const byRole = (role: ChildRole) => [...this.children].filter((c) => c.role === role);
    await Promise.all(byRole('gateway').map((c) => this.retire(c)));
    await Promise.all(byRole('worker').map((c) => this.retire(c)));
    removePidFile(this.options.pidFile);
    say('cluster stopped');
    process.exit(0);
  }

  private fork(role: ChildRole): Child {
    const env: Record<string, string> = { GATEWIRE_NODE__ROLES: role, GATEWIRE_SUPERVISED: '1' };
    if (this.options.configFile) env.GATEWIRE_SUPERVISED_CONFIG = this.options.configFile;
    const proc = cluster.fork(env);
    let markReady!: () => void;
    const child: Child = {
      role,
      process: proc,
      retiring: false,
      ready: new Promise<void>((resolve) => (markReady = resolve)),
    };
    this.children.add(child);
    proc.on('message', (message: unknown) => {
      if ((message as { type?: string })?.type === 'ready') markReady();
    });
    proc.on('error', (err) => say(`${role} ${proc.process.pid}: ${err.message}`));
    proc.on('exit', (code, signal) => {
      this.children.delete(child);
      markReady();
      if (child.retiring || this.stopping) return;
      say(`${role} ${proc.process.pid} exited unexpectedly (${signal ?? code}); starting another in 1 s`);
      setTimeout(() => {
        if (!this.stopping) this.fork(role);
      }, 1000);
    });
    return child;
  }

  /**
   * Stops a child gracefully (SIGTERM: it drains and exits 0 within node.shutdownTimeout); kills
   * it if it is still there KILL_MARGIN_MS after that.
   */
  private retire(child: Child): Promise<void> {
    child.retiring = true;
    return new Promise<void>((resolve) => {
      if (child.process.isDead()) {
        resolve();
        return;
      }
      const timer = setTimeout(
        () => child.process.process.kill('SIGKILL'),
        this.options.shutdownTimeout + KILL_MARGIN_MS,
      );
      child.process.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.process.process.kill('SIGTERM');
    });
  }
}

function say(text: string): void {
  process.stderr.write(`gatewire supervisor: ${text}\n`);
}

/**
 * `gatewire start` ends within node.shutdownTimeout after SIGTERM whatever happens to its output:
 * stdout and stderr pipes that nobody reads any more (full), pipes the reader closed, a handler
 * stuck in a synchronous write loop, a handler that never settles. And when the output is read,
 * every log line of the shutdown is there.
 *
 * Each test runs a real `gatewire start` (bin/gatewire.js) with pipes for stdout and stderr that
 * the test controls, and a third pipe (fd 3) on which the handler (test/fixtures/shutdown-handler)
 * reports that it filled the pipes and started.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { GATEWIRE_BIN } from '../helpers/processes.js';
import { freePort, waitFor } from '../helpers/nodes.js';
import { httpGet } from '../helpers/http.js';
import { tempDir } from '../helpers/config-files.js';

/** Short, so a test that waits for it stays quick; the default is 25 s. */
const SHUTDOWN_TIMEOUT = 3000;
/**
 * The deadline is measured from the SIGTERM the test sends to the exit it sees: the OS reports
 * an exit a moment after it happened, and a loaded 2-core machine may add a few hundred ms.
 */
const REPORTING_SLACK = 1000;
const HANDLER = path.resolve('dist/test/fixtures/shutdown-handler.js');

interface Started {
  child: ChildProcess;
  /** lines the handler reported on fd 3 */
  reports: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  waitForReport: (line: string) => Promise<void>;
  /** resolves once /readyz on the admin port answers 200: the node runs */
  waitForReady: () => Promise<void>;
}

/** The environment without GATEWIRE_* settings or NODE_ENV of the shell running the tests. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('GATEWIRE_') && key !== 'NODE_ENV') env[key] = value;
  }
  return { ...env, ...extra };
}

/** `gatewire start` in a temporary folder of its own, with `env` added to a clean environment. */
async function startGatewire(t: { after(fn: () => void): void }, env: Record<string, string>): Promise<Started> {
  const adminPort = await freePort();
  const settings = {
    node: { shutdownTimeout: SHUTDOWN_TIMEOUT, pidFile: '' },
    gateway: { listen: ['ws://127.0.0.1:0/ws'] },
    worker: { handler: HANDLER },
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: 'info' },
  };
  const dir = tempDir(t, 'gatewire-shutdown-');
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify(settings));
  const child = spawn(process.execPath, [GATEWIRE_BIN, 'start', '--config', config], {
    cwd: dir,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const reports: string[] = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  const fd3 = child.stdio[3] as Readable;
  fd3.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    reports.push(...lines);
    for (const w of waiters) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => {
      for (const w of waiters) w();
      resolve({ code, signal, at: Date.now() });
    }),
  );
  const waitForReport = (line: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (reports.includes(line)) {
          waiters.delete(check);
          resolve();
        } else if (child.exitCode !== null || child.signalCode !== null) {
          waiters.delete(check);
          reject(
            new Error(
              `gatewire exited (${child.signalCode ?? child.exitCode}) before reporting "${line}"; reports: ${reports.join(' | ')}`,
            ),
          );
        }
      };
      waiters.add(check);
      check();
    });
  const waitForReady = (): Promise<void> =>
    waitFor(
      async () => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`gatewire exited (${child.signalCode ?? child.exitCode}) before it was ready`);
        const status = await httpGet(`http://127.0.0.1:${adminPort}/readyz`).then(
          (r) => r.status,
          () => 0,
        );
        return status === 200;
      },
      20000,
      'gatewire to be ready (/readyz 200)',
    );
  return { child, reports, exited, waitForReport, waitForReady };
}

/** terminate(), then the exit is the one expected: a code (and no signal), or a signal. */
async function terminateWith(started: Started, expected: { code: number } | { signal: NodeJS.Signals }): Promise<void> {
  const { code, signal } = await terminate(started);
  if ('signal' in expected) {
    assert.equal(signal, expected.signal);
  } else {
    assert.equal(signal, null);
    assert.equal(code, expected.code);
  }
}

/**
 * Sends SIGTERM and waits for the exit, SIGKILLing the process (a failure) once it has clearly
 * missed its deadline, so the test ends either way.
 */
async function terminate(
  started: Started,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; elapsed: number }> {
  const sentAt = Date.now();
  started.child.kill('SIGTERM');
  const limit = SHUTDOWN_TIMEOUT + REPORTING_SLACK;
  const killer = setTimeout(() => started.child.kill('SIGKILL'), limit + 5000);
  try {
    const { code, signal, at } = await started.exited;
    const elapsed = at - sentAt;
    assert.ok(
      elapsed <= limit,
      `gatewire exited ${elapsed} ms after SIGTERM; node.shutdownTimeout is ${SHUTDOWN_TIMEOUT} ms (${signal ?? code})`,
    );
    return { code, signal, elapsed };
  } finally {
    clearTimeout(killer);
  }
}

test(
  'SIGTERM with stdout and stderr full (nobody reads them): gatewire exits within node.shutdownTimeout',
  { timeout: 60000 },
  async (t) => {
    const started = await startGatewire(t, { GATEWIRE_TEST_FILL: 'stdout,stderr' });
    // The test never reads stdout or stderr: the handler fills both pipes.
    await started.waitForReport('started');
    await started.waitForReady();
    assert.deepEqual(started.reports.slice(0, 2), ['stdout full', 'stderr full']);
    // The drain itself succeeds; only the log lines that could not be written are lost.
    await terminateWith(started, { code: 0 });
  },
);

test(
  'SIGTERM with stdout and stderr closed by the reader: gatewire exits 0 within node.shutdownTimeout',
  { timeout: 60000 },
  async (t) => {
    const started = await startGatewire(t, { GATEWIRE_TEST_FILL: 'stdout' });
    await started.waitForReady();
    started.child.stdout!.destroy();
    started.child.stderr!.destroy();
    await terminateWith(started, { code: 0 });
  },
);

test(
  'SIGTERM while onWorkerStop loops on synchronous writes to a full stdout: the process still ends at node.shutdownTimeout',
  { timeout: 60000 },
  async (t) => {
    const started = await startGatewire(t, { GATEWIRE_TEST_FILL: 'stdout,stderr', GATEWIRE_TEST_STOP: 'spin' });
    await started.waitForReady();
    // The event loop never runs again, so no code of the process can exit it: the watchdog thread
    // kills it.
    await terminateWith(started, { signal: 'SIGKILL' });
    assert.ok(started.reports.includes('stopping spin'), started.reports.join(' | '));
  },
);

test(
  'SIGTERM while onWorkerStop never settles: gatewire exits 1 within node.shutdownTimeout and says why',
  { timeout: 60000 },
  async (t) => {
    const started = await startGatewire(t, { GATEWIRE_TEST_STOP: 'hang' });
    let output = '';
    started.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    started.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    await started.waitForReady();
    await terminateWith(started, { code: 1 });
    assert.ok(started.reports.includes('stopping hang'), started.reports.join(' | '));
    assert.match(output, /"msg":"shutdown did not finish within node\.shutdownTimeout; exiting"/);
    assert.match(output, new RegExp(`"timeoutMs":${SHUTDOWN_TIMEOUT}`));
  },
);

test(
  'SIGTERM with stdout read: gatewire exits 0 and every log line of the shutdown is there, whole',
  { timeout: 60000 },
  async (t) => {
    const started = await startGatewire(t, {});
    let stdout = '';
    started.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    started.child.stderr!.resume();
    await started.waitForReady();
    await terminateWith(started, { code: 0 });
    const messages = stdout
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { msg: string }).msg);
    for (const msg of ['node started', 'shutting down', 'node stopped']) {
      assert.ok(messages.includes(msg), `stdout has "${msg}": ${messages.join(' | ')}`);
    }
    assert.equal(messages.at(-1), 'node stopped');
  },
);

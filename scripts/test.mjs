#!/usr/bin/env node
/**
 * `npm test` (after `tsc -p .`): runs the test suite and checks that it left the shared brokers
 * (RabbitMQ vhost /, Redis db 0) as it found them.
 *
 *   1. records the brokers' state: exchanges and queues, Redis keys, and the things a test must
 *      never change there (RabbitMQ users, vhosts and policies; Redis ACL users and config);
 *   2. runs `node --test` with GATEWIRE_TEST_RUN=<run id>: every broker object a test creates is
 *      named gwt-<run id>-… (uniqueName in test/helpers/nodes.ts) and deleted by the test itself;
 *   3. deletes whatever still carries this run's marker, and prints it;
 *   4. compares the state with the recorded one.
 *
 * It fails (exit 1, or the test run's own non-zero code) when the tests failed, when the tests
 * left anything of this run behind (even though step 3 removed it), when something of this run
 * could not be deleted, or when anything recorded in step 1 changed or is gone. What appeared
 * meanwhile without this run's marker belongs to other programs using the same brokers: it is
 * printed as a note, as is what was gone but could have gone on its own (a queue with x-expires
 * or auto-delete, a key with a TTL) or belonged to another test run (gwt-<other id>-).
 *
 *   npm test                                  the whole suite
 *   node scripts/test.mjs dist/test/e2e/chat.test.js     some files, with the same checks
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import { Redis } from 'ioredis';

const AMQP_URL = process.env.GATEWIRE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const REDIS_URL = process.env.GATEWIRE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SUITE = [
  'dist/test/unit',
  'dist/test/e2e',
  'dist/test/conformance',
  'dist/test/reliability',
  'dist/test/browser',
  'dist/test/clusters',
];
const NODE_TEST_ARGS = ['--test', '--test-concurrency=1', '--test-timeout=180000'];

// Letters and digits only (the helpers check it): names made from it are safe in glob patterns.
const RUN_ID = `r${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const MARKER = `gwt-${RUN_ID}-`;
const ANY_RUN = /^gwt-[a-z0-9]+-/;

function log(line) {
  process.stdout.write(`[test.mjs] ${line}\n`);
}

function rabbitmqctl(...args) {
  return new Promise((resolve, reject) => {
    execFile(
      'rabbitmqctl',
      ['-q', '--no-table-headers', ...args],
      { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`rabbitmqctl ${args.join(' ')}: ${err.message} ${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** Tab-separated rows of a rabbitmqctl listing, empty lines dropped. */
function rows(text) {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.split('\t'));
}

/**
 * The state of both brokers. Objects are maps from name to a description (what makes an
 * object "the same" for the comparison) plus whether it may go away on its own.
 */
async function snapshot() {
  const [exchangeText, queueText, userText, vhostText, policyText] = await Promise.all([
    rabbitmqctl('list_exchanges', 'name', 'type', 'durable', 'auto_delete'),
    rabbitmqctl('list_queues', 'name', 'durable', 'auto_delete', 'arguments'),
    rabbitmqctl('list_users'),
    rabbitmqctl('list_vhosts'),
    rabbitmqctl('list_policies'),
  ]);
  const exchanges = new Map();
  for (const [name, type, durable, autoDelete] of rows(exchangeText)) {
    // The default exchange has no name; it is always there.
    if (name === '') continue;
    exchanges.set(name, {
      what: `${type} durable=${durable} auto_delete=${autoDelete}`,
      mayExpire: autoDelete === 'true',
    });
  }
  const queues = new Map();
  for (const [name, durable, autoDelete, args] of rows(queueText)) {
    queues.set(name, {
      what: `durable=${durable} auto_delete=${autoDelete} ${args}`,
      mayExpire: autoDelete === 'true' || args.includes('"x-expires"'),
    });
  }
  const redis = new Redis(REDIS_URL, { connectionName: 'gwtest-wrapper', lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  const keys = new Map();
  let acl;
  let config;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
      cursor = next;
      if (batch.length === 0) continue;
      const pipeline = redis.pipeline();
      for (const key of batch) {
        pipeline.type(key);
        pipeline.pttl(key);
      }
      const answers = (await pipeline.exec()) ?? [];
      batch.forEach((key, i) => {
        const type = answers[2 * i]?.[1];
        const ttl = Number(answers[2 * i + 1]?.[1]);
        // A key that expired between SCAN and TYPE is simply not there.
        if (type !== 'none') keys.set(key, { what: String(type), mayExpire: ttl >= 0 });
      });
    } while (cursor !== '0');
    acl = (await redis.call('ACL', 'LIST')).join('\n');
    const pairs = await redis.config('GET', '*');
    const entries = [];
    for (let i = 0; i < pairs.length; i += 2) entries.push(`${pairs[i]}=${pairs[i + 1]}`);
    config = entries.sort().join('\n');
  } finally {
    redis.disconnect();
  }
  return {
    objects: { exchange: exchanges, queue: queues, 'redis key': keys },
    settings: {
      'RabbitMQ users': userText,
      'RabbitMQ vhosts': vhostText,
      'RabbitMQ policies': policyText,
      'Redis ACL users': acl,
      'Redis config': config,
    },
  };
}

/** This run's objects in a snapshot, by kind. */
function marked(state) {
  const out = {};
  for (const [kind, objects] of Object.entries(state.objects))
    out[kind] = [...objects.keys()].filter((name) => name.startsWith(MARKER)).sort();
  return out;
}

/** Deletes the given objects of this run; returns the errors by name. */
async function remove(objects) {
  const errors = [];
  if (objects.queue.length > 0 || objects.exchange.length > 0) {
    const connection = await amqp.connect(AMQP_URL);
    connection.on('error', () => undefined);
    try {
      for (const [kind, names] of [
        ['queue', objects.queue],
        ['exchange', objects.exchange],
      ]) {
        for (const name of names) {
          // A failed operation closes its channel: one channel per object.
          const channel = await connection.createChannel();
          channel.on('error', () => undefined);
          try {
            if (kind === 'queue') await channel.deleteQueue(name);
            else await channel.deleteExchange(name);
            await channel.close();
          } catch (err) {
            errors.push(`${kind} ${name}: ${err.message}`);
          }
        }
      }
    } finally {
      await connection.close().catch(() => undefined);
    }
  }
  if (objects['redis key'].length > 0) {
    const redis = new Redis(REDIS_URL, {
      connectionName: 'gwtest-wrapper',
      lazyConnect: true,
      maxRetriesPerRequest: 2,
    });
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      for (let i = 0; i < objects['redis key'].length; i += 500)
        await redis.del(...objects['redis key'].slice(i, i + 500));
    } catch (err) {
      errors.push(`redis keys: ${err.message}`);
    } finally {
      redis.disconnect();
    }
  }
  return errors;
}

function runTests(paths) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...NODE_TEST_ARGS, ...paths], {
      stdio: 'inherit',
      env: { ...process.env, GATEWIRE_TEST_RUN: RUN_ID },
    });
    // Ctrl-C reaches the test run too (same process group); this process stays to clean up.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      resolve(code ?? (signal === 'SIGINT' ? 130 : 1));
    });
  });
}

function count(objects) {
  return Object.values(objects).reduce((sum, names) => sum + names.length, 0);
}

function describe(objects) {
  return Object.entries(objects)
    .filter(([, names]) => names.length > 0)
    .map(
      ([kind, names]) =>
        `  ${names.length} ${kind}${names.length === 1 ? '' : 's'}:\n${names.map((n) => `    ${n}`).join('\n')}`,
    )
    .join('\n');
}

async function main() {
  const paths = process.argv.length > 2 ? process.argv.slice(2) : SUITE;
  const started = Date.now();
  const before = await snapshot();
  log(
    `run ${RUN_ID}: shared brokers hold ${before.objects.exchange.size} exchanges, ${before.objects.queue.size} queues, ${before.objects['redis key'].size} Redis keys`,
  );
  const testCode = await runTests(paths);
  const testSeconds = ((Date.now() - started) / 1000).toFixed(0);

  const after = await snapshot();
  const left = marked(after);
  let failed = false;
  if (count(left) > 0) {
    failed = true;
    log(
      `FAIL: the tests left ${count(left)} object(s) of this run on the shared brokers; deleting them:\n${describe(left)}`,
    );
    const errors = await remove(left);
    if (errors.length > 0) log(`could not delete:\n  ${errors.join('\n  ')}`);
  } else {
    log('the tests left nothing of this run on the shared brokers');
  }

  const final = count(left) === 0 ? after : await snapshot();
  const stillMarked = marked(final);
  if (count(stillMarked) > 0) {
    failed = true;
    log(`FAIL: still there after the cleanup:\n${describe(stillMarked)}`);
  }
  const notes = [];
  const changes = [];
  for (const [kind, objects] of Object.entries(before.objects)) {
    const now = final.objects[kind];
    for (const [name, was] of objects) {
      const is = now.get(name);
      if (is === undefined) {
        if (was.mayExpire) notes.push(`${kind} ${name} is gone (it could expire on its own)`);
        else if (ANY_RUN.test(name)) notes.push(`${kind} ${name} is gone (another test run's)`);
        else changes.push(`${kind} ${name} is gone`);
      } else if (is.what !== was.what) {
        changes.push(`${kind} ${name} changed: ${was.what} -> ${is.what}`);
      }
    }
    for (const name of now.keys()) {
      if (!objects.has(name) && !name.startsWith(MARKER))
        notes.push(`${kind} ${name} appeared meanwhile (not this run's)`);
    }
  }
  for (const [what, was] of Object.entries(before.settings)) {
    if (final.settings[what] !== was)
      changes.push(`${what} changed:\n--- before\n${was}\n--- after\n${final.settings[what]}`);
  }
  if (notes.length > 0) {
    // Other test runs can add and remove hundreds of objects meanwhile: a sample is enough.
    const shown = notes.slice(0, 20);
    const more = notes.length > shown.length ? `\n  … and ${notes.length - shown.length} more` : '';
    log(
      `note: other programs use these brokers too (${notes.length} changes not of this run):\n  ${shown.join('\n  ')}${more}`,
    );
  }
  if (changes.length > 0) {
    failed = true;
    log(`FAIL: the shared brokers differ from before the run:\n  ${changes.join('\n  ')}`);
  } else {
    log('the shared brokers are as they were before the run');
  }
  log(
    `tests ${testCode === 0 ? 'passed' : `failed (exit ${testCode})`} in ${testSeconds} s; broker check ${failed ? 'FAILED' : 'passed'}`,
  );
  if (testCode !== 0) return testCode;
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`[test.mjs] ${err.stack ?? err}\n`);
    process.exit(2);
  },
);

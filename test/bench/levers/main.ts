/**
 * `npm run bench:levers`: the direct-mode levers of issue 16, each in isolation, on a private
 * RabbitMQ 3.10 and a private Redis 7 (started and removed here), in about 3 to 5 minutes.
 * Progress on stderr; the table (medians of 3 runs, with min–max) on stdout.
 *
 *   npm run bench:levers
 *   node dist/test/bench/levers/main.js --only=redis     one broker (amqp or redis)
 */
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { amqpRows } from './amqp-levers.js';
import { redisRows } from './redis-levers.js';
import { loadAverage, table, type Row } from './measure.js';

const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const started = Date.now();
const loadBefore = loadAverage();
const rows: Row[] = [];
if (only === undefined || only === 'amqp') rows.push(...(await amqpRows()));
if (only === undefined || only === 'redis') rows.push(...(await redisRows()));
const versions = [
  `Node ${process.version}`,
  execFileSync('redis-server', ['--version']).toString().trim().split(' ').slice(0, 3).join(' '),
];
process.stdout.write(
  `Run of ${new Date(started).toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round((Date.now() - started) / 1000)} s, ` +
    `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}; ${versions.join(', ')}; ` +
    `1-minute load average ${loadBefore.split(' ')[0]} at the start, ${loadAverage().split(' ')[0]} at the end.\n` +
    'Per push (per bind or unbind in the directory rows): median of 3 runs (min–max).\n\n',
);
process.stdout.write(`${table(rows)}\n`);

/**
 * `npm run capacity`: the capacity model of docs/scaling.md.
 *
 *   npm run capacity -- --nodes 20 --connections 100000 [--bus amqp|redis] [--mode direct|fanout] …
 *       predicts from docs/bench/capacity-costs.json (see --help)
 *   npm run capacity -- --measure      re-measures the coefficients (private brokers, about 3 minutes a --repeat)
 *   npm run capacity -- --validate     a measured 3-node run in each mode against the prediction
 *
 * The measurements start their own RabbitMQ and Redis on free loopback ports and stop them after;
 * the machine's brokers are not used. They load the machine: run them alone.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAllPrivateBrokers } from '../../helpers/private-broker.js';
import { HELP, medianCosts, modesOf, parseArgs, predict, type Coefficients } from './model.js';
import { predictionTable } from './format.js';
import { killAllServers } from '../server-process.js';
import { measureAll } from './measure.js';
import { validateAll, validationTable } from './validate.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../../..');
const DEFAULT_COSTS = path.join(root, 'docs/bench/capacity-costs.json');

function log(line: string): void {
  process.stderr.write(`[capacity] ${line}\n`);
}

function readCosts(file: string | null): Coefficients {
  const at = file === null ? DEFAULT_COSTS : path.resolve(file);
  if (!fs.existsSync(at)) throw new Error(`no coefficients at ${at}: run npm run capacity -- --measure`);
  return JSON.parse(fs.readFileSync(at, 'utf8')) as Coefficients;
}

function writeJson(file: string, body: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const round = (_: string, v: unknown): unknown => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v);
  fs.writeFileSync(file, `${JSON.stringify(body, round, 2)}\n`);
}

async function main(): Promise<number> {
  let command;
  try {
    command = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`capacity: ${(err as Error).message}\n`);
    return 2;
  }
  if (command.kind === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (command.kind === 'predict') {
    const coeff = readCosts(command.costsFile);
    const predictions = modesOf(command.params).map((id) => predict(coeff, command.params, id));
    if (command.json) process.stdout.write(`${JSON.stringify({ params: command.params, predictions }, null, 2)}\n`);
    else process.stdout.write(`${predictionTable(command.params, predictions, coeff)}\n`);
    return 0;
  }
  if (command.kind === 'measure') {
    const argv = process.argv.slice(2).join(' ');
    const runs: Coefficients[] = [];
    for (let i = 0; i < command.repeat; i++) {
      if (command.repeat > 1) log(`measurement ${i + 1} of ${command.repeat}`);
      runs.push(await measureAll({ quick: command.quick, log }, `npm run capacity -- ${argv}`));
    }
    const coeff = runs.length === 1 ? runs[0]! : medianCosts(runs);
    const out = command.out === null ? DEFAULT_COSTS : path.resolve(command.out);
    writeJson(out, coeff);
    process.stdout.write(`${JSON.stringify(coeff.modes, null, 2)}\nWrote ${path.relative(process.cwd(), out)}.\n`);
    return 0;
  }
  const coeff = readCosts(command.costsFile);
  const { params, results, info } = await validateAll(coeff, command.quick, log);
  const out = path.join(root, `docs/bench/capacity-validation${command.quick ? '-quick' : ''}.json`);
  writeJson(out, {
    ...info,
    command: `npm run capacity -- ${process.argv.slice(2).join(' ')}`,
    params,
    costsDate: coeff.date,
    results,
  });
  process.stdout.write(`${validationTable(results)}\n\nWrote ${path.relative(process.cwd(), out)}.\n`);
  return 0;
}

// Every child node and private broker dies with the runner, whatever ends it.
process.on('exit', () => {
  killAllServers();
  killAllPrivateBrokers();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.on(signal, () => {
    killAllServers();
    killAllPrivateBrokers();
    process.exit(130);
  });

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`capacity failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

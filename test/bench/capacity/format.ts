/** Printing the model's predictions as a table (pure, like model.ts). */
import type { Coefficients, ModeId, Params, Prediction } from './model.js';

export function num(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '—';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function bytesPerSec(value: number): string {
  if (value >= 1e9) return `${num(value / 1e9, 2)} GB/s`;
  if (value >= 1e6) return `${num(value / 1e6, 2)} MB/s`;
  if (value >= 1e3) return `${num(value / 1e3, 1)} kB/s`;
  return `${num(value)} B/s`;
}

export function duration(ms: number): string {
  return ms >= 10000 ? `${num(ms / 1000, 1)} s` : `${num(ms)} ms`;
}

const LABEL: Record<ModeId, string> = {
  'amqp-fanout': 'amqp fanout',
  'amqp-direct': 'amqp direct',
  'redis-fanout': 'redis fanout',
  'redis-direct': 'redis direct',
};

export function modeLabel(id: ModeId): string {
  return LABEL[id];
}

/** A markdown table, one column per mode. */
export function predictionTable(params: Params, predictions: Prediction[], coeff: Coefficients): string {
  const N = params.nodes;
  const rows: [string, (p: Prediction) => string][] = [
    ['CPU of each node', (p) => `${num(p.nodeCores, 2)} cores`],
    [
      '  publish / receive / frames / heartbeats / idle',
      (p) =>
        [p.nodeParts.publish, p.nodeParts.receive, p.nodeParts.frames, p.nodeParts.heartbeats, p.nodeParts.idle]
          .map((v) => num(v, 3))
          .join(' / '),
    ],
    ['CPU of the broker', (p) => `${num(p.brokerCores, 2)} cores`],
    ['bus bandwidth, nodes → broker', (p) => bytesPerSec(p.busInBytesPerSec)],
    ['bus bandwidth, broker → nodes', (p) => bytesPerSec(p.busOutBytesPerSec)],
    ['client frames, all nodes', (p) => `${num(p.framesPerSec)}/s`],
    ['client bandwidth, each node', (p) => bytesPerSec(p.clientBytesPerSec / N)],
    ['memory (RSS) of each node', (p) => `${num(p.nodeRssMb)} MB`],
    ['broker keys of each node', (p) => num(p.keysPerNode)],
    ['log in all connections', (p) => `${duration(p.loginMs)} (${p.loginBound})`],
    ['  node CPU during the logins', (p) => `${num(p.loginNodeCores, 2)} cores`],
    ['recovery after a broker restart', (p) => duration(p.recoveryMs)],
  ];
  const head = `| ${N} nodes × ${num(params.connections)} connections | ${predictions.map((p) => modeLabel(p.mode)).join(' | ')} |`;
  const rule = `|---|${predictions.map(() => '---').join('|')}|`;
  const body = rows.map(([label, cell]) => `| ${label} | ${predictions.map(cell).join(' | ')} |`);
  const lines = [head, rule, ...body];
  const warnings = predictions.flatMap((p) => p.warnings.map((w) => `- ${modeLabel(p.mode)}: ${w}`));
  const mix = params.mix;
  const summary =
    `${num(params.pushRate)} pushes/s (uid ${mix.uid}, group ${mix.group}, all ${mix.all}), ` +
    `groups a connection: ${params.groupsPerConn} (of ${params.groupSize} members), connections a uid: ${params.connsPerUid}, ` +
    `${params.payload} B payloads, heartbeat ${params.pingInterval} s` +
    (params.loginRate === null ? '' : `, logins offered at ${num(params.loginRate)}/s`);
  const source = `coefficients of ${coeff.date.slice(0, 16).replace('T', ' ')} UTC (${String(coeff.machine.cpus)} × ${String(coeff.machine.cpuModel)}, load ${num(coeff.load.start, 1)})`;
  return [
    summary,
    '',
    ...lines,
    '',
    ...(warnings.length > 0 ? ['Limits:', ...warnings, ''] : []),
    `From ${source}.`,
  ].join('\n');
}

/**
 * Writes the results of a run: docs/bench/results.json (every raw figure, the machine, the
 * targets) and docs/bench/chart.svg (one small bar chart per figure, gatewire against Socket.IO).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fmt, type Row } from './scenarios/common.js';
import type { TargetResult } from './targets.js';

export interface RunInfo {
  startedAt: string;
  durationS: number;
  /** 1-minute load average when the run started (the machine may be shared) */
  loadAtStart: number;
  /** % of all CPU time stolen by the hypervisor over the run (null off Linux) */
  cpuStealPercent: number | null;
  command: string;
  quick: boolean;
}

export function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export function writeJson(file: string, info: RunInfo, rows: Row[], targets: TargetResult[]): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const body = {
    ...info,
    machine: machine(),
    results: rows.map(({ scenario, system, label, complete, metrics, note }) => ({
      scenario,
      system,
      label,
      complete,
      metrics,
      note,
    })),
    targets,
  };
  fs.writeFileSync(
    file,
    `${JSON.stringify(body, (_, v: unknown) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v), 2)}\n`,
  );
}

// ---- chart ----------------------------------------------------------------------------------

interface Bar {
  label: string;
  value: number;
  system: Row['system'];
}

interface Panel {
  title: string;
  unit: string;
  /** lower is better: said in the title */
  lower: boolean;
  digits: number;
  bars: Bar[];
}

const COLORS = { gatewire: '#1f6f8b', socketio: '#b0b0b0' } as const;

function panels(rows: Row[]): Panel[] {
  const ok = rows.filter((r) => r.complete);
  const bars = (scenario: string, metric: string, label: (r: Row) => string = (r) => r.label): Bar[] =>
    ok
      .filter((r) => r.scenario === scenario && r.metrics[metric] !== undefined)
      .map((r) => ({ label: label(r), value: r.metrics[metric]!, system: r.system }));
  const out: Panel[] = [
    {
      title: '1. Broadcast, one node: deliveries per second',
      unit: '/s',
      lower: false,
      digits: 0,
      bars: bars('broadcast', 'deliveriesPerSec'),
    },
    {
      title: '1. Broadcast, one node: server CPU per delivery',
      unit: ' µs',
      lower: true,
      digits: 2,
      bars: bars('broadcast', 'serverCpuUsPerDelivery'),
    },
    {
      title: '2. Broadcast across nodes: deliveries per second',
      unit: '/s',
      lower: false,
      digits: 0,
      bars: bars('crossBroadcast', 'deliveriesPerSec'),
    },
    {
      title: '3. sendToUid across nodes: pushes per second',
      unit: '/s',
      lower: false,
      digits: 0,
      bars: bars('crossPush', 'pushesPerSec'),
    },
    {
      title: '4. Idle memory: RSS per connection',
      unit: ' KB',
      lower: true,
      digits: 1,
      bars: bars('idleMemory', 'rssKbPerConnection'),
    },
    {
      title: '5. sendToUid latency at 20,000/s: p99',
      unit: ' ms',
      lower: true,
      digits: 2,
      bars: bars('latency', 'p99Ms'),
    },
  ];
  const modes = ok.filter((r) => r.scenario === 'modes');
  if (modes.length > 0) {
    const modeBars: Bar[] = [];
    for (const r of modes) {
      for (let i = 1; i <= 3; i++) {
        const v = r.metrics[`node${i}PushesConsumed`];
        if (v !== undefined)
          modeBars.push({ label: `${r.label.replace(', 3 nodes', '')}: node ${i}`, value: v, system: 'gatewire' });
      }
    }
    out.push({ title: '6. uid pushes consumed per node (3 nodes)', unit: '', lower: true, digits: 0, bars: modeBars });
  }
  out.push({
    title: '7. Reconnect storm: until all 2,000 sessions resumed',
    unit: ' ms',
    lower: true,
    digits: 0,
    bars: bars('reconnectStorm', 'resumeMs'),
  });
  return out.filter((p) => p.bars.length > 0);
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Small multiples of horizontal bars; each panel has its own linear scale starting at 0. */
export function chartSvg(rows: Row[], subtitle: string): string {
  const width = 960;
  const labelWidth = 330;
  const valueWidth = 130;
  const barArea = width - labelWidth - valueWidth - 40;
  const barHeight = 18;
  const gap = 6;
  const parts: string[] = [];
  let y = 56;
  for (const panel of panels(rows)) {
    parts.push(
      `<text x="20" y="${y}" class="title">${escape(panel.title)}${panel.lower ? ' <tspan class="hint">(lower is better)</tspan>' : ''}</text>`,
    );
    y += 12;
    const max = Math.max(...panel.bars.map((b) => b.value), 1e-9);
    for (const bar of panel.bars) {
      const w = Math.max(1, (bar.value / max) * barArea);
      parts.push(
        `<text x="${20 + labelWidth - 8}" y="${y + barHeight - 5}" class="label" text-anchor="end">${escape(bar.label)}</text>`,
      );
      parts.push(
        `<rect x="${20 + labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${COLORS[bar.system]}"/>`,
      );
      parts.push(
        `<text x="${(20 + labelWidth + w + 6).toFixed(1)}" y="${y + barHeight - 5}" class="value">${fmt(bar.value, panel.digits)}${escape(panel.unit)}</text>`,
      );
      y += barHeight + gap;
    }
    y += 26;
  }
  const height = y + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    '<style>.title{font-size:14px;font-weight:bold;fill:#222}.hint{font-weight:normal;fill:#666}.label{font-size:12px;fill:#333}.value{font-size:12px;fill:#222}.head{font-size:18px;font-weight:bold}.sub{font-size:12px;fill:#555}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    '<text x="20" y="24" class="head">gatewire vs Socket.IO 4.8</text>',
    `<text x="20" y="40" class="sub">${escape(subtitle)}</text>`,
    `<rect x="${width - 250}" y="14" width="12" height="12" fill="${COLORS.gatewire}"/><text x="${width - 232}" y="24" class="label">gatewire</text>`,
    `<rect x="${width - 150}" y="14" width="12" height="12" fill="${COLORS.socketio}"/><text x="${width - 132}" y="24" class="label">Socket.IO</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

export function writeChart(file: string, rows: Row[], subtitle: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, chartSvg(rows, subtitle));
}

export const RESULTS_START = '<!-- bench:results:start (written by npm run bench) -->';
export const RESULTS_END = '<!-- bench:results:end -->';

/**
 * Replaces the generated section of docs/benchmarks.md (between the markers) with `markdown`;
 * the rest of the page is written by hand and left alone. False if the markers are missing.
 */
export function updateDoc(file: string, markdown: string): boolean {
  if (!fs.existsSync(file)) return false;
  const text = fs.readFileSync(file, 'utf8');
  const start = text.indexOf(RESULTS_START);
  const end = text.indexOf(RESULTS_END);
  if (start < 0 || end < start) return false;
  fs.writeFileSync(file, `${text.slice(0, start + RESULTS_START.length)}\n\n${markdown}\n\n${text.slice(end)}`);
  return true;
}

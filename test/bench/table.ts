/**
 * Plain-text tables for the terminal (and, the same text, for docs/benchmarks.md).
 */
import type { Row } from './scenarios/common.js';
import type { TargetResult } from './targets.js';

export const SCENARIO_TITLES: Record<string, string> = {
  broadcast: '1. broadcast, one node (1,000 clients × 1,000 × 64 B)',
  crossBroadcast: '2. broadcast across nodes (issuer node → clients node)',
  crossPush: '3. sendToUid across nodes (2,000 uids held on one node, pushed from another)',
  idleMemory: '4. idle memory (8,000 connections)',
  latency: '5. sendToUid latency across nodes (fixed offered rate, 20,000/s unless set)',
  modes: '6. direct vs fanout, 3 nodes: uid pushes consumed per node',
  reconnectStorm: '7. reconnect storm (2,000 gatewire.v1 sessions cut at once, resumed at two gateways)',
};

function pad(text: string, width: number): string {
  const length = [...text].length;
  return length >= width ? text : text + ' '.repeat(width - length);
}

function grid(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max([...h].length, ...body.map((r) => [...(r[i] ?? '')].length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => pad(c, widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** One block per scenario: system, result, server CPU, details; notes below. */
export function resultsTable(rows: Row[]): string {
  const blocks: string[] = [];
  for (const [scenario, title] of Object.entries(SCENARIO_TITLES)) {
    const mine = rows.filter((r) => r.scenario === scenario);
    if (mine.length === 0) continue;
    const body = mine.map((r) => [r.label, r.complete ? r.result : `${r.result} (incomplete)`, r.cpu, r.detail]);
    const notes = mine.filter((r) => r.note !== undefined).map((r) => `  note (${r.label}): ${r.note}`);
    blocks.push([title, grid(['system', 'result', 'server CPU', 'details'], body), ...notes].join('\n'));
  }
  return blocks.join('\n\n');
}

export function targetsTable(targets: TargetResult[]): string {
  const verdict = (met: boolean | null): string => (met === null ? 'not measured' : met ? 'met' : 'MISSED');
  return grid(
    ['target (issue 6)', 'figure', 'verdict'],
    targets.map((t) => [t.target, t.figure, verdict(t.met)]),
  );
}

function mdEscape(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function mdTable(header: string[], body: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...body.map((r) => `| ${r.map(mdEscape).join(' | ')} |`),
  ].join('\n');
}

/** The results and the targets as Markdown (the generated part of docs/benchmarks.md). */
export function markdownResults(rows: Row[], targets: TargetResult[], heading: string): string {
  const parts: string[] = [heading];
  for (const [scenario, title] of Object.entries(SCENARIO_TITLES)) {
    const mine = rows.filter((r) => r.scenario === scenario);
    if (mine.length === 0) continue;
    parts.push(`**${title}**`);
    parts.push(
      mdTable(
        ['system', 'result', 'server CPU', 'details'],
        mine.map((r) => [
          r.label,
          r.complete ? r.result : `${r.result} (incomplete)`,
          r.cpu,
          r.detail + (r.note ? ` — ${r.note}` : ''),
        ]),
      ),
    );
  }
  const verdict = (met: boolean | null): string => (met === null ? 'not measured' : met ? '**met**' : '**missed**');
  parts.push('**Targets of issue 6**');
  parts.push(
    mdTable(
      ['target', 'figure', 'verdict'],
      targets.map((t) => [t.target, t.figure, verdict(t.met)]),
    ),
  );
  return parts.join('\n\n');
}

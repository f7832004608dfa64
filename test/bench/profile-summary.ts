/**
 * Reads V8 CPU profiles (`--cpu-prof`, as `npm run bench -- --profile=DIR` writes them) and
 * prints where the time went: self time per function and inclusive time per function.
 *
 *   node dist/test/bench/profile-summary.js DIR/*.cpuprofile [--top=30]
 */
import fs from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url === '' ? '' : ` ${path.basename(url.replace(/^file:\/\//, ''))}:${lineNumber + 1}`;
  return `${functionName === '' ? '(anonymous)' : functionName}${file}`;
}

function summarize(file: string, top: number): string {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfTime = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...selfTime.values()].reduce((a, b) => a + b, 0);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfTime) {
    const name = frameName(byId.get(id)!);
    self.set(name, (self.get(name) ?? 0) + us);
    // Each function on the stack gets the sample once (recursion counted once).
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = frameName(byId.get(cur)!);
      if (seen.has(n)) continue;
      seen.add(n);
      inclusive.set(n, (inclusive.get(n) ?? 0) + us);
    }
  }
  const list = (map: Map<string, number>): string =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(
        ([name, us]) =>
          `  ${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`,
      )
      .join('\n');
  return [
    `${file}: ${(total / 1000).toFixed(0)} ms sampled`,
    'self time:',
    list(self),
    'inclusive time:',
    list(inclusive),
  ].join('\n');
}

const args = process.argv.slice(2);
const top = Number(args.find((a) => a.startsWith('--top='))?.slice(6) ?? 30);
for (const file of args.filter((a) => !a.startsWith('--'))) process.stdout.write(`${summarize(file, top)}\n\n`);

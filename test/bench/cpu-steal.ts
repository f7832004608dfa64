/**
 * CPU steal: the share of this machine's CPU time that the hypervisor gave to other guests
 * (the `steal` column of /proc/stat). On a shared virtual machine it moves tail latency more than
 * most changes under test: on 2026-12-07 here, one build's 20,000/s latency run gave a p99 of
 * 55-66 ms with 15-36 % of the CPU stolen, and 11-30 ms with none. Each latency row and the run's
 * heading carry it, so that figures from different runs can be compared.
 * Off Linux there is no /proc/stat and every reading is null.
 */
import fs from 'node:fs';

/** Cumulative CPU time of every core, in clock ticks. */
export interface CpuTimes {
  steal: number;
  total: number;
}

export function cpuTimes(): CpuTimes | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) return null;
  // user nice system idle iowait irq softirq steal guest guest_nice: guest time is already in user.
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 8 || fields.some((n) => !Number.isFinite(n))) return null;
  return { steal: fields[7]!, total: fields.reduce((a, b) => a + b, 0) };
}

/** Steal between two readings, in % of all CPU time in between (null when unknown). */
export function stealPercent(before: CpuTimes | null, after: CpuTimes | null): number | null {
  if (before === null || after === null) return null;
  const total = after.total - before.total;
  if (total <= 0) return null;
  return Math.round(((after.steal - before.steal) / total) * 1000) / 10;
}

/** "CPU steal 12.5 %" or "CPU steal unknown" for a table's detail column. */
export function stealText(percent: number | null): string {
  return percent === null ? 'CPU steal unknown' : `CPU steal ${percent} %`;
}

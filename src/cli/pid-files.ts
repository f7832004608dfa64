/**
 * Pid files: where `gatewire start` records its process id and how `gatewire stop` and
 * `gatewire reload` find it again.
 *
 * node.pidFile is a path in which `{id}` stands for the node id (default `.gatewire/{id}.pid`):
 * every node started from one folder has a file of its own, so two nodes never overwrite or
 * delete each other's. A path without `{id}` names one file (as --pid-file does). A file whose
 * process is gone is stale: it is deleted when found.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCodes, GatewireError } from '../errors.js';
import { UsageError } from './cli-output.js';

const ID_PLACEHOLDER = '{id}';

export interface RunningNode {
  id: string;
  pid: number;
  file: string;
}

/** The pid file of node `id` under the pattern `pattern` ('' : none). */
export function pidFileFor(pattern: string, id: string): string {
  return pattern.split(ID_PLACEHOLDER).join(id);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, it belongs to someone else
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid in a pid file, or null when there is none (or it holds no process id). */
function readPid(file: string): number | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** The node recorded in `file` if its process runs; a stale file is deleted. */
function running(file: string, id: string): RunningNode | null {
  const pid = readPid(file);
  if (pid !== null && alive(pid)) return { id, pid, file };
  if (fs.existsSync(file)) fs.rmSync(file, { force: true });
  return null;
}

/**
 * Records this process in `file`; refuses (UsageError) when a live process is recorded there:
 * a second node with the same id from the same folder.
 */
export function writePidFile(file: string, id: string): void {
  if (file === '') return;
  const other = running(file, id);
  if (other !== null && other.pid !== process.pid)
    throw new UsageError(
      `node ${id} already runs from this folder (pid ${other.pid}, ${file}); give this one another node.id or --pid-file.`,
    );
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${process.pid}\n`);
}

/** Deletes `file` if it still records this process (another may have taken the name since). */
export function removePidFile(file: string): void {
  if (file === '' || readPid(file) !== process.pid) return;
  fs.rmSync(file, { force: true });
}

/** Every live node recorded under `pattern`, stale files deleted on the way. */
export function runningNodes(pattern: string): RunningNode[] {
  if (!pattern.includes(ID_PLACEHOLDER)) {
    const one = running(pattern, path.basename(pattern));
    return one === null ? [] : [one];
  }
  const dir = path.dirname(pattern);
  const [before, after] = path.basename(pattern).split(ID_PLACEHOLDER, 2) as [string, string];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const found: RunningNode[] = [];
  for (const name of names.sort()) {
    if (name.length <= before.length + after.length || !name.startsWith(before) || !name.endsWith(after)) continue;
    const id = name.slice(before.length, name.length - after.length);
    const node = running(path.join(dir, name), id);
    if (node !== null) found.push(node);
  }
  return found;
}

export interface Selection {
  /** --pid-file: this file, whatever node.pidFile says */
  pidFile?: string;
  /** --node ID */
  node?: string;
  /** --all */
  all?: boolean;
}

function listed(nodes: RunningNode[]): string {
  return nodes.map((n) => `${n.id} (pid ${n.pid})`).join(', ');
}

/**
 * The nodes `gatewire stop` or `reload` acts on: the one named, every one (--all), or the only
 * one running. Errors: none runs (GW_ERR_NOT_RUNNING), several run and none was chosen, the
 * one named does not run (UsageError, exit 2, naming the running ones).
 */
export function selectNodes(pattern: string, selection: Selection): RunningNode[] {
  if (selection.node !== undefined && selection.all)
    throw new UsageError('--node and --all exclude each other: name one node, or all of them.');
  if (selection.pidFile !== undefined) {
    const one = running(selection.pidFile, path.basename(selection.pidFile));
    if (one === null)
      throw new GatewireError(
        ErrorCodes.NOT_RUNNING,
        `no running gatewire process is recorded in ${selection.pidFile}.`,
      );
    return [one];
  }
  if (selection.node !== undefined) {
    if (!pattern.includes(ID_PLACEHOLDER))
      throw new UsageError(`node.pidFile (${pattern}) records one process, not one per node: --node does not apply.`);
    const one = running(pidFileFor(pattern, selection.node), selection.node);
    if (one !== null) return [one];
    const others = runningNodes(pattern);
    throw new UsageError(
      `node ${selection.node} does not run from this folder; ${others.length > 0 ? `running: ${listed(others)}.` : 'no node does.'}`,
    );
  }
  const nodes = runningNodes(pattern);
  if (nodes.length === 0)
    throw new GatewireError(
      ErrorCodes.NOT_RUNNING,
      `no gatewire node runs from this folder (no live pid file matches ${pattern}); started elsewhere? (--pid-file FILE)`,
    );
  if (nodes.length > 1 && !selection.all)
    throw new UsageError(
      `${nodes.length} nodes run from this folder: ${listed(nodes)}; choose one with --node ID, or --all for every one.`,
    );
  return nodes;
}

#!/usr/bin/env node
/**
 * `npm start`: the chat example (examples/chat/config.json), built first only when needed.
 *
 * The build (`tsc -p .`) runs when a .ts file of src/ or examples/ has no compiled .js in dist/,
 * or one newer than it; two `npm start` at once build once (a lock folder, dist/.build-lock; the
 * other waits for it and checks again). Then the node runs in this process; it prints the page
 * address (`gatewire: page at http://…/`) once it listens. Arguments after `npm start --` go to
 * `gatewire start` (e.g. `npm start -- --role gateway`).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LOCK = path.join(root, 'dist', '.build-lock');
/** A lock older than this belongs to a build that died: it is taken over. */
const STALE_LOCK_MS = 120_000;

function* sources(dir) {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(file);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) yield file;
  }
}

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** The first source whose compiled file is missing or older, or null when dist/ is up to date. */
function outdated() {
  for (const dir of ['src', 'examples']) {
    for (const source of sources(path.join(root, dir))) {
      const relative = path.relative(root, source).replace(/\.ts$/, '.js');
      if (mtime(path.join(root, 'dist', relative)) < mtime(source)) return path.relative(root, source);
    }
  }
  return null;
}

function build(reason) {
  process.stderr.write(`npm start: building (${reason} changed)\n`);
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', root], { stdio: 'inherit', cwd: root });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

async function buildIfNeeded() {
  fs.mkdirSync(path.dirname(LOCK), { recursive: true });
  for (;;) {
    const reason = outdated();
    if (reason === null) return;
    try {
      fs.mkdirSync(LOCK);
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      // Another start builds: wait for it, then look again.
      if (Date.now() - mtime(LOCK) > STALE_LOCK_MS) fs.rmSync(LOCK, { recursive: true, force: true });
      else await new Promise((resolve) => setTimeout(resolve, 200));
      continue;
    }
    try {
      if (outdated() !== null) build(reason);
    } finally {
      fs.rmSync(LOCK, { recursive: true, force: true });
    }
    return;
  }
}

await buildIfNeeded();
process.chdir(root);
process.argv.splice(2, Infinity, 'start', '--config', 'examples/chat/config.json', ...process.argv.slice(2));
await import('../bin/gatewire.js');

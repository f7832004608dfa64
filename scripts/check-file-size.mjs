// Fails when a source file in src/ is longer than the limit (default 400 lines, as formatted by
// prettier: `npm run lint:format` checks that formatting). A longer file holds more than one role:
// split it along its seams (docs/architecture.md).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const LIMIT = Number(process.env.GATEWIRE_MAX_FILE_LINES ?? 400);

function* sources(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts')) yield path;
  }
}

const long = [];
for (const path of sources('src')) {
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
  if (lines > LIMIT) long.push(`${path}: ${lines} lines`);
}
if (long.length > 0) {
  console.error(`files in src/ over ${LIMIT} lines (split them along their seams):\n  ${long.join('\n  ')}`);
  process.exit(1);
}
console.log(`✔ every file in src/ has at most ${LIMIT} lines`);

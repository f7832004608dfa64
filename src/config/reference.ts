/**
 * The configuration reference as a Markdown table, made from the schema. README.md carries it
 * between `<!-- config:start -->` and `<!-- config:end -->`; a test keeps the two equal and
 * `npm run docs:config` rewrites it.
 */
import { describeConfig } from './load.js';
import { InvalidArgumentError } from '../errors.js';

export const CONFIG_START = '<!-- config:start -->';
export const CONFIG_END = '<!-- config:end -->';

function showDefault(value: unknown, sensitive: boolean): string {
  if (sensitive && value !== '') return '(secret)';
  if (Array.isArray(value)) return value.length === 0 ? '' : `\`${value.join(',')}\``;
  if (value === '') return '';
  return `\`${String(value)}\``;
}

export function renderConfigTable(): string {
  const rows = describeConfig().map(
    (row) =>
      `| \`${row.key}\` | \`${row.env}\` | ${showDefault(row.default, row.sensitive)} | ${row.doc.replace(/\|/g, '\\|')}${row.sensitive ? ' Sensitive: never logged.' : ''} |`,
  );
  return ['| key | env | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/** Replaces the table between the markers in a README text. */
export function withConfigTable(readme: string): string {
  const start = readme.indexOf(CONFIG_START);
  const end = readme.indexOf(CONFIG_END);
  if (start === -1 || end === -1 || end < start) throw new InvalidArgumentError('README has no config markers');
  return `${readme.slice(0, start + CONFIG_START.length)}\n${renderConfigTable()}\n${readme.slice(end)}`;
}

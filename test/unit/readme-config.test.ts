import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { withConfigTable } from '../../src/config/reference.js';
import { describeConfig } from '../../src/config/load.js';

test('README configuration table matches the schema (npm run docs:config rewrites it)', () => {
  const readme = fs.readFileSync('README.md', 'utf8');
  assert.equal(readme, withConfigTable(readme));
});

test('every configuration key has doc, env in GATEWIRE_SECTION__KEY form, and a default', () => {
  for (const row of describeConfig()) {
    assert.ok(row.doc.length > 10, `${row.key} has a doc`);
    const expected = `GATEWIRE_${row.key
      .split('.')
      .map((part) => part.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
      .join('__')}`;
    assert.equal(row.env, expected, `${row.key} env name`);
    assert.notEqual(row.default, undefined, `${row.key} has a default`);
  }
});

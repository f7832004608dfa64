/**
 * Errors in configuration files name the file: a JSON syntax error with its line and column, a
 * file that cannot be read, a file that holds no JSON object, and the unknown keys and bad values
 * a file brings (errors from env or code name no file).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configError, tempDir as tempFolder } from '../helpers/config-files.js';
import { loadConfig } from '../../src/config/load.js';
import { GatewireError } from '../../src/errors.js';

function writeFile(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

/** Loads one file holding `text`; returns the error's message, asserting that it names the file. */
function errorOfFile(t: TestContext, name: string, text: string): string {
  const file = writeFile(tempFolder(t, 'gatewire-config-files-'), name, text);
  const { message } = configError(() => loadConfig({ env: {}, files: [file] }));
  assert.ok(message.includes(file), message);
  return message;
}

test('a JSON syntax error names the file, the line and the column', (t) => {
  // The "5" after a missing colon is the first character JSON.parse cannot take: line 3, column 20.
  const message = errorOfFile(t, 'broken.json', '{\n  "gateway": {\n    "pingInterval" 5\n  }\n}\n');
  assert.match(message, /JSON syntax error at line 3, column 20/);
});

test('a JSON syntax error on a CRLF line, and after a multi-byte character, is placed right', (t) => {
  // Line 2 holds "é" (one character, two bytes); the stray "}" after the comma is column 1 of line 3.
  assert.match(
    errorOfFile(t, 'crlf.json', '{\r\n  "gateway": { "pingData": "é" },\r\n}\r\n'),
    /JSON syntax error at line 3, column 1/,
  );
});

test('a truncated file, and an empty one, are placed at their end', (t) => {
  assert.match(
    errorOfFile(t, 'truncated.json', '{\n  "log": { "level": "debug" }\n'),
    /JSON syntax error at line 3, column 1/,
  );
  assert.match(errorOfFile(t, 'empty.json', ''), /JSON syntax error at line 1, column 1/);
});

test('config/<NODE_ENV>.json with a syntax error names that file', (t) => {
  const dir = tempFolder(t, 'gatewire-config-files-');
  const overlay = writeFile(dir, 'staging.json', '{ "log": { "level": "debug", } }');
  const err = configError(() => loadConfig({ env: { NODE_ENV: 'staging' }, configDir: dir }));
  assert.ok(err.message.includes(overlay), err.message);
  assert.match(err.message, /line 1, column 30/);
});

test('a file that holds no JSON object, or cannot be read, is named', (t) => {
  assert.match(errorOfFile(t, 'list.json', '[1, 2]'), /JSON object/);

  const dir = tempFolder(t, 'gatewire-config-files-');

  const folder = path.join(dir, 'folder.json');
  fs.mkdirSync(folder);
  const unreadable = configError(() => loadConfig({ env: {}, files: [folder] }));
  assert.ok(unreadable.message.includes(folder), unreadable.message);
  assert.match(unreadable.message, /cannot be read/);
});

test('unknown keys and bad values from a file name the file; those from env name none', (t) => {
  const dir = tempFolder(t, 'gatewire-config-files-');
  const first = writeFile(dir, 'first.json', JSON.stringify({ gatway: { pingInterval: 1 } }));
  const second = writeFile(dir, 'second.json', JSON.stringify({ gateway: { maxPayload: 0 } }));
  const err = configError(() => loadConfig({ env: { GATEWIRE_BUS__KIND: 'nosuch' }, files: [first, second] }));
  const lines = err.message.split('\n');
  const line = (text: string): string => {
    const found = lines.find((l) => l.includes(text));
    assert.ok(found !== undefined, `the error names ${text}: ${err.message}`);
    return found;
  };
  assert.ok(line("'gatway.pingInterval'").includes(first), err.message);
  assert.equal(line("'gatway.pingInterval'").includes(second), false, err.message);
  assert.ok(line('gateway.maxPayload').includes(second), err.message);
  assert.equal(line('gateway.maxPayload').includes(first), false, err.message);
  assert.equal(line('bus.kind').includes('.json'), false, err.message);
});

test('a good file still loads', (t) => {
  const dir = tempFolder(t, 'gatewire-config-files-');
  const file = writeFile(dir, 'good.json', '\uFEFF{ "gateway": { "pingInterval": 4 } }');
  assert.equal(loadConfig({ env: {}, files: [file] }).gateway.pingInterval, 4);
});

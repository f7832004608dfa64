/** Helpers of the configuration unit tests: a refusal's error, and a temporary folder per test. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GatewireError } from '../../src/errors.js';

/** The GW_ERR_INVALID_CONFIG error `run` throws (fails the test if it throws nothing else). */
export function configError(run: () => unknown): GatewireError {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof GatewireError, `expected a GatewireError, got ${String(err)}`);
    assert.equal(err.code, 'GW_ERR_INVALID_CONFIG');
    return err;
  }
  assert.fail('expected the configuration to be refused');
}

/** A folder removed after the test. */
export function tempDir(t: { after(fn: () => void): void }, prefix = 'gatewire-config-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

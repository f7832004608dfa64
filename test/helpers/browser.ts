/**
 * Real headless Chromium for browser tests: Debian's `chromium` package at /usr/bin/chromium,
 * driven by playwright-core (whose own browser download is not used). Missing Chromium fails the
 * test with what to install; it is never skipped (.ci/run installs it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.GATEWIRE_TEST_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Chromium {
  context: BrowserContext;
  /** the fresh profile folder (--user-data-dir), deleted by close() */
  userDataDir: string;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Launches Chromium with a fresh profile. Playwright refuses --user-data-dir among the args and
 * takes it as launchPersistentContext's folder instead: the same flag on Chromium's command line.
 */
export async function launchChromium(): Promise<Chromium> {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is missing at ${CHROMIUM_PATH}: the browser tests need Debian's chromium package ` +
        '(apt-get update && apt-get install -y --no-install-recommends chromium; .ci/run does it), ' +
        'or GATEWIRE_TEST_CHROMIUM=<path of a Chromium binary>',
    );
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gwt-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: ARGS,
      viewport: { width: 720, height: 720 },
      timeout: 60_000,
    });
  } catch (err) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    context,
    userDataDir,
    newPage: () => context.newPage(),
    async close() {
      await context.close().catch(() => undefined);
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The chat page (examples/chat/public/index.html) in real headless Chromium: two pages chat
 * through one node, each page behind its own TCP proxy (page and WebSocket share the port). One
 * page's connection is cut without a close frame and its proxy refuses connections for a while;
 * both pages keep typing. After the proxy is back, the page resumes its session: every line the
 * other page sent meanwhile and every line it typed meanwhile shows up once, in order, in both
 * pages. A screenshot of both pages at the end goes to a temp folder (t.diagnostic prints it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import chat from '../../examples/chat/handler.js';
import { sleep, startNode, wsUrl } from '../helpers/nodes.js';
import { BrokerProxy } from '../helpers/amqp.js';
import { launchChromium, type Chromium } from '../helpers/browser.js';

const PUBLIC_DIR = fileURLToPath(new URL('../../../examples/chat/public', import.meta.url));

interface Status {
  state: string;
  clientId: string;
  text: string;
}

async function status(page: Page): Promise<Status> {
  const element = page.locator('#status');
  return {
    state: (await element.getAttribute('data-state')) ?? '',
    clientId: (await element.getAttribute('data-client-id')) ?? '',
    text: (await element.textContent()) ?? '',
  };
}

/** Polls the page's status until `check` holds; returns it. */
async function waitStatus(page: Page, check: (s: Status) => boolean, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await status(page);
    if (check(now)) return now;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; status is ${JSON.stringify(now)}`);
    await sleep(50);
  }
}

function lines(page: Page): Promise<string[]> {
  return page.locator('#log div').allTextContents();
}

/** Waits until the page shows `line` (and returns every line then). */
async function waitLine(page: Page, line: string, timeoutMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await lines(page);
    if (now.includes(line)) return now;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${JSON.stringify(line)}; the page shows ${JSON.stringify(now)}`);
    await sleep(50);
  }
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

test(
  'chat page in Chromium: a cut connection resumes, no line lost or doubled, in order',
  { timeout: 120_000 },
  async (t) => {
    // shutdownTimeout: a stop waits that long (less a margin) for sessions still open to move.
    const node = await startNode(
      { gateway: { listen: ['ws://127.0.0.1:0/ws'], staticDir: PUBLIC_DIR }, node: { shutdownTimeout: 3000 } },
      { handler: chat },
    );
    const target = { host: '127.0.0.1', port: Number(new URL(wsUrl(node)).port) };
    const proxyA = new BrokerProxy(target);
    const proxyB = new BrokerProxy(target);
    let browser: Chromium | null = null;
    t.after(async () => {
      await browser?.close();
      await proxyA.close();
      await proxyB.close();
      await node.stop();
    });
    await proxyA.start();
    await proxyB.start();
    browser = await launchChromium();
    const a = await browser.newPage();
    const b = await browser.newPage();
    const pageErrors: string[] = [];
    for (const page of [a, b]) page.on('pageerror', (err) => pageErrors.push(String(err)));

    await a.goto(`http://127.0.0.1:${proxyA.port}/`);
    const idA = (await waitStatus(a, (s) => s.state === 'open', 'page A connected')).clientId;
    assert.equal((await status(a)).text, `connected as ${idA}`);
    await waitLine(a, `${idA} login`);
    await b.goto(`http://127.0.0.1:${proxyB.port}/`);
    const idB = (await waitStatus(b, (s) => s.state === 'open', 'page B connected')).clientId;
    assert.notEqual(idA, idB);
    await waitLine(a, `${idB} login`);
    await waitLine(b, `${idB} login`);

    await say(a, 'a1 before the cut');
    await waitLine(b, `${idA} said a1 before the cut`);
    await say(b, 'b1 before the cut');
    await waitLine(a, `${idB} said b1 before the cut`);

    // Cut page A's connection (no close frame) and refuse its reconnects.
    const cutAt = Date.now();
    await proxyA.cut();
    await waitStatus(a, (s) => s.state === 'reconnecting', 'page A reconnecting');
    await say(b, 'b2 while A is cut');
    await say(a, 'a2 typed while cut');
    await say(b, 'b3 while A is cut');
    await say(a, 'a3 typed while cut');
    await waitLine(b, `${idB} said b3 while A is cut`);
    await sleep(1500); // let A retry against the refusing proxy a few times
    const during = await status(a);
    assert.equal(during.state, 'reconnecting');
    assert.match(during.text, /^reconnecting \(attempt \d+\)/);
    const bDuring = await lines(b);
    assert.ok(!bDuring.some((line) => line.startsWith(`${idA} said a2`)), 'A queues what it types while cut');
    assert.ok(!(await lines(a)).some((line) => line.includes('b2 while A is cut')), 'A missed b2 while cut');

    const restoredAt = Date.now();
    await proxyA.restore();
    const resumed = await waitStatus(a, (s) => s.state === 'open', 'page A resumed');
    const resumedAt = Date.now();
    assert.equal(resumed.clientId, idA, 'a resume at the same gateway keeps the clientId');
    assert.equal(resumed.text, `resumed as ${idA}`);

    // What A typed while cut goes out after the resume's welcome; B waits for it to be said,
    // since lines of two pages reach the server in no order of their own.
    await waitLine(b, `${idA} said a3 typed while cut`);
    await say(b, 'b4 after the resume');
    const said = [
      `${idA} said a1 before the cut`,
      `${idB} said b1 before the cut`,
      `${idB} said b2 while A is cut`,
      `${idB} said b3 while A is cut`,
      `${idA} said a2 typed while cut`,
      `${idA} said a3 typed while cut`,
      `${idB} said b4 after the resume`,
    ];
    const last = said[said.length - 1]!;
    const finalA = await waitLine(a, last);
    const finalB = await waitLine(b, last);
    await sleep(300); // anything doubled would show up by now
    assert.deepEqual(await lines(a), finalA, 'page A shows nothing after the last line');
    assert.deepEqual(await lines(b), finalB, 'page B shows nothing after the last line');
    assert.deepEqual(finalA, [`Hello ${idA}`, `${idA} login`, `${idB} login`, ...said]);
    assert.deepEqual(finalB, [`Hello ${idB}`, `${idB} login`, ...said]);
    assert.deepEqual(pageErrors, [], 'no uncaught error in the pages');

    // Both pages side by side in one PNG.
    const shots = [await a.screenshot(), await b.screenshot()];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gwt-chat-screenshot-'));
    const file = path.join(dir, 'chat-two-pages.png');
    const board = await browser.newPage();
    await board.setViewportSize({ width: 1460, height: 740 });
    await board.setContent(
      `<body style="margin:0;display:flex;gap:20px;background:#444">${shots
        .map((png) => `<img src="data:image/png;base64,${png.toString('base64')}" style="width:720px">`)
        .join('')}</body>`,
    );
    await board.screenshot({ path: file });

    // Leaving a page ends its session at once (pagehide closes the client): a logout, not a resume.
    const leftAt = Date.now();
    await b.goto('about:blank');
    await waitLine(a, `${idB} logout`);
    const logoutMs = Date.now() - leftAt;
    await a.goto('about:blank');

    t.diagnostic(`page A ${idA} via proxy :${proxyA.port}, page B ${idB} via proxy :${proxyB.port}`);
    t.diagnostic(
      `A cut for ${restoredAt - cutAt} ms (status then: "${during.text}"), resumed ${resumedAt - restoredAt} ms after the proxy was back; proxy A accepted ${proxyA.accepted} connections`,
    );
    t.diagnostic(
      `lines: page A ${finalA.length}, page B ${finalB.length}; 2 typed in A while cut, 2 sent by B meanwhile`,
    );
    t.diagnostic(`page B left: A showed its logout after ${logoutMs} ms`);
    t.diagnostic(`screenshot: ${file}`);
  },
);

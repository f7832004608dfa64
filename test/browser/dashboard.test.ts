/**
 * The admin dashboard (admin.listen, /) in real headless Chromium: two nodes on RabbitMQ, the
 * first with an admin server and admin.token. Without the token the page shows the token form
 * and no data (its /api/ requests get 401); with it, it shows both nodes with their client, uid
 * and group counts, this node's rates after pushes (and their chart), and the error a handler
 * that throws logged. "forget token" hides the data again. A screenshot goes to a temp folder
 * (t.diagnostic prints it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { mergeValues, sleep, startNode, waitForMembership } from '../helpers/nodes.js';
import { amqpValues } from '../helpers/amqp.js';
import { amqpFixture, connectWs, idHandler } from '../helpers/fixtures.js';
import { launchChromium, type Chromium } from '../helpers/browser.js';

const TOKEN = 'dash-Tk3n.9_~+/x=';

/** Polls `read` on the page until `check` holds; returns the last value read. */
async function waitPage<T>(read: () => Promise<T>, check: (v: T) => boolean, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; the page shows ${JSON.stringify(value)}`);
    await sleep(100);
  }
}

const status = (page: Page) => page.locator('#status').getAttribute('data-state');

/** The node rows: instance -> { clients, uids, groups, roles, state } as the page shows them. */
async function nodeRows(page: Page): Promise<Record<string, Record<string, string>>> {
  return page.$$eval('#nodes tr', (rows) =>
    Object.fromEntries(
      rows.map((row) => {
        const cell = (name: string) => row.querySelector(`td.${name}`)?.textContent ?? '';
        const fields = ['id', 'roles', 'address', 'clients', 'uids', 'groups', 'uptime', 'state'];
        return [row.getAttribute('data-instance') ?? '', Object.fromEntries(fields.map((f) => [f, cell(f)]))];
      }),
    ),
  );
}

const rate = (page: Page, name: string, column: 'now' | 'peak' | 'total') =>
  page
    .locator(`#rates tr[data-rate="${name}"] td.${column}`)
    .textContent()
    .then((text) => Number(text ?? 'NaN'));

test('admin dashboard in Chromium: nodes, rates and warnings, behind admin.token', { timeout: 120_000 }, async (t) => {
  let browser: Chromium | null = null;
  t.after(() => browser?.close());
  const { opened, prefix } = amqpFixture(t, 'dash');
  const handler = idHandler({
    async onConnect(clientId, ctx) {
      await ctx.gateway.bindUid(clientId, `user-${clientId.slice(-4)}`);
      await ctx.gateway.joinGroup(clientId, 'lobby');
    },
    onMessage(_clientId, data) {
      if (String(data) === 'boom') throw new Error('the handler broke on purpose');
    },
  });
  const bus = amqpValues(prefix, 'direct');
  // log.level warn on the first node: its warnings are written (and so kept for the dashboard).
  const a = opened.node(
    await startNode(mergeValues(bus, { admin: { listen: '127.0.0.1:0', token: TOKEN }, log: { level: 'warn' } }), {
      handler,
    }),
  );
  const b = opened.node(await startNode(bus, { handler }));
  await waitForMembership([a, b], 2);
  const onA = [await connectWs(opened, a), await connectWs(opened, a)];
  const onB = [await connectWs(opened, b)];
  const base = `http://127.0.0.1:${a.adminPort}`;

  browser = await launchChromium();
  const page = await browser.newPage();
  await page.setViewportSize({ width: 1100, height: 860 });
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/401|404/.test(msg.text())) pageErrors.push(msg.text());
  });

  // Without the token: the form, no data, and the API refuses the page's requests.
  const page401 = page.waitForResponse((res) => res.url().endsWith('/api/cluster'));
  await page.goto(`${base}/`);
  assert.equal((await page401).status(), 401);
  await waitPage(
    () => status(page),
    (s) => s === 'unauthorized',
    'the page asking for the token',
  );
  assert.equal(await page.locator('#login').isVisible(), true);
  assert.equal(await page.locator('#data').isVisible(), false);
  assert.equal(await page.locator('#nodes tr').count(), 0, 'no node shown without the token');
  assert.equal(await page.locator('#warnings li').count(), 0);

  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await waitPage(
    () => status(page),
    (s) => s === 'ok',
    'the page showing data',
  );
  assert.equal(
    await page.evaluate(() =>
      (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem(
        'gatewire-admin-token',
      ),
    ),
    TOKEN,
  );

  // Both nodes, with their clients, uids and groups (the other node's as it announced them).
  const rows = await waitPage(
    () => nodeRows(page),
    (r) => r[a.identity.instance]?.clients === '2' && r[b.identity.instance]?.clients === '1',
    'both nodes with their client counts',
  );
  assert.equal(Object.keys(rows).length, 2);
  assert.deepEqual(
    [rows[a.identity.instance]!.uids, rows[a.identity.instance]!.groups, rows[a.identity.instance]!.state],
    ['2', '1', 'connected'],
  );
  assert.match(rows[a.identity.instance]!.id, /\(this node\)$/);
  assert.match(rows[b.identity.instance]!.state, /^announcing/);
  assert.equal(rows[b.identity.instance]!.roles, 'gateway, worker');
  assert.equal(rows[a.identity.instance]!.address, a.urls[0]);

  // Pushes from the other node to this node's clients, for a few samples: rates show up.
  const pushing = (async () => {
    for (let i = 0; i < 40; i++) {
      await Promise.all(onA.map((c) => b.api.sendToClient(c.id, `push ${i}`)));
      await sleep(100);
    }
  })();
  const peak = await waitPage(
    () => rate(page, 'deliveries', 'peak'),
    (v) => v > 0,
    'a delivery rate after pushes',
  );
  await pushing;
  assert.ok(peak > 0);
  assert.ok((await rate(page, 'pushes', 'peak')) > 0, 'pushes taken from the bus per second');
  await waitPage(
    () => rate(page, 'deliveries', 'total'),
    (v) => v >= 80,
    'every delivery counted',
  );
  assert.equal(await page.locator('#chart polyline[data-series="deliveries"]').count(), 1, 'the chart has its line');

  // A handler that throws logs an error: the page lists it.
  onA[0]!.client.send('boom');
  const warning = await waitPage(
    () => page.locator('#warnings li').allTextContents(),
    (items) => items.some((text) => text.includes('handler failed')),
    'the warning line',
  );
  const line = warning.find((text) => text.includes('handler failed'))!;
  assert.match(line, /error/i);
  assert.match(line, /the handler broke on purpose/);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gwt-dashboard-'));
  const shot = path.join(dir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  // Forgetting the token hides the data again.
  await page.click('#logout');
  await waitPage(
    () => status(page),
    (s) => s === 'unauthorized',
    'the page without its token',
  );
  assert.equal(await page.locator('#nodes tr').count(), 0);
  assert.equal(await page.locator('#data').isVisible(), false);
  assert.deepEqual(pageErrors, []);
});

/**
 * The admin dashboard's page, served at / on the admin port: one self-contained HTML document
 * (style and script inline, no CDN, works offline) that ships in dist/ with the rest of the code.
 * The page holds no data: its script fetches it from /api/ (dashboard-api.ts) with the token.
 * DASHBOARD_CSP allows exactly the inline style and script below (by their SHA-256), requests to
 * the admin server itself and nothing else.
 */
import crypto from 'node:crypto';
import { DASHBOARD_SCRIPT } from './dashboard-script.js';

const STYLE = `
:root { color-scheme: dark; --bg: #0d1117; --panel: #161b22; --line: #30363d; --text: #e6edf3; --dim: #8b949e; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 16px; border-bottom: 1px solid var(--line); }
header h1 { font-size: 16px; margin: 0; }
#node-name { color: var(--dim); }
#status { margin-left: auto; color: var(--dim); font-size: 12px; }
#status[data-state="ok"]::before { content: "\\25CF  "; color: #3fb950; }
#status[data-state="stale"]::before, #status[data-state="unauthorized"]::before { content: "\\25CF  "; color: #f85149; }
main, #data { display: grid; gap: 12px; }
main { padding: 12px 16px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
h2 { font-size: 13px; margin: 0 0 8px; color: var(--dim); text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--dim); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.self td.id { font-weight: 600; }
td.state.suspect, td.state.disconnected { color: #f85149; }
td.state.connected { color: #3fb950; }
#bus { color: var(--dim); font-size: 12px; margin-top: 6px; }
.rates { display: grid; grid-template-columns: minmax(260px, 1fr) 2fr; gap: 12px; align-items: start; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.pushes { --c: #4e9af1; } .deliveries { --c: #3fb950; } .drops { --c: #f85149; } .messagesIn { --c: #d29922; }
.swatch { background: var(--c); }
#chart { width: 100%; height: auto; }
#chart .plot { fill: #0d1117; stroke: var(--line); }
#chart .grid { stroke: var(--line); stroke-dasharray: 3 3; }
#chart .axis { fill: var(--dim); font-size: 10px; }
#chart .line { fill: none; stroke: var(--c); stroke-width: 1.5; }
#warnings { list-style: none; margin: 0; padding: 0; font: 12px/1.5 ui-monospace, monospace; }
#warnings li { padding: 3px 0; border-bottom: 1px solid var(--line); display: flex; gap: 10px; flex-wrap: wrap; }
#warnings .time, #warnings .component, #warnings .detail { color: var(--dim); }
#warnings .level { text-transform: uppercase; font-weight: 600; color: #d29922; }
#warnings li.error .level, #warnings li.fatal .level { color: #f85149; }
#warnings .detail { flex-basis: 100%; padding-left: 20px; word-break: break-all; }
#warnings-total { color: var(--dim); text-transform: none; letter-spacing: 0; }
form { display: flex; gap: 8px; align-items: center; }
input { background: var(--bg); color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 5px 8px; }
button { background: #21262d; color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 5px 10px; cursor: pointer; }
[hidden] { display: none !important; }
`;

const BODY = `
<header>
  <h1>gatewire</h1><span id="node-name"></span>
  <span id="status" data-state="loading">loading…</span>
  <button id="logout" type="button" hidden>forget token</button>
</header>
<main>
  <form id="login" hidden autocomplete="off">
    <label for="token">admin.token</label>
    <input id="token" type="password" size="40" placeholder="the admin server's token">
    <button type="submit">show</button>
    <span class="note">kept in this tab only (sessionStorage), sent as Authorization: Bearer</span>
  </form>
  <div id="data" hidden>
    <section>
      <h2>Cluster</h2>
      <table>
        <thead><tr><th>node</th><th>roles</th><th>address</th><th class="num">clients</th><th class="num">uids</th>
          <th class="num">groups</th><th class="num">uptime</th><th>state</th></tr></thead>
        <tbody id="nodes"></tbody>
      </table>
      <div id="bus"></div>
    </section>
    <section>
      <h2>This node's rates (per second; other nodes announce counts, not rates)</h2>
      <div class="rates">
        <table>
          <thead><tr><th></th><th class="num">now</th><th class="num">peak 5 min</th><th class="num">total</th></tr></thead>
          <tbody id="rates"></tbody>
        </table>
        <svg id="chart" viewBox="0 0 640 170" role="img" aria-label="rates over the last 5 minutes"></svg>
      </div>
    </section>
    <section>
      <h2>This node's last warnings <span id="warnings-total"></span></h2>
      <ul id="warnings"></ul>
    </section>
  </div>
</main>
`;

function sha256(text: string): string {
  return crypto.createHash('sha256').update(text, 'utf8').digest('base64');
}

export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>gatewire admin</title>
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;

export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${sha256(DASHBOARD_SCRIPT)}'`,
  `style-src 'sha256-${sha256(STYLE)}'`,
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

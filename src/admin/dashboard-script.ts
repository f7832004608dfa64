/**
 * The dashboard page's script (dashboard-page.ts inlines it; plain ES2020 for any browser, no
 * library, no CDN): polls /api/cluster, /api/stats and /api/warnings every 2 s with the token
 * from sessionStorage as a Bearer credential, and draws the tables and the rate chart. Without
 * the token where one is needed (401) it shows the token form and no data. Data from the node
 * goes into the page as text only (textContent), never as markup.
 */
export const DASHBOARD_SCRIPT = String.raw`
'use strict';
var KEY = 'gatewire-admin-token';
var POLL_MS = 2000;
var SERIES = [
  { name: 'pushes', label: 'bus in', color: '#4e9af1' },
  { name: 'deliveries', label: 'deliveries', color: '#3fb950' },
  { name: 'drops', label: 'drops', color: '#f85149' },
  { name: 'messagesIn', label: 'from clients', color: '#d29922' },
];
var SVG = 'http://www.w3.org/2000/svg';
var timer = null;

function $(id) { return document.getElementById(id); }
function token() { return sessionStorage.getItem(KEY) || ''; }

function el(tag, text, cls) {
  var node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function duration(ms) {
  var s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  var m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
  var h = Math.floor(m / 60);
  if (h < 48) return h + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
}

function rate(n) { return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2); }

function setStatus(state, text) {
  var status = $('status');
  status.setAttribute('data-state', state);
  status.textContent = text;
  $('login').hidden = state !== 'unauthorized';
  $('logout').hidden = token() === '';
  $('data').hidden = state !== 'ok' && state !== 'stale';
}

function clearData() {
  $('nodes').replaceChildren();
  $('rates').replaceChildren();
  $('warnings').replaceChildren();
  $('chart').replaceChildren();
  $('node-name').textContent = '';
}

async function getJson(path) {
  var headers = {};
  if (token() !== '') headers.authorization = 'Bearer ' + token();
  var res = await fetch(path, { headers: headers, cache: 'no-store' });
  if (res.status === 401) throw Object.assign(new Error('unauthorized'), { unauthorized: true });
  if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
  return res.json();
}

function renderNodes(cluster) {
  var rows = cluster.nodes.map(function (n) {
    var tr = el('tr');
    tr.setAttribute('data-instance', n.instance);
    if (n.self) tr.className = 'self';
    tr.append(
      el('td', n.id + (n.self ? ' (this node)' : ''), 'id'),
      el('td', n.roles.join(', '), 'roles'),
      el('td', n.address || '-', 'address'),
      el('td', n.clients, 'clients num'),
      el('td', n.uids, 'uids num'),
      el('td', n.groups, 'groups num'),
      el('td', duration(n.uptimeMs), 'uptime num'),
      el('td', n.state + (n.self ? '' : ' (' + duration(n.seenAgoMs) + ' ago)'), 'state ' + n.state),
    );
    return tr;
  });
  $('nodes').replaceChildren.apply($('nodes'), rows);
  var bus = cluster.bus;
  $('bus').textContent =
    bus.kind + ' bus ' + (bus.connected ? 'connected' : 'DISCONNECTED') + ', ' + bus.buffered +
    ' commands buffered, ' + bus.reconnects + ' reconnects; ' + cluster.nodes.length + ' nodes live';
}

function renderRates(stats) {
  var rows = SERIES.map(function (s) {
    var peak = 0;
    stats.series.forEach(function (p) { peak = Math.max(peak, p[s.name]); });
    var tr = el('tr');
    tr.setAttribute('data-rate', s.name);
    var swatch = el('span', '', 'swatch ' + s.name);
    var name = el('td');
    name.append(swatch, document.createTextNode(s.label));
    tr.append(name, el('td', rate(stats.current[s.name]), 'now num'), el('td', rate(peak), 'peak num'),
      el('td', stats.totals[s.name], 'total num'));
    return tr;
  });
  $('rates').replaceChildren.apply($('rates'), rows);
  $('node-name').textContent = stats.node;
  drawChart(stats);
}

function svg(tag, attrs, text) {
  var node = document.createElementNS(SVG, tag);
  Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(stats) {
  var W = 640, H = 170, L = 44, R = 8, T = 10, B = 22;
  var span = 5 * 60 * 1000;
  var end = stats.current.time || Date.now();
  var max = 1;
  stats.series.forEach(function (p) { SERIES.forEach(function (s) { max = Math.max(max, p[s.name]); }); });
  var x = function (t) { return L + ((t - (end - span)) / span) * (W - L - R); };
  var y = function (v) { return T + (1 - v / max) * (H - T - B); };
  var parts = [
    svg('rect', { x: L, y: T, width: W - L - R, height: H - T - B, class: 'plot' }),
    svg('line', { x1: L, y1: y(max / 2), x2: W - R, y2: y(max / 2), class: 'grid' }),
    svg('text', { x: L - 4, y: T + 8, class: 'axis', 'text-anchor': 'end' }, rate(max) + '/s'),
    svg('text', { x: L - 4, y: H - B, class: 'axis', 'text-anchor': 'end' }, '0'),
    svg('text', { x: L, y: H - 6, class: 'axis' }, '-5 min'),
    svg('text', { x: W - R, y: H - 6, class: 'axis', 'text-anchor': 'end' }, 'now'),
  ];
  var points = stats.series.filter(function (p) { return p.time > end - span; });
  SERIES.forEach(function (s) {
    if (points.length === 0) return;
    var coords = points.map(function (p) { return x(p.time).toFixed(1) + ',' + y(p[s.name]).toFixed(1); });
    if (points.length === 1) coords.unshift(x(points[0].time - stats.sampleInterval).toFixed(1) + ',' + y(0));
    parts.push(svg('polyline', { points: coords.join(' '), class: 'line ' + s.name, 'data-series': s.name }));
  });
  $('chart').replaceChildren.apply($('chart'), parts);
}

function renderWarnings(list) {
  var items = list.warnings.map(function (w) {
    var li = el('li', null, w.level);
    li.append(
      el('span', new Date(w.time).toLocaleTimeString(), 'time'),
      el('span', w.level, 'level'),
      el('span', w.component, 'component'),
      el('span', w.msg, 'msg'),
    );
    if (w.detail) li.append(el('span', w.detail, 'detail'));
    return li;
  });
  if (items.length === 0) items.push(el('li', 'no warnings since the admin server started', 'none'));
  $('warnings').replaceChildren.apply($('warnings'), items);
  $('warnings-total').textContent =
    list.total > list.warnings.length ? '(last ' + list.warnings.length + ' of ' + list.total + ')' : '';
}

async function poll() {
  clearTimeout(timer);
  try {
    var all = await Promise.all([getJson('api/cluster'), getJson('api/stats'), getJson('api/warnings')]);
    renderNodes(all[0]);
    renderRates(all[1]);
    renderWarnings(all[2]);
    setStatus('ok', 'live, updated ' + new Date().toLocaleTimeString());
  } catch (err) {
    if (err.unauthorized) {
      clearData();
      setStatus('unauthorized', token() === '' ? 'this admin server needs its token (admin.token)' :
        'the token was refused');
    } else {
      setStatus('stale', 'no answer from the node (' + err.message + '); retrying');
    }
  }
  timer = setTimeout(poll, POLL_MS);
}

$('login').addEventListener('submit', function (event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $('token').value.trim());
  $('token').value = '';
  poll();
});
$('logout').addEventListener('click', function () {
  sessionStorage.removeItem(KEY);
  clearData();
  poll();
});
poll();
`;

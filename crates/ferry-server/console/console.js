// The Ferry admin console: plain JavaScript over the typed admin API.
// Everything shown is built with DOM calls and textContent (never HTML from
// data); the session cookie is HttpOnly, the CSRF token lives in memory and
// goes with every request that changes something.
'use strict';

(() => {
  const state = { session: null };
  const $ = (id) => document.getElementById(id);

  /** Builds an element: el('td', {class: 'num'}, 'text', child, ...). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** An error from the API, in words. */
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** Calls the admin API; throws an ApiError with the server's message. */
  async function api(method, path, { body, headers } = {}) {
    const h = Object.assign({ Accept: 'application/json' }, headers || {});
    if (method !== 'GET' && state.session) h['X-CSRF-Token'] = state.session.csrf_token;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
      });
    } catch (e) {
      throw new ApiError(0, `The server could not be reached (${e.message}).`);
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      const why = data && data.message ? data.message : `HTTP ${response.status}`;
      throw new ApiError(response.status, `${describe(response.status)}: ${why}`);
    }
    return data;
  }

  function describe(status) {
    switch (status) {
      case 400: return 'The request was refused';
      case 401: return 'Not logged in';
      case 403: return 'Not allowed';
      case 404: return 'Not found';
      case 409: return 'Conflict';
      case 429: return 'Too many attempts';
      case 503: return 'The server is not available';
      default: return `Error ${status}`;
    }
  }

  function showError(e) {
    const box = $('error');
    if (!e) { box.hidden = true; box.textContent = ''; return; }
    box.textContent = e.message || String(e);
    box.hidden = false;
    if (e.status === 401 && state.session) { state.session = null; showLogin(); }
  }

  const fmtTime = (t) => (t ? new Date(t).toISOString().replace('T', ' ').slice(0, 19) : '');
  function fmtBytes(n) {
    if (n === null || n === undefined) return '';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Number(n); let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${i ? v.toFixed(1) : v} ${units[i]}`;
  }
  const statusCell = (s) => el('td', { class: `status-${s}` }, s);
  const canChange = () => state.session && state.session.role !== 'auditor';

  function table(headers, rows, attrs) {
    return el('div', { class: 'scroll' }, el('table', attrs || {},
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)));
  }

  // ---- session ----

  function showLogin() {
    $('top').hidden = true;
    $('view').replaceChildren();
    $('login').hidden = false;
    $('login-name').focus();
  }

  function showShell() {
    $('login').hidden = true;
    $('top').hidden = false;
    $('who').textContent = `${state.session.name} (${state.session.role})`;
  }

  /** UTF-8 safe base64 of "name:password" for HTTP Basic. */
  function basic(name, password) {
    const bytes = new TextEncoder().encode(`${name}:${password}`);
    let bin = '';
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return `Basic ${btoa(bin)}`;
  }

  async function login(ev) {
    ev.preventDefault();
    showError(null);
    const button = $('login-submit');
    button.disabled = true;
    try {
      const name = $('login-name').value.trim();
      const password = $('login-password').value;
      state.session = await api('POST', '/api/v1/console/session', {
        headers: { Authorization: basic(name, password) },
      });
      $('login-password').value = '';
      showShell();
      if (!location.hash || location.hash === '#/') location.hash = '#/dashboard';
      else route();
    } catch (e) {
      state.session = null;
      showError(e.status === 401
        ? new ApiError(401, 'Login failed: wrong admin name or password.')
        : e);
    } finally {
      button.disabled = false;
    }
  }

  async function logout() {
    try { await api('DELETE', '/api/v1/console/session'); } catch (e) { /* ended anyway */ }
    state.session = null;
    location.hash = '';
    showError(null);
    showLogin();
  }

  // ---- pages ----

  async function dashboard(view) {
    view.append(el('h2', {}, 'Dashboard'));
    const since = new Date(Date.now() - 24 * 3600 * 1000);
    since.setUTCMinutes(0, 0, 0);
    const [status, failed, report] = await Promise.all([
      api('GET', '/api/v1/cluster/status'),
      api('GET', '/api/v1/events?status=failed&limit=1000'),
      api('GET', `/api/v1/reports/transfers?per=hour&since=${encodeURIComponent(since.toISOString())}`),
    ]);
    const hours = [];
    for (let i = 0; i < 25; i += 1) {
      hours.push({ at: since.getTime() + i * 3600e3, transfers: 0, failures: 0, bytes: 0 });
    }
    for (const line of report.lines || []) {
      const i = Math.floor((Date.parse(line.period) - since.getTime()) / 3600e3);
      if (i >= 0 && i < hours.length) {
        hours[i].transfers += line.transfers;
        hours[i].failures += line.failures;
        hours[i].bytes += line.bytes;
      }
    }
    const total = hours.reduce((a, h) => ({
      transfers: a.transfers + h.transfers, failures: a.failures + h.failures, bytes: a.bytes + h.bytes,
    }), { transfers: 0, failures: 0, bytes: 0 });
    view.append(el('div', { class: 'tiles' },
      tile('Failed events', failed.length >= 1000 ? '1000+' : failed.length, 'tile-failed-events'),
      tile('Transfers, 24 h', total.transfers, 'tile-transfers'),
      tile('Failed transfers, 24 h', total.failures, 'tile-failures'),
      tile('Bytes, 24 h', fmtBytes(total.bytes), 'tile-bytes')));
    view.append(el('div', { class: 'card chart' }, el('h2', {}, 'Transfers per hour (last 24 h)'),
      chart(hours, (h) => h.transfers, (h) => h.failures),
      el('h2', {}, 'Bytes per hour'), chart(hours, (h) => h.bytes, () => 0, fmtBytes)));
    const members = [];
    if (status.this) members.push(status.this);
    for (const p of status.peers || []) if (p && typeof p === 'object') members.push(p);
    for (const m of status.members || []) if (m && typeof m === 'object') members.push(m);
    view.append(el('div', { class: 'card' }, el('h2', {}, `Cluster (${status.mode})`),
      table(['Server', 'Role', 'Term', 'Health'], members.map((m) => el('tr', { class: 'member' },
        el('td', {}, m.node || m.node_id || m.id || ''),
        el('td', {}, m.role || ''),
        el('td', {}, m.term !== undefined ? m.term : (m.epoch !== undefined ? m.epoch : '')),
        el('td', {}, health(m)))))));
    const workers = members.flatMap((m) => (m.workers || []).map((w) => ({ node: m.node || '', ...w })));
    view.append(el('div', { class: 'card' }, el('h2', {}, 'Workers'),
      table(['Server', 'Worker', 'State', 'For', 'Done', 'Detail / last error'], workers.map((w) => el('tr', {},
        el('td', {}, w.node), el('td', {}, w.name), el('td', {}, String(w.state)),
        el('td', { class: 'num' }, `${w.for_secs} s`), el('td', { class: 'num' }, w.done),
        el('td', {}, [w.detail, w.last_error].filter(Boolean).join(' — ')))))));
  }

  function health(m) {
    if (m.ready === true || m.healthy === true) return 'ready';
    if (m.ready === false || m.healthy === false) return 'not ready';
    if (m.reachable === false) return 'unreachable';
    return m.state || m.health || '';
  }

  function tile(label, value, id) {
    return el('div', { class: 'tile', id }, el('div', { class: 'muted' }, label), el('div', { class: 'n' }, value));
  }

  /** A bar chart in SVG: one bar per hour, the failed part in red. */
  function chart(hours, value, failed, fmt) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = (tag, attrs) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      return n;
    };
    const w = 760; const h = 160; const pad = 24;
    const max = Math.max(1, ...hours.map(value));
    const root = svg('svg', { viewBox: `0 0 ${w} ${h + pad}`, role: 'img', 'aria-label': 'chart' });
    const bw = (w - pad) / hours.length;
    hours.forEach((hr, i) => {
      const v = value(hr); const f = Math.min(v, failed(hr));
      const bh = (v / max) * (h - 12); const fh = (f / max) * (h - 12);
      const x = pad + i * bw + 1;
      const bar = svg('rect', { x, y: h - bh, width: bw - 2, height: bh, class: 'bar' });
      const title = svg('title', {});
      title.textContent = `${fmtTime(new Date(hr.at).toISOString())}: ${fmt ? fmt(v) : v}`;
      bar.append(title);
      root.append(bar);
      if (fh > 0) root.append(svg('rect', { x, y: h - fh, width: bw - 2, height: fh, class: 'fail' }));
      if (i % 3 === 0) {
        const t = svg('text', { x, y: h + 14 });
        t.textContent = `${String(new Date(hr.at).getUTCHours()).padStart(2, '0')}h`;
        root.append(t);
      }
    });
    const top = svg('text', { x: 0, y: 10 });
    top.textContent = fmt ? fmt(max) : String(max);
    root.append(top);
    return root;
  }

  const PAGE = 50;

  async function transfers(view, params) {
    view.append(el('h2', {}, 'File tracking'));
    const fields = [
      ['name', 'File name contains', 'text'], ['account', 'Account', 'text'],
      ['partner', 'Partner', 'text'],
      ['protocol', 'Protocol', ['', 'sftp', 'https', 'monitor', 'route']],
      ['status', 'Status', ['', 'completed', 'interrupted', 'failed']],
      ['since', 'From', 'datetime-local'], ['until', 'Until', 'datetime-local'],
    ];
    const form = el('form', { class: 'card filters', id: 'search' });
    for (const [key, label, kind] of fields) {
      let input;
      if (Array.isArray(kind)) {
        input = el('select', { name: key, id: `f-${key}` },
          kind.map((o) => el('option', { value: o, selected: params.get(key) === o }, o || 'any')));
      } else {
        input = el('input', { name: key, id: `f-${key}`, type: kind, value: params.get(key) || '' });
      }
      form.append(el('label', {}, label, input));
    }
    form.append(el('button', { type: 'submit', id: 'search-submit' }, 'Search'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [key] of fields) {
        const v = form.elements[key].value.trim();
        if (v) q.set(key, v);
      }
      location.hash = `#/transfers?${q}`;
    });
    view.append(form);
    const query = new URLSearchParams();
    for (const key of ['name', 'account', 'partner', 'protocol', 'status']) {
      if (params.get(key)) query.set(key, params.get(key));
    }
    for (const key of ['since', 'until']) {
      if (params.get(key)) query.set(key, new Date(params.get(key)).toISOString());
    }
    const results = el('div', { class: 'card', id: 'results' });
    view.append(results);
    const cursors = [];
    async function load(cursor) {
      const q = new URLSearchParams(query);
      q.set('limit', String(PAGE + 1));
      if (cursor) { q.set('before', cursor.before); q.set('before_id', cursor.before_id); }
      const started = performance.now();
      const rows = await api('GET', `/api/v1/transfers?${q}`);
      const ms = Math.round(performance.now() - started);
      const more = rows.length > PAGE;
      const shown = rows.slice(0, PAGE);
      const last = shown[shown.length - 1];
      const prev = el('button', { type: 'button', class: 'secondary', id: 'page-prev', disabled: cursors.length === 0 }, 'Newer');
      const next = el('button', { type: 'button', class: 'secondary', id: 'page-next', disabled: !more }, 'Older');
      prev.addEventListener('click', () => { cursors.pop(); run(cursors[cursors.length - 1]); });
      next.addEventListener('click', () => {
        const c = { before: last.started_at, before_id: last.id };
        cursors.push(c);
        run(c);
      });
      results.replaceChildren(
        el('div', { class: 'muted' }, `${shown.length} transfer(s) on this page, ${ms} ms`),
        table(['Path', 'Status', 'Account', 'Started', 'Bytes', 'Protocol', 'Direction', 'Partner'],
          shown.map((t) => el('tr', { class: 'transfer-row' },
            el('td', { class: 'path' }, el('a', { href: `#/transfer/${encodeURIComponent(t.id)}` }, t.path)),
            statusCell(t.status), el('td', {}, t.account), el('td', {}, fmtTime(t.started_at)),
            el('td', { class: 'num' }, fmtBytes(t.bytes)),
            el('td', {}, t.protocol), el('td', {}, t.direction),
            el('td', {}, t.partner || '')))),
        el('div', { class: 'pager' }, prev, next));
    }
    function run(cursor) { load(cursor).catch(showError); }
    await load(null);
  }

  async function transfer(view, id) {
    const [detail, routes] = await Promise.all([
      api('GET', `/api/v1/transfers/${encodeURIComponent(id)}`),
      api('GET', '/api/v1/routes'),
    ]);
    const actions = new Map(routes.map((r) => [r.name, r.actions || []]));
    const t = detail.transfer;
    view.append(el('h2', {}, `Transfer ${t.path}`));
    const kv = (pairs) => el('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v === null || v === undefined ? '' : v)]));
    view.append(el('div', { class: 'card', id: 'transfer' }, kv([
      ['Id', t.id], ['Account', t.account], ['Protocol', t.protocol], ['Direction', t.direction],
      ['Path', t.path], ['Status', t.status], ['Bytes', `${fmtBytes(t.bytes)} (${t.bytes})`],
      ['SHA-256', t.sha256], ['Started', fmtTime(t.started_at)], ['Ended', fmtTime(t.ended_at)],
      ['Server', t.node], ['Client', t.client_addr], ['Partner', t.partner], ['Error', t.error],
    ])));
    if (!detail.events.length) view.append(el('p', { class: 'muted' }, 'No event came of this transfer.'));
    for (const e of detail.events) view.append(eventCard(e, actions.get(e.route)));
  }

  /** A route action as the CLI writes it (`copy:bob/in`). */
  function actionText(a) {
    if (typeof a === 'string') return a;
    switch (a.type) {
      case 'push': return `push:${a.partner}${a.remote_dir ? `:${a.remote_dir}` : ''}`;
      case 'copy': return `copy:${a.account}${a.dir && a.dir !== '/' ? a.dir : ''}`;
      case 'archive': return `archive:${a.dir}`;
      case 'rename': return `rename:${a.pattern}`;
      default: {
        const { type, ...rest } = a;
        return [type, ...Object.values(rest).filter((v) => v !== null && v !== '')].join(':');
      }
    }
  }

  /** The route's steps, those done marked. */
  function steps(e, actions) {
    if (!actions || !actions.length) return null;
    return el('div', {},
      el('h2', {}, 'Route steps'),
      el('p', { class: 'muted' }, `The route as it is defined now; the first ${e.steps_done} ran.`),
      el('ol', { class: 'steps' }, actions.map((a, i) => {
        const done = i < e.steps_done;
        return el('li', { class: done ? 'step done' : 'step' },
          `${actionText(a)} — ${done ? 'done' : 'not done'}`);
      })));
  }

  function eventCard(e, actions) {
    const card = el('div', { class: 'card event', 'data-event': e.id },
      el('h2', {}, `Event ${e.id}`),
      el('dl', { class: 'kv' },
        ['Kind', e.kind, 'Route', e.route, 'Status', e.status,
          'Attempts', `${e.attempts} of ${e.max_attempts}`, 'Route steps done', e.steps_done,
          'Path now', e.current_path, 'Partners', (e.partners || []).join(', '),
          'Created', fmtTime(e.created_at), 'Last error', e.last_error]
          .reduce((acc, v, i, a) => (i % 2 ? acc : acc.concat([el('dt', {}, v), el('dd', {}, a[i + 1] ?? '')])), [])),
      steps(e, actions),
      el('h2', {}, 'Attempts'),
      table(['#', 'Server', 'Started', 'Ended', 'Outcome', 'Error'], (e.attempt_log || []).map((a) => el('tr', { class: 'attempt' },
        el('td', {}, a.attempt), el('td', {}, a.node), el('td', {}, fmtTime(a.started_at)),
        el('td', {}, fmtTime(a.ended_at)), el('td', {}, a.outcome || 'running'), el('td', {}, a.error || '')))));
    if (canChange() && (e.status === 'done' || e.status === 'failed')) {
      card.append(el('p', {}, el('button', { type: 'button', class: 'danger resubmit', onclick: () => resubmit(e.id) }, 'Resubmit')));
    }
    return card;
  }

  async function resubmit(id) {
    if (!window.confirm(`Queue event ${id} again, as a new event? Its route runs once more.`)) return;
    try {
      const queued = await api('POST', `/api/v1/events/${encodeURIComponent(id)}/resubmit`);
      showError(null);
      window.alert(`Queued as event ${queued.id}.`);
      route();
    } catch (e) { showError(e); }
  }

  async function events(view, params) {
    view.append(el('h2', {}, 'Events'));
    const select = el('select', { id: 'event-status' }, ['', 'pending', 'running', 'done', 'failed']
      .map((s) => el('option', { value: s, selected: params.get('status') === s }, s || 'any')));
    select.addEventListener('change', () => { location.hash = `#/events${select.value ? `?status=${select.value}` : ''}`; });
    view.append(el('div', { class: 'card filters' }, el('label', {}, 'State', select)));
    const q = new URLSearchParams({ limit: '200' });
    if (params.get('status')) q.set('status', params.get('status'));
    const list = await api('GET', `/api/v1/events?${q}`);
    view.append(el('div', { class: 'card' }, table(
      ['Path', 'Status', 'Created', 'Kind', 'Route', 'Account', 'Attempts', 'Last error', ''],
      list.map((e) => el('tr', { class: 'event-row' },
        el('td', { class: 'path' }, e.transfer_id
          ? el('a', { href: `#/transfer/${encodeURIComponent(e.transfer_id)}` }, e.path || e.transfer_id)
          : (e.path || '')),
        statusCell(e.status),
        el('td', {}, fmtTime(e.created_at)), el('td', {}, e.kind), el('td', {}, e.route || ''),
        el('td', {}, e.account || ''), el('td', { class: 'num' }, `${e.attempts}/${e.max_attempts}`),
        el('td', {}, e.last_error || ''),
        el('td', {}, canChange() && (e.status === 'done' || e.status === 'failed')
          ? el('button', { type: 'button', class: 'danger resubmit', onclick: () => resubmit(e.id) }, 'Resubmit')
          : ''))))));
  }

  // ---- routing ----

  async function route() {
    if (!state.session) { showLogin(); return; }
    const hash = location.hash.replace(/^#/, '') || '/dashboard';
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    const view = $('view');
    view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    for (const a of document.querySelectorAll('header nav a')) {
      a.classList.toggle('current', path.startsWith(a.getAttribute('href').slice(1)));
    }
    const page = el('div', { id: `page-${path.split('/')[1]}` });
    try {
      if (path === '/dashboard') await dashboard(page);
      else if (path === '/transfers') await transfers(page, params);
      else if (path.startsWith('/transfer/')) await transfer(page, decodeURIComponent(path.slice(10)));
      else if (path === '/events') await events(page, params);
      else page.append(el('p', {}, 'No such page.'));
      showError(null);
    } catch (e) {
      showError(e);
    }
    view.replaceChildren(page);
  }

  async function start() {
    $('login').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    window.addEventListener('hashchange', route);
    try {
      state.session = await api('GET', '/api/v1/console/session');
      showShell();
      route();
    } catch (e) {
      state.session = null;
      showLogin();
    }
  }

  document.addEventListener('DOMContentLoaded', start);
})();

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
  const enc = encodeURIComponent;

  /**
   * Whether the session's role may change things in `area`: an admin
   * everything, an operator all but admins and the cluster, an auditor
   * nothing. The server decides in the end; this only hides buttons.
   */
  function may(area) {
    if (!state.session) return false;
    const role = state.session.role;
    if (role === 'admin') return true;
    if (role === 'operator') return area !== 'admins' && area !== 'cluster';
    return false;
  }
  const canChange = () => may('events');

  /** Orders two cell values: numbers as numbers, empty last. */
  function compare(a, b) {
    const empty = (v) => v === null || v === undefined || v === '';
    if (empty(a) || empty(b)) return empty(a) - empty(b);
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  /**
   * A table that sorts on any column (click or Enter on its header, again
   * to reverse) and filters its rows on their text. `columns`: objects
   * with a `label`, a `value(row)` to sort on and, when the cell is not
   * that value as text, a `cell(row)`; `cls` for the cell's class.
   */
  function dataTable(columns, rows, opts = {}) {
    let sortBy = -1;
    let ascending = true;
    let needle = '';
    const body = el('tbody');
    const count = el('span', { class: 'muted count' });
    const filter = el('input', {
      type: 'search', class: 'table-filter', placeholder: 'Filter rows', 'aria-label': 'Filter rows',
    });
    const built = rows.map((row) => {
      const tr = el('tr', { class: opts.rowClass || null }, columns.map((c) => el('td', { class: c.cls || null },
        c.cell ? c.cell(row) : (c.value(row) ?? ''))));
      if (opts.rowAttrs) for (const [k, v] of Object.entries(opts.rowAttrs(row))) tr.setAttribute(k, v);
      return { row, tr, text: tr.textContent.toLowerCase() };
    });
    const heads = columns.map((c, i) => {
      const th = el('th', { class: c.value ? 'sortable' : null, tabindex: c.value ? '0' : null, 'aria-sort': 'none' }, c.label);
      if (c.value) {
        const sort = () => {
          if (sortBy === i) ascending = !ascending; else { sortBy = i; ascending = true; }
          render();
        };
        th.addEventListener('click', sort);
        th.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') sort(); });
      }
      return th;
    });
    function render() {
      let shown = built.filter((b) => !needle || b.text.includes(needle));
      if (sortBy >= 0) {
        const { value } = columns[sortBy];
        shown = shown.slice().sort((a, b) => compare(value(a.row), value(b.row)) * (ascending ? 1 : -1));
      }
      heads.forEach((h, i) => h.setAttribute('aria-sort', i !== sortBy ? 'none' : (ascending ? 'ascending' : 'descending')));
      body.replaceChildren(...shown.map((b) => b.tr));
      count.textContent = `${shown.length} of ${built.length}`;
    }
    filter.addEventListener('input', () => { needle = filter.value.trim().toLowerCase(); render(); });
    render();
    const empty = rows.length ? null : el('p', { class: 'muted' }, opts.empty || 'None yet.');
    return el('div', { class: 'datatable', id: opts.id || null },
      el('div', { class: 'table-tools' }, filter, count),
      el('div', { class: 'scroll' }, el('table', {}, el('thead', {}, el('tr', {}, heads)), body)),
      empty);
  }

  const card = (title, ...children) => el('div', { class: 'card' }, title ? el('h2', {}, title) : null, ...children);
  const link = (href, text, id) => el('a', { href, id: id || null }, text);
  const yesNo = (v) => (v ? 'yes' : 'no');

  /** Shows a success message until the next page. */
  function flash(message, extra) {
    const box = $('notice');
    box.replaceChildren(message, extra || '');
    box.hidden = false;
  }

  /**
   * A button that runs `action`, after `confirm` (a question) was answered
   * yes if one is given; errors are shown in words.
   */
  function button(label, opts, action) {
    const b = el('button', { type: 'button', class: opts.danger ? 'danger' : (opts.secondary ? 'secondary' : null), id: opts.id || null });
    b.textContent = label;
    // Every button made here asks the server for a change (the role check
    // in the browser test counts them).
    b.classList.add('change');
    if (opts.cls) b.classList.add(...opts.cls.split(' '));
    b.addEventListener('click', async () => {
      if (opts.confirm && !window.confirm(opts.confirm)) return;
      b.disabled = true;
      try {
        await action();
        showError(null);
      } catch (e) {
        showError(e);
      } finally {
        b.disabled = false;
      }
    });
    return b;
  }

  /**
   * A form in a card: `fields` are objects with `name`, `label`, `kind`
   * (`text` by default, `password`, `number`, `textarea`, `checkbox`,
   * `select` with `options`), `value`, `placeholder`, `required`, `help`.
   * `submit(values)` gets the trimmed values (booleans for checkboxes).
   * With `open: false` the form starts folded under its title.
   */
  function formCard(id, title, fields, submitLabel, submit, opts = {}) {
    const form = el('form', { id, class: 'form' });
    const grid = el('div', { class: 'fields' });
    for (const f of fields) {
      const attrs = {
        name: f.name, id: `${id}-${f.name}`, placeholder: f.placeholder || null, required: f.required || null,
      };
      let input;
      if (f.kind === 'select') {
        input = el('select', attrs, f.options.map((o) => {
          const [value, text] = Array.isArray(o) ? o : [o, o];
          return el('option', { value, selected: String(f.value ?? '') === String(value) }, text);
        }));
      } else if (f.kind === 'textarea') {
        input = el('textarea', { ...attrs, rows: 4, spellcheck: 'false' }, f.value ?? '');
      } else if (f.kind === 'checkbox') {
        input = el('input', { ...attrs, type: 'checkbox', checked: f.value || null });
      } else {
        input = el('input', {
          ...attrs, type: f.kind || 'text', value: f.value ?? null, autocomplete: f.kind === 'password' ? 'new-password' : 'off',
          min: f.kind === 'number' ? '0' : null,
        });
      }
      const wide = f.kind === 'textarea' || f.wide;
      grid.append(el('label', { class: [wide ? 'wide' : '', f.kind === 'checkbox' ? 'check' : ''].join(' ').trim() || null },
        f.label, input, f.help ? el('small', { class: 'muted' }, f.help) : null));
    }
    const go = el('button', { type: 'submit', id: `${id}-submit`, class: 'change' }, submitLabel);
    form.append(grid, el('div', { class: 'form-actions' }, go));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      go.disabled = true;
      try {
        const values = {};
        for (const f of fields) {
          const input = form.elements[f.name];
          values[f.name] = f.kind === 'checkbox' ? input.checked : input.value.trim();
        }
        await submit(values);
        showError(null);
      } catch (e) {
        showError(e);
      } finally {
        go.disabled = false;
      }
    });
    if (opts.open === false) {
      return el('details', { class: 'card', id: `${id}-card` }, el('summary', {}, title), form);
    }
    return el('div', { class: 'card', id: `${id}-card` }, el('h2', {}, title), form);
  }

  /** A form's number: undefined when left empty. */
  function num(v) {
    if (v === '' || v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new ApiError(0, `"${v}" is not a number.`);
    return n;
  }
  /** A comma or line separated list, without empty items. */
  const list = (v) => (v || '').split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
  /** The object without its undefined and empty-string fields. */
  function compact(o) {
    const out = {};
    for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== '') out[k] = v;
    return out;
  }

  /** Goes to another page and shows a message there. */
  function go(hash, ...message) {
    state.pending = message;
    location.hash = hash;
  }

  /** Refreshes the page shown, keeping any message. */
  const reload = () => route({ keepNotice: true });

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
    $('notice').hidden = true;
    showLogin();
  }

  // ---- pages ----

  async function dashboard(view) {
    view.append(el('h2', {}, 'Dashboard'));
    const since = new Date(Date.now() - 24 * 3600 * 1000);
    since.setUTCMinutes(0, 0, 0);
    // A server alone has no cluster history to ask for.
    const [[status, history], failed, report] = await Promise.all([
      api('GET', '/api/v1/cluster/status').then(async (st) => [st,
        st.mode === 'single' ? [] : await api('GET', '/api/v1/cluster/events?limit=200')]),
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
    const alerts = history.filter((e) => e.severity === 'alert').reverse();
    view.append(el('div', { class: 'tiles' },
      tile('Failed events', failed.length >= 1000 ? '1000+' : failed.length, 'tile-failed-events', '#/events?status=failed'),
      tile('Transfers, 24 h', total.transfers, 'tile-transfers', '#/transfers'),
      tile('Failed transfers, 24 h', total.failures, 'tile-failures', '#/transfers?status=failed'),
      tile('Bytes, 24 h', fmtBytes(total.bytes), 'tile-bytes'),
      tile('Alerts', alerts.length, 'tile-alerts')));
    view.append(el('div', { class: 'card chart' }, el('h2', {}, 'Transfers per hour (last 24 h)'),
      chart(hours, (h) => h.transfers, (h) => h.failures),
      el('h2', {}, 'Bytes per hour'), chart(hours, (h) => h.bytes, () => 0, fmtBytes)));
    const members = [];
    if (status.this) members.push(status.this);
    for (const p of status.peers || []) if (p && typeof p === 'object') members.push(p);
    for (const m of status.members || []) if (m && typeof m === 'object') members.push(m);
    const term = status.term;
    view.append(card(`Cluster (${status.mode}${term !== undefined ? `, term ${term}` : ''})`,
      dataTable([
        { label: 'Server', value: (m) => m.node || m.name || m.node_id || m.id || '' },
        { label: 'Role', value: (m) => `${m.role || ''}${m.primary ? ' (primary)' : ''}` },
        { label: 'Term', value: (m) => m.term ?? m.epoch ?? '' },
        { label: 'Lag', value: (m) => m.lag ?? null, cls: 'num' },
        { label: 'Version', value: (m) => m.version || '' },
        { label: 'Health', value: (m) => health(m) },
      ], members, { id: 'members-table', rowClass: 'member' })));
    const workers = members.flatMap((m) => (m.workers || []).map((w) => ({ node: m.node || m.name || '', ...w })));
    view.append(card('Workers', dataTable([
      { label: 'Server', value: (w) => w.node },
      { label: 'Worker', value: (w) => w.name },
      { label: 'State', value: (w) => String(w.state) },
      { label: 'For', value: (w) => w.for_secs, cls: 'num', cell: (w) => `${w.for_secs} s` },
      { label: 'Done', value: (w) => w.done, cls: 'num' },
      { label: 'Detail / last error', value: (w) => [w.detail, w.last_error].filter(Boolean).join(' — ') },
    ], workers, { id: 'workers-table' })));
    view.append(card('Alerts', alerts.length
      ? dataTable([
        { label: 'When', value: (a) => a.at, cell: (a) => fmtTime(a.at) },
        { label: 'Server', value: (a) => a.node },
        { label: 'Kind', value: (a) => a.kind },
        { label: 'What', value: (a) => a.message },
      ], alerts.slice(0, 50), { id: 'alerts-table', rowClass: 'alert-row' })
      : el('p', { class: 'muted' }, status.mode === 'single' ? 'A server alone keeps no cluster history.' : 'No alert in the recent cluster history.')));
  }

  function health(m) {
    if (m.ready === true || m.healthy === true) return 'ready';
    if (m.ready === false || m.healthy === false) return 'not ready';
    if (m.reachable === false) return 'unreachable';
    if (m.error) return `unreachable: ${m.error}`;
    if (m.last_contact_ms !== undefined && m.last_contact_ms !== null) return `heard ${Math.round(m.last_contact_ms / 1000)} s ago`;
    return m.state || m.health || '';
  }

  function tile(label, value, id, href) {
    const n = el('div', { class: 'n' }, href ? link(href, String(value)) : value);
    return el('div', { class: 'tile', id }, el('div', { class: 'muted' }, label), n);
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
        dataTable([
          { label: 'Path', value: (t) => t.path, cls: 'path', cell: (t) => link(`#/transfer/${enc(t.id)}`, t.path) },
          { label: 'Status', value: (t) => t.status, cell: (t) => el('span', { class: `status-${t.status}` }, t.status) },
          { label: 'Account', value: (t) => t.account },
          { label: 'Started', value: (t) => t.started_at, cell: (t) => fmtTime(t.started_at) },
          { label: 'Bytes', value: (t) => t.bytes, cls: 'num', cell: (t) => fmtBytes(t.bytes) },
          { label: 'Protocol', value: (t) => t.protocol },
          { label: 'Direction', value: (t) => t.direction },
          { label: 'Partner', value: (t) => t.partner || '' },
        ], shown, { id: 'transfers-table', rowClass: 'transfer-row', empty: 'No transfer matches.' }),
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
    const card = el('div', { class: 'card event', 'data-event': e.id, 'data-status': e.status },
      el('h2', {}, `Event ${e.id}`),
      el('dl', { class: 'kv' },
        ['Kind', e.kind, 'Route', e.route, 'Status', e.status,
          'Attempts', `${e.attempts} of ${e.max_attempts}`, 'Route steps done', e.steps_done,
          'Path now', e.current_path, 'Partners', (e.partners || []).join(', '),
          'Created', fmtTime(e.created_at), 'Last error', e.last_error,
          ...(e.resubmit_of ? ['Resubmits', link(`#/event/${enc(e.resubmit_of)}`, e.resubmit_of)] : []),
          ...(e.schedule ? ['Schedule', link(`#/schedule/${enc(e.schedule)}`, `${e.schedule} (slot ${fmtTime(e.slot)})`)] : [])]
          .reduce((acc, v, i, a) => (i % 2 ? acc : acc.concat([el('dt', {}, v), el('dd', {}, a[i + 1] ?? '')])), [])),
      steps(e, actions),
      el('h2', {}, 'Attempts'),
      dataTable([
        { label: '#', value: (a) => a.attempt, cls: 'num' },
        { label: 'Server', value: (a) => a.node },
        { label: 'Started', value: (a) => a.started_at, cell: (a) => fmtTime(a.started_at) },
        { label: 'Ended', value: (a) => a.ended_at, cell: (a) => fmtTime(a.ended_at) },
        { label: 'Outcome', value: (a) => a.outcome || 'running' },
        { label: 'Error', value: (a) => a.error || '' },
      ], e.attempt_log || [], { rowClass: 'attempt', empty: 'No attempt yet.' }));
    if (canChange() && (e.status === 'done' || e.status === 'failed')) {
      card.append(el('p', {}, el('button', { type: 'button', class: 'danger resubmit change', onclick: () => resubmit(e.id) }, 'Resubmit')));
    }
    return card;
  }

  async function resubmit(id) {
    if (!window.confirm(`Queue event ${id} again, as a new event? Its route runs once more.`)) return;
    try {
      const queued = await api('POST', `/api/v1/events/${enc(id)}/resubmit`);
      flash(`Event ${id} resubmitted as event `, link(`#/event/${enc(queued.id)}`, queued.id));
      await reload();
    } catch (e) { showError(e); }
  }

  const resubmittable = (e) => e.status === 'done' || e.status === 'failed';

  async function events(view, params) {
    view.append(el('h2', {}, 'Events'));
    const select = el('select', { id: 'event-status' }, ['', 'pending', 'running', 'done', 'failed']
      .map((s) => el('option', { value: s, selected: params.get('status') === s }, s || 'any')));
    select.addEventListener('change', () => { location.hash = `#/events${select.value ? `?status=${select.value}` : ''}`; });
    view.append(el('div', { class: 'card filters' }, el('label', {}, 'State', select)));
    const q = new URLSearchParams({ limit: '500' });
    if (params.get('status')) q.set('status', params.get('status'));
    const found = await api('GET', `/api/v1/events?${q}`);
    const chosen = new Set();
    const bulk = el('button', { type: 'button', class: 'danger change', id: 'bulk-resubmit', disabled: true }, 'Resubmit selected');
    const columns = [
      {
        label: 'Path',
        value: (e) => e.path || '',
        cls: 'path',
        cell: (e) => (e.transfer_id
          ? link(`#/transfer/${enc(e.transfer_id)}`, e.path || e.transfer_id)
          : link(`#/event/${enc(e.id)}`, e.path || (e.notice ? e.notice.summary : e.id))),
      },
      { label: 'Status', value: (e) => e.status, cell: (e) => el('span', { class: `status-${e.status}` }, e.status) },
      { label: 'Created', value: (e) => e.created_at, cell: (e) => fmtTime(e.created_at) },
      { label: 'Kind', value: (e) => e.kind },
      { label: 'Route', value: (e) => e.route || e.schedule || '' },
      { label: 'Account', value: (e) => e.account || '' },
      { label: 'Attempts', value: (e) => e.attempts, cls: 'num', cell: (e) => `${e.attempts}/${e.max_attempts}` },
      { label: 'Last error', value: (e) => e.last_error || '' },
    ];
    if (canChange()) {
      columns.unshift({
        label: '',
        cell: (e) => (resubmittable(e)
          ? el('input', {
            type: 'checkbox', class: 'pick change', 'aria-label': `select event ${e.id}`,
            onchange: (ev) => {
              if (ev.target.checked) chosen.add(e.id); else chosen.delete(e.id);
              bulk.disabled = chosen.size === 0;
              bulk.textContent = chosen.size ? `Resubmit selected (${chosen.size})` : 'Resubmit selected';
            },
          })
          : ''),
      });
      columns.push({
        label: '',
        cell: (e) => (resubmittable(e)
          ? el('button', { type: 'button', class: 'danger resubmit change', onclick: () => resubmit(e.id) }, 'Resubmit')
          : ''),
      });
      bulk.addEventListener('click', async () => {
        const ids = [...chosen];
        if (!window.confirm(`Queue ${ids.length} event(s) again, each as a new event? Their routes run once more.`)) return;
        bulk.disabled = true;
        const failed = [];
        let queued = 0;
        for (const id of ids) {
          try {
            await api('POST', `/api/v1/events/${enc(id)}/resubmit`);
            queued += 1;
          } catch (e) {
            failed.push(`${id}: ${e.message}`);
          }
        }
        flash(`${queued} of ${ids.length} event(s) resubmitted.`);
        await reload();
        if (failed.length) showError(new ApiError(0, `Not resubmitted: ${failed.join('; ')}`));
      });
    }
    view.append(card(null,
      canChange() ? el('div', { class: 'form-actions' }, bulk) : null,
      dataTable(columns, found, { id: 'events-table', rowClass: 'event-row', empty: 'No event in this state.' })));
  }

  async function eventPage(view, id) {
    const [detail, routes] = await Promise.all([
      api('GET', `/api/v1/events/${enc(id)}`),
      api('GET', '/api/v1/routes'),
    ]);
    const e = detail;
    if (e.transfer_id) view.append(el('p', {}, link(`#/transfer/${enc(e.transfer_id)}`, 'The transfer that caused it', 'transfer-link')));
    if (e.notice) {
      view.append(card('Notification', kvList([
        ['Rule', e.notice.rule], ['Trigger', e.notice.trigger], ['Endpoint', e.notice.endpoint],
        ['Summary', e.notice.summary],
        ['About event', e.notice.event_id ? link(`#/event/${enc(e.notice.event_id)}`, e.notice.event_id) : ''],
      ])));
    }
    const owner = routes.find((r) => r.name === e.route);
    view.append(eventCard(detail, owner ? owner.actions : null));
  }

  // ---- accounts ----

  const kvList = (pairs) => el('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '')]));

  function quotaText(used, quota, fmt) {
    const f = fmt || String;
    if (quota === null || quota === undefined) return used === null || used === undefined ? 'no quota' : `${f(used)} (no quota)`;
    if (used === null || used === undefined) return `quota ${f(quota)}`;
    return `${f(used)} of ${f(quota)} (${Math.round((100 * used) / Math.max(1, quota))} %)`;
  }

  /** A bar showing how much of a quota is used. */
  function meter(used, quota) {
    if (!quota || used === null || used === undefined) return null;
    return el('progress', { class: used >= 0.9 * quota ? 'high' : null, max: String(quota), value: String(Math.min(used, quota)) });
  }

  async function accounts(view) {
    view.append(el('h2', {}, 'Accounts'));
    const [all, folders] = await Promise.all([api('GET', '/api/v1/accounts'), api('GET', '/api/v1/folders')]);
    if (may('accounts')) {
      view.append(formCard('new-account', 'New account', [
        { name: 'name', label: 'Name', required: true, help: 'Letters, digits, . _ -' },
        { name: 'password', label: 'Password', kind: 'password', help: 'Leave empty for keys and tokens only.' },
        { name: 'home', label: 'Home', help: 'Relative to the repository; default: the name.' },
        { name: 'must_change_password', label: 'Must change the password at the first HTTPS login', kind: 'checkbox' },
      ], 'Create account', async (v) => {
        await api('POST', '/api/v1/accounts', {
          body: compact({
            name: v.name, password: v.password, home: v.home, must_change_password: v.must_change_password || undefined,
          }),
        });
        go(`#/account/${enc(v.name)}`, `Account ${v.name} created.`);
      }, { open: false }));
    }
    view.append(card(null, dataTable([
      { label: 'Name', value: (a) => a.name, cell: (a) => link(`#/account/${enc(a.name)}`, a.name) },
      { label: 'State', value: (a) => accountState(a), cell: (a) => el('span', { class: a.enabled && !a.idle ? 'status-done' : 'status-failed' }, accountState(a)) },
      { label: 'Home', value: (a) => a.home },
      { label: 'Password', value: (a) => (a.has_password ? 'set' : 'none') },
      { label: 'Keys', value: (a) => a.keys, cls: 'num' },
      { label: 'Quota', value: (a) => a.quota_bytes ?? null, cell: (a) => (a.quota_bytes ? fmtBytes(a.quota_bytes) : '') },
      { label: 'Last login', value: (a) => a.last_login_at, cell: (a) => fmtTime(a.last_login_at) },
      { label: 'Expires', value: (a) => a.expires_at, cell: (a) => fmtTime(a.expires_at) },
    ], all, { id: 'accounts-table', rowClass: 'account-row', empty: 'No account yet.' })));

    const folderCard = card('Virtual folders', dataTable([
      { label: 'Name', value: (f) => f.name },
      { label: 'Directory', value: (f) => f.path },
      { label: 'Mounted in', value: (f) => f.mounts.map((m) => `${m.account}:${m.path}`).join(', ') },
      { label: 'Created', value: (f) => f.created_at, cell: (f) => fmtTime(f.created_at) },
      ...(may('accounts') ? [{
        label: '',
        cell: (f) => button('Remove', { danger: true, confirm: `Remove virtual folder ${f.name}? Its files stay in the repository.` }, async () => {
          await api('DELETE', `/api/v1/folders/${enc(f.name)}`);
          flash(`Virtual folder ${f.name} removed.`);
          await reload();
        }),
      }] : []),
    ], folders, { id: 'folders-table', empty: 'No virtual folder yet.' }));
    view.append(folderCard);
    if (may('accounts')) {
      view.append(formCard('new-folder', 'New virtual folder', [
        { name: 'name', label: 'Name', required: true },
        { name: 'path', label: 'Directory', required: true, help: 'Relative to the repository; made if missing.' },
      ], 'Create folder', async (v) => {
        await api('POST', '/api/v1/folders', { body: v });
        flash(`Virtual folder ${v.name} created.`);
        await reload();
      }, { open: false }));
    }
  }

  function accountState(a) {
    if (!a.enabled) return 'disabled';
    if (a.idle) return 'idle';
    return 'enabled';
  }

  async function account(view, name) {
    const base = `/api/v1/accounts/${enc(name)}`;
    const [a, keys, tokens, rules, mounts, folders] = await Promise.all([
      api('GET', base), api('GET', `${base}/keys`), api('GET', `${base}/tokens`),
      api('GET', `${base}/permissions`), api('GET', `${base}/mounts`), api('GET', '/api/v1/folders'),
    ]);
    const change = may('accounts');
    view.append(el('h2', {}, `Account ${a.name}`));
    const actions = el('div', { class: 'form-actions' });
    if (change) {
      if (a.enabled) {
        actions.append(button('Disable', { danger: true, id: 'account-disable', confirm: `Disable account ${a.name}? It cannot log in until enabled again.` }, async () => {
          await api('POST', `${base}/disable`);
          flash(`Account ${a.name} disabled.`);
          await reload();
        }));
      } else {
        actions.append(button('Enable', { id: 'account-enable' }, async () => {
          await api('POST', `${base}/enable`);
          flash(`Account ${a.name} enabled.`);
          await reload();
        }));
      }
      if (a.idle) {
        actions.append(button('Let in again (idle)', { id: 'account-wake' }, async () => {
          await api('POST', `${base}/enable`);
          flash(`Account ${a.name} may log in again.`);
          await reload();
        }));
      }
      actions.append(button('Remove account', { danger: true, id: 'account-remove', confirm: `Remove account ${a.name}? Its keys, tokens and rules go; its files stay in the repository.` }, async () => {
        await api('DELETE', base);
        go('#/accounts', `Account ${a.name} removed.`);
      }));
    }
    view.append(card(null, kvList([
      ['State', accountState(a)], ['Home', a.home],
      ['Password', a.has_password ? `set${a.must_change_password ? ', must be changed' : ''}` : 'none'],
      ['Keys', a.keys], ['Created', fmtTime(a.created_at)], ['Expires', a.expires_at ? fmtTime(a.expires_at) : 'never'],
      ['Last login', fmtTime(a.last_login_at)],
      ['Allowed networks', (a.allowed_networks || []).join(', ') || 'anywhere'],
      ['Upload limit', a.upload_rate ? `${fmtBytes(a.upload_rate)}/s` : 'none'],
      ['Download limit', a.download_rate ? `${fmtBytes(a.download_rate)}/s` : 'none'],
      ['Sessions at once', a.max_sessions || 'no cap'],
    ]), actions));
    view.append(card('Quota usage', el('div', { id: 'quota' },
      el('p', {}, `Bytes: ${quotaText(a.used_bytes, a.quota_bytes, fmtBytes)}`), meter(a.used_bytes, a.quota_bytes),
      el('p', {}, `Files: ${quotaText(a.used_files, a.quota_files)}`), meter(a.used_files, a.quota_files))));
    if (change) {
      view.append(formCard('limits', 'Limits', [
        { name: 'quota_bytes', label: 'Quota, bytes', kind: 'number', value: a.quota_bytes ?? '', help: 'Empty or 0: none.' },
        { name: 'quota_files', label: 'Quota, files', kind: 'number', value: a.quota_files ?? '' },
        { name: 'upload_rate', label: 'Upload limit, bytes/s', kind: 'number', value: a.upload_rate ?? '' },
        { name: 'download_rate', label: 'Download limit, bytes/s', kind: 'number', value: a.download_rate ?? '' },
        { name: 'max_sessions', label: 'Sessions at once', kind: 'number', value: a.max_sessions ?? '' },
        { name: 'expires_at', label: 'Expires', value: a.expires_at ? a.expires_at.slice(0, 10) : '', placeholder: 'YYYY-MM-DD or empty' },
        { name: 'allowed_networks', label: 'Allowed networks', value: (a.allowed_networks || []).join(', '), placeholder: '10.0.0.0/8, 192.0.2.7', wide: true },
      ], 'Save limits', async (v) => {
        await api('POST', base, {
          body: {
            quota_bytes: num(v.quota_bytes) ?? 0, quota_files: num(v.quota_files) ?? 0,
            upload_rate: num(v.upload_rate) ?? 0, download_rate: num(v.download_rate) ?? 0,
            max_sessions: num(v.max_sessions) ?? 0, expires_at: v.expires_at || 'never',
            allowed_networks: list(v.allowed_networks),
          },
        });
        flash(`Limits of ${a.name} saved.`);
        await reload();
      }, { open: false }));
      const password = formCard('password', 'Password', [
        { name: 'password', label: 'New password', kind: 'password', required: true },
        { name: 'must_change_password', label: 'Must be changed at the next HTTPS login', kind: 'checkbox' },
      ], 'Set password', async (v) => {
        await api('POST', base, { body: { password: v.password, must_change_password: v.must_change_password } });
        flash(`Password of ${a.name} set.`);
        await reload();
      }, { open: false });
      if (a.has_password) {
        password.append(el('div', { class: 'form-actions' }, button('Remove password', { danger: true, id: 'password-remove', confirm: `Remove the password of ${a.name}? It logs in with keys and tokens only.` }, async () => {
          await api('POST', base, { body: { remove_password: true } });
          flash(`Password of ${a.name} removed.`);
          await reload();
        })));
      }
      view.append(password);
    }

    view.append(card('SSH keys', dataTable([
      { label: 'Fingerprint', value: (k) => k.fingerprint, cls: 'path' },
      { label: 'Comment', value: (k) => k.comment },
      { label: 'Added', value: (k) => k.added_at, cell: (k) => fmtTime(k.added_at) },
      ...(change ? [{
        label: '',
        cell: (k) => button('Revoke', { danger: true, confirm: `Revoke key ${k.fingerprint} of ${a.name}?` }, async () => {
          await api('DELETE', `${base}/keys?fingerprint=${enc(k.fingerprint)}`);
          flash(`Key ${k.fingerprint} revoked.`);
          await reload();
        }),
      }] : []),
    ], keys, { id: 'keys-table', rowClass: 'key-row', empty: 'No key.' }),
    change ? formCard('new-key', 'Add a key', [
      { name: 'public_key', label: 'OpenSSH public key line', kind: 'textarea', required: true, placeholder: 'ssh-ed25519 AAAA… comment' },
    ], 'Add key', async (v) => {
      const k = await api('POST', `${base}/keys`, { body: v });
      flash(`Key ${k.fingerprint} added.`);
      await reload();
    }, { open: false }) : null));

    view.append(card('API tokens', dataTable([
      { label: 'Id', value: (t) => t.id },
      { label: 'Label', value: (t) => t.label },
      { label: 'Created', value: (t) => t.created_at, cell: (t) => fmtTime(t.created_at) },
      { label: 'Expires', value: (t) => t.expires_at, cell: (t) => (t.expires_at ? fmtTime(t.expires_at) : 'never') },
      ...(change ? [{
        label: '',
        cell: (t) => button('Revoke', { danger: true, confirm: `Revoke token ${t.id} of ${a.name}?` }, async () => {
          await api('DELETE', `${base}/tokens/${enc(t.id)}`);
          flash(`Token ${t.id} revoked.`);
          await reload();
        }),
      }] : []),
    ], tokens, { id: 'tokens-table', empty: 'No token.' }),
    change ? formCard('new-token', 'New token', [
      { name: 'label', label: 'What it is for' },
      { name: 'expires_in_days', label: 'Days until it stops working', kind: 'number', help: 'Empty: never.' },
    ], 'Create token', async (v) => {
      const t = await api('POST', `${base}/tokens`, { body: compact({ label: v.label, expires_in_days: num(v.expires_in_days) }) });
      await reload();
      flash(`Token ${t.id} created. It is shown this once: `, el('code', { id: 'new-token-text' }, t.token));
    }, { open: false }) : null));

    const allowHelp = 'Comma separated: list, download, upload, overwrite, delete, rename, create-dirs, or all, upload-only, download-only, none.';
    view.append(card('Permissions', dataTable([
      { label: 'Folder', value: (r) => r.path, cls: 'path' },
      { label: 'Allowed', value: (r) => r.allow.join(', ') || 'nothing' },
      ...(change ? [{
        label: '',
        cell: (r) => button('Remove', { danger: true, confirm: `Remove the rule of ${r.path}? The folder then follows the rule above it.` }, async () => {
          await api('DELETE', `${base}/permissions?path=${enc(r.path)}`);
          flash(`Rule of ${r.path} removed.`);
          await reload();
        }),
      }] : []),
    ], rules, { id: 'rules-table', empty: 'No rule: everything is allowed in the home.' }),
    change ? formCard('new-rule', 'Set a folder rule', [
      { name: 'path', label: 'Folder', required: true, value: '/', help: 'Absolute inside the home.' },
      { name: 'allow', label: 'Allowed', required: true, placeholder: 'list, download', help: allowHelp, wide: true },
    ], 'Set rule', async (v) => {
      await api('POST', `${base}/permissions`, { body: { path: v.path, allow: list(v.allow) } });
      flash(`Rule of ${v.path} set.`);
      await reload();
    }, { open: false }) : null));

    view.append(card('Mounted virtual folders', dataTable([
      { label: 'Folder', value: (m) => m.folder },
      { label: 'Appears at', value: (m) => m.path, cls: 'path' },
      { label: 'Allowed', value: (m) => m.allow.join(', ') },
      ...(change ? [{
        label: '',
        cell: (m) => button('Unmount', { danger: true, confirm: `Unmount ${m.folder} from ${m.path}?` }, async () => {
          await api('DELETE', `${base}/mounts?path=${enc(m.path)}`);
          flash(`${m.folder} unmounted.`);
          await reload();
        }),
      }] : []),
    ], mounts, { id: 'mounts-table', empty: 'No virtual folder mounted.' }),
    change && folders.length ? formCard('new-mount', 'Mount a virtual folder', [
      { name: 'folder', label: 'Folder', kind: 'select', options: folders.map((f) => f.name) },
      { name: 'path', label: 'Appears at', required: true, placeholder: '/shared' },
      { name: 'allow', label: 'Allowed', required: true, value: 'all', help: allowHelp, wide: true },
    ], 'Mount', async (v) => {
      await api('POST', `${base}/mounts`, { body: { folder: v.folder, path: v.path, allow: list(v.allow) } });
      flash(`${v.folder} mounted at ${v.path}.`);
      await reload();
    }, { open: false }) : null));
  }

  // ---- partners, routes, schedules, monitors ----

  async function partners(view) {
    view.append(el('h2', {}, 'Partners'));
    const found = await api('GET', '/api/v1/partners');
    const change = may('partners');
    const result = el('div', { id: 'partner-test', class: 'card', hidden: true });
    view.append(card(null, dataTable([
      { label: 'Name', value: (p) => p.name },
      { label: 'Server', value: (p) => `${p.host}:${p.port}` },
      { label: 'User', value: (p) => p.username },
      { label: 'Auth', value: (p) => p.auth },
      { label: 'Host key', value: (p) => p.host_key_fingerprint, cls: 'path' },
      { label: 'Remote dir', value: (p) => p.remote_dir },
      { label: 'After pull', value: (p) => p.after_pull },
      { label: 'Rate', value: (p) => p.rate_limit ?? null, cell: (p) => (p.rate_limit ? `${fmtBytes(p.rate_limit)}/s` : '') },
      ...(change ? [{
        label: '',
        cell: (p) => el('span', { class: 'row-actions' },
          button('Test connection', { secondary: true, cls: 'partner-test' }, async () => {
            result.hidden = false;
            result.replaceChildren(el('p', { class: 'muted' }, `Connecting to ${p.name}…`));
            try {
              const t = await api('POST', `/api/v1/partners/${enc(p.name)}/test`);
              result.replaceChildren(el('h2', {}, `Connection to ${t.partner}: OK`), kvList([
                ['Host key', el('code', { id: 'partner-test-fingerprint' }, t.host_key_fingerprint)],
                ['Directory', t.remote_dir], ['Entries', t.entries.join('  ') || '(empty)'],
              ]));
            } catch (e) {
              result.replaceChildren(el('h2', {}, `Connection to ${p.name} failed`), el('p', { class: 'status-failed', id: 'partner-test-error' }, e.message));
            }
          }),
          button('Remove', { danger: true, confirm: `Remove partner ${p.name}? Routes and schedules that use it block the removal.` }, async () => {
            await api('DELETE', `/api/v1/partners/${enc(p.name)}`);
            flash(`Partner ${p.name} removed.`);
            await reload();
          })),
      }] : []),
    ], found, { id: 'partners-table', rowClass: 'partner-row', empty: 'No partner yet.' })), result);
    if (change) {
      view.append(formCard('new-partner', 'New partner', [
        { name: 'name', label: 'Name', required: true },
        { name: 'host', label: 'Host', required: true },
        { name: 'port', label: 'Port', kind: 'number', placeholder: '22' },
        { name: 'username', label: 'User', required: true },
        { name: 'password', label: 'Password or key passphrase', kind: 'password' },
        { name: 'remote_dir', label: 'Remote directory', placeholder: '.' },
        { name: 'after_pull', label: 'After a pull', placeholder: 'keep, delete or move:DIR' },
        { name: 'rate_limit', label: 'Rate limit, bytes/s', kind: 'number' },
        { name: 'host_key', label: 'Host key', kind: 'textarea', required: true, placeholder: 'ssh-ed25519 AAAA… (a known_hosts or .pub line)' },
        { name: 'private_key', label: 'Private key (OpenSSH)', kind: 'textarea', placeholder: '-----BEGIN OPENSSH PRIVATE KEY-----' },
      ], 'Add partner', async (v) => {
        await api('POST', '/api/v1/partners', {
          body: compact({
            name: v.name, host: v.host, port: num(v.port), username: v.username, password: v.password,
            private_key: v.private_key ? `${v.private_key}\n` : undefined, host_key: v.host_key,
            remote_dir: v.remote_dir, after_pull: v.after_pull, rate_limit: num(v.rate_limit),
          }),
        });
        flash(`Partner ${v.name} added.`);
        await reload();
      }, { open: false }));
    }
  }

  async function routes(view) {
    view.append(el('h2', {}, 'Routes'));
    const [found, accountList] = await Promise.all([api('GET', '/api/v1/routes'), api('GET', '/api/v1/accounts')]);
    const change = may('routes');
    view.append(card(null, dataTable([
      { label: 'Name', value: (r) => r.name },
      { label: 'Account', value: (r) => r.account, cell: (r) => link(`#/account/${enc(r.account)}`, r.account) },
      { label: 'Match', value: (r) => r.pattern },
      { label: 'Actions', value: (r) => r.actions.map(actionText).join(' → ') },
      { label: 'Attempts', value: (r) => r.max_attempts, cls: 'num' },
      { label: 'Retry after', value: (r) => r.retry_base_ms, cls: 'num', cell: (r) => `${r.retry_base_ms / 1000} s` },
      { label: 'Created', value: (r) => r.created_at, cell: (r) => fmtTime(r.created_at) },
      ...(change ? [{
        label: '',
        cell: (r) => button('Remove', { danger: true, confirm: `Remove route ${r.name}? Files that arrive no longer take it; queued events still run.` }, async () => {
          await api('DELETE', `/api/v1/routes/${enc(r.name)}`);
          flash(`Route ${r.name} removed.`);
          await reload();
        }),
      }] : []),
    ], found, { id: 'routes-table', rowClass: 'route-row', empty: 'No route yet.' })));
    if (change) {
      view.append(formCard('new-route', 'New route', [
        { name: 'name', label: 'Name', required: true },
        { name: 'account', label: 'Account', kind: 'select', options: accountList.map((a) => a.name) },
        { name: 'match', label: 'Match', required: true, value: '*', help: 'A glob on the file name, or with a / on its path in the home.' },
        { name: 'max_attempts', label: 'Attempts', kind: 'number', placeholder: '5' },
        { name: 'retry_base_ms', label: 'First retry after, ms', kind: 'number', placeholder: '30000' },
        { name: 'actions', label: 'Actions, one per line, in order', kind: 'textarea', required: true, placeholder: 'push:PARTNER[:REMOTE_DIR]\ncopy:ACCOUNT[/DIR]\narchive:DIR\nrename:PATTERN' },
      ], 'Add route', async (v) => {
        await api('POST', '/api/v1/routes', {
          body: compact({
            name: v.name, account: v.account, match: v.match, actions: list(v.actions.replace(/,/g, '\n')),
            max_attempts: num(v.max_attempts), retry_base_ms: num(v.retry_base_ms),
          }),
        });
        flash(`Route ${v.name} added.`);
        await reload();
      }, { open: false }));
    }
  }

  async function schedules(view) {
    view.append(el('h2', {}, 'Schedules'));
    const found = await api('GET', '/api/v1/schedules');
    const change = may('schedules');
    view.append(card(null, dataTable([
      { label: 'Name', value: (s) => s.name, cell: (s) => link(`#/schedule/${enc(s.name)}`, s.name) },
      { label: 'Cron', value: (s) => s.cron },
      { label: 'Time zone', value: (s) => s.timezone },
      { label: 'Action', value: (s) => actionText(s.action) },
      { label: 'Next slots', value: (s) => (s.next_slots || [])[0], cell: (s) => (s.next_slots || []).map(fmtTime).join(', ') },
      { label: 'Catch up', value: (s) => yesNo(s.catch_up) },
      { label: 'Attempts', value: (s) => s.max_attempts, cls: 'num' },
      ...(change ? [{
        label: '',
        cell: (s) => button('Remove', { danger: true, confirm: `Remove schedule ${s.name}? It fires no more.` }, async () => {
          await api('DELETE', `/api/v1/schedules/${enc(s.name)}`);
          flash(`Schedule ${s.name} removed.`);
          await reload();
        }),
      }] : []),
    ], found, { id: 'schedules-table', rowClass: 'schedule-row', empty: 'No schedule yet.' })));
    if (change) {
      view.append(formCard('new-schedule', 'New schedule', [
        { name: 'name', label: 'Name', required: true },
        { name: 'cron', label: 'Cron', required: true, placeholder: '0 */15 * * * *', help: '5 fields, or 6-7 with seconds first.' },
        { name: 'timezone', label: 'Time zone', placeholder: 'UTC' },
        { name: 'action', label: 'Action', required: true, placeholder: 'pull:PARTNER[:GLOB]:ACCOUNT[/DIR]', wide: true },
        { name: 'catch_up', label: 'Fire missed slots on takeover', kind: 'checkbox', value: true },
        { name: 'max_attempts', label: 'Attempts', kind: 'number', placeholder: '5' },
        { name: 'retry_base_ms', label: 'First retry after, ms', kind: 'number', placeholder: '30000' },
      ], 'Add schedule', async (v) => {
        await api('POST', '/api/v1/schedules', {
          body: compact({
            name: v.name, cron: v.cron, timezone: v.timezone, action: v.action, catch_up: v.catch_up,
            max_attempts: num(v.max_attempts), retry_base_ms: num(v.retry_base_ms),
          }),
        });
        flash(`Schedule ${v.name} added.`);
        await reload();
      }, { open: false }));
    }
  }

  async function schedule(view, name) {
    const [all, firings] = await Promise.all([
      api('GET', '/api/v1/schedules'), api('GET', `/api/v1/schedules/${enc(name)}/firings`),
    ]);
    const s = all.find((x) => x.name === name);
    if (!s) throw new ApiError(404, `Not found: no schedule ${name}`);
    view.append(el('h2', {}, `Schedule ${s.name}`));
    view.append(card(null, kvList([
      ['Cron', s.cron], ['Time zone', s.timezone], ['Action', actionText(s.action)],
      ['Next slots', (s.next_slots || []).map(fmtTime).join(', ')], ['Catch up', yesNo(s.catch_up)],
      ['Attempts', s.max_attempts], ['Created', fmtTime(s.created_at)],
    ])));
    view.append(card('Firings', dataTable([
      { label: 'Slot', value: (f) => f.slot, cell: (f) => fmtTime(f.slot) },
      { label: 'Fired', value: (f) => f.fired_at, cell: (f) => fmtTime(f.fired_at) },
      { label: 'Server', value: (f) => f.node },
      { label: 'Event', value: (f) => f.event_id, cell: (f) => link(`#/event/${enc(f.event_id)}`, f.event_id) },
    ], firings, { id: 'firings-table', empty: 'Not fired yet.' })));
  }

  async function monitors(view) {
    view.append(el('h2', {}, 'Folder monitors'));
    const [found, accountList] = await Promise.all([api('GET', '/api/v1/monitors'), api('GET', '/api/v1/accounts')]);
    const change = may('monitors');
    view.append(card(null, dataTable([
      { label: 'Name', value: (m) => m.name },
      { label: 'Directory', value: (m) => m.dir, cls: 'path' },
      { label: 'Match', value: (m) => m.pattern },
      { label: 'Account', value: (m) => m.account },
      { label: 'Into', value: (m) => m.target_dir },
      { label: 'Stable for', value: (m) => m.stable_ms, cls: 'num', cell: (m) => `${m.stable_ms / 1000} s` },
      { label: 'Created', value: (m) => m.created_at, cell: (m) => fmtTime(m.created_at) },
      ...(change ? [{
        label: '',
        cell: (m) => button('Remove', { danger: true, confirm: `Remove monitor ${m.name}? Files in ${m.dir} are no longer taken in.` }, async () => {
          await api('DELETE', `/api/v1/monitors/${enc(m.name)}`);
          flash(`Monitor ${m.name} removed.`);
          await reload();
        }),
      }] : []),
    ], found, { id: 'monitors-table', empty: 'No folder monitor yet.' })));
    if (change) {
      view.append(formCard('new-monitor', 'New folder monitor', [
        { name: 'name', label: 'Name', required: true },
        { name: 'dir', label: 'Directory on the server', required: true, placeholder: '/srv/outbound' },
        { name: 'match', label: 'Match', placeholder: '*' },
        { name: 'account', label: 'Account', kind: 'select', options: accountList.map((a) => a.name) },
        { name: 'target_dir', label: 'Into (in the home)', placeholder: '/' },
        { name: 'stable_ms', label: 'Stable for, ms', kind: 'number', placeholder: '5000' },
      ], 'Add monitor', async (v) => {
        await api('POST', '/api/v1/monitors', {
          body: compact({
            name: v.name, dir: v.dir, match: v.match, account: v.account, target_dir: v.target_dir, stable_ms: num(v.stable_ms),
          }),
        });
        flash(`Monitor ${v.name} added.`);
        await reload();
      }, { open: false }));
    }
  }

  // ---- admins and audit ----

  async function admins(view, params) {
    view.append(el('h2', {}, 'Admins'));
    const q = new URLSearchParams({ limit: params.get('limit') || '200' });
    if (params.get('admin')) q.set('admin', params.get('admin'));
    if (params.get('since')) q.set('since', new Date(params.get('since')).toISOString());
    const [found, audit] = await Promise.all([api('GET', '/api/v1/admins'), api('GET', `/api/v1/audit?${q}`)]);
    const change = may('admins');
    view.append(card(null, dataTable([
      { label: 'Name', value: (a) => a.name, cell: (a) => link(`#/admin/${enc(a.name)}`, a.name) },
      { label: 'Role', value: (a) => a.role },
      { label: 'Password', value: (a) => (a.has_password ? 'set' : 'none') },
      { label: 'Tokens', value: (a) => a.tokens, cls: 'num' },
      { label: 'Created', value: (a) => a.created_at, cell: (a) => fmtTime(a.created_at) },
      ...(change ? [{
        label: '',
        cell: (a) => (a.name === state.session.name ? '' : button('Remove', { danger: true, confirm: `Remove admin ${a.name}? Its tokens stop working and its sessions end.` }, async () => {
          await api('DELETE', `/api/v1/admins/${enc(a.name)}`);
          flash(`Admin ${a.name} removed.`);
          await reload();
        })),
      }] : []),
    ], found, { id: 'admins-table', rowClass: 'admin-row' })));
    if (change) {
      view.append(formCard('new-admin', 'New admin', [
        { name: 'name', label: 'Name', required: true },
        { name: 'role', label: 'Role', kind: 'select', options: [['auditor', 'auditor (reads only)'], ['operator', 'operator (no admins, no cluster)'], ['admin', 'admin (everything)']] },
        { name: 'password', label: 'Password', kind: 'password', help: '8 characters or more; empty: API tokens only.' },
      ], 'Add admin', async (v) => {
        await api('POST', '/api/v1/admins', { body: compact(v) });
        flash(`Admin ${v.name} added.`);
        await reload();
      }, { open: false }));
    }
    const filter = el('form', { class: 'filters', id: 'audit-search' },
      el('label', {}, 'Admin', el('input', { name: 'admin', value: params.get('admin') || '' })),
      el('label', {}, 'Since', el('input', { name: 'since', type: 'datetime-local', value: params.get('since') || '' })),
      el('button', { type: 'submit' }, 'Show'));
    filter.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const next = new URLSearchParams();
      for (const key of ['admin', 'since']) if (filter.elements[key].value) next.set(key, filter.elements[key].value);
      location.hash = `#/admins?${next}`;
    });
    const changeText = (v) => (v ? el('pre', {}, v) : '');
    view.append(card('Audit trail', filter, dataTable([
      { label: 'When', value: (r) => r.at, cell: (r) => fmtTime(r.at) },
      { label: 'Admin', value: (r) => r.admin },
      { label: 'Role', value: (r) => r.role },
      { label: 'Request', value: (r) => r.request, cls: 'path' },
      { label: 'Status', value: (r) => r.status, cls: 'num', cell: (r) => el('span', { class: r.status < 400 ? 'status-done' : 'status-failed' }, String(r.status)) },
      { label: 'Outcome', value: (r) => r.outcome },
      { label: 'From', value: (r) => r.client_addr },
      { label: 'Server', value: (r) => r.node },
      {
        label: 'Details',
        cell: (r) => (r.body || r.before || r.after
          ? el('details', {}, el('summary', {}, 'show'),
            r.body ? el('div', {}, 'Body', changeText(r.body)) : null,
            r.before ? el('div', {}, 'Before', changeText(r.before)) : null,
            r.after ? el('div', {}, 'After', changeText(r.after)) : null)
          : ''),
      },
    ], audit, { id: 'audit-table', rowClass: 'audit-row', empty: 'Nothing recorded.' })));
  }

  async function adminPage(view, name) {
    const [all, tokens] = await Promise.all([
      api('GET', '/api/v1/admins'), api('GET', `/api/v1/admins/${enc(name)}/tokens`),
    ]);
    const a = all.find((x) => x.name === name);
    if (!a) throw new ApiError(404, `Not found: no admin ${name}`);
    const change = may('admins');
    view.append(el('h2', {}, `Admin ${a.name}`));
    view.append(card(null, kvList([
      ['Role', a.role], ['Password', a.has_password ? 'set' : 'none (API tokens only)'],
      ['Created', fmtTime(a.created_at)],
    ])));
    view.append(card('API tokens', dataTable([
      { label: 'Id', value: (t) => t.id },
      { label: 'Label', value: (t) => t.label },
      { label: 'Created', value: (t) => t.created_at, cell: (t) => fmtTime(t.created_at) },
      ...(change ? [{
        label: '',
        cell: (t) => button('Revoke', { danger: true, confirm: `Revoke token ${t.id} of admin ${a.name}? Whatever uses it stops working.` }, async () => {
          await api('DELETE', `/api/v1/admins/${enc(a.name)}/tokens/${enc(t.id)}`);
          flash(`Token ${t.id} revoked.`);
          await reload();
        }),
      }] : []),
    ], tokens, { id: 'admin-tokens-table', empty: 'No token.' }),
    change ? formCard('new-admin-token', 'New token', [
      { name: 'label', label: 'What it is for' },
    ], 'Create token', async (v) => {
      const t = await api('POST', `/api/v1/admins/${enc(a.name)}/tokens`, { body: v });
      await reload();
      flash(`Token ${t.id} created. It is shown this once: `, el('code', { id: 'new-token-text' }, t.token));
    }, { open: false }) : null));
  }

  // ---- settings ----

  async function settings(view) {
    view.append(el('h2', {}, 'Settings'));
    const [policies, endpoints, rules, passwords, idle, deny] = await Promise.all([
      api('GET', '/api/v1/retention/policies'), api('GET', '/api/v1/notifications/endpoints'),
      api('GET', '/api/v1/notifications/rules'), api('GET', '/api/v1/settings/password-policy'),
      api('GET', '/api/v1/settings/idle-limit'), api('GET', '/api/v1/network/deny'),
    ]);
    const change = may('settings');

    const report = el('div', { id: 'retention-report' });
    const runRetention = (dry) => async () => {
      const r = await api('POST', '/api/v1/retention/run', { body: { dry_run: dry } });
      report.replaceChildren(el('h2', {}, dry ? 'Would remove (dry run)' : 'Removed'), dataTable([
        { label: 'Policy', value: (x) => x.policy },
        { label: 'Kind', value: (x) => x.kind },
        { label: 'Older than', value: (x) => x.before, cell: (x) => fmtTime(x.before) },
        { label: 'Count', value: (x) => x.removed, cls: 'num' },
        { label: 'Which', value: (x) => (x.items || []).slice(0, 20).join(', ') + ((x.items || []).length > 20 ? ' …' : '') },
        { label: 'Error', value: (x) => x.error || '' },
      ], r.results, { id: 'retention-results', empty: 'No policy.' }));
    };
    view.append(card('Retention', dataTable([
      { label: 'Name', value: (p) => p.name },
      { label: 'Kind', value: (p) => p.kind },
      { label: 'Older than', value: (p) => p.older_than_ms, cell: (p) => p.older_than },
      { label: 'Account', value: (p) => p.account || '' },
      { label: 'Folder', value: (p) => p.folder || '' },
      { label: 'Action', value: (p) => p.action || '' },
      ...(change ? [{
        label: '',
        cell: (p) => button('Remove', { danger: true, confirm: `Remove retention policy ${p.name}? What it would remove is kept from now on.` }, async () => {
          await api('DELETE', `/api/v1/retention/policies/${enc(p.name)}`);
          flash(`Policy ${p.name} removed.`);
          await reload();
        }),
      }] : []),
    ], policies, { id: 'retention-table', empty: 'No policy: everything is kept.' }),
    change ? el('div', { class: 'form-actions' },
      button('Dry run', { secondary: true, id: 'retention-dry-run' }, runRetention(true)),
      button('Run now', { danger: true, id: 'retention-run', confirm: 'Remove now what the policies say, on every server? This cannot be undone.' }, runRetention(false))) : null,
    report,
    change ? formCard('new-policy', 'Set a policy', [
      { name: 'name', label: 'Name', required: true },
      { name: 'kind', label: 'Kind', kind: 'select', options: ['transfers', 'events', 'attempts', 'files', 'partials'] },
      { name: 'older_than', label: 'Older than', required: true, placeholder: '90d, 12h, 90s' },
      { name: 'account', label: 'Account', help: 'files: the home; partials: only this home.' },
      { name: 'folder', label: 'Folder', help: 'files: the folder of the home.' },
      { name: 'action', label: 'Action', placeholder: 'delete or archive:DIR', help: 'files only.' },
    ], 'Set policy', async (v) => {
      await api('POST', '/api/v1/retention/policies', { body: compact(v) });
      flash(`Policy ${v.name} set.`);
      await reload();
    }, { open: false }) : null));

    view.append(card('Notification endpoints', dataTable([
      { label: 'Name', value: (e) => e.name },
      { label: 'Kind', value: (e) => e.kind },
      { label: 'Where', value: (e) => e.webhook_url || `${e.smtp_host}:${e.smtp_port} (${e.smtp_tls}) → ${(e.to || []).join(', ')}`, cls: 'path' },
      { label: 'Attempts', value: (e) => e.max_attempts, cls: 'num' },
      { label: 'Created', value: (e) => e.created_at, cell: (e) => fmtTime(e.created_at) },
      ...(change ? [{
        label: '',
        cell: (e) => el('span', { class: 'row-actions' },
          button('Send a test', { secondary: true }, async () => {
            const t = await api('POST', `/api/v1/notifications/endpoints/${enc(e.name)}/test`);
            flash(`Test notification queued for ${e.name} as event `, link(`#/event/${enc(t.event_id)}`, t.event_id));
          }),
          button('Remove', { danger: true, confirm: `Remove endpoint ${e.name}? Rules that use it block the removal.` }, async () => {
            await api('DELETE', `/api/v1/notifications/endpoints/${enc(e.name)}`);
            flash(`Endpoint ${e.name} removed.`);
            await reload();
          })),
      }] : []),
    ], endpoints, { id: 'endpoints-table', empty: 'No endpoint.' }),
    change ? formCard('new-endpoint', 'New endpoint', [
      { name: 'name', label: 'Name', required: true },
      { name: 'webhook_url', label: 'Webhook URL', placeholder: 'https://…', help: 'Or fill in the SMTP fields for mail.', wide: true },
      { name: 'smtp_host', label: 'SMTP server' },
      { name: 'smtp_port', label: 'SMTP port', kind: 'number' },
      { name: 'smtp_tls', label: 'SMTP TLS', kind: 'select', options: ['', 'starttls', 'tls', 'none'] },
      { name: 'smtp_username', label: 'SMTP user' },
      { name: 'from', label: 'From' },
      { name: 'to', label: 'To', placeholder: 'ops@example.com, …' },
      { name: 'secret', label: 'Webhook key or SMTP password', kind: 'password', help: 'Webhook: made and shown once when empty.' },
      { name: 'link_base', label: 'Link base', placeholder: 'https://console.example.com' },
    ], 'Add endpoint', async (v) => {
      const made = await api('POST', '/api/v1/notifications/endpoints', {
        body: compact({ ...v, smtp_port: num(v.smtp_port), to: list(v.to) }),
      });
      await reload();
      flash(`Endpoint ${made.name} added.`, made.generated_secret
        ? el('span', {}, ' Its signing key, shown this once: ', el('code', {}, made.generated_secret)) : '');
    }, { open: false }) : null));

    view.append(card('Notification rules', dataTable([
      { label: 'Name', value: (r) => r.name },
      { label: 'On', value: (r) => r.on },
      { label: 'Endpoint', value: (r) => r.endpoint },
      { label: 'Only', value: (r) => ['account', 'route', 'partner'].filter((k) => r[k]).map((k) => `${k} ${r[k]}`).join(', ') },
      { label: 'Created', value: (r) => r.created_at, cell: (r) => fmtTime(r.created_at) },
      ...(change ? [{
        label: '',
        cell: (r) => button('Remove', { danger: true, confirm: `Remove rule ${r.name}?` }, async () => {
          await api('DELETE', `/api/v1/notifications/rules/${enc(r.name)}`);
          flash(`Rule ${r.name} removed.`);
          await reload();
        }),
      }] : []),
    ], rules, { id: 'notify-rules-table', empty: 'No rule.' }),
    change && endpoints.length ? formCard('new-notify-rule', 'New rule', [
      { name: 'name', label: 'Name', required: true },
      { name: 'on', label: 'On', required: true, placeholder: 'event-failed', help: 'event-failed, event-retrying:N, transfer-done, login-ban, role-change, quota:PERCENT' },
      { name: 'endpoint', label: 'Endpoint', kind: 'select', options: endpoints.map((e) => e.name) },
      { name: 'account', label: 'Only account' },
      { name: 'route', label: 'Only route' },
      { name: 'partner', label: 'Only partner' },
    ], 'Add rule', async (v) => {
      await api('POST', '/api/v1/notifications/rules', { body: compact(v) });
      flash(`Rule ${v.name} added.`);
      await reload();
    }, { open: false }) : null));

    view.append(card('Logins', kvList([
      ['Password length at least', passwords.min_length],
      ['Idle accounts refused after', idle.disable_after_idle_days ? `${idle.disable_after_idle_days} days` : 'never'],
      ['Denied networks', (deny.networks || []).join(', ') || 'none'],
    ]), change ? formCard('login-settings', 'Change', [
      { name: 'min_length', label: 'Password length at least', kind: 'number', value: passwords.min_length },
      { name: 'idle_days', label: 'Refuse accounts idle for, days', kind: 'number', value: idle.disable_after_idle_days, help: '0: never.' },
      { name: 'deny', label: 'Denied networks', value: (deny.networks || []).join(', '), wide: true },
    ], 'Save', async (v) => {
      await api('POST', '/api/v1/settings/password-policy', { body: { min_length: num(v.min_length) ?? 8 } });
      await api('POST', '/api/v1/settings/idle-limit', { body: { disable_after_idle_days: num(v.idle_days) ?? 0 } });
      await api('POST', '/api/v1/network/deny', { body: { networks: list(v.deny) } });
      flash('Login settings saved.');
      await reload();
    }, { open: false }) : null));
  }

  // ---- routing ----

  let shownPath = null;
  // Each rendering's number: a page that finishes loading after the user
  // went on to another one is dropped, not shown over it.
  let renderings = 0;

  async function route(opts = {}) {
    if (!state.session) { showLogin(); return; }
    renderings += 1;
    const mine = renderings;
    const hash = location.hash.replace(/^#/, '') || '/dashboard';
    const [path, query] = hash.split('?');
    if (!opts.keepNotice && path !== shownPath) $('notice').hidden = true;
    if (state.pending) {
      flash(...state.pending);
      state.pending = null;
    }
    shownPath = path;
    const params = new URLSearchParams(query || '');
    const view = $('view');
    if (!view.firstChild) view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    const section = path.split('/')[1];
    for (const a of document.querySelectorAll('header nav a')) {
      a.classList.toggle('current', a.dataset.area === section || a.dataset.area === `${section}s`);
    }
    const page = el('div', { id: `page-${section}` });
    const arg = () => decodeURIComponent(path.slice(section.length + 2));
    const pages = {
      dashboard: () => dashboard(page),
      transfers: () => transfers(page, params),
      transfer: () => transfer(page, arg()),
      events: () => events(page, params),
      event: () => eventPage(page, arg()),
      accounts: () => accounts(page),
      account: () => account(page, arg()),
      partners: () => partners(page),
      routes: () => routes(page),
      schedules: () => schedules(page),
      schedule: () => schedule(page, arg()),
      monitors: () => monitors(page),
      admins: () => admins(page, params),
      admin: () => adminPage(page, arg()),
      settings: () => settings(page),
    };
    let failure = null;
    try {
      if (Object.hasOwn(pages, section)) await pages[section]();
      else page.append(el('p', {}, 'No such page.'));
    } catch (e) {
      failure = e;
    }
    if (mine !== renderings) return;
    showError(failure);
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

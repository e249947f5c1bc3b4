// End-to-end test of the Ferry admin console in headless Chromium (Debian's package).
//
// The Rust test (tests/console.rs) runs this script once per phase (FERRY_PHASE) and
// does what a browser cannot in between: the SFTP upload, stopping and starting the
// partner's sshd. Each phase logs in afresh and prints one JSON line:
// {"ok":true,...} (exit 0) or {"ok":false,"error":"..."} (exit 1).
//
// Phases:
//   setup     as the admin: create the account (password, then an SSH key and a quota),
//             the partner (and its "test connection" fingerprint), the route, a
//             schedule, a folder monitor and a retention policy, all through the pages.
//   track     find the uploaded file in file tracking, open its transfer: the event,
//             its attempt, the route step done.
//   resubmit  (partner down) resubmit the event from the transfer's page, wait for the
//             new event's attempt and read its error.
//   bulk      (partner up again) select the failed event on the events page and
//             resubmit it in bulk; wait for it to be done.
//   auditor   as the auditor: every page shows no change control; a forced change with
//             the auditor's session and CSRF token is refused (403), and a change
//             without the CSRF header is refused whoever asks.
//   cluster   the dashboard of a cluster: its members' rows and the workers.
//
// Environment: FERRY_URL (the admin listener), FERRY_ADMIN, FERRY_ADMIN_PASSWORD,
// FERRY_AUDITOR, FERRY_AUDITOR_PASSWORD, FERRY_OUT (artifacts), FERRY_PHASE, and per
// phase FERRY_ACCOUNT, FERRY_ACCOUNT_PASSWORD, FERRY_ACCOUNT_KEY (a .pub line),
// FERRY_PARTNER, FERRY_PARTNER_HOST, FERRY_PARTNER_PORT, FERRY_PARTNER_USER,
// FERRY_PARTNER_HOST_KEY, FERRY_PARTNER_PRIVATE_KEY, FERRY_PARTNER_DIR,
// FERRY_MONITOR_DIR, FERRY_FILE_NAME. Screenshots of each page at 1280x800 and
// 390 px wide. Console errors other than the expected refusals, page errors and CSP
// violations fail the phase.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const TOTAL_TIMEOUT_MS = 150_000;
const STEP_TIMEOUT_MS = 30_000;

/** Reads a required environment variable. */
function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

/** Prints the single result line and exits. */
function finish(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.ok ? 0 : 1);
}

/**
 * Console messages that are not failures: Chromium logs every non-2xx response as
 * "Failed to load resource". The console probes its session on load (401 before
 * login), the test forces refused changes (403), and the browser asks for
 * /favicon.ico on its own (404). A partner test against a stopped partner may fail.
 */
function isExpectedConsoleError(msg) {
  const url = msg.location().url || '';
  const status = /^Failed to load resource: the server responded with a status of (\d+)/
    .exec(msg.text());
  if (!status) return false;
  return (status[1] === '401' && /\/api\/v1\/console\/session$/.test(url))
    || (status[1] === '403' && /\/(resubmit|accounts)$/.test(url))
    || (status[1] === '404' && /\/favicon\.ico$/.test(url));
}

let browser;
let page;
const problems = [];
const screenshots = [];
const dialogs = [];

/** Screenshots of the page as it is, at 1280x800 and at 390 px wide. */
async function shoot(name) {
  const out = env('FERRY_OUT');
  for (const [width, height, suffix] of [[1280, 800, '1280'], [390, 844, '390']]) {
    await page.setViewportSize({ width, height });
    await page.waitForTimeout(120);
    const file = `console-${name}-${suffix}.png`;
    await page.screenshot({ path: path.join(out, file), fullPage: true });
    screenshots.push(file);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function login(name, password) {
  const url = env('FERRY_URL');
  await page.goto(`${url}/console/`, { waitUntil: 'load' });
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.locator('#who').filter({ hasText: name }).waitFor({ state: 'visible' });
}

/** Goes to a console page by its hash and waits for its content. */
async function open(hash, ready) {
  await page.evaluate((h) => { window.location.hash = h; }, hash);
  await page.locator(ready).first().waitFor();
}

/** Opens a folded form, fills it (name -> value; booleans tick boxes), submits it. */
async function submitForm(id, values) {
  const card = page.locator(`#${id}-card`);
  if (await card.evaluate((n) => n.tagName === 'DETAILS' && !n.open)) {
    await card.locator('summary').click();
  }
  for (const [name, value] of Object.entries(values)) {
    const field = page.locator(`#${id}-${name}`);
    if (typeof value === 'boolean') await field.setChecked(value);
    else if (await field.evaluate((n) => n.tagName === 'SELECT')) await field.selectOption(value);
    else await field.fill(String(value));
  }
  await page.click(`#${id}-submit`);
}

/** Waits for the success message and returns its text; fails on an error box. */
async function notice(containing) {
  const ok = page.locator('#notice').filter({ hasText: containing });
  const bad = page.locator('#error:not([hidden])');
  await Promise.race([
    ok.waitFor({ state: 'visible' }),
    bad.waitFor({ state: 'visible' }).then(async () => {
      throw new Error(`the console showed an error: ${await bad.textContent()}`);
    }),
  ]);
  return (await ok.textContent()).trim();
}

/** A request from the page with the session's cookie; its status. */
function forced(method, pathname, { csrf, body } = {}) {
  return page.evaluate(async ([m, p, withCsrf, b]) => {
    const headers = {};
    if (withCsrf) {
      const s = await (await fetch('/api/v1/console/session')).json();
      headers['X-CSRF-Token'] = s.csrf_token;
    }
    if (b) headers['Content-Type'] = 'application/json';
    const res = await fetch(p, { method: m, headers, body: b ? JSON.stringify(b) : undefined });
    return res.status;
  }, [method, pathname, Boolean(csrf), body || null]);
}

/** How many controls that ask for a change the page shows. */
const changeControls = () => page.locator('#view .change, #view form.form').count();

/** Reloads the page until `selector` shows, for up to `secs` seconds. */
async function reloadUntil(selector, secs) {
  const deadline = Date.now() + secs * 1000;
  for (;;) {
    if (await page.locator(selector).count() > 0) return;
    if (Date.now() > deadline) throw new Error(`${selector} did not show within ${secs} s`);
    await page.waitForTimeout(1000);
    await page.evaluate(() => window.dispatchEvent(new HashChangeEvent('hashchange')));
    await page.waitForTimeout(300);
  }
}

// ---- phases ----

async function setup() {
  const account = env('FERRY_ACCOUNT');
  const partner = env('FERRY_PARTNER');
  const url = env('FERRY_URL');
  await page.goto(`${url}/console/`, { waitUntil: 'load' });
  await page.locator('#login').waitFor({ state: 'visible' });
  await shoot('login');
  await login(env('FERRY_ADMIN'), env('FERRY_ADMIN_PASSWORD'));
  await page.locator('#page-dashboard tr.member').first().waitFor();

  // The account: created with a password, then a key and a quota on its page.
  await open('#/accounts', '#page-accounts');
  await submitForm('new-account', { name: account, password: env('FERRY_ACCOUNT_PASSWORD') });
  await page.locator('#page-account h2', { hasText: `Account ${account}` }).waitFor();
  await submitForm('new-key', { public_key: env('FERRY_ACCOUNT_KEY') });
  await notice('added');
  await page.locator('#keys-table tr.key-row').first().waitFor();
  await submitForm('limits', { quota_bytes: 50_000_000, quota_files: 100 });
  await notice('saved');
  await submitForm('new-token', { label: 'console test' });
  const tokenShown = (await page.locator('#new-token-text').textContent()).startsWith('fy_');

  // The partner, and its connection test with the host key's fingerprint.
  await open('#/partners', '#page-partners');
  await submitForm('new-partner', {
    name: partner,
    host: env('FERRY_PARTNER_HOST'),
    port: env('FERRY_PARTNER_PORT'),
    username: env('FERRY_PARTNER_USER'),
    remote_dir: env('FERRY_PARTNER_DIR'),
    host_key: env('FERRY_PARTNER_HOST_KEY'),
    private_key: env('FERRY_PARTNER_PRIVATE_KEY'),
  });
  await notice('added');
  const row = page.locator('#partners-table tr.partner-row', { hasText: partner });
  await row.locator('button.partner-test').click();
  await page.locator('#partner-test-fingerprint').waitFor();
  const fingerprint = (await page.textContent('#partner-test-fingerprint')).trim();
  await shoot('partners');

  // The route: the account's CSV files to the partner, one attempt each.
  await open('#/routes', '#page-routes');
  await submitForm('new-route', {
    name: 'to-partner', account, match: '*.csv', actions: `push:${partner}`, max_attempts: 1,
  });
  await notice('added');
  await page.locator('#routes-table tr.route-row', { hasText: `push:${partner}` }).waitFor();
  await shoot('routes');

  // A schedule (never due during the test), a folder monitor, a retention policy.
  await open('#/schedules', '#page-schedules');
  await submitForm('new-schedule', {
    name: 'nightly-pull', cron: '0 0 3 * * *', action: `pull:${partner}:*.none:${account}/in`,
  });
  await notice('added');
  const nextSlots = (await page.locator('#schedules-table tr.schedule-row td').nth(4).textContent()).trim();
  await shoot('schedules');
  await page.locator('#schedules-table a', { hasText: 'nightly-pull' }).click();
  await page.locator('#page-schedule #firings-table').waitFor();
  await shoot('schedule');
  await open('#/monitors', '#page-monitors');
  await submitForm('new-monitor', { name: 'outbound', dir: env('FERRY_MONITOR_DIR'), account, match: '*.none' });
  await notice('added');
  await shoot('monitors');
  await open('#/settings', '#page-settings');
  await submitForm('new-policy', { name: 'log-90d', kind: 'transfers', older_than: '90d' });
  await notice('set');
  await page.click('#retention-dry-run');
  await page.locator('#retention-results').waitFor();
  await shoot('settings');

  // Sorting and filtering a table: the accounts, by name descending.
  await open('#/accounts', '#accounts-table');
  const header = page.locator('#accounts-table th', { hasText: 'Name' });
  await header.click();
  await header.click();
  const sorted = await header.getAttribute('aria-sort');
  await page.fill('#accounts-table .table-filter', account);
  const filtered = await page.locator('#accounts-table tr.account-row').count();
  await shoot('accounts');
  await page.locator('#accounts-table a', { hasText: account }).click();
  await page.locator('#quota progress').first().waitFor();
  await shoot('account');
  await open('#/admins', '#audit-table tr.audit-row');
  const auditRows = await page.locator('#audit-table tr.audit-row').count();
  await shoot('admins');
  await page.locator('#admins-table a', { hasText: env('FERRY_ADMIN') }).click();
  await submitForm('new-admin-token', { label: 'console test' });
  const adminToken = (await page.locator('#new-token-text').textContent()).trim();
  await page.locator('#admin-tokens-table tbody tr').first().waitFor();
  await shoot('admin');
  return {
    fingerprint, nextSlots, sorted, filtered, tokenShown, adminToken, auditRows, dialogs,
  };
}

async function track() {
  const fileName = env('FERRY_FILE_NAME');
  await login(env('FERRY_ADMIN'), env('FERRY_ADMIN_PASSWORD'));
  await page.locator('#page-dashboard tr.member').first().waitFor();
  await page.locator('#page-dashboard svg rect').first().waitFor({ state: 'attached' });
  const transfersTile = Number(await page.textContent('#tile-transfers .n'));
  await shoot('dashboard');

  await page.click('#nav-transfers');
  await page.locator('#search').waitFor();
  await page.fill('#f-name', fileName.slice(0, -4));
  await page.selectOption('#f-protocol', 'sftp');
  await page.click('#search-submit');
  // The upload itself (the route's push to the partner is listed too).
  const row = page.locator('#results tr.transfer-row', { hasText: fileName })
    .filter({ hasText: 'upload' }).first();
  await row.waitFor();
  const rowsFound = await page.locator('#results tr.transfer-row').count();
  await shoot('tracking');

  await row.locator('a').click();
  await page.locator('#transfer').waitFor();
  const event = page.locator('.event').first();
  await event.locator('tr.attempt').first().waitFor();
  const eventId = await event.getAttribute('data-event');
  const attempts = await event.locator('tr.attempt').allTextContents();
  const stepsDone = await event.locator('li.step.done').allTextContents();
  const direction = await page.locator('#transfer dd').nth(3).textContent();
  await shoot('transfer');

  await page.click('#nav-events');
  await page.locator('#page-events tr.event-row').first().waitFor();
  await shoot('events');
  await open(`#/event/${eventId}`, '#page-event tr.attempt');
  await shoot('event');
  return {
    transfersTile, rowsFound, direction, eventId, attempts, stepsDone,
  };
}

async function resubmit() {
  const fileName = env('FERRY_FILE_NAME');
  await login(env('FERRY_ADMIN'), env('FERRY_ADMIN_PASSWORD'));
  await open(`#/transfers?name=${encodeURIComponent(fileName)}&protocol=sftp`, '#results tr.transfer-row');
  await page.locator('#results tr.transfer-row a').first().click();
  await page.locator('.event button.resubmit').first().click();
  const text = await notice('resubmitted as event');
  const newId = text.split('as event ').pop().trim();
  await page.locator('#notice a').click();
  await page.locator('#page-event').waitFor();
  // The new event's attempt fails: the partner is down (one attempt).
  await reloadUntil('#page-event .event[data-status="failed"] tr.attempt', 60);
  const attempt = await page.locator('#page-event tr.attempt').first().textContent();
  await shoot('resubmitted');
  // The file's page now lists both events: the first done, the second failed.
  await page.click('#transfer-link');
  // Scoped to the transfer's page: the event's page, which holds the new
  // event's card too, stays shown until the transfer's page has loaded.
  await page.locator(`#page-transfer .event[data-event="${newId}"] tr.attempt`).waitFor();
  const onTransfer = await page.locator('#page-transfer .event').evaluateAll((cards) => cards.map((c) => c.dataset.status));
  await shoot('transfer-resubmitted');
  return {
    newId, attempt, onTransfer, dialogs,
  };
}

async function bulk() {
  await login(env('FERRY_ADMIN'), env('FERRY_ADMIN_PASSWORD'));
  await open('#/events?status=failed', '#events-table tr.event-row');
  const picks = page.locator('#events-table tr.event-row input.pick');
  const failedShown = await picks.count();
  for (let i = 0; i < failedShown; i += 1) await picks.nth(i).check();
  await page.click('#bulk-resubmit');
  const text = await notice('resubmitted');
  await open('#/events?status=done', '#events-table tr.event-row');
  await shoot('events-bulk');
  // What the admin sees, to compare with the auditor's.
  const controls = await controlsOnEveryPage();
  return {
    failedShown, text, controls, dialogs,
  };
}

/** Every page but the file's, each with what shows it has loaded. */
function everyPage() {
  return {
    '#/dashboard': '#page-dashboard tr.member',
    '#/transfers': '#results',
    '#/events': '#events-table',
    '#/accounts': '#accounts-table',
    [`#/account/${env('FERRY_ACCOUNT')}`]: '#keys-table',
    '#/partners': '#partners-table',
    '#/routes': '#routes-table',
    '#/schedules': '#schedules-table',
    '#/monitors': '#monitors-table',
    '#/admins': '#audit-table',
    [`#/admin/${env('FERRY_ADMIN')}`]: '#admin-tokens-table',
    '#/settings': '#endpoints-table',
  };
}

/** How many change controls each page shows to the session's role. */
async function controlsOnEveryPage() {
  const controls = {};
  for (const [hash, ready] of Object.entries(everyPage())) {
    await open(hash, ready);
    controls[hash] = await changeControls();
  }
  return controls;
}

async function auditor() {
  await login(env('FERRY_AUDITOR'), env('FERRY_AUDITOR_PASSWORD'));
  const controls = await controlsOnEveryPage();
  await open(`#/transfers?name=${encodeURIComponent(env('FERRY_FILE_NAME'))}`, '#results tr.transfer-row');
  await page.locator('#results tr.transfer-row a').first().click();
  await page.locator('.event tr.attempt').first().waitFor();
  controls.transfer = await changeControls();
  await shoot('transfer-auditor');
  const eventId = await page.locator('.event').first().getAttribute('data-event');
  await open(`#/event/${eventId}`, '#page-event tr.attempt');
  controls.event = await changeControls();
  const forcedResubmit = await forced('POST', `/api/v1/events/${eventId}/resubmit`, { csrf: true });
  const forcedAccount = await forced('POST', '/api/v1/accounts', { csrf: true, body: { name: 'by-auditor' } });
  const noCsrf = await forced('POST', `/api/v1/events/${eventId}/resubmit`, { csrf: false });
  return {
    controls, forcedResubmit, forcedAccount, noCsrf,
  };
}

async function cluster() {
  await login(env('FERRY_ADMIN'), env('FERRY_ADMIN_PASSWORD'));
  await page.locator('#members-table tr.member').first().waitFor();
  const members = await page.locator('#members-table tr.member')
    .evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent).join(' | ')));
  const workers = await page.locator('#workers-table tbody tr').count();
  const alerts = await page.locator('#alerts-table tr.alert-row').allTextContents();
  await shoot('dashboard-cluster');
  return { members, workers, alerts };
}

const PHASES = {
  setup, track, resubmit, bulk, auditor, cluster,
};

/** Runs the phase; resolves to the success result or throws. */
async function run() {
  const phase = env('FERRY_PHASE');
  if (!Object.hasOwn(PHASES, phase)) throw new Error(`unknown phase ${phase}`);
  fs.mkdirSync(env('FERRY_OUT'), { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({
    ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 },
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  // Nothing but the server itself is ever asked.
  const origin = new URL(env('FERRY_URL')).origin;
  context.on('request', (req) => {
    if (!req.url().startsWith(origin) && !req.url().startsWith('data:')) {
      problems.push(`request to another origin: ${req.url()}`);
    }
  });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !isExpectedConsoleError(msg)) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  // Every destructive action asks first: answer yes, and keep the question.
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.accept();
  });
  const result = await PHASES[phase]();
  if (problems.length > 0) throw new Error('the page reported errors');
  return { ok: true, phase, ...result, screenshots };
}

/** Saves a failure screenshot if a page exists; never throws. */
async function failureScreenshot() {
  try {
    const out = process.env.FERRY_OUT;
    if (page && out) {
      fs.mkdirSync(out, { recursive: true });
      const file = `console-failure-${process.env.FERRY_PHASE || 'x'}.png`;
      await page.screenshot({ path: path.join(out, file), fullPage: true, timeout: 5000 });
    }
  } catch (_) {
    // Best effort only.
  }
}

/** Runs the phase under the overall time limit and reports the outcome. */
async function main() {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TOTAL_TIMEOUT_MS / 1000} s`)),
      TOTAL_TIMEOUT_MS);
  });
  let result;
  try {
    result = await Promise.race([run(), timeout]);
  } catch (err) {
    await failureScreenshot();
    const extra = problems.length > 0 ? ` (${problems.join('; ')})` : '';
    result = { ok: false, error: `${err.message.split('\n')[0]}${extra}` };
  }
  clearTimeout(timer);
  // Never let a hung browser keep the process alive.
  setTimeout(() => finish(result), 10_000).unref();
  try {
    if (browser) await browser.close();
  } catch (_) {
    // Ignore.
  }
  finish(result);
}

main();

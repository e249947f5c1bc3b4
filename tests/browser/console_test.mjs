// End-to-end test of the Ferry admin console in headless Chromium (Debian's package).
//
// Environment: FERRY_URL (the admin listener, https://127.0.0.1:PORT), FERRY_ADMIN and
// FERRY_ADMIN_PASSWORD (an admin), FERRY_AUDITOR and FERRY_AUDITOR_PASSWORD (an
// auditor), FERRY_FILE_NAME (a file uploaded and routed before), FERRY_OUT (artifact
// directory). Logs in as the admin, sees the dashboard, finds the file in file
// tracking, opens its page (event, attempt, resubmit button); checks that a change
// without the CSRF header is refused; logs out, logs in as the auditor and sees no
// resubmit button, and a forced change with the auditor's session and CSRF token is
// refused. Screenshots of each page at 1280x800 and 390 px wide. Prints one JSON line:
// {"ok":true,...} (exit 0) or {"ok":false,"error":"..."} (exit 1). Console errors other
// than the expected refusals, page errors and CSP violations fail the test.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const TOTAL_TIMEOUT_MS = 120_000;
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
 * /favicon.ico on its own (404).
 */
function isExpectedConsoleError(msg) {
  const url = msg.location().url || '';
  const status = /^Failed to load resource: the server responded with a status of (\d+)/
    .exec(msg.text());
  if (!status) return false;
  return (status[1] === '401' && /\/api\/v1\/console\/session$/.test(url))
    || (status[1] === '403' && /\/resubmit$/.test(url))
    || (status[1] === '404' && /\/favicon\.ico$/.test(url));
}

let browser;
let page;
const problems = [];
const screenshots = [];

/** Screenshots of the page as it is, at 1280x800 and at 390 px wide. */
async function shoot(out, name) {
  for (const [width, height, suffix] of [[1280, 800, '1280'], [390, 844, '390']]) {
    await page.setViewportSize({ width, height });
    await page.waitForTimeout(150);
    const file = `console-${name}-${suffix}.png`;
    await page.screenshot({ path: path.join(out, file), fullPage: true });
    screenshots.push(file);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function login(url, name, password) {
  await page.goto(`${url}/console/`, { waitUntil: 'load' });
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.locator('#who').filter({ hasText: name }).waitFor({ state: 'visible' });
}

/** POSTs to `path` from the page with the session's cookie; the status. */
function forcedPost(pathname, withCsrf) {
  return page.evaluate(async ([p, csrf]) => {
    const headers = {};
    if (csrf) {
      const s = await (await fetch('/api/v1/console/session')).json();
      headers['X-CSRF-Token'] = s.csrf_token;
    }
    const res = await fetch(p, { method: 'POST', headers });
    return res.status;
  }, [pathname, withCsrf]);
}

/** Runs the whole scenario; resolves to the success result or throws. */
async function run() {
  const url = env('FERRY_URL');
  const out = env('FERRY_OUT');
  const fileName = env('FERRY_FILE_NAME');
  fs.mkdirSync(out, { recursive: true });

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
  const origin = new URL(url).origin;
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
  page.on('dialog', (dialog) => dialog.dismiss());

  // The login page, then the dashboard.
  await page.goto(`${url}/console/`, { waitUntil: 'load' });
  await page.locator('#login').waitFor({ state: 'visible' });
  await shoot(out, 'login');
  await login(url, env('FERRY_ADMIN'), env('FERRY_ADMIN_PASSWORD'));
  await page.locator('#page-dashboard tr.member').first().waitFor();
  await page.locator('#page-dashboard svg rect').first().waitFor({ state: 'attached' });
  const transfersTile = await page.textContent('#tile-transfers .n');
  if (Number(transfersTile) < 1) throw new Error(`dashboard shows ${transfersTile} transfers`);
  await shoot(out, 'dashboard');

  // File tracking: find the file by (part of) its name.
  await page.click('#nav-transfers');
  await page.locator('#search').waitFor();
  await page.fill('#f-name', fileName.slice(0, -4));
  await page.click('#search-submit');
  // The upload itself (the route's copy to the other account is listed too).
  const row = page.locator('#results tr.transfer-row', { hasText: fileName })
    .filter({ hasText: 'sftp' }).first();
  await row.waitFor();
  await shoot(out, 'tracking');

  // The transfer's page: its event, the attempt, and (for an admin) resubmit.
  await row.locator('a').click();
  await page.locator('#transfer').waitFor();
  const event = page.locator('.event').first();
  await event.waitFor();
  await event.locator('tr.attempt').first().waitFor();
  const stepsDone = await event.locator('li.step.done').allTextContents();
  const eventId = await event.getAttribute('data-event');
  const attemptText = await event.locator('tr.attempt').first().textContent();
  const adminSawResubmit = await page.locator('.event button.resubmit').count() > 0;
  await shoot(out, 'transfer');

  // A change without the CSRF header is refused, whoever the session is.
  const noCsrfChange = await forcedPost(`/api/v1/events/${eventId}/resubmit`, false);

  // The events page, then log out.
  await page.click('#nav-events');
  await page.locator('#page-events tr.event-row').first().waitFor();
  await shoot(out, 'events');
  await page.click('#logout');
  await page.locator('#login').waitFor({ state: 'visible' });

  // The auditor sees the same transfer and no button that changes anything.
  await login(url, env('FERRY_AUDITOR'), env('FERRY_AUDITOR_PASSWORD'));
  await page.locator('#page-dashboard tr.member').first().waitFor();
  await page.goto(`${url}/console/#/transfers?name=${encodeURIComponent(fileName)}`);
  const auditorRow = page.locator('#results tr.transfer-row', { hasText: fileName }).first();
  await auditorRow.waitFor();
  await auditorRow.locator('a').click();
  await page.locator('.event tr.attempt').first().waitFor();
  let auditorSawResubmit = await page.locator('button.resubmit').count() > 0;
  await shoot(out, 'transfer-auditor');
  await page.click('#nav-events');
  await page.locator('#page-events tr.event-row').first().waitFor();
  auditorSawResubmit = auditorSawResubmit || await page.locator('button.resubmit').count() > 0;
  const auditorForcedChange = await forcedPost(`/api/v1/events/${eventId}/resubmit`, true);

  if (problems.length > 0) throw new Error('the page reported errors');
  return {
    ok: true,
    eventId,
    attempt: attemptText,
    stepsDone,
    adminSawResubmit,
    auditorSawResubmit,
    auditorForcedChange,
    noCsrfChange,
    screenshots,
  };
}

/** Saves a failure screenshot if a page exists; never throws. */
async function failureScreenshot() {
  try {
    const out = process.env.FERRY_OUT;
    if (page && out) {
      fs.mkdirSync(out, { recursive: true });
      await page.screenshot({ path: path.join(out, 'console-failure.png'), fullPage: true, timeout: 5000 });
    }
  } catch (_) {
    // Best effort only.
  }
}

/** Runs the scenario under the overall time limit and reports the outcome. */
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

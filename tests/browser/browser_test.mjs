// End-to-end test of the Ferry browser client in headless Chromium (Debian's package).
//
// Environment: FERRY_URL (https://127.0.0.1:PORT), FERRY_USER, FERRY_PASSWORD,
// FERRY_FILE1, FERRY_FILE2 (local files to upload), FERRY_OUT (artifact directory).
// Logs in through the form, uploads both files at once, waits for them to finish and
// appear in the listing, downloads one, takes a screenshot, and prints one JSON line:
// {"ok":true,"listed":[...],"downloaded":"...","screenshot":"..."} (exit 0), or
// {"ok":false,"error":"..."} (exit 1). Console errors, page errors and CSP violations
// fail the test.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const TOTAL_TIMEOUT_MS = 90_000;
const STEP_TIMEOUT_MS = 60_000;

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
 * Console messages that are not failures. Chromium logs every non-2xx response as
 * "Failed to load resource": the client probes GET /api/v1/session on load, which
 * answers 401 before login, and the browser asks for /favicon.ico on its own.
 */
function isExpectedConsoleError(msg) {
  const url = msg.location().url || '';
  const status = /^Failed to load resource: the server responded with a status of (\d+)/
    .exec(msg.text());
  if (!status) return false;
  return (status[1] === '401' && /\/api\/v1\/session$/.test(url))
    || (status[1] === '404' && /\/favicon\.ico$/.test(url));
}

let browser;
let page;
const problems = [];

/** Runs the whole scenario; resolves to the success result or throws. */
async function run() {
  const url = env('FERRY_URL');
  const user = env('FERRY_USER');
  const password = env('FERRY_PASSWORD');
  const files = [env('FERRY_FILE1'), env('FERRY_FILE2')];
  const out = env('FERRY_OUT');
  fs.mkdirSync(out, { recursive: true });
  const names = files.map((f) => path.basename(f));

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
  // Report CSP violations through the console too (init scripts are not subject to CSP).
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !isExpectedConsoleError(msg)) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('dialog', (dialog) => dialog.accept());

  await page.goto(url, { waitUntil: 'load' });
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.locator('#files-view:visible, #password-view:visible, #status.error').first().waitFor();
  if (await page.locator('#status.error').count() > 0) {
    throw new Error(`login failed: ${await page.textContent('#status')}`);
  }
  await page.locator('#account').filter({ hasText: user }).waitFor({ state: 'visible' });

  // With FERRY_NEW_PASSWORD set: change the password through the form (its
  // POST carries the CSRF token like every other), then go on with the files.
  let passwordChanged = false;
  const newPassword = process.env.FERRY_NEW_PASSWORD;
  // With FERRY_MUST_CHANGE set too (the admin flagged the password): the
  // login leads straight to the form, which cannot be cancelled.
  let forcedToChange = false;
  if (process.env.FERRY_MUST_CHANGE) {
    await page.locator('#password-required').waitFor({ state: 'visible' });
    if (await page.locator('#files-view').isVisible()) throw new Error('files shown before the change');
    if (await page.locator('#password-cancel').isVisible()) throw new Error('the forced change can be cancelled');
    forcedToChange = true;
  }
  if (newPassword) {
    if (!forcedToChange) await page.click('#password-open');
    await page.locator('#password-form').waitFor({ state: 'visible' });
    await page.fill('#password-current', password);
    await page.fill('#password-new', newPassword);
    await page.fill('#password-repeat', newPassword);
    await page.click('#password-submit');
    await page.locator('#files-view:visible, #status.error').first().waitFor();
    if (await page.locator('#status.error').count() > 0) {
      throw new Error(`password change failed: ${await page.textContent('#status')}`);
    }
    passwordChanged = true;
  }

  await page.setInputFiles('#file-input', files);
  await page.click('#upload-button');
  for (const name of names) {
    const row = page.locator(`#uploads li[data-name=${JSON.stringify(name)}]:is(.done, .failed)`);
    await row.waitFor();
    if (await row.evaluate((li) => li.classList.contains('failed') || !li.querySelector('progress'))) {
      throw new Error(`upload of ${name} failed: ${await row.textContent()}`);
    }
  }
  for (const name of names) {
    await page.locator(`#listing tr[data-name=${JSON.stringify(name)}][data-kind="file"]`).waitFor();
  }
  const listed = await page.locator('#listing tr[data-name]')
    .evaluateAll((rows) => rows.map((r) => r.dataset.name));

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator(`#listing tr[data-name=${JSON.stringify(names[0])}] a[download]`).click(),
  ]);
  const downloaded = path.join(out, `downloaded-${names[0]}`);
  await download.saveAs(downloaded);
  const failure = await download.failure();
  if (failure) throw new Error(`download failed: ${failure}`);

  const screenshot = path.join(out, 'browser.png');
  await page.screenshot({ path: screenshot, fullPage: true });

  // With FERRY_LOGOUT set: log out, then put the old cookie back and check
  // that it is refused: revoked on the servers, not just forgotten by the
  // browser (behind a balancer, the next request may reach another edge).
  let loggedOut = false;
  if (process.env.FERRY_LOGOUT) {
    const cookies = await page.context().cookies();
    if (!cookies.some((c) => c.name === 'ferry_session')) throw new Error('no session cookie');
    await page.click('#logout');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await page.context().addCookies(cookies);
    const status = await page.evaluate(async () => {
      const res = await fetch('/api/v1/session', { headers: { 'X-Requested-With': 'ferry-web' } });
      return res.status;
    });
    if (status !== 401) throw new Error(`session still valid after logout (status ${status})`);
    loggedOut = true;
  }
  if (problems.length > 0) throw new Error('the page reported errors');
  return {
    ok: true, listed, downloaded, screenshot, loggedOut, passwordChanged, forcedToChange,
  };
}

/** Saves a failure screenshot if a page exists; never throws. */
async function failureScreenshot() {
  try {
    const out = process.env.FERRY_OUT;
    if (page && out) {
      fs.mkdirSync(out, { recursive: true });
      await page.screenshot({ path: path.join(out, 'failure.png'), fullPage: true, timeout: 5000 });
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

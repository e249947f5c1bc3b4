// Ferry browser client: log in with a session cookie, browse the home folder, download,
// delete, create folders and upload files resumably with tus 1.0.
// Plain ES2020, no build step, no inline code (the page's CSP allows only 'self').
'use strict';

const API = '/api/v1';
const CHUNK_SIZE = 4 * 1024 * 1024;
const MAX_PARALLEL_UPLOADS = 3;
const MAX_RETRIES = 3;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Client state: who is logged in, the CSRF token and the folder being shown. */
const state = { account: null, csrf: null, cwd: '/', must_change_password: false };

/** Uploads waiting for a free slot, and how many are running. */
const uploadQueue = [];
let activeUploads = 0;

const $ = (id) => document.getElementById(id);

/** An API failure: HTTP status (0 for a network error), the JSON `code` and `message`. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------
// Paths and formatting

/** Encodes a home-relative path ("/a b/c") for a URL, one segment at a time ("a%20b/c"). */
function encodePath(path) {
  return path.split('/').filter(Boolean).map(encodeURIComponent).join('/');
}

/** Splits a path into its non-empty segments. */
function segments(path) {
  return path.split('/').filter(Boolean);
}

/** Joins a folder path and an entry name into a full path. */
function joinPath(dir, name) {
  return (dir === '/' ? '' : dir) + '/' + name;
}

/** Formats a byte count for people: 1536 → "1.5 KiB". */
function humanSize(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** Base64 of a string's UTF-8 bytes (btoa alone only handles Latin-1). */
function base64Utf8(text) {
  return bytesToBase64(new TextEncoder().encode(text));
}

/** Base64 of a byte array. */
function bytesToBase64(bytes) {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** SHA-256 of a Blob, base64-encoded, as tus `Upload-Checksum` wants it. */
async function sha256Base64(blob) {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return bytesToBase64(new Uint8Array(digest));
}

/** Resolves after `ms` milliseconds. */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Creates an element with a class name and text content. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------------------------------
// Status area and views

/** Shows a message in the status area; `kind` is 'info' or 'error'. Empty text hides it. */
function setStatus(text, kind = 'info') {
  const status = $('status');
  status.textContent = text;
  status.className = text ? kind : '';
}

/** Shows an error (ApiError or any exception) in the status area. */
function showError(err) {
  setStatus(err instanceof ApiError ? err.message : `Error: ${err.message || err}`, 'error');
}

/** Switches to the login form and forgets the session. */
function showLogin() {
  state.account = null;
  state.csrf = null;
  state.must_change_password = false;
  $('session-info').hidden = true;
  $('files-view').hidden = true;
  $('password-view').hidden = true;
  $('login-view').hidden = false;
  $('listing').replaceChildren();
  $('login-user').focus();
}

/** Switches to the file browser for the logged-in account. */
function showFiles() {
  $('account').textContent = state.account;
  $('session-info').hidden = false;
  $('login-view').hidden = true;
  $('password-view').hidden = true;
  $('files-view').hidden = false;
  openFolder(pathFromHash());
}

/** Switches to the change-password form. */
function showPasswordForm() {
  $('account').textContent = state.account;
  $('session-info').hidden = false;
  $('login-view').hidden = true;
  $('files-view').hidden = true;
  $('password-view').hidden = false;
  // A password an admin set to be changed: nothing else until it is.
  $('password-required').hidden = !state.must_change_password;
  $('password-cancel').hidden = Boolean(state.must_change_password);
  $('password-form').reset();
  $('password-current').focus();
}

// ---------------------------------------------------------------------------------------
// HTTP

/** Turns an error response into an ApiError, reading the JSON `{code, message}` if any. */
async function errorFromResponse(res) {
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    // No JSON body (HEAD, proxies): fall back to the status line.
  }
  const code = (body && body.code) || `http_${res.status}`;
  const message = (body && body.message) || `${res.status} ${res.statusText || 'error'}`;
  return new ApiError(res.status, code, message);
}

/** The headers every API request carries, plus the CSRF token on state-changing ones. */
function baseHeaders(method) {
  const headers = { 'X-Requested-With': 'ferry-web' };
  if (!SAFE_METHODS.has(method) && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  return headers;
}

/**
 * Sends an API request and returns the Response if it succeeded (2xx).
 * `json` is sent as a JSON body. A 401 sends the user back to the login form.
 * Throws ApiError on any failure.
 */
async function api(method, url, { json, headers = {}, body } = {}) {
  const allHeaders = { ...baseHeaders(method), ...headers };
  if (json !== undefined) {
    allHeaders['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(url, {
      method, headers: allHeaders, body, credentials: 'same-origin', cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError(0, 'network', `Network error: ${err.message}`);
  }
  if (res.ok) return res;
  const err = await errorFromResponse(res);
  if (res.status === 401 && state.account) showLogin();
  if (err.code === 'password_change_required' && state.account) {
    state.must_change_password = true;
    showPasswordForm();
  }
  throw err;
}

// ---------------------------------------------------------------------------------------
// Session

/** On page load: reuse a still-valid session cookie, else show the login form. */
async function restoreSession() {
  try {
    const res = await api('GET', `${API}/session`);
    Object.assign(state, await res.json());
    showSession();
  } catch (err) {
    showLogin();
    if (err.status !== 401) showError(err);
  }
}

/** Login form submit: POST the credentials, keep the CSRF token. */
async function login(event) {
  event.preventDefault();
  const button = $('login-submit');
  button.disabled = true;
  try {
    const res = await api('POST', `${API}/session`, {
      json: { user: $('login-user').value, password: $('login-password').value },
    });
    Object.assign(state, await res.json());
    $('login-password').value = '';
    setStatus('');
    showSession();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

/** After a login: the files, or first the change-password form if the password must change. */
function showSession() {
  if (state.must_change_password) showPasswordForm();
  else showFiles();
}

/** Logout button: end the session on the server and show the login form. */
async function logout() {
  try {
    await api('DELETE', `${API}/session`);
  } catch (err) {
    if (err.status !== 401) showError(err);
  }
  showLogin();
}

/**
 * Change-password form submit: the server checks the current password and its policy
 * (length, strength, the last passwords) and says why it refuses.
 */
async function changePassword(event) {
  event.preventDefault();
  if ($('password-new').value !== $('password-repeat').value) {
    setStatus('The two new passwords differ.', 'error');
    return;
  }
  const button = $('password-submit');
  button.disabled = true;
  try {
    await api('POST', `${API}/me/password`, {
      json: { current: $('password-current').value, new: $('password-new').value },
    });
    $('password-form').reset();
    state.must_change_password = false;
    setStatus('Password changed. Other browser sessions of this account have ended.');
    showFiles();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------
// Browsing

/** The folder named by the location hash ("#/a%20b/c" → "/a b/c"); "/" if none or bad. */
function pathFromHash() {
  try {
    return '/' + segments(location.hash.slice(1)).map(decodeURIComponent).join('/');
  } catch (_) {
    return '/';
  }
}

/** Navigates to a folder (through the hash, so Back works). */
function navigate(path) {
  const hash = '#/' + encodePath(path);
  if (location.hash === hash) openFolder(path);
  else location.hash = hash;
}

/** Loads and shows a folder's listing. */
async function openFolder(path) {
  state.cwd = path;
  renderBreadcrumb(path);
  try {
    const res = await api('GET', `${API}/dirs/${encodePath(path)}`);
    const data = await res.json();
    if (state.cwd === path) renderListing(data.entries || []);
  } catch (err) {
    showError(err);
  }
}

/** Reloads the folder being shown. */
function refresh() {
  if (state.account) openFolder(state.cwd);
}

/** Draws the breadcrumb: Home › a › b, every part but the last clickable. */
function renderBreadcrumb(path) {
  const nav = $('breadcrumb');
  nav.replaceChildren();
  const parts = segments(path);
  const crumbs = [['Home', '/']].concat(parts.map((name, i) => [name, '/' + parts.slice(0, i + 1).join('/')]));
  crumbs.forEach(([label, target], i) => {
    if (i > 0) nav.append(el('span', 'sep', '›'));
    if (i === crumbs.length - 1) {
      const here = el('strong', null, label);
      here.setAttribute('aria-current', 'page');
      nav.append(here);
    } else {
      const button = el('button', 'link', label);
      button.type = 'button';
      button.addEventListener('click', () => navigate(target));
      nav.append(button);
    }
  });
}

/** Fills the listing table: folders first, then files, each group by name. */
function renderListing(entries) {
  const rank = { dir: 0, file: 1 };
  const sorted = [...entries].sort((a, b) =>
    (rank[a.kind] ?? 2) - (rank[b.kind] ?? 2) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const rows = sorted.map(entryRow);
  if (rows.length === 0) {
    const empty = el('tr', 'empty');
    const cell = el('td', null, 'This folder is empty.');
    cell.colSpan = 4;
    empty.append(cell);
    rows.push(empty);
  }
  $('listing').replaceChildren(...rows);
}

/** One listing row with name, size, modification time and actions. */
function entryRow(entry) {
  const path = joinPath(state.cwd, entry.name);
  const row = el('tr');
  row.dataset.name = entry.name;
  row.dataset.kind = entry.kind;

  const nameCell = el('td', 'name');
  if (entry.kind === 'dir') {
    const open = el('button', 'link', entry.name);
    open.type = 'button';
    open.addEventListener('click', () => navigate(path));
    nameCell.append(open);
  } else {
    nameCell.textContent = entry.name;
  }

  const sizeCell = el('td', 'num', entry.kind === 'file' ? humanSize(entry.size) : '');
  const timeCell = el('td');
  if (entry.mtime) {
    const time = el('time', null, new Date(entry.mtime).toLocaleString());
    time.dateTime = entry.mtime;
    timeCell.append(time);
  }

  const actions = el('td', 'actions');
  if (entry.kind === 'file') {
    const link = el('a', 'download', 'Download');
    link.href = `${API}/files/${encodePath(path)}`;
    link.download = entry.name;
    link.setAttribute('aria-label', `Download ${entry.name}`);
    actions.append(link);
  }
  if (entry.kind === 'file' || entry.kind === 'dir') {
    const del = el('button', 'link danger', 'Delete');
    del.type = 'button';
    del.setAttribute('aria-label', `Delete ${entry.name}`);
    del.addEventListener('click', () => removeEntry(entry, path));
    actions.append(del);
  }

  row.append(nameCell, sizeCell, timeCell, actions);
  return row;
}

/** Deletes a file or an empty folder after asking. */
async function removeEntry(entry, path) {
  const what = entry.kind === 'dir' ? 'folder' : 'file';
  if (!confirm(`Delete the ${what} "${entry.name}"?`)) return;
  try {
    await api('DELETE', `${API}/${entry.kind === 'dir' ? 'dirs' : 'files'}/${encodePath(path)}`);
    setStatus(`Deleted ${entry.name}.`);
    refresh();
  } catch (err) {
    showError(err);
  }
}

/** New-folder form submit: create the folder inside the current one. */
async function makeFolder(event) {
  event.preventDefault();
  const input = $('mkdir-name');
  const name = input.value.trim();
  if (!name || name.includes('/')) {
    setStatus('Enter a folder name without "/".', 'error');
    return;
  }
  try {
    await api('POST', `${API}/dirs/${encodePath(joinPath(state.cwd, name))}`);
    input.value = '';
    setStatus(`Created folder ${name}.`);
    refresh();
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------------------------------
// Uploads (tus 1.0: creation, checksum)

/** Queues files for upload into the current folder, each with its own progress row. */
function enqueueUploads(files) {
  for (const file of files) {
    const job = { file, path: joinPath(state.cwd, file.name), row: uploadRow(file.name) };
    uploadQueue.push(job);
  }
  pumpUploads();
}

/** Starts queued uploads while fewer than MAX_PARALLEL_UPLOADS are running. */
function pumpUploads() {
  while (activeUploads < MAX_PARALLEL_UPLOADS && uploadQueue.length > 0) {
    const job = uploadQueue.shift();
    activeUploads += 1;
    runUpload(job)
      .then(() => {
        setProgress(job, job.file.size, 'done');
        job.row.classList.add('done');
        refresh();
      })
      .catch((err) => {
        job.row.classList.add('failed');
        job.row.querySelector('.state').textContent = err.message;
        showError(new ApiError(err.status, err.code, `Upload of ${job.file.name} failed: ${err.message}`));
      })
      .finally(() => {
        activeUploads -= 1;
        pumpUploads();
      });
  }
}

/** Adds a row (name, progress bar, state text) to the uploads panel. */
function uploadRow(name) {
  const row = el('li');
  row.dataset.name = name;
  const bar = el('progress');
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute('aria-label', `Upload progress of ${name}`);
  row.append(el('span', 'name', name), bar, el('span', 'state', 'waiting'));
  $('uploads').append(row);
  return row;
}

/** Updates an upload's progress bar; `text` defaults to the percentage. */
function setProgress(job, bytesDone, text) {
  const pct = job.file.size ? Math.floor((bytesDone / job.file.size) * 100) : 100;
  job.row.querySelector('progress').value = pct;
  job.row.querySelector('.state').textContent = text || `${pct}%`;
}

/** localStorage key remembering the tus URL of one file going to one path. */
function resumeKey(job) {
  return `ferry-upload:${JSON.stringify([job.path, job.file.size, job.file.lastModified])}`;
}

/** Asks the server how much of an upload it has; null if the upload is gone (404). */
async function uploadOffset(url) {
  try {
    const res = await api('HEAD', url, { headers: { 'Tus-Resumable': '1.0.0' } });
    return Number(res.headers.get('Upload-Offset'));
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

/** Creates a tus upload for a job's target path; returns its URL (path only). */
async function createUpload(job) {
  const res = await api('POST', `${API}/uploads/`, {
    headers: {
      'Tus-Resumable': '1.0.0',
      'Upload-Length': String(job.file.size),
      'Upload-Metadata': `path ${base64Utf8(job.path)}`,
    },
  });
  const location = res.headers.get('Location');
  if (!location) throw new ApiError(res.status, 'invalid_response', 'upload created without a Location');
  return new URL(location, window.location.href).pathname;
}

/**
 * Uploads one file: resumes a remembered tus upload if the server still has it, else
 * creates one, then sends 4 MiB chunks. A chunk that fails with a network error, a 5xx,
 * a checksum or offset mismatch is retried (with backoff) from the server's offset.
 */
async function runUpload(job) {
  const { file } = job;
  setProgress(job, 0, 'starting');
  if (file.size === 0) {
    // Nothing to stream: a plain PUT creates the empty file.
    await api('PUT', `${API}/files/${encodePath(job.path)}`, { body: new Blob([]) });
    return;
  }

  const key = resumeKey(job);
  let url = localStorage.getItem(key);
  let offset = url ? await uploadOffset(url) : null;
  if (offset === null) {
    url = await createUpload(job);
    localStorage.setItem(key, url);
    offset = 0;
  }

  let failures = 0;
  for (;;) {
    try {
      if (failures > 0) {
        offset = await uploadOffset(url);
        if (offset === null) {
          localStorage.removeItem(key);
          throw new ApiError(404, 'not_found', 'the upload expired on the server; try again');
        }
      }
      if (offset >= file.size) break;
      setProgress(job, offset);
      offset = await sendChunk(job, url, offset);
      failures = 0;
    } catch (err) {
      const retryable = err.status === 0 || err.status === 409 || err.status === 460
        || (err.status >= 500 && err.status !== 507 && err.status !== 501);
      if (!retryable || failures >= MAX_RETRIES) throw err;
      failures += 1;
      setProgress(job, offset, `retrying (${failures}/${MAX_RETRIES})…`);
      await sleep(1000 * 2 ** (failures - 1));
    }
  }
  localStorage.removeItem(key);
}

/**
 * PATCHes the chunk starting at `offset` with XMLHttpRequest (for progress events).
 * Resolves to the server's new offset; rejects with ApiError.
 */
async function sendChunk(job, url, offset) {
  const chunk = job.file.slice(offset, offset + CHUNK_SIZE);
  const checksum = await sha256Base64(chunk);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PATCH', url);
    const headers = {
      ...baseHeaders('PATCH'),
      'Tus-Resumable': '1.0.0',
      'Upload-Offset': String(offset),
      'Content-Type': 'application/offset+octet-stream',
      'Upload-Checksum': `sha256 ${checksum}`,
    };
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener('progress', (e) => setProgress(job, offset + e.loaded));
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        const next = Number(xhr.getResponseHeader('Upload-Offset'));
        resolve(Number.isFinite(next) && next > offset ? next : offset + chunk.size);
        return;
      }
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        // Not JSON.
      }
      if (xhr.status === 401 && state.account) showLogin();
      reject(new ApiError(xhr.status, (body && body.code) || `http_${xhr.status}`,
        (body && body.message) || `${xhr.status} ${xhr.statusText || 'error'}`));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'network error')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'network', 'upload aborted')));
    xhr.send(chunk);
  });
}

/** Upload form submit: queue the chosen files and clear the input. */
function uploadSelected(event) {
  event.preventDefault();
  const input = $('file-input');
  if (input.files.length === 0) {
    setStatus('Choose one or more files first.', 'error');
    return;
  }
  enqueueUploads([...input.files]);
  input.value = '';
}

/** Wires drag-and-drop of files onto the file browser. */
function setupDropzone() {
  const view = $('files-view');
  const zone = $('dropzone');
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  view.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    zone.classList.add('over');
  });
  view.addEventListener('dragleave', (e) => {
    if (!view.contains(e.relatedTarget)) zone.classList.remove('over');
  });
  view.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    zone.classList.remove('over');
    enqueueUploads([...e.dataTransfer.files]);
  });
}

// ---------------------------------------------------------------------------------------
// Start

/** Connects the page's controls and looks for an existing session. */
function init() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('password-open').addEventListener('click', showPasswordForm);
  $('password-form').addEventListener('submit', changePassword);
  $('password-cancel').addEventListener('click', () => {
    setStatus('');
    showFiles();
  });
  $('mkdir-form').addEventListener('submit', makeFolder);
  $('upload-form').addEventListener('submit', uploadSelected);
  window.addEventListener('hashchange', () => {
    if (state.account) openFolder(pathFromHash());
  });
  setupDropzone();
  restoreSession();
}

init();

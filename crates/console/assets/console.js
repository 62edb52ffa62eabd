// The console's script: sign-in, navigation without reloads, the once-a-second refresh of the
// current view, action buttons and forms, and live logs. Every request is signed here with the
// key pair the tab keeps in sessionStorage (sigv4.js); the secret key itself is never sent.
//
// The server renders every page as an escaped HTML fragment; this script only moves those
// fragments into the page and writes API data (errors, log lines) as text, never as markup. The
// markup contract it follows is in crates/console/src/lib.rs.
(function () {
  'use strict';

  const CONSOLE = '/console';
  const VIEW = '/console/view';
  const STORAGE_KEY = 'flotilla.console.credentials';
  const REFRESH_MS = 1000;
  const MAX_LOG_LINES = 5000;
  // Errors meaning the key pair itself is refused: the tab signs out and says why.
  const AUTH_ERRORS = new Set([
    'UnrecognizedClientException',
    'InvalidSignatureException',
    'AccessDeniedException',
    'MissingAuthenticationTokenException',
    'IncompleteSignatureException',
  ]);

  const $ = (id) => document.getElementById(id);
  const ui = {
    signin: $('signin'),
    form: $('signin-form'),
    keyId: $('access-key-id'),
    secret: $('secret-access-key'),
    region: $('region'),
    signInButton: $('sign-in'),
    signinError: $('signin-error'),
    sections: $('sections'),
    who: $('who'),
    whoKey: $('who-key'),
    whoRegion: $('who-region'),
    signOut: $('sign-out'),
    flash: $('flash'),
    view: $('view'),
  };

  // ---- Credentials: this tab's session only ----

  let credentials = null;

  function loadCredentials() {
    try {
      const c = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
      return c && c.accessKeyId && c.secretAccessKey && c.region ? c : null;
    } catch (_) {
      return null;
    }
  }

  // ---- Signed requests ----

  // The server's clock minus ours, learnt from its Date header when they disagree by minutes:
  // a signature dated by a wrong clock is refused, as AWS refuses it.
  let clockOffsetMs = 0;

  function noteServerDate(resp) {
    const date = Date.parse(resp.headers.get('Date') || '');
    if (Number.isNaN(date)) return false;
    const offset = date - Date.now();
    if (Math.abs(offset - clockOffsetMs) < 5 * 60 * 1000) return false;
    clockOffsetMs = offset;
    return true;
  }

  // A signed fetch of `url` (service ecs). `options`: method, headers (signed), body, signal,
  // credentials (default: the tab's), unsigned (headers sent but not signed, e.g. If-None-Match).
  async function signedFetch(url, options) {
    const o = options || {};
    const creds = o.credentials || credentials;
    const method = o.method || 'GET';
    const body = o.body || '';
    for (let attempt = 0; ; attempt++) {
      const headers = await SigV4.sign({
        method,
        url,
        headers: o.headers || {},
        body,
        accessKeyId: creds.accessKeyId,
        secretAccessKey: creds.secretAccessKey,
        region: creds.region,
        service: 'ecs',
        date: new Date(Date.now() + clockOffsetMs),
      });
      Object.assign(headers, o.unsigned || {});
      const resp = await fetch(url, {
        method,
        headers,
        body: method === 'GET' || method === 'HEAD' ? undefined : body,
        signal: o.signal,
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
      });
      if (noteServerDate(resp) && attempt === 0 && !resp.ok) {
        const e = await readError(resp.clone());
        if (/^Signature (expired|not yet current)/.test(e.message)) continue;
      }
      return resp;
    }
  }

  // The `{__type, message}` of an error response, `__type` without its namespace (`a#Code`).
  async function readError(resp) {
    const text = await resp.text().catch(() => '');
    try {
      const v = JSON.parse(text);
      if (v && (v.__type || v.message || v.Message)) return errorOf(v);
    } catch (_) {
      // Not JSON: a proxy's page, say.
    }
    return { type: 'HTTP ' + resp.status, message: text.trim().slice(0, 300) || resp.statusText };
  }

  function errorOf(v) {
    const type = String(v.__type || 'Error');
    return { type: type.slice(type.lastIndexOf('#') + 1), message: String(v.message || v.Message || '') };
  }

  function errorText(e) {
    return e.message ? e.type + ': ' + e.message : e.type;
  }

  function networkError(err) {
    return { type: 'NetworkError', message: 'Could not reach the server (' + (err && err.message ? err.message : err) + ').' };
  }

  // ---- Sign-in and sign-out ----

  function showSignedOut(message) {
    credentials = null;
    stopRefresh();
    stopAllLogs();
    ui.view.hidden = true;
    ui.view.replaceChildren();
    ui.sections.hidden = true;
    ui.who.hidden = true;
    ui.whoKey.textContent = '';
    if (ui.whoRegion) ui.whoRegion.textContent = '';
    hideFlash();
    ui.signin.hidden = false;
    ui.signinError.textContent = message || '';
    ui.signinError.hidden = !message;
    document.title = 'Sign in – Flotilla';
    ui.keyId.focus();
  }

  function showSignedIn() {
    ui.signin.hidden = true;
    ui.signinError.hidden = true;
    ui.signinError.textContent = '';
    ui.sections.hidden = false;
    ui.who.hidden = false;
    ui.whoKey.textContent = credentials.accessKeyId;
    if (ui.whoRegion) ui.whoRegion.textContent = credentials.region;
    ui.view.hidden = false;
    markSection();
    startRefresh();
    navigate();
  }

  function signOut(message) {
    sessionStorage.removeItem(STORAGE_KEY);
    showSignedOut(message);
  }

  async function signIn(event) {
    event.preventDefault();
    const trial = {
      accessKeyId: ui.keyId.value.trim(),
      secretAccessKey: ui.secret.value.trim(),
      region: ui.region.value.trim() || document.body.dataset.region,
    };
    ui.signInButton.disabled = true;
    ui.signinError.hidden = true;
    try {
      let error = null;
      try {
        const resp = await signedFetch(VIEW + '/', { credentials: trial });
        if (!resp.ok) error = await readError(resp);
      } catch (err) {
        error = networkError(err);
      }
      if (error) {
        ui.signinError.textContent = errorText(error);
        ui.signinError.hidden = false;
        return;
      }
      credentials = trial;
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(trial));
      ui.secret.value = '';
      showSignedIn();
    } finally {
      ui.signInButton.disabled = false;
    }
  }

  // ---- Flash messages ----

  let flashTimer = 0;
  // Where the shown message came from: a refresh's error is cleared by the next good refresh.
  let flashSource = '';

  function showFlash(kind, text, source) {
    clearTimeout(flashTimer);
    ui.flash.className = 'flash ' + kind;
    ui.flash.textContent = text;
    ui.flash.hidden = false;
    flashSource = source || 'action';
    if (kind === 'ok') flashTimer = setTimeout(hideFlash, 6000);
  }

  function hideFlash() {
    clearTimeout(flashTimer);
    ui.flash.hidden = true;
    ui.flash.textContent = '';
    ui.flash.className = 'flash';
    flashSource = '';
  }

  // ---- The current view ----

  // The page below /console (path and query) the address bar names.
  function currentPage() {
    const path = location.pathname;
    const rest = path === CONSOLE ? '' : path.startsWith(CONSOLE + '/') ? path.slice(CONSOLE.length) : '';
    return rest + location.search;
  }

  const current = {
    url: '', // the view URL being shown
    etag: null,
    generation: 0, // bumped by every navigation: an older answer is dropped
    inFlight: null, // the AbortController of the request for this view, if one runs
    again: false, // refresh once more as soon as the running request ends
    loaded: false, // whether the view has been rendered (else an error replaces it)
    errorKey: '',
  };

  function navigate() {
    if (current.inFlight) current.inFlight.abort();
    current.inFlight = null;
    current.url = VIEW + currentPage();
    current.etag = null;
    current.generation++;
    current.loaded = false;
    current.errorKey = '';
    current.again = false;
    if (flashSource === 'refresh') hideFlash();
    markSection();
    ui.view.setAttribute('aria-busy', 'true');
    refresh();
  }

  async function refresh() {
    if (!credentials) return;
    if (current.inFlight) {
      current.again = true;
      return;
    }
    const generation = current.generation;
    const abort = new AbortController();
    current.inFlight = abort;
    current.again = false;
    try {
      let resp;
      try {
        resp = await signedFetch(current.url, {
          signal: abort.signal,
          unsigned: current.etag ? { 'If-None-Match': current.etag } : {},
        });
      } catch (err) {
        if (generation !== current.generation || abort.signal.aborted) return;
        viewFailed(networkError(err));
        return;
      }
      if (generation !== current.generation) return;
      if (resp.status === 304) {
        if (flashSource === 'refresh') hideFlash();
        return;
      }
      if (!resp.ok) {
        const error = await readError(resp);
        if (generation !== current.generation) return;
        if (AUTH_ERRORS.has(error.type)) {
          signOut(errorText(error));
          return;
        }
        viewFailed(error);
        return;
      }
      const html = await resp.text();
      if (generation !== current.generation) return;
      current.etag = resp.headers.get('ETag');
      current.errorKey = '';
      if (flashSource === 'refresh') hideFlash();
      const first = !current.loaded;
      render(html, !first);
      current.loaded = true;
      if (first) window.scrollTo(0, 0);
    } catch (err) {
      if (!abort.signal.aborted) console.error('console refresh', err);
    } finally {
      if (current.inFlight === abort) {
        current.inFlight = null;
        ui.view.removeAttribute('aria-busy');
        if (current.again && generation === current.generation) refresh();
      }
    }
  }

  // A view that could not be fetched: the error replaces a page never shown, and is flashed over
  // one already shown (which stays, a second old, until a refresh succeeds).
  function viewFailed(error) {
    const key = errorText(error);
    if (current.loaded) {
      if (ui.flash.hidden || flashSource === 'refresh') showFlash('error', key, 'refresh');
      return;
    }
    if (current.errorKey === key) return;
    current.errorKey = key;
    current.etag = null;
    stopAllLogs();
    const box = el('div', 'view-error');
    const crumbs = el('nav', 'crumbs');
    const home = el('a', '', 'Clusters');
    home.href = CONSOLE;
    crumbs.append(home);
    const h1 = el('h1', '', 'This page could not be shown');
    const p = el('p', 'flash error', key);
    box.append(crumbs, h1, p);
    ui.view.replaceChildren(box);
    document.title = 'Error – Flotilla';
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Puts the server's fragment in #view. On a refresh (`keep`), every `data-keep` element with an
  // id the new fragment also has is carried over: a form being filled or a log being followed
  // stays as it is. A page just navigated to starts afresh: another page's form with the same id
  // would carry that page's request.
  function render(html, keep) {
    const template = document.createElement('template');
    template.innerHTML = html;
    const fresh = template.content;

    const active = document.activeElement;
    const focus = active && active !== document.body && ui.view.contains(active) ? saveFocus(active) : null;
    const scrolls = [];
    for (const old of keep ? ui.view.querySelectorAll('[data-keep][id]') : []) {
      const replacement = fresh.getElementById(old.id);
      if (!replacement || replacement === old || !replacement.hasAttribute('data-keep')) continue;
      scrolls.push(saveScroll(old));
      for (const inner of old.querySelectorAll('[data-keep][id]')) scrolls.push(saveScroll(inner));
      replacement.replaceWith(old);
    }
    ui.view.replaceChildren(fresh);
    for (const s of scrolls) restoreScroll(s);
    if (focus) restoreFocus(focus);

    const h1 = ui.view.querySelector('h1');
    document.title = (h1 ? h1.textContent.trim().replace(/\s+/g, ' ') + ' – ' : '') + 'Flotilla';
    startLogs();
  }

  function saveScroll(e) {
    return { e, top: e.scrollTop, left: e.scrollLeft, bottom: atBottom(e) };
  }

  function restoreScroll(s) {
    s.e.scrollTop = s.bottom ? s.e.scrollHeight : s.top;
    s.e.scrollLeft = s.left;
  }

  // Moving a kept element out of the page and back blurs it: put the caret back where it was.
  function saveFocus(e) {
    const f = { e, start: null, end: null, direction: null };
    try {
      f.start = e.selectionStart;
      f.end = e.selectionEnd;
      f.direction = e.selectionDirection;
    } catch (_) {
      // Inputs without a text selection (checkboxes, numbers) throw: nothing to keep.
    }
    return f;
  }

  function restoreFocus(f) {
    if (!f.e.isConnected || document.activeElement === f.e) return;
    f.e.focus({ preventScroll: true });
    if (f.start !== null && f.start !== undefined) {
      try {
        f.e.setSelectionRange(f.start, f.end, f.direction || 'none');
      } catch (_) {
        // The element changed type: leave the caret where focus put it.
      }
    }
  }

  // Marks the section link the current page belongs to.
  function markSection() {
    const page = currentPage().split('?')[0];
    for (const a of ui.sections.querySelectorAll('a')) {
      const section = a.pathname.slice(CONSOLE.length);
      const here = section === '' ? page === '' || page === '/' || page.startsWith('/clusters') : page.startsWith(section);
      if (here) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  // ---- Refresh timer ----

  let refreshTimer = 0;

  function startRefresh() {
    stopRefresh();
    refreshTimer = setInterval(() => {
      if (!document.hidden) refresh();
    }, REFRESH_MS);
  }

  function stopRefresh() {
    clearInterval(refreshTimer);
    refreshTimer = 0;
    if (current.inFlight) current.inFlight.abort();
    current.inFlight = null;
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && credentials) refresh();
  });

  // ---- Navigation ----

  function consoleLink(a) {
    if (!a || !a.href || a.target || a.hasAttribute('download')) return false;
    if (a.origin !== location.origin) return false;
    const p = a.pathname;
    if (p !== CONSOLE && !p.startsWith(CONSOLE + '/')) return false;
    return !p.startsWith(VIEW + '/') && p !== VIEW && !p.startsWith(CONSOLE + '/static/');
  }

  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const a = event.target.closest('a');
    if (!consoleLink(a)) return;
    event.preventDefault();
    if (!credentials) return;
    if (a.href !== location.href) history.pushState(null, '', a.href);
    hideFlash();
    navigate();
  });

  window.addEventListener('popstate', () => {
    if (credentials) navigate();
  });

  // ---- Actions ----

  function call(target, body) {
    const json = JSON.stringify(body);
    return signedFetch('/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': target },
      body: json,
    });
  }

  // Makes one API call for `source` (a button or a form) with `disable` disabled meanwhile.
  async function act(source, body, disable) {
    const target = source.dataset.target;
    for (const b of disable) b.disabled = true;
    source.setAttribute('aria-busy', 'true');
    try {
      let error = null;
      try {
        const resp = await call(target, body);
        if (!resp.ok) error = await readError(resp);
      } catch (err) {
        error = networkError(err);
      }
      if (error) {
        // A refused key included: the next refresh meets the same refusal and signs out.
        showFlash('error', errorText(error));
        return false;
      }
      showFlash('ok', source.dataset.done || 'Done.');
      refresh();
      return true;
    } finally {
      for (const b of disable) b.disabled = false;
      source.removeAttribute('aria-busy');
    }
  }

  function parseBody(source) {
    const text = source.dataset.body;
    if (!text) return {};
    const v = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('data-body is not a JSON object');
    return v;
  }

  ui.view.addEventListener('click', (event) => {
    const button = event.target.closest('button.action');
    if (!button || !ui.view.contains(button) || button.disabled) return;
    event.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    let body;
    try {
      body = parseBody(button);
    } catch (err) {
      showFlash('error', 'The button carries no valid request: ' + err.message);
      return;
    }
    act(button, body, [button]);
  });

  ui.view.addEventListener('submit', (event) => {
    const form = event.target.closest('form');
    if (!form || !form.classList.contains('action')) return;
    event.preventDefault();
    if (form.getAttribute('aria-busy') === 'true') return;
    let body;
    try {
      body = formBody(form);
    } catch (err) {
      showFlash('error', err.message);
      return;
    }
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const buttons = [...form.querySelectorAll('button, input[type=submit]')];
    act(form, body, buttons).then((ok) => {
      if (ok) release(form);
    });
  });

  // A form whose call succeeded is no longer kept over refreshes, so the page's next version
  // (with the values the call just set) replaces it; typing in it again keeps it again.
  function release(form) {
    if (!form.hasAttribute('data-keep')) return;
    form.removeAttribute('data-keep');
    form.addEventListener('input', () => form.setAttribute('data-keep', ''), { once: true });
  }

  // `data-body` with each named field set on it (crate docs): `data-type` int, bool, json, body,
  // else text. Empty optional fields are left out, as the aws CLI leaves out a flag not given.
  function formBody(form) {
    let body;
    try {
      body = parseBody(form);
    } catch (err) {
      throw new Error('The form carries no valid request: ' + err.message);
    }
    for (const field of form.elements) {
      const name = field.name;
      if (!name || field.disabled) continue;
      if (field.tagName === 'BUTTON' || field.tagName === 'FIELDSET' || field.tagName === 'OUTPUT') continue;
      if (['submit', 'button', 'reset', 'image', 'file'].includes(field.type)) continue;
      const type = field.dataset.type || 'text';
      const label = fieldLabel(field);
      if (type === 'bool') {
        body[name] = field.type === 'checkbox' || field.type === 'radio' ? field.checked : field.value === 'true';
        continue;
      }
      if ((field.type === 'checkbox' || field.type === 'radio') && !field.checked) continue;
      if (field.tagName === 'SELECT' && field.multiple) {
        body[name] = [...field.selectedOptions].map((o) => o.value);
        continue;
      }
      const value = field.value;
      if (value.trim() === '') {
        if (field.required) throw new Error(label + ' is required.');
        continue;
      }
      if (type === 'int') {
        const n = Number(value.trim());
        if (!Number.isInteger(n)) throw new Error(label + ' must be a whole number; got ' + JSON.stringify(value) + '.');
        body[name] = n;
      } else if (type === 'json' || type === 'body') {
        let v;
        try {
          v = JSON.parse(value);
        } catch (err) {
          throw new Error(label + ' is not valid JSON: ' + err.message);
        }
        if (type === 'json') body[name] = v;
        else if (v && typeof v === 'object' && !Array.isArray(v)) Object.assign(body, v);
        else throw new Error(label + ' must be a JSON object.');
      } else {
        body[name] = value;
      }
    }
    return body;
  }

  function fieldLabel(field) {
    const label = field.labels && field.labels[0];
    const text = label ? label.textContent.trim().replace(/\s+/g, ' ') : '';
    return text && text.length < 60 ? text : field.name;
  }

  // ---- Logs ----

  const followers = new Map(); // pre element -> AbortController

  function startLogs() {
    for (const [pre, abort] of followers) {
      if (!pre.isConnected) {
        abort.abort();
        followers.delete(pre);
      }
    }
    for (const pre of ui.view.querySelectorAll('pre.logs[data-logs-task]')) {
      if (!pre.hasAttribute('data-following')) follow(pre);
    }
  }

  function stopAllLogs() {
    for (const abort of followers.values()) abort.abort();
    followers.clear();
  }

  function atBottom(e) {
    return e.scrollHeight - e.scrollTop - e.clientHeight < 8;
  }

  // Writes lines ([text, className]) into one `pre`, a tenth of a second at a time: the stream is
  // read as fast as it comes (a reader that falls behind is cut off by the server), the page laid
  // out only as often as a person can look. Keeps the last MAX_LOG_LINES lines, and the view at
  // the bottom if that is where the reader was. `status` is one line that the next replaces (a
  // read refused and tried again).
  function logWriter(pre) {
    let pending = [];
    let timer = 0;
    let status = null;
    const flush = () => {
      clearTimeout(timer);
      timer = 0;
      if (!pending.length) return;
      const bottom = atBottom(pre);
      const chunk = document.createDocumentFragment();
      for (const [text, className] of pending) {
        if (className) chunk.append(el('span', className, text + '\n'));
        else chunk.append(document.createTextNode(text + '\n'));
      }
      pending = [];
      pre.insertBefore(chunk, status);
      let extra = pre.childNodes.length - MAX_LOG_LINES;
      while (extra-- > 0) pre.firstChild.remove();
      if (bottom) pre.scrollTop = pre.scrollHeight;
    };
    return {
      line(text, className) {
        pending.push([text, className || '']);
        if (pending.length > MAX_LOG_LINES) pending.splice(0, pending.length - MAX_LOG_LINES);
        if (!timer) timer = setTimeout(flush, 100);
      },
      flush,
      status(text) {
        flush();
        const bottom = atBottom(pre);
        if (status) status.remove();
        status = text ? el('span', 'log-error', text + '\n') : null;
        if (status) pre.append(status);
        if (bottom) pre.scrollTop = pre.scrollHeight;
      },
    };
  }

  // Follows one task's output into `pre` until the stream ends or the element leaves the page.
  // A read cut short (the server's "read again with startAfterSeq", an agent reconnecting, the
  // network) resumes after the last line shown; a read refused before any line (a task not
  // placed yet) is tried again, less and less often; any other error ends the output with its
  // message.
  async function follow(pre) {
    pre.setAttribute('data-following', '');
    const abort = new AbortController();
    followers.set(pre, abort);
    const out = logWriter(pre);
    let placeholder = true;
    const clearPlaceholder = () => {
      if (placeholder) pre.replaceChildren();
      placeholder = false;
    };
    let lastSeq = null;
    let retryMs = 1000;
    pre.setAttribute('aria-busy', 'true');
    try {
      for (;;) {
        const result = await readLogs(pre, abort.signal, lastSeq, out, clearPlaceholder, (seq) => {
          lastSeq = seq;
        });
        if (abort.signal.aborted || !pre.isConnected || !credentials) return;
        if (result.ended) {
          out.status('');
          out.line('— end of output —', 'log-end');
          out.flush();
          return;
        }
        const e = result.error;
        clearPlaceholder();
        const behind = /startAfterSeq/.test(e.message) && lastSeq !== null;
        if (AUTH_ERRORS.has(e.type) || (result.midStream && !result.resumable && !behind)) {
          out.status('');
          out.line(errorText(e), 'log-error');
          out.flush();
          return;
        }
        if (behind) continue;
        out.status(errorText(e) + ' (trying again in ' + Math.round(retryMs / 1000) + ' s)');
        await sleep(retryMs, abort.signal);
        retryMs = Math.min(retryMs * 2, 30000);
      }
    } catch (err) {
      if (!abort.signal.aborted) console.error('console logs', err);
    } finally {
      pre.removeAttribute('aria-busy');
      if (followers.get(pre) === abort) followers.delete(pre);
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // One read of the logs (after `lastSeq`, if given): `{ended: true}` when the stream completed,
  // else `{error, midStream, resumable}`.
  async function readLogs(pre, signal, lastSeq, out, clearPlaceholder, onSeq) {
    const params = [];
    if (pre.dataset.logsCluster) params.push('cluster=' + SigV4.uriEncode(pre.dataset.logsCluster));
    params.push('task=' + SigV4.uriEncode(pre.dataset.logsTask));
    if (lastSeq !== null) params.push('startAfterSeq=' + lastSeq);
    params.push('follow=true');
    let resp;
    try {
      resp = await signedFetch('/v1/logs?' + params.join('&'), { signal });
    } catch (err) {
      return { error: networkError(err), midStream: false, resumable: true };
    }
    if (!resp.ok) return { error: await readError(resp), midStream: false, resumable: false };
    clearPlaceholder();
    out.status('');
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let pending = '';
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        return { error: networkError(err), midStream: true, resumable: true };
      }
      pending += chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
      const parts = pending.split('\n');
      pending = chunk.done ? '' : parts.pop();
      for (const part of parts) {
        if (!part.trim()) continue;
        let entry;
        try {
          entry = JSON.parse(part);
        } catch (_) {
          out.line(part);
          continue;
        }
        if (entry.__type) {
          reader.cancel().catch(() => {});
          const error = errorOf(entry);
          // The agent went away mid-read: it comes back, and the read can go on from here.
          return { error, midStream: true, resumable: /disconnected while its logs were read/.test(error.message) };
        }
        if (typeof entry.seq === 'number') onSeq(entry.seq);
        const line = entry.line === undefined || entry.line === null ? '' : String(entry.line);
        out.line((entry.container ? entry.container + ' | ' : '') + line, entry.stream === 'stderr' ? 'stderr' : '');
      }
      if (chunk.done) return { ended: true };
    }
  }

  // ---- Start ----

  ui.form.addEventListener('submit', signIn);
  ui.signOut.addEventListener('click', () => signOut(''));

  credentials = loadCredentials();
  if (credentials) showSignedIn();
  else showSignedOut('');
})();

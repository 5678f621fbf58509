// The API, from the console: the session's tokens (this tab's sessionStorage only, sent only to
// this origin), a refresh when the access token expires, and errors that say what the server
// said.
"use strict";

const STORED = "socpipe-session";
const listeners = new Set();

/** An answer other than 2xx: ``status`` and the server's ``detail`` (text or a list of
 * {loc, msg} or {line, message} items). */
export class ApiError extends Error {
  constructor(status, detail, requestId) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
    this.requestId = requestId;
  }

  /** Each problem as one line of text. */
  lines() {
    if (!Array.isArray(this.detail)) return [String(this.detail ?? this.message)];
    return this.detail.map((item) => {
      if (item.line) return `${item.line}: ${item.message}`;
      if (item.message) return item.message;
      const where = (item.loc || []).filter((part) => part !== "body").join(".");
      return where ? `${where}: ${item.msg}` : item.msg;
    });
  }
}

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(STORED)) || null;
  } catch {
    return null;
  }
}

let session = load();

function keep(next) {
  session = next;
  if (next) sessionStorage.setItem(STORED, JSON.stringify(next));
  else sessionStorage.removeItem(STORED);
}

export function signedIn() {
  return Boolean(session && session.access);
}

/** Called when the session ends (signed out, or a refresh refused). */
export function onSignedOut(fn) {
  listeners.add(fn);
}

export function signOut() {
  keep(null);
  for (const fn of listeners) fn();
}

/** Sign in with a local user's name and password. */
export async function signIn(username, password) {
  const pair = await call("POST", "auth/token", { body: { username, password }, auth: false });
  keep({ access: pair.access_token, refresh: pair.refresh_token });
}

/** Sign in with an API key (scripts' credential, also the demo's). */
export async function signInWithKey(key) {
  keep({ access: key, refresh: null });
  try {
    await call("GET", "auth/me", { retry: false });
  } catch (error) {
    keep(null);
    throw error;
  }
}

let refreshing = null;
async function refresh() {
  if (!session || !session.refresh) return false;
  refreshing ??= call("POST", "auth/refresh", { body: { refresh_token: session.refresh }, auth: false })
    .then((pair) => { keep({ access: pair.access_token, refresh: pair.refresh_token }); return true; })
    .catch(() => false)
    .finally(() => { refreshing = null; });
  return refreshing;
}

/** The URL of an API path (relative to the console's origin) with query parameters; arrays
 * repeat the parameter, empty values are left out. */
export function url(path, query = {}) {
  const target = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") target.searchParams.append(name, String(item));
    }
  }
  return target;
}

async function call(method, path, { query, body, auth = true, retry = true, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && session) headers.Authorization = `Bearer ${session.access}`;
  const response = await fetch(url(path, query), {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && auth && retry && (await refresh())) {
    return call(method, path, { query, body, auth, retry: false, signal });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text }; }
  }
  if (!response.ok) {
    if (response.status === 401 && auth) signOut();
    throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : response.statusText,
      response.headers.get("X-Request-ID"));
  }
  return data;
}

export const api = {
  get: (path, query, options = {}) => call("GET", path, { ...options, query }),
  post: (path, body, query) => call("POST", path, { body, query }),
  put: (path, body) => call("PUT", path, { body }),
  patch: (path, body) => call("PATCH", path, { body }),
  delete: (path) => call("DELETE", path),
};

// The HTTP API, same origin. The session cookie authenticates; every state-changing request
// carries the session's CSRF token. Errors arrive as RFC 9457 problem documents.

let csrfToken = "";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || "";
    this.detail = problem.detail || problem.title || `The server answered ${status}.`;
    this.problem = problem;
  }
}

export function setCsrf(token) {
  csrfToken = token || "";
}

// The cookie first: a step-up (second factor, re-authentication) rotates the session and its
// token, and the cookie always holds the current one.
function csrf() {
  const match = document.cookie.match(/(?:^|;\s*)(?:__Host-)?astralog_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : csrfToken;
}

// Every session sets its CSRF cookie beside the (script-unreadable) session cookie, with the same
// lifetime: without it there is no session to ask about, and asking would only log a 401.
export function mayHaveSession() {
  return /(?:^|;\s*)(?:__Host-)?astralog_csrf=/.test(document.cookie);
}

// Called with no argument when the session ended (401 anywhere): the app shows the sign-in page.
export function onSignedOut(listener) {
  listeners.add(listener);
}

export async function api(method, path, body, { signal, quiet401 = false } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      // Chrome keeps a 410 without Cache-Control forever: an org restored after its deletion
      // would stay "gone" in this browser. API answers are live state: never from the cache.
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, {
      title: "Cannot reach Astralog",
      detail: "The server did not answer. Check that it is running and your network is up.",
    });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 300) };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data || {});
    if (response.status === 401 && !quiet401) listeners.forEach((listener) => listener(error));
    throw error;
  }
  return data;
}

export const get = (path, options) => api("GET", path, undefined, options);
export const post = (path, body, options) => api("POST", path, body ?? {}, options);
export const put = (path, body, options) => api("PUT", path, body, options);
export const patch = (path, body, options) => api("PATCH", path, body, options);
export const del = (path, options) => api("DELETE", path, undefined, options);

export function qs(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    search.set(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Cached per session: several pages need the org's sources and plan.
const cache = new Map();
export function cached(path, { refresh = false } = {}) {
  if (refresh || !cache.has(path)) {
    const promise = get(path).catch((error) => {
      cache.delete(path);
      throw error;
    });
    cache.set(path, promise);
  }
  return cache.get(path);
}
export function invalidate(path) {
  if (path) cache.delete(path);
  else cache.clear();
}

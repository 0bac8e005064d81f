// The only way the dashboard talks to the gateway: the public admin API (and /v1 for the
// playground), with the admin key the operator signed in with.

const STORAGE = 'switchboard.adminKey';

export function getKey() {
  return sessionStorage.getItem(STORAGE);
}

export function setKey(key) {
  sessionStorage.setItem(STORAGE, key);
}

export function clearKey() {
  sessionStorage.removeItem(STORAGE);
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) {
  onUnauthorized = f;
}

// Calls the API; returns parsed JSON (or text), throws ApiError with the gateway's message.
export async function api(path, { method = 'GET', body, key = getKey(), raw = false, signal } = {}) {
  const headers = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `The gateway cannot be reached (${e.message}).`);
  }
  if (raw) return res;
  const text = await res.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const message = data?.error?.message || `${res.status} ${res.statusText}`;
    if (res.status === 401 && key === getKey()) onUnauthorized(message);
    throw new ApiError(res.status, message, data);
  }
  return data;
}

export const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, v);
  }
  const s = p.toString();
  return s ? `?${s}` : '';
};

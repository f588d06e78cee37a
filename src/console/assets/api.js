// The one way the pages reach the server: its JSON API, with the signed-in key in the
// `apikey` header. The key is kept in sessionStorage only (this tab, gone when it closes),
// never put in a URL and never written to the console or the page.

const STORAGE = 'switchyard.apikey';

/** The signed-in key, or null. */
export function currentKey() {
  return sessionStorage.getItem(STORAGE);
}

/** Keeps `key` for this tab's session. */
export function rememberKey(key) {
  sessionStorage.setItem(STORAGE, key);
}

/** Forgets the key. */
export function forgetKey() {
  sessionStorage.removeItem(STORAGE);
}

/** An error answer: the server's envelope message (which names the field at fault). */
export class ApiError extends Error {
  constructor(status, body) {
    const envelope = body && typeof body === 'object' ? body.error : null;
    const detail = envelope && envelope.message ? envelope.message : String(body || '');
    super(`${status}${envelope && envelope.code ? ` (code ${envelope.code})` : ''}: ${detail}`);
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls the API: `method` `path` (with its query), `body` sent as JSON when given (an
 * empty string sends an empty body). Resolves to the parsed answer, rejects with ApiError.
 */
export async function api(method, path, body) {
  const headers = { apikey: currentKey() || '' };
  let payload;
  if (body !== undefined && body !== '') {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, {
    method,
    headers,
    body: payload,
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Every item of a paginated list route (`?page=&limit=`), all pages. */
export async function allPages(path, field) {
  const items = [];
  const sep = path.includes('?') ? '&' : '?';
  for (let page = 1; ; page += 1) {
    const answer = await api('GET', `${path}${sep}page=${page}&limit=100`);
    const found = answer[field] || [];
    items.push(...found);
    if (found.length === 0 || !answer.pagination || page >= answer.pagination.totalPages) return items;
  }
}

/** The instances the key can see (`fetchInstances`, all pages). */
export function instances() {
  return allPages('/instance/fetchInstances', 'instances');
}

/** The subscriptions the key can see, each with its `status`. */
export function subscriptions() {
  return allPages('/subscriptions', 'subscriptions');
}

/**
 * The key as a WebSocket subprotocol (`switchyard.apikey.` + unpadded base64url): a browser
 * cannot set headers on a WebSocket, and a key in the URL would end up in access logs.
 */
export function websocketProtocols() {
  const bytes = new TextEncoder().encode(currentKey() || '');
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  const encoded = btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return ['switchyard', `switchyard.apikey.${encoded}`];
}

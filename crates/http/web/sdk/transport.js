// Switchboard SDK: the two signaling transports of docs/signaling.md.
//
// A transport carries JSON messages both ways and reports its loss once. `open()` resolves
// when messages can flow and rejects with code `unreachable` otherwise; after that,
// `onmessage(obj)` is called per server message and `onclose(info)` once when it is gone.

import { SwitchboardError } from './errors.js';

/** How long opening a transport may take. */
export const OPEN_TIMEOUT_MS = 8000;

/**
 * @typedef {object} Transport
 * @property {'ws'|'sse'} kind
 * @property {() => Promise<void>} open
 * @property {(msg: object) => void} send
 * @property {(opts?: {beacon?: object}) => void} close
 * @property {((msg: any) => void) | null} onmessage
 * @property {((info: {code?: number, reason?: string}) => void) | null} onclose
 */

/**
 * `ws(s)://host/ws` for an http(s) base URL.
 * @param {string} base
 */
export function wsUrl(base) {
  const u = new URL('/ws', base);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/** @param {string} what */
function unreachable(what) {
  return new SwitchboardError('unreachable', `could not reach the signaling server (${what})`);
}

/** Parse one message; null when it is not a JSON object. */
function parse(/** @type {unknown} */ text) {
  if (typeof text !== 'string') return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/** One WebSocket: `GET /ws`, one message per text frame. */
export class WsTransport {
  kind = /** @type {const} */ ('ws');
  /** @type {((msg: any) => void) | null} */
  onmessage = null;
  /** @type {((info: {code?: number, reason?: string}) => void) | null} */
  onclose = null;
  /** @type {WebSocket | null} */
  #ws = null;
  #closed = false;
  #url;

  /** @param {string} base server base URL (http/https) */
  constructor(base) {
    this.#url = wsUrl(base);
  }

  /** @returns {Promise<void>} */
  open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.#url);
      } catch (err) {
        reject(unreachable(String(/** @type {Error} */ (err).message || err)));
        return;
      }
      this.#ws = ws;
      let opened = false;
      const timer = setTimeout(() => {
        if (opened) return;
        this.#closed = true;
        ws.close();
        reject(unreachable('WebSocket open timed out'));
      }, OPEN_TIMEOUT_MS);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        if (this.#closed) return;
        resolve();
      };
      ws.onmessage = (ev) => {
        if (this.#closed) return;
        const msg = parse(ev.data);
        if (msg) this.onmessage?.(msg);
      };
      ws.onerror = () => {
        /* the close event that follows carries the details */
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!opened) {
          this.#closed = true;
          reject(unreachable(`WebSocket closed before opening (code ${ev.code})`));
          return;
        }
        if (this.#closed) return;
        this.#closed = true;
        this.onclose?.({ code: ev.code, reason: ev.reason });
      };
    });
  }

  /** @param {object} msg */
  send(msg) {
    if (this.#closed || !this.#ws || this.#ws.readyState !== WebSocket.OPEN) return;
    this.#ws.send(JSON.stringify(msg));
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#ws?.close(1000);
    } catch {
      /* already closing */
    }
  }
}

/**
 * The fallback: server→client over EventSource `GET /sse`, client→server as
 * `POST /signal?conn=<conn>`. POSTs are sent one after another so the server sees them in
 * order (an offer before its candidates).
 */
export class SseTransport {
  kind = /** @type {const} */ ('sse');
  /** @type {((msg: any) => void) | null} */
  onmessage = null;
  /** @type {((info: {code?: number, reason?: string}) => void) | null} */
  onclose = null;
  /** @type {EventSource | null} */
  #es = null;
  #closed = false;
  #conn = '';
  #base;
  #sameOrigin;
  /** @type {Promise<void>} */
  #queue = Promise.resolve();

  /** @param {string} base server base URL (http/https) */
  constructor(base) {
    this.#base = base;
    this.#sameOrigin = typeof location !== 'undefined' && new URL(base).origin === location.origin;
  }

  /** @returns {Promise<void>} */
  open() {
    return new Promise((resolve, reject) => {
      let es;
      try {
        es = new EventSource(new URL('/sse', this.#base).href);
      } catch (err) {
        reject(unreachable(String(/** @type {Error} */ (err).message || err)));
        return;
      }
      this.#es = es;
      let opened = false;
      const timer = setTimeout(() => {
        if (opened) return;
        this.#closed = true;
        es.close();
        reject(unreachable('event stream open timed out'));
      }, OPEN_TIMEOUT_MS);
      es.onmessage = (ev) => {
        if (this.#closed) return;
        const msg = parse(ev.data);
        if (!msg) return;
        if (!opened) {
          if (msg.type === 'hello' && typeof msg.conn === 'string') {
            opened = true;
            clearTimeout(timer);
            this.#conn = msg.conn;
            resolve();
          } else if (msg.type === 'error') {
            // Refused before the stream opened (e.g. origin-not-allowed).
            this.onmessage?.(msg);
          }
          return;
        }
        this.onmessage?.(msg);
      };
      es.onerror = () => {
        // EventSource would reconnect by itself to a *new* stream (new conn); we treat any
        // error as the loss of this one and let the session layer resume.
        es.close();
        if (!opened) {
          clearTimeout(timer);
          this.#closed = true;
          reject(unreachable('event stream failed to open'));
          return;
        }
        this.#lost();
      };
    });
  }

  #lost() {
    if (this.#closed) return;
    this.#closed = true;
    this.#es?.close();
    this.onclose?.({});
  }

  /** @param {object} msg */
  send(msg) {
    if (this.#closed) return;
    const body = JSON.stringify(msg);
    this.#queue = this.#queue.then(() => this.#post(body, false));
  }

  /**
   * @param {string} body
   * @param {boolean} keepalive survive page unload (for `leave`)
   */
  async #post(body, keepalive) {
    if (this.#closed && !keepalive) return;
    const url = new URL('/signal', this.#base);
    url.searchParams.set('conn', this.#conn);
    /** @type {Response} */
    let res;
    try {
      res = await fetch(url.href, {
        method: 'POST',
        body,
        // text/plain keeps a cross-origin POST "simple" (no preflight); both are accepted.
        headers: { 'Content-Type': this.#sameOrigin ? 'application/json' : 'text/plain' },
        cache: 'no-store',
        keepalive,
      });
    } catch {
      this.#lost();
      return;
    }
    if (res.ok) return;
    /** @type {any} */
    let err = null;
    try {
      err = await res.json();
    } catch {
      /* no JSON body */
    }
    if (res.status === 404) {
      // unknown-connection: our stream is gone; resume on a new one.
      this.#lost();
      return;
    }
    const code = err && typeof err.code === 'string' ? err.code : res.status === 413 ? 'too-large' : `http-${res.status}`;
    const fatal = res.status === 403 || !!(err && err.fatal);
    this.onmessage?.({ type: 'error', code, reason: (err && err.reason) || `HTTP ${res.status}`, fatal, ref: err?.ref });
    if (fatal) this.#lost();
  }

  /** @param {{beacon?: object}} [opts] `beacon`: a last message to POST even while the page unloads */
  close(opts = {}) {
    if (opts.beacon && this.#conn) {
      const body = JSON.stringify(opts.beacon);
      this.#queue = this.#queue.then(() => this.#post(body, true));
    }
    if (this.#closed) return;
    this.#closed = true;
    this.#es?.close();
  }
}

/**
 * @param {'ws'|'sse'} kind
 * @param {string} base
 * @returns {Transport}
 */
export function createTransport(kind, base) {
  return kind === 'sse' ? new SseTransport(base) : new WsTransport(base);
}

// Switchboard SDK: the signaling session of docs/signaling.md on top of a transport.
//
// It joins, keeps the session across transport losses (resume with lastSeq, replay, acks,
// exponential backoff), re-joins when the server no longer knows the session
// (bad-resume), queues outgoing messages while reconnecting, and falls back from
// WebSocket to EventSource+POST in 'auto' mode. Given the URLs of several nodes of a
// cluster (docs/cluster.md) it joins on the first that answers and resumes on the node
// in use first, then on the others in turn: any node reaches the room.

import { Emitter } from './emitter.js';
import { SwitchboardError, fromServerError } from './errors.js';
import { createTransport } from './transport.js';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
/** How long we wait for `joined` / `resumed` on an open transport. */
const REPLY_TIMEOUT_MS = 10000;
/** Acks go out at most this often (and soon after a burst ends). */
const ACK_INTERVAL_MS = 1000;
const ACK_IDLE_MS = 100;
/** Application-level ping: detects a dead transport the browser has not noticed yet. */
const PING_INTERVAL_MS = 15000;
const PONG_TIMEOUT_MS = 20000;
/** Messages kept while reconnecting. */
const OUTBOX_LIMIT = 1000;
/** Errors after which the session is over and we do not reconnect. */
const TERMINAL = new Set(['kicked', 'origin-not-allowed']);
/** Failures of a join or resume worth trying again: on the next node, then in a later round. */
const RETRYABLE = new Set(['unreachable', 'unavailable', 'server-shutdown', 'rate-limited']);
/** WebSocket close code of a node that sends its client elsewhere (the room moved): resume at once. */
const MOVED_CODE = 1012;
/** Messages sent with a `ref`, kept to act on errors about them. */
const TRACKED = new Set(['offer', 'answer', 'candidate', 'message', 'kick']);
const TRACKED_LIMIT = 256;
/** A message refused with `rate-limited` is sent again after this long (once). */
const RATE_RETRY_MS = 1000;

/** @typedef {'idle'|'connecting'|'open'|'reconnecting'|'closed'} SignalingState */

/**
 * @typedef {object} JoinParams
 * @property {string} room
 * @property {string} [name]
 * @property {string} [token]
 * @property {string} [topology] 'auto' | 'sfu' | 'mesh' (sent unless 'auto')
 * @property {string|null} [sfuNode] in a cluster, the node whose SFU this client uses
 *   (`/api/ice-servers` "node"): the room's node asks that node for an SFU edge
 */

/**
 * Events: 'state' (SignalingState), 'joined' ({msg, rejoin}), 'resumed' ({msg}),
 * 'message' (a server message other than the handshake/pong/left/error), 'error'
 * (SwitchboardError; `fatal` when the session ended; `request` is the message it is
 * about, when known), 'closed' (SwitchboardError|null).
 */
export class Signaling extends Emitter {
  /** @type {SignalingState} */
  state = 'idle';
  /** Last `seq` processed. */
  lastSeq = 0;
  /** @type {string|null} */
  peerId = null;
  /** @type {string[]} */
  grants = [];
  /** Resume grace period announced by the server (seconds). */
  grace = 0;
  /** Filter for queued messages when they are finally sent (peers may have left meanwhile). */
  canDeliver = (/** @type {any} */ _msg) => true;
  /** Debug logger. */
  log = (/** @type {any[]} */ ..._args) => {};

  /** Base URLs of the nodes, in the order they are tried. @type {string[]} */
  #urls;
  /** Index in #urls of the node in use (or last used): the first one tried on reconnection. */
  #at = 0;
  /** @type {'auto'|'ws'|'sse'} */
  #mode;
  /** @type {'ws'|'sse'|null} */
  #preferred = null;
  /** @type {import('./transport.js').Transport | null} */
  #t = null;
  /** @type {JoinParams | null} */
  #params = null;
  #resumeToken = '';
  #ackedSeq = 0;
  #lastAckAt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #ackTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #pingTimer = null;
  #pingSentAt = 0;
  #awaitingPong = false;
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #reconnectTimer = null;
  #reconnecting = false;
  /** @type {object[]} */
  #outbox = [];
  #refCounter = 0;
  /** Recently sent messages by `ref`. @type {Map<string, {msg: Record<string, unknown>, retried: boolean}>} */
  #tracked = new Map();
  /** @type {(() => void) | null} */
  #onLeft = null;
  /** @type {AbortController | null} */
  #listeners = null;

  /**
   * @param {{url?: string, urls?: string[], transport?: 'auto'|'ws'|'sse'}} opts `urls`: the
   *   nodes of a cluster, tried in this order; `url`: one server
   */
  constructor(opts) {
    super();
    this.#urls = opts.urls && opts.urls.length ? [...opts.urls] : [String(opts.url)];
    this.#mode = opts.transport || 'auto';
  }

  /** The kind of the transport in use (or last used). */
  get kind() {
    return this.#t ? this.#t.kind : this.#preferred;
  }

  /** Base URL of the node in use (or last used; before the first connection the first node). */
  get url() {
    return this.#urls[this.#at];
  }

  /** Base URLs of every node, the one in use first and then in turn. */
  get urls() {
    return [...this.#urls.slice(this.#at), ...this.#urls.slice(0, this.#at)];
  }

  /**
   * Open a transport and join. Resolves with the `joined` message; the 'joined' event has
   * been emitted (synchronously with its arrival) before.
   * @param {JoinParams} params
   * @returns {Promise<any>}
   */
  async join(params) {
    if (this.state !== 'idle' && this.state !== 'closed') {
      throw new SwitchboardError('invalid-state', `join() while ${this.state}`);
    }
    this.#params = { ...params };
    this.#setState('connecting');
    this.#watchNetwork();
    try {
      return await this.#connect(this.#joinMessage(), 'joined', (t, m) => this.#onJoined(t, m, false));
    } catch (err) {
      this.#end(null, false);
      throw err;
    }
  }

  /**
   * Send a message to the server. While reconnecting it is queued and sent after the
   * resume; when the session is over it is dropped. Relayed messages get a `ref`, so
   * errors about them can be told apart: one refused as `rate-limited` is sent again once.
   * @param {Record<string, unknown>} msg
   * @returns {boolean} whether it was sent or queued
   */
  send(msg) {
    return this.#send(msg, false);
  }

  /**
   * @param {Record<string, unknown>} msg
   * @param {boolean} retried
   */
  #send(msg, retried) {
    if (TRACKED.has(String(msg.type)) && msg.ref === undefined) {
      msg = { ...msg, ref: `s${++this.#refCounter}` };
      this.#tracked.set(/** @type {string} */ (msg.ref), { msg, retried });
      if (this.#tracked.size > TRACKED_LIMIT) {
        const oldest = this.#tracked.keys().next().value;
        if (oldest !== undefined) this.#tracked.delete(oldest);
      }
    }
    if (this.state === 'open' && this.#t) {
      this.#t.send(msg);
      return true;
    }
    if (this.state === 'reconnecting' || this.state === 'connecting') {
      if (this.#outbox.length >= OUTBOX_LIMIT) this.#outbox.shift();
      this.#outbox.push(msg);
      return true;
    }
    return false;
  }

  /**
   * End the session with `leave` (waits up to 1 s for `left`) and close the transport.
   * @returns {Promise<void>}
   */
  async leave() {
    if (this.state === 'idle' || this.state === 'closed') return;
    const t = this.state === 'open' ? this.#t : null;
    this.#setState('closed');
    if (t) {
      const left = new Promise((resolve) => {
        this.#onLeft = () => resolve(undefined);
        setTimeout(resolve, 1000);
      });
      if (t.kind === 'sse') t.close({ beacon: { type: 'leave' } });
      else t.send({ type: 'leave' });
      if (t.kind !== 'sse') await left;
    }
    this.#end(null, false);
  }

  /**
   * The node whose SFU this client uses from now on (sent with the next `resume`).
   * @param {string|null} node
   */
  setSfuNode(node) {
    if (this.#params) this.#params.sfuNode = node;
  }

  /** Close without `leave` (the server keeps the session for the grace period). */
  close() {
    this.#end(null, false);
  }

  // ---------------------------------------------------------------------------------------

  #joinMessage() {
    const p = /** @type {JoinParams} */ (this.#params);
    /** @type {Record<string, unknown>} */
    const msg = { type: 'join', room: p.room };
    if (p.name) msg.name = p.name;
    if (p.token) msg.token = p.token;
    if (p.topology && p.topology !== 'auto') msg.topology = p.topology;
    if (p.sfuNode) msg.sfuNode = p.sfuNode;
    return msg;
  }

  /** @param {SignalingState} s */
  #setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  /** Transport kinds to try, in order. */
  #kinds() {
    if (this.#mode === 'ws' || this.#mode === 'sse') return [this.#mode];
    return this.#preferred === 'sse' ? ['sse', 'ws'] : ['ws', 'sse'];
  }

  /**
   * Send `msg` to the nodes in turn, from the one in use on, until one answers `okType`:
   * one round. A node that cannot be reached, or refuses with a retryable error, passes
   * the turn to the next; any other refusal ends the round (that node becomes the one in use).
   * @param {Record<string, unknown>} msg
   * @param {string} okType
   * @param {(t: import('./transport.js').Transport, m: any) => void} onReply
   */
  async #connect(msg, okType, onReply) {
    const start = this.#at;
    /** @type {any} */
    let lastErr = null;
    for (let i = 0; i < this.#urls.length; i++) {
      const at = (start + i) % this.#urls.length;
      try {
        return await this.#connectTo(this.#urls[at], msg, okType, (t, m) => {
          this.#at = at;
          onReply(t, m);
        });
      } catch (err) {
        if (!RETRYABLE.has(/** @type {SwitchboardError} */ (err).code)) {
          if (/** @type {SwitchboardError} */ (err).code !== 'closed') this.#at = at;
          throw err;
        }
        if (this.#urls.length > 1) this.log(`${this.#urls[at]}: ${/** @type {Error} */ (err).message}`);
        lastErr = err;
      }
    }
    throw lastErr;
  }

  /**
   * Open a transport to `url` (falling back in 'auto' mode) and send `msg`; `onReply` runs
   * synchronously when the `okType` answer arrives, before any later message.
   * @param {string} url
   * @param {Record<string, unknown>} msg
   * @param {string} okType
   * @param {(t: import('./transport.js').Transport, m: any) => void} onReply
   */
  async #connectTo(url, msg, okType, onReply) {
    /** @type {unknown} */
    let lastErr = null;
    for (const kind of this.#kinds()) {
      const t = createTransport(/** @type {'ws'|'sse'} */ (kind), url);
      try {
        await t.open();
      } catch (err) {
        this.log(`${kind}: ${/** @type {Error} */ (err).message}`);
        lastErr = err;
        continue;
      }
      if (this.state === 'closed') {
        t.close();
        throw new SwitchboardError('closed', 'the session was closed');
      }
      try {
        const reply = await this.#handshake(t, msg, okType, onReply);
        if (this.#mode === 'auto') this.#preferred = t.kind;
        return reply;
      } catch (err) {
        t.close();
        // A node that sent us elsewhere (1012) works: no reason to try the other transport.
        if (/** @type {SwitchboardError} */ (err).code !== 'unreachable' || /** @type {any} */ (err).moved) throw err;
        this.log(`${kind}: ${/** @type {Error} */ (err).message}`);
        lastErr = err;
      }
    }
    throw lastErr || new SwitchboardError('unreachable', 'could not reach the signaling server');
  }

  /**
   * @param {import('./transport.js').Transport} t
   * @param {Record<string, unknown>} msg
   * @param {string} okType
   * @param {(t: import('./transport.js').Transport, m: any) => void} onReply
   */
  #handshake(t, msg, okType, onReply) {
    return new Promise((resolve, reject) => {
      const ref = `${msg.type}-${++this.#refCounter}`;
      const finish = () => {
        clearTimeout(timer);
        t.onmessage = null;
        t.onclose = null;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new SwitchboardError('unreachable', `no answer to ${msg.type} from the server`));
      }, REPLY_TIMEOUT_MS);
      t.onmessage = (m) => {
        if (m.type === okType) {
          finish();
          if (this.state === 'closed') {
            reject(new SwitchboardError('closed', 'the session was closed'));
            return;
          }
          try {
            onReply(t, m);
          } catch (err) {
            reject(err);
            return;
          }
          resolve(m);
        } else if (m.type === 'error' && (m.ref === undefined || m.ref === null || m.ref === ref)) {
          finish();
          reject(fromServerError(m));
        }
      };
      t.onclose = (info) => {
        finish();
        const err = new SwitchboardError('unreachable', `connection closed before ${okType}${info.code ? ` (code ${info.code})` : ''}`);
        /** @type {any} */ (err).moved = info.code === MOVED_CODE;
        reject(err);
      };
      t.send({ ...msg, ref });
    });
  }

  /**
   * @param {import('./transport.js').Transport} t
   * @param {any} m the `joined` message
   * @param {boolean} rejoin after the server forgot the session (bad-resume)
   */
  #onJoined(t, m, rejoin) {
    this.peerId = String(m.peerId);
    this.#resumeToken = String(m.resume || '');
    this.grace = Number(m.grace) || 0;
    this.grants = Array.isArray(m.grants) ? m.grants : [];
    this.lastSeq = 0;
    this.#ackedSeq = 0;
    this.#outbox = []; // addressed to the peers of the old session
    this.#tracked.clear();
    this.#attach(t);
    this.#setState('open');
    this.emit('joined', { msg: m, rejoin });
  }

  /**
   * @param {import('./transport.js').Transport} t
   * @param {any} m the `resumed` message
   */
  #onResumed(t, m) {
    if (m.resume) this.#resumeToken = String(m.resume);
    if (m.peerId) this.peerId = String(m.peerId);
    this.#ackedSeq = this.lastSeq;
    this.#attach(t);
    this.#setState('open');
    this.emit('resumed', { msg: m });
    const queued = this.#outbox;
    this.#outbox = [];
    for (const q of queued) if (this.canDeliver(q)) t.send(q);
  }

  /** @param {import('./transport.js').Transport} t */
  #attach(t) {
    this.#t = t;
    this.#attempt = 0;
    t.onmessage = (m) => this.#onMessage(m);
    t.onclose = (info) => this.#lost(`transport closed${info.code ? ` (code ${info.code})` : ''}`, info.code === MOVED_CODE);
    this.#awaitingPong = false;
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    this.#pingTimer = setInterval(() => this.#keepalive(), PING_INTERVAL_MS);
  }

  #keepalive() {
    if (this.state !== 'open' || !this.#t) return;
    if (this.#awaitingPong && Date.now() - this.#pingSentAt > PONG_TIMEOUT_MS) {
      this.#lost('no pong from the server');
      return;
    }
    if (!this.#awaitingPong) {
      this.#awaitingPong = true;
      this.#pingSentAt = Date.now();
      this.#t.send({ type: 'ping' });
    }
  }

  /** @param {any} m */
  #onMessage(m) {
    this.#awaitingPong = false;
    if (this.state === 'closed') {
      if (m.type === 'left') this.#onLeft?.();
      return;
    }
    if (typeof m.seq === 'number') {
      if (m.seq <= this.lastSeq) return; // already processed before a resume
      this.lastSeq = m.seq;
      this.#scheduleAck();
    }
    switch (m.type) {
      case 'pong':
        return;
      case 'left':
        this.#onLeft?.();
        return;
      case 'error':
        this.#onError(m);
        return;
      default:
        this.emit('message', m);
    }
  }

  /** @param {any} m */
  #onError(m) {
    const err = fromServerError(m);
    const about = typeof m.ref === 'string' ? this.#tracked.get(m.ref) : undefined;
    if (about) {
      this.#tracked.delete(m.ref);
      /** @type {any} */ (err).request = about.msg;
      if (err.code === 'rate-limited' && !about.retried && !m.fatal) {
        this.log(`${about.msg.type} dropped by the server's rate limit; sending it again`);
        const { ref: _ref, ...again } = about.msg;
        setTimeout(() => this.#send(again, true), RATE_RETRY_MS);
        return;
      }
    }
    if (TERMINAL.has(err.code)) {
      err.fatal = true;
      this.emit('error', err);
      this.#end(err, true);
      return;
    }
    if (m.fatal) {
      // The server closes this connection (shutdown, abuse); the session may survive on
      // another connection, so we resume as after any transport loss.
      err.fatal = false;
      this.emit('error', err);
      this.#lost(`server closed the connection: ${err.code}`);
      return;
    }
    this.emit('error', err);
  }

  #scheduleAck() {
    if (this.#ackTimer) return;
    const sinceLast = Date.now() - this.#lastAckAt;
    const wait = Math.max(ACK_IDLE_MS, ACK_INTERVAL_MS - sinceLast);
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = null;
      this.#sendAck();
    }, wait);
  }

  #sendAck() {
    if (this.state !== 'open' || !this.#t || this.lastSeq <= this.#ackedSeq) return;
    this.#ackedSeq = this.lastSeq;
    this.#lastAckAt = Date.now();
    this.#t.send({ type: 'ack', seq: this.lastSeq });
  }

  /**
   * @param {string} why
   * @param {boolean} [moved] the node sent us elsewhere (the room moved): no backoff
   */
  #lost(why, moved = false) {
    if (this.state !== 'open') return;
    this.log(`signaling lost: ${why}`);
    this.#detach();
    this.#setState('reconnecting');
    this.#scheduleReconnect(moved);
  }

  #detach() {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    this.#pingTimer = this.#ackTimer = null;
    const t = this.#t;
    this.#t = null;
    if (t) {
      t.onmessage = t.onclose = null;
      t.close();
    }
  }

  /** @param {boolean} [now] retry at once (the network came back, or the room moved) */
  #scheduleReconnect(now = false) {
    if (this.state !== 'reconnecting' || this.#reconnecting) return;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#attempt);
    const delay = now ? 0 : Math.min(BACKOFF_MAX_MS, base * (0.8 + 0.4 * Math.random()));
    this.#attempt++;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#reconnect();
    }, delay);
  }

  async #reconnect() {
    if (this.state !== 'reconnecting') return;
    this.#reconnecting = true;
    /** @type {any} */
    let err = null;
    try {
      const sfuNode = /** @type {JoinParams} */ (this.#params)?.sfuNode;
      const resume = { type: 'resume', token: this.#resumeToken, lastSeq: this.lastSeq, ...(sfuNode ? { sfuNode } : {}) };
      await this.#connect(resume, 'resumed', (t, m) =>
        this.#onResumed(t, m),
      );
    } catch (e) {
      err = e;
    }
    if (err && err.code === 'bad-resume' && this.state === 'reconnecting') {
      // The server forgot us (grace period over, or it restarted): join again, new peer id.
      this.log('resume refused (bad-resume): joining again');
      try {
        await this.#connect(this.#joinMessage(), 'joined', (t, m) => this.#onJoined(t, m, true));
        err = null;
      } catch (e) {
        err = e;
      }
    }
    this.#reconnecting = false;
    if (this.state !== 'reconnecting') return;
    if (!err) {
      this.#scheduleReconnect(); // lost again before this attempt was over
      return;
    }
    if (RETRYABLE.has(err.code)) {
      this.#scheduleReconnect();
      return;
    }
    // A refusal that retrying will not cure (kicked, room-full on re-join, token-expired, ...).
    err.fatal = true;
    this.emit('error', err);
    this.#end(err, true);
  }

  #watchNetwork() {
    this.#listeners?.abort();
    if (typeof window === 'undefined') return;
    this.#listeners = new AbortController();
    window.addEventListener(
      'online',
      () => {
        if (this.state === 'reconnecting') {
          this.#attempt = 0;
          this.#scheduleReconnect(true);
        }
      },
      { signal: this.#listeners.signal },
    );
  }

  /**
   * @param {SwitchboardError|null} err
   * @param {boolean} emitClosed
   */
  #end(err, emitClosed) {
    this.#detach();
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#listeners?.abort();
    this.#listeners = null;
    this.#outbox = [];
    const was = this.state;
    this.#setState('closed');
    if (emitClosed && was !== 'closed') this.emit('closed', err);
  }
}

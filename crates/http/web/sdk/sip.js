// Switchboard SDK: phone calls of a room through the server's SIP gateway (docs/sip.md).
// A call is a participant of the room (`service: "sip"`): its voice arrives as that
// member's audio track like anyone's. What is SIP-specific lives here: placing a call
// (`POST /api/sip/calls`), hanging up and sending keys (messages to the call's peer), and
// the call's state and the phone's keys (the `sip` event, from `{"sip": …}` messages).

import { SwitchboardError } from './errors.js';

/** Keys a phone keypad can send (RFC 4733 events 0-15), at most 32 per message (the gateway's limit). */
const DTMF_RE = /^[0-9*#A-D]{1,32}$/;

/**
 * What the helper needs from the Switchboard instance.
 * @typedef {object} SipHost
 * @property {() => string} base the server's base URL (of the node in use)
 * @property {string} room
 * @property {string|undefined} token room token, sent as `Authorization: Bearer`
 * @property {(msg: Record<string, unknown>) => boolean|void} signal send a signaling message
 * @property {(id: string) => {service?: string}|undefined} peer a member by id
 */

/** `sb.sip`: the SIP calls of the room. */
export class SipCalls {
  /** @type {SipHost} */
  #host;

  /** @param {SipHost} host */
  constructor(host) {
    this.#host = host;
  }

  /**
   * Call a phone or SIP address into the room: `sip:user@host[:port]`, a number
   * (`+4930123456`, `030 123456`) or a bare user of the gateway's trunk. Resolves once the
   * gateway took the call (it then joins the room as a `sip` member and reports its
   * progress in `sip` events); rejects with a SwitchboardError whose `reason` is the
   * server's (code `bad-request`, `unauthorized`, `forbidden`, `sip-disabled`, `busy`
   * or `unreachable`).
   * @param {string} to
   * @returns {Promise<{call: string}>}
   */
  async call(to) {
    const body = JSON.stringify({ room: this.#host.room, to: String(to ?? '') });
    const res = await this.#fetch('', { method: 'POST', headers: this.#headers(), body });
    const data = await res.json().catch(() => ({}));
    if (res.ok && data && typeof data.call === 'string') return { call: data.call };
    // No such route: the gateway is off (`--sip-listen` unset).
    if (res.status === 404) throw new SwitchboardError('sip-disabled', 'SIP calling is not enabled on this server');
    throw httpError(res.status, data);
  }

  /**
   * End a call of this room by its id (what `call` resolved to), e.g. one whose peer has
   * not joined yet: `DELETE /api/sip/calls/<room>/<id>`. Resolves to false when the server
   * knows no such call in the room.
   * @param {string} callId
   * @returns {Promise<boolean>}
   */
  async cancel(callId) {
    const path = `/${encodeURIComponent(this.#host.room)}/${encodeURIComponent(String(callId))}`;
    const res = await this.#fetch(path, { method: 'DELETE', headers: this.#headers() });
    if (res.ok) return true;
    if (res.status === 404) return false;
    throw httpError(res.status, await res.json().catch(() => ({})));
  }

  /**
   * End a call: `{"sip":"hangup"}` to its peer. The peer reports `ended` and leaves.
   * @param {string} peerId the call's member id
   */
  hangup(peerId) {
    this.#tell(peerId, { sip: 'hangup' });
  }

  /**
   * Send keys to the phone as DTMF (0-9 * # A-D, 1 to 32 of them), in order.
   * @param {string} peerId the call's member id
   * @param {string} digits
   */
  dtmf(peerId, digits) {
    const d = String(digits ?? '').toUpperCase();
    if (!DTMF_RE.test(d)) throw new SwitchboardError('bad-option', `DTMF digits are 1-32 of 0-9 * # A-D, got "${digits}"`);
    this.#tell(peerId, { sip: 'dtmf', digits: d });
  }

  /**
   * @param {string} peerId
   * @param {Record<string, string>} data
   */
  #tell(peerId, data) {
    const peer = this.#host.peer(String(peerId));
    if (!peer || peer.service !== 'sip') throw new SwitchboardError('unknown-peer', `no SIP call ${peerId} in the room`);
    // Through the signaling server, never the SFU's data channel: the call's peer is a
    // server-side participant that reads its signaling messages only.
    if (this.#host.signal({ type: 'message', to: String(peerId), data }) === false) throw new SwitchboardError('not-joined', 'not in a room');
  }

  #headers() {
    const headers = /** @type {Record<string, string>} */ ({ 'content-type': 'application/json' });
    if (this.#host.token) headers.authorization = `Bearer ${this.#host.token}`;
    return headers;
  }

  /**
   * @param {string} path below /api/sip/calls
   * @param {RequestInit} init
   */
  async #fetch(path, init) {
    try {
      return await fetch(`${this.#host.base()}/api/sip/calls${path}`, init);
    } catch (err) {
      throw new SwitchboardError('unreachable', `cannot reach the server: ${/** @type {Error} */ (err)?.message || err}`);
    }
  }
}

/**
 * The SwitchboardError for a refused request to /api/sip/calls.
 * @param {number} status
 * @param {any} data the JSON body, `{"error": "<reason>"}`
 */
function httpError(status, data) {
  const reason = data && typeof data.error === 'string' ? data.error : '';
  /** @type {Record<number, string>} */
  const codes = { 400: 'bad-request', 401: 'unauthorized', 403: 'forbidden', 503: 'busy' };
  return new SwitchboardError(codes[status] || 'sip-failed', reason || `the server answered ${status}`);
}

/**
 * The `sip` event's payload when `data` is a call's report (`{"sip": {...}}` from a
 * `sip` member), else null.
 * @param {{service?: string}|undefined} peer the sender
 * @param {any} data
 * @returns {{peer: string, call?: string, state?: string, reason?: string, dtmf?: string}|null}
 */
export function sipReport(peer, data) {
  if (!peer || peer.service !== 'sip' || !data || typeof data !== 'object') return null;
  const s = data.sip;
  if (!s || typeof s !== 'object' || typeof s.peer !== 'string') return null;
  /** @type {{peer: string, call?: string, state?: string, reason?: string, dtmf?: string}} */
  const out = { peer: s.peer };
  for (const k of /** @type {const} */ (['call', 'state', 'reason', 'dtmf'])) if (typeof s[k] === 'string') out[k] = s[k];
  return out;
}

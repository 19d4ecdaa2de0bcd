// Switchboard SDK: direct calls between people (docs/signaling.md "Direct calls").
//
// A device signs in to its user's line, the room `@user`, and stays there to be called. It
// never talks to the other devices of the line: only to the server's `calls` peer, with
// `message`s whose data are the call requests and events. So the line is a bare signaling
// session (signaling.js: resume, replay, backoff), not a room with peer connections.
// A call is a private mesh room `call-<hex>`: the caller joins it as soon as the server
// names it, the callee once its accept is confirmed; that room is an ordinary Switchboard
// session (`call.room`), with its peers, tracks and messages.
//
//   const line = await Switchboard.line({ user: 'ada', name: 'Ada' });
//   line.on('incoming', (call) => call.accept());
//   const call = line.call('bob@b.test');
//   call.on('ended', ({ reason, detail }) => show(reason, detail));

import { Emitter } from './emitter.js';
import { SwitchboardError } from './errors.js';
import { Signaling } from './signaling.js';

/** User names of lines (docs/signaling.md "Lines"). */
const USER_RE = /^[a-z0-9_.-]{1,64}$/;
/** After our hangup, how long the server has to confirm with `ended` before we end the call ourselves. */
const HANGUP_CONFIRM_MS = 5000;

/**
 * @typedef {object} LineOptions
 * @property {string} user the user whose line to take (1-64 of `a-z0-9_-.`)
 * @property {string} [server] server base URL, http(s); default: the page's origin (`url` works too)
 * @property {string} [url]
 * @property {string} [name] display name shown to the people called (default: the user)
 * @property {string} [token] a room token whose `sub` is the user (servers with room tokens)
 * @property {string} [secret] the user's secret (servers with `--call-user USER:SECRET`)
 * @property {MediaStream|boolean|(() => Promise<MediaStream>)} [media] what a call publishes: a stream, a function
 *   giving one, `true` (default: camera and microphone from getUserMedia) or `false` (nothing)
 * @property {'auto'|RTCIceServer[]} [iceServers]
 * @property {RTCIceTransportPolicy} [iceTransportPolicy]
 * @property {'auto'|'ws'|'sse'} [transport]
 * @property {boolean|((...args: unknown[]) => void)} [debug]
 */

/**
 * A signed-in line. Events: `state` (the signaling state), `incoming` (Call: someone calls
 * this user, or invites them into a call), `call` (Call: any new call, outgoing included),
 * `error` (SwitchboardError; `fatal`: the line is closed).
 */
export class Line extends Emitter {
  /** Calls of this device by id (ringing, in progress). @type {Map<string, Call>} */
  calls = new Map();
  /** @type {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
  state = 'idle';
  /** The calls peer's id in the line room (null until it is there). @type {string|null} */
  callsPeer = null;

  /** @type {LineOptions & {url: string}} */
  #opts;
  /** @type {Signaling} */
  #sig;
  /** @type {(options: any) => any} */
  #newRoom;
  /** Dials waiting for their `dialing` (or `ended`), by ref. @type {Map<string, Call>} */
  #dials = new Map();
  #refs = 0;
  /** Requests made before the calls peer was known. @type {object[]} */
  #pending = [];
  /** @type {AbortController|null} */
  #unload = null;

  /**
   * Sign in: join the line. Resolves with the open Line; rejects with a SwitchboardError
   * (`forbidden`, `unauthorized`, `bad-room`, `unreachable`, ...).
   * @param {LineOptions} options
   * @param {(options: any) => any} newRoom makes a room session (the Switchboard class)
   */
  static async open(options, newRoom) {
    const line = new Line(options, newRoom);
    await line.#join();
    return line;
  }

  /**
   * @param {LineOptions} options
   * @param {(options: any) => any} newRoom
   */
  constructor(options, newRoom) {
    super();
    const o = options || /** @type {LineOptions} */ ({});
    const user = String(o.user ?? '').toLowerCase();
    if (!USER_RE.test(user)) throw new SwitchboardError('bad-option', `a user is 1-64 of a-z 0-9 _ - . , got "${o.user}"`);
    const url = String(o.server || o.url || (typeof location !== 'undefined' ? location.origin : '')).replace(/\/+$/, '');
    if (!/^https?:\/\//i.test(url)) throw new SwitchboardError('bad-option', `options.server must be an http(s) URL, got "${url}"`);
    this.#opts = { ...o, user, url, name: o.name ? [...String(o.name)].slice(0, 64).join('') : user };
    this.#newRoom = newRoom;
    this.#sig = new Signaling({ url, transport: o.transport });
    const debug = o.debug;
    this.#sig.log = typeof debug === 'function' ? debug : debug ? (...a) => console.debug('[switchboard line]', ...a) : () => {};
    this.#sig.on('state', (/** @type {any} */ s) => {
      this.state = s;
      this.emit('state', s);
    });
    this.#sig.on('joined', (/** @type {any} */ e) => this.#members(e.msg.peers));
    this.#sig.on('resumed', (/** @type {any} */ e) => this.#members(e.msg.peers));
    this.#sig.on('message', (/** @type {any} */ m) => this.#onSignal(m));
    this.#sig.on('error', (/** @type {any} */ err) => this.emit('error', err));
    this.#sig.on('closed', () => this.#closed('the line was closed'));
  }

  /** The user signed in. */
  get user() {
    return this.#opts.user;
  }

  /** This device's peer id in the line room (kept across a resume). @type {string|null} */
  get peerId() {
    return this.#sig.peerId;
  }

  /** The display name the people called see. */
  get name() {
    return /** @type {string} */ (this.#opts.name);
  }

  /**
   * Call someone: `bob` (this server) or `bob@b.test`. Returns the Call at once; its
   * events say how it goes (`ringing`, `answered`, `ended` with a reason).
   * @param {string} to
   * @returns {Call}
   */
  call(to) {
    const address = String(to ?? '').trim();
    if (!address) throw new SwitchboardError('bad-option', 'whom to call?');
    if (this.state === 'closed') throw new SwitchboardError('closed', 'the line is closed');
    const call = new Call(this.#callHost(), { direction: 'outgoing', peer: address });
    const ref = `d${++this.#refs}`;
    this.#dials.set(ref, call);
    this.emit('call', call);
    this.request({ call: 'dial', to: address, ref });
    return call;
  }

  /**
   * Send a request (`{call: ..., ...}`) to the calls peer. Mostly for the Call objects.
   * @param {Record<string, unknown>} data
   */
  request(data) {
    if (!this.callsPeer) {
      this.#pending.push(data);
      return;
    }
    this.#sig.send({ type: 'message', to: this.callsPeer, data });
  }

  /**
   * Sign out: every call of this device is hung up, the line left.
   * @returns {Promise<void>}
   */
  async close() {
    for (const call of [...this.calls.values()]) call.hangup();
    this.#unload?.abort();
    this.#unload = null;
    await this.#sig.leave();
    this.#closed('signed out');
  }

  // ---------------------------------------------------------------------------------------

  async #join() {
    const o = this.#opts;
    const token = o.token || o.secret || undefined;
    await this.#sig.join({ room: `@${o.user}`, name: o.name, token, topology: 'mesh' });
    if (typeof window !== 'undefined') {
      this.#unload = new AbortController();
      window.addEventListener('pagehide', () => void this.close().catch(() => {}), { signal: this.#unload.signal });
    }
  }

  /** What a Call needs of its line. */
  #callHost() {
    const o = this.#opts;
    return {
      request: (/** @type {Record<string, unknown>} */ d) => this.request(d),
      forget: (/** @type {Call} */ c) => {
        if (c.id && this.calls.get(c.id) === c) this.calls.delete(c.id);
        for (const [ref, d] of this.#dials) if (d === c) this.#dials.delete(ref);
      },
      media: o.media,
      room: (/** @type {string} */ room, /** @type {string|undefined} */ token) =>
        this.#newRoom({
          url: o.url,
          room,
          token,
          name: o.name,
          topology: 'mesh',
          iceServers: o.iceServers,
          iceTransportPolicy: o.iceTransportPolicy,
          transport: o.transport,
          debug: o.debug,
        }),
    };
  }

  /** @param {any} peers the line's members (joined, resumed) */
  #members(peers) {
    const calls = (Array.isArray(peers) ? peers : []).find((/** @type {any} */ p) => p && p.service === 'calls');
    this.#setCallsPeer(calls ? String(calls.id) : null);
  }

  /** @param {string|null} id */
  #setCallsPeer(id) {
    this.callsPeer = id;
    if (!id) return;
    const queued = this.#pending;
    this.#pending = [];
    for (const d of queued) this.request(d);
  }

  /** @param {any} m */
  #onSignal(m) {
    if (m.type === 'peer-joined' && m.peer && m.peer.service === 'calls') this.#setCallsPeer(String(m.peer.id));
    else if (m.type === 'peer-left' && m.peerId === this.callsPeer) this.callsPeer = null;
    else if (m.type === 'message' && m.from === this.callsPeer && m.data && typeof m.data === 'object') this.#onEvent(m.data);
  }

  /** A call event from the calls peer. @param {any} e */
  #onEvent(e) {
    const id = typeof e.id === 'string' ? e.id : null;
    const ref = e.ref === undefined || e.ref === null ? null : String(e.ref);
    const dial = ref !== null ? this.#dials.get(ref) : undefined;
    if (dial) this.#dials.delete(/** @type {string} */ (ref));
    if (e.call === 'incoming' && id) {
      const known = this.calls.get(id);
      if (known && known.state !== 'ended') return; // the same invitation again (resume)
      const call = new Call(this.#callHost(), {
        direction: 'incoming',
        id,
        peer: String(e.from || ''),
        peerName: String(e.fromName || e.from || ''),
        room: String(e.room || ''),
        token: typeof e.token === 'string' ? e.token : undefined,
      });
      this.calls.set(id, call);
      this.emit('call', call);
      this.emit('incoming', call);
      return;
    }
    if (e.call === 'dialing' && dial && id) {
      this.calls.set(id, dial);
      dial._dialing(id, String(e.to || dial.peer), String(e.room || ''), typeof e.token === 'string' ? e.token : undefined);
      return;
    }
    const call = (id && this.calls.get(id)) || dial;
    if (!call) return;
    if (e.call === 'error' && dial && !id) {
      call._event({ call: 'ended', reason: 'failed', detail: String(e.reason || 'the call could not be made') });
      return;
    }
    call._event(e);
  }

  /** @param {string} why */
  #closed(why) {
    for (const call of [...this.calls.values(), ...this.#dials.values()]) call._event({ call: 'ended', reason: 'failed', detail: why });
    this.calls.clear();
    this.#dials.clear();
  }
}

/**
 * A direct call, outgoing or incoming. Events: `ringing` ({to}), `answered` ({by}),
 * `room` (the call's Switchboard session, before it joins: attach listeners there),
 * `left` ({who, reason, detail}: a party is out of a call that goes on), `ended` ({reason,
 * detail, local}: over for this device; `local` when this device hung up, cancelled or
 * declined), `error` (SwitchboardError: a request was refused, nothing changed).
 */
export class Call extends Emitter {
  /** The call's id (null for an outgoing call until the server took it). @type {string|null} */
  id = null;
  /** @type {'outgoing'|'incoming'} */
  direction;
  /** The other party's address (`bob@b.test`): the callee, or the caller of an incoming call. */
  peer;
  /** The caller's display name (incoming calls). */
  peerName;
  /**
   * 'dialing' (sent, not taken yet), 'ringing', 'incoming' (rings here), 'accepting',
   * 'answered', 'ended'.
   * @type {'dialing'|'ringing'|'incoming'|'accepting'|'answered'|'ended'}
   */
  state;
  /** Why it ended (`declined`, `busy`, `unreachable`, `cancelled`, `no-answer`, `hangup`, ...). @type {string|null} */
  reason = null;
  /** The server's explanation of the end, for people. @type {string|null} */
  detail = null;
  /** The call room's session once joined (its peers, tracks, messages). @type {any} */
  room = null;

  /** @type {any} */
  #host;
  /** @type {string} */
  #roomName = '';
  /** @type {string|undefined} */
  #token;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #hangupTimer = null;
  /** This device hung up, cancelled or declined. */
  #local = false;

  /**
   * @param {any} host what the line lends the call
   * @param {{direction: 'outgoing'|'incoming', peer: string, peerName?: string, id?: string, room?: string, token?: string}} info
   */
  constructor(host, info) {
    super();
    this.#host = host;
    this.direction = info.direction;
    this.peer = info.peer;
    this.peerName = info.peerName || info.peer;
    this.id = info.id || null;
    this.#roomName = info.room || '';
    this.#token = info.token;
    this.state = info.direction === 'incoming' ? 'incoming' : 'dialing';
  }

  /** Take an incoming call on this device; the room is joined once the server confirms. */
  accept() {
    if (this.state !== 'incoming') throw new SwitchboardError('invalid-state', `accept() while ${this.state}`);
    this.state = 'accepting';
    this.#host.request({ call: 'accept', id: this.id });
  }

  /**
   * Refuse an incoming call: every device of the line stops ringing.
   * @param {'declined'|'busy'} [reason]
   */
  decline(reason = 'declined') {
    if (this.state !== 'incoming') throw new SwitchboardError('invalid-state', `decline() while ${this.state}`);
    this.#local = true;
    this.#host.request({ call: 'decline', id: this.id, reason: reason === 'busy' ? 'busy' : 'declined' });
  }

  /** Leave the call: cancels an outgoing call not answered yet, declines one ringing here. */
  hangup() {
    if (this.state === 'ended') return;
    if (this.state === 'incoming') return this.decline();
    const answered = this.state === 'answered' || this.state === 'accepting';
    this.#local = true;
    if (this.id) this.#host.request({ call: answered ? 'hangup' : 'cancel', id: this.id });
    this.#leaveRoom();
    // The server confirms with `ended`; if the line is gone, do not wait for ever.
    if (!this.#hangupTimer) {
      this.#hangupTimer = setTimeout(() => this._event({ call: 'ended', reason: answered ? 'hangup' : 'cancelled', detail: 'you hung up' }), HANGUP_CONFIRM_MS);
    }
  }

  /**
   * Ring someone else into this call (the same room): `ringing`, then `answered` with
   * `by` them, or `left` when they decline or cannot be reached.
   * @param {string} to
   */
  invite(to) {
    const address = String(to ?? '').trim();
    if (!address) throw new SwitchboardError('bad-option', 'whom to invite?');
    if (!this.id || this.state === 'ended') throw new SwitchboardError('invalid-state', `invite() while ${this.state}`);
    this.#host.request({ call: 'invite', id: this.id, to: address });
  }

  /** A plain summary. */
  toJSON() {
    return { id: this.id, direction: this.direction, peer: this.peer, state: this.state, reason: this.reason, detail: this.detail };
  }

  // --- from the line ------------------------------------------------------------------------

  /**
   * The server took our dial: call `id`, room `room`. The caller joins at once.
   * @param {string} id
   * @param {string} to the callee's full address
   * @param {string} room
   * @param {string|undefined} token
   */
  _dialing(id, to, room, token) {
    if (this.state === 'ended') return;
    this.id = id;
    this.peer = to;
    this.#roomName = room;
    this.#token = token;
    // Hung up before the server named the call: cancel it now, join nothing.
    if (this.#local) this.#host.request({ call: 'cancel', id });
    else this.#joinRoom();
  }

  /** @param {any} e a call event about this call */
  _event(e) {
    if (this.state === 'ended') return;
    switch (e.call) {
      case 'ringing':
        if (this.state === 'dialing') this.state = 'ringing';
        this.emit('ringing', { to: String(e.to || '') });
        return;
      case 'answered': {
        const wasAccepting = this.state === 'accepting';
        this.state = 'answered';
        if (wasAccepting) this.#joinRoom();
        this.emit('answered', { by: String(e.by || '') });
        return;
      }
      case 'left':
        this.emit('left', { who: String(e.who || ''), reason: String(e.reason || ''), detail: String(e.detail || '') });
        return;
      case 'ended':
        this.state = 'ended';
        this.reason = String(e.reason || 'hangup');
        this.detail = e.detail ? String(e.detail) : null;
        if (this.#hangupTimer) clearTimeout(this.#hangupTimer);
        this.#leaveRoom();
        this.#host.forget(this);
        this.emit('ended', { reason: this.reason, detail: this.detail, local: this.#local });
        return;
      case 'error': {
        if (this.state === 'accepting') this.state = 'incoming'; // nothing changed
        this.emit('error', new SwitchboardError('call-refused', String(e.reason || 'request refused')));
        return;
      }
      default:
    }
  }

  // ---------------------------------------------------------------------------------------

  async #joinRoom() {
    if (this.room || !this.#roomName) return;
    const room = this.#host.room(this.#roomName, this.#token);
    this.room = room;
    this.emit('room', room);
    // The call is over when its room session is (kicked, the server gone for good).
    room.on('error', (/** @type {any} */ err) => {
      if (err && err.fatal && this.state !== 'ended') this.hangup();
    });
    try {
      const stream = await this.#media();
      if (this.room !== room) return; // ended meanwhile
      if (stream) room.publish(stream);
      await room.join();
    } catch (err) {
      if (this.room !== room) return;
      const e = /** @type {any} */ (err);
      this.hangup();
      this._event({ call: 'ended', reason: 'failed', detail: `could not join the call: ${e && e.message ? e.message : e}` });
    }
  }

  /** @returns {Promise<MediaStream|null>} */
  async #media() {
    const m = this.#host.media;
    if (m === false) return null;
    if (typeof m === 'function') return (await m()) || null;
    if (m && typeof m === 'object') return m;
    return navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  }

  #leaveRoom() {
    const room = this.room;
    this.room = null;
    if (room) room.leave().catch(() => {});
  }
}

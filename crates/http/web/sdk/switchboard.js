// Switchboard SDK: join a room of a Switchboard server and talk to everyone in it over
// WebRTC (full mesh). An ES module, usable straight from the server without a build step:
//
//   import { Switchboard } from '/sdk/switchboard.js';
//   const sb = new Switchboard({ room: 'demo', name: 'Ada' });
//   sb.on('track', ({ peer, streams }) => { video.srcObject = streams[0]; });
//   sb.publish(await navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
//   await sb.join();
//
// Protocol: docs/signaling.md. Reference: docs/sdk.md.

import { Emitter } from './emitter.js';
import { SwitchboardError } from './errors.js';
import { Peer, OFFER_ME, RESYNC } from './peer.js';
import { Signaling } from './signaling.js';

export { SwitchboardError } from './errors.js';
export { Peer } from './peer.js';

/** SDK version. */
export const VERSION = '1.0.0';
/** Signaling protocol version spoken. */
export const PROTOCOL = 1;

const ICE_FETCH_TIMEOUT_MS = 5000;
/** After a resume without gap, how long to wait before checking for lost offers. */
const RESYNC_DELAY_MS = 1000;

/**
 * @typedef {object} SwitchboardOptions
 * @property {string} room room to join (1-64 of `A-Za-z0-9_-.`)
 * @property {string} [url] server base URL, http(s); default: the page's origin
 * @property {string} [name] display name (1-64 characters; the server's default is "guest")
 * @property {string} [token] room token (JWT) when the server requires one
 * @property {'auto'|RTCIceServer[]} [iceServers] 'auto' (default): GET /api/ice-servers
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] 'all' (default) or 'relay'
 * @property {'auto'|'ws'|'sse'} [transport] 'auto' (default): WebSocket, falling back to EventSource+POST
 * @property {boolean} [leaveOnUnload] send `leave` when the page goes away (default true)
 * @property {boolean|((...args: unknown[]) => void)} [debug] log to console.debug, or to this function
 */

/**
 * A connection to one room.
 *
 * Events (`on(event, fn)`):
 * - `state` (string): signaling state, 'connecting' | 'open' | 'reconnecting' | 'closed'
 * - `joined` ({peerId, peers, rejoined}): in the room; `peers` are the members already there
 *   (no `peer-joined` for them). Emitted again with `rejoined: true` when the server had
 *   forgotten the session and the SDK joined afresh (new peer id).
 * - `peer-joined` (Peer), `peer-left` ({peer, reason}): membership changes
 * - `track` ({peer, track, streams, transceiver}): remote media arrived
 * - `message` ({peer, data, via}): an application message (`send`), `via` 'datachannel' | 'signal'
 * - `peer-state` ({peer, state}): the RTCPeerConnection's connectionState changed
 * - `channel-open` ({peer}): the data channel to `peer` is open
 * - `resumed` ({gap}): signaling came back after a transport loss
 * - `error` (SwitchboardError: {code, reason, fatal}): `fatal` means the session is over
 */
export class Switchboard extends Emitter {
  /** Remote participants by peer id. @type {Map<string, Peer>} */
  peers = new Map();
  /** Own peer id once joined. @type {string|null} */
  peerId = null;
  /** Grants of this session ('publish', 'subscribe', 'admin'). @type {string[]} */
  grants = [];
  /** Signaling state. @type {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
  state = 'idle';

  /** @type {Required<Omit<SwitchboardOptions, 'token'|'debug'>> & {token?: string}} */
  #opts;
  #sig;
  /** @type {RTCIceServer[] | null} */
  #iceServers = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #iceTimer = null;
  /** Tracks sent to every peer. */
  #tracks = { audio: /** @type {MediaStreamTrack|null} */ (null), video: /** @type {MediaStreamTrack|null} */ (null) };
  /** The stream the tracks are announced in (its id is the msid the others see). */
  #stream = typeof MediaStream === 'undefined' ? /** @type {any} */ (null) : new MediaStream();
  /** @type {(...args: unknown[]) => void} */
  #log;
  /** @type {AbortController | null} */
  #unload = null;
  /** @type {import('./peer.js').PeerHost} */
  #host;

  /** @param {SwitchboardOptions} options */
  constructor(options) {
    super();
    const o = options || /** @type {SwitchboardOptions} */ ({});
    if (typeof o.room !== 'string' || o.room === '') throw new SwitchboardError('bad-option', 'options.room is required');
    const url = o.url || (typeof location !== 'undefined' ? location.origin : '');
    if (!/^https?:\/\//i.test(url)) throw new SwitchboardError('bad-option', `options.url must be an http(s) URL, got "${url}"`);
    const transport = o.transport || 'auto';
    if (!['auto', 'ws', 'sse'].includes(transport)) throw new SwitchboardError('bad-option', `unknown transport "${transport}"`);
    const iceServers = o.iceServers === undefined ? 'auto' : o.iceServers;
    if (iceServers !== 'auto' && !Array.isArray(iceServers)) throw new SwitchboardError('bad-option', "iceServers must be 'auto' or an array");
    this.#opts = {
      room: o.room,
      url: url.replace(/\/+$/, ''),
      name: o.name ? [...String(o.name)].slice(0, 64).join('') : '',
      token: o.token || undefined,
      iceServers,
      iceTransportPolicy: o.iceTransportPolicy || 'all',
      transport,
      leaveOnUnload: o.leaveOnUnload !== false,
    };
    this.#log =
      typeof o.debug === 'function'
        ? o.debug
        : o.debug
          ? (...a) => console.debug('[switchboard]', ...a)
          : () => {};
    this.#host = {
      signal: (msg) => this.#sig.send(msg),
      emit: (event, arg) => this.emit(event, arg),
      log: this.#log,
    };

    const sig = new Signaling({ url: this.#opts.url, transport });
    this.#sig = sig;
    sig.log = this.#log;
    sig.canDeliver = (/** @type {any} */ m) => !m.to || this.peers.has(m.to);
    sig.on('state', (/** @type {any} */ s) => this.#setState(s));
    sig.on('joined', (/** @type {any} */ e) => this.#onJoined(e.msg, e.rejoin));
    sig.on('resumed', (/** @type {any} */ e) => this.#onResumed(e.msg));
    sig.on('message', (/** @type {any} */ m) => this.#onSignal(m));
    sig.on('error', (/** @type {any} */ err) => this.#onSignalingError(err));
    sig.on('closed', () => this.#teardown());
  }

  /** Room name. */
  get room() {
    return this.#opts.room;
  }

  /** Own display name. */
  get name() {
    return this.#opts.name;
  }

  /** 'ws' or 'sse': the signaling transport in use (null before the first connection). */
  get transportKind() {
    return this.#sig.kind;
  }

  /** The stream of the tracks being sent (what `publish`/`replaceTrack` set). */
  get localStream() {
    return this.#stream;
  }

  /** The ICE servers in use (after `join`). */
  get iceServers() {
    return this.#iceServers ? [...this.#iceServers] : [];
  }

  /** A plain summary. */
  toJSON() {
    return { room: this.room, name: this.name, peerId: this.peerId, state: this.state, transportKind: this.transportKind };
  }

  /**
   * Connect and join the room. Resolves once joined (after the `joined` event); rejects
   * with a SwitchboardError whose `code` is the server's error code (`room-full`,
   * `unauthorized`, `token-expired`, `bad-room`, ...) or `unreachable`.
   * @returns {Promise<{peerId: string, peers: Peer[]}>}
   */
  async join() {
    if (this.state !== 'idle' && this.state !== 'closed') {
      throw new SwitchboardError('invalid-state', `join() called while ${this.state}`);
    }
    if (this.state === 'closed') this.#teardown();
    this.#setState('connecting');
    try {
      await this.#loadIceServers();
      await this.#sig.join({ room: this.#opts.room, name: this.#opts.name, token: this.#opts.token });
    } catch (err) {
      const e =
        err instanceof SwitchboardError ? err : new SwitchboardError('unreachable', String(/** @type {Error} */ (err)?.message || err));
      e.fatal = true;
      this.#setState('closed');
      this.emit('error', e);
      throw e;
    }
    this.#watchUnload();
    return { peerId: /** @type {string} */ (this.peerId), peers: [...this.peers.values()] };
  }

  /**
   * Send the tracks of `stream` (its first audio and first video track) to every peer,
   * now and later ones; `null` stops sending. Replaces what was published before.
   * @param {MediaStream|null} stream
   * @returns {Promise<void>} settles when all peers have the new tracks (never rejects)
   */
  publish(stream) {
    const audio = stream ? stream.getAudioTracks()[0] || null : null;
    const video = stream ? stream.getVideoTracks()[0] || null : null;
    return Promise.all([this.#setLocal('audio', audio), this.#setLocal('video', video)]).then(
      () => undefined,
      (err) => this.#log('publish failed', err),
    );
  }

  /**
   * Replace the track sent for `kind` (e.g. screen share, another camera, mute by `null`)
   * on every peer, without renegotiation when a transceiver of that kind exists.
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack|null} track
   * @returns {Promise<void>}
   */
  async replaceTrack(kind, track) {
    if (kind !== 'audio' && kind !== 'video') throw new SwitchboardError('bad-option', `kind must be 'audio' or 'video'`);
    if (track && track.kind !== kind) throw new SwitchboardError('bad-option', `a ${track.kind} track given for ${kind}`);
    await this.#setLocal(kind, track);
  }

  /**
   * Send an application message (any JSON value) to one peer or to all. It goes over the
   * peer's data channel, or through the signaling server while that is not open yet.
   * @param {unknown} data
   * @param {string} [peerId] default: everyone
   * @returns {number} how many peers it was sent to
   */
  send(data, peerId) {
    if (peerId !== undefined) {
      const peer = this.peers.get(peerId);
      if (!peer) throw new SwitchboardError('unknown-peer', `no peer ${peerId} in the room`);
      peer.send(data);
      return 1;
    }
    for (const peer of this.peers.values()) peer.send(data);
    return this.peers.size;
  }

  /**
   * Remove a peer from the room (needs the `admin` grant; a refusal comes as an `error`
   * event with code `forbidden` or `unknown-peer`).
   * @param {string} peerId
   */
  kick(peerId) {
    if (!this.#sig.send({ type: 'kick', peer: String(peerId) })) throw new SwitchboardError('not-joined', 'not in a room');
  }

  /**
   * Restart ICE with one peer or all.
   * @param {string} [peerId]
   */
  restartIce(peerId) {
    for (const peer of this.peers.values()) if (peerId === undefined || peer.id === peerId) peer.restartIce();
  }

  /**
   * Leave the room: `leave` to the server, every connection closed. Local tracks are
   * left alone (stop them yourself).
   * @returns {Promise<void>}
   */
  async leave() {
    this.#teardown();
    await this.#sig.leave();
  }

  // ---------------------------------------------------------------------------------------

  async #loadIceServers() {
    const o = this.#opts.iceServers;
    if (o !== 'auto') {
      this.#iceServers = o;
      return;
    }
    const fetched = await this.#fetchIceServers();
    if (fetched) this.#iceServers = fetched;
    else if (!this.#iceServers) this.#iceServers = [];
  }

  /** GET /api/ice-servers; null when it fails (we then go on with host candidates). */
  async #fetchIceServers() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), ICE_FETCH_TIMEOUT_MS);
    try {
      // A server with room tokens gives relay credentials only to their holders.
      const headers = this.#opts.token ? { authorization: `Bearer ${this.#opts.token}` } : undefined;
      const res = await fetch(`${this.#opts.url}/api/ice-servers`, { signal: ctrl.signal, cache: 'no-store', headers });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = await res.json();
      if (!body || !Array.isArray(body.iceServers)) throw new Error('no iceServers in the answer');
      const ttl = Number(body.ttl);
      if (this.#iceTimer) clearTimeout(this.#iceTimer);
      if (ttl > 0) {
        // Refresh time-limited TURN credentials before they expire.
        this.#iceTimer = setTimeout(() => this.#refreshIceServers(), Math.max(30, ttl * 0.8) * 1000);
      }
      return /** @type {RTCIceServer[]} */ (body.iceServers);
    } catch (err) {
      this.#log('GET /api/ice-servers failed', err);
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  async #refreshIceServers() {
    this.#iceTimer = null;
    if (this.state === 'closed' || this.state === 'idle') return;
    const fresh = await this.#fetchIceServers();
    if (!fresh) {
      this.#iceTimer = setTimeout(() => this.#refreshIceServers(), 60000);
      return;
    }
    this.#iceServers = fresh;
    for (const peer of this.peers.values()) {
      try {
        peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), iceServers: fresh });
      } catch (err) {
        this.#log(`peer ${peer.id}: setConfiguration failed`, err);
      }
    }
  }

  /** @param {'idle'|'connecting'|'open'|'reconnecting'|'closed'} s */
  #setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  /** @returns {RTCConfiguration} */
  #rtcConfig() {
    return {
      iceServers: this.#iceServers || [],
      iceTransportPolicy: this.#opts.iceTransportPolicy,
      bundlePolicy: 'max-bundle',
    };
  }

  /**
   * @param {{id: string, name?: string, identity?: string}} info
   * @param {boolean} initiator we joined after it: we make the first offer
   */
  #addPeer(info, initiator) {
    // Without the `publish` grant the server refuses our offers: the other side offers,
    // and we only receive.
    const canOffer = this.#canPublish();
    const peer = new Peer(this.#host, info, {
      config: this.#rtcConfig(),
      initiator: initiator && canOffer,
      canOffer,
      polite: String(this.peerId) > String(info.id),
      tracks: canOffer ? { ...this.#tracks } : { audio: null, video: null },
      stream: this.#stream,
    });
    this.peers.set(peer.id, peer);
    if (initiator && !canOffer) peer.askForOffer();
    return peer;
  }

  /** Whether this session's grants allow sending offers (and so media). */
  #canPublish() {
    return this.grants.length === 0 || this.grants.includes('publish');
  }

  /**
   * An error from the server. Those about the SDK's own negotiation messages are
   * handled here; the rest go to the application.
   * @param {any} err SwitchboardError, with `request` when it is about a message we sent
   */
  #onSignalingError(err) {
    const req = err.request;
    if (req && !err.fatal) {
      const peer = typeof req.to === 'string' ? this.peers.get(req.to) : undefined;
      if (err.code === 'unknown-peer' && ['offer', 'answer', 'candidate'].includes(req.type)) {
        this.#log(`${req.type} to ${req.to} not delivered: that peer has left`);
        return;
      }
      if (err.code === 'forbidden' && req.type === 'offer' && peer) {
        this.#log(`offer to ${peer.id} refused (no publish grant): asking it to offer`);
        peer.offerForbidden();
        return;
      }
      if (req.type === 'message' && (req.data === OFFER_ME || req.data === RESYNC)) {
        this.#log(`control message to ${req.to} failed: ${err.code}`);
        return;
      }
    }
    this.emit('error', err);
  }

  /**
   * @param {string} id
   * @param {string} reason
   */
  #removePeer(id, reason) {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    peer.close();
    this.emit('peer-left', { peer, reason });
  }

  /**
   * @param {any} msg the `joined` message
   * @param {boolean} rejoined
   */
  #onJoined(msg, rejoined) {
    if (rejoined) {
      for (const id of [...this.peers.keys()]) this.#removePeer(id, 'timeout');
    }
    this.peerId = String(msg.peerId);
    this.grants = Array.isArray(msg.grants) ? msg.grants : [];
    /** @type {{id: string, name?: string, identity?: string}[]} */
    const infos = Array.isArray(msg.peers) ? msg.peers : [];
    // We are the newcomer: we offer to everyone already there.
    const peers = infos.filter((p) => p && p.id !== this.peerId).map((p) => this.#addPeer(p, true));
    this.emit('joined', { peerId: this.peerId, peers, rejoined });
  }

  /** @param {any} msg the `resumed` message */
  #onResumed(msg) {
    const gap = !!msg.gap;
    if (gap) {
      // Messages were lost: trust the member list and renegotiate with everyone.
      const infos = Array.isArray(msg.peers) ? msg.peers.filter((/** @type {any} */ p) => p && p.id !== this.peerId) : [];
      const ids = new Set(infos.map((/** @type {any} */ p) => String(p.id)));
      for (const id of [...this.peers.keys()]) if (!ids.has(id)) this.#removePeer(id, 'timeout');
      for (const info of infos) {
        if (!this.peers.has(String(info.id))) this.emit('peer-joined', this.#addPeer(info, false));
      }
      for (const peer of this.peers.values()) peer.recover();
    } else {
      // Nothing the server sent was lost, but what we sent just before the break may be.
      // Checked once the replay has been handled.
      setTimeout(() => {
        if (this.state !== 'open') return;
        for (const peer of this.peers.values()) peer.resync(true);
      }, RESYNC_DELAY_MS);
    }
    this.emit('resumed', { gap });
  }

  /** @param {any} m a relayed or membership message */
  #onSignal(m) {
    if (this.state === 'closed') return;
    switch (m.type) {
      case 'peer-joined': {
        const info = m.peer;
        if (!info || typeof info.id !== 'string' || info.id === this.peerId) return;
        const known = this.peers.get(info.id);
        if (known) {
          if (info.name) known.name = String(info.name);
          return;
        }
        this.emit('peer-joined', this.#addPeer(info, false)); // it will offer to us
        return;
      }
      case 'peer-left':
        this.#removePeer(String(m.peerId), String(m.reason || 'left'));
        return;
      case 'offer':
      case 'answer':
      case 'candidate': {
        let peer = this.peers.get(m.from);
        if (!peer) {
          if (m.type !== 'offer' || typeof m.from !== 'string') return;
          // Its peer-joined was lost (signaling gap): take the offer all the same.
          peer = this.#addPeer({ id: m.from }, false);
          this.emit('peer-joined', peer);
        }
        peer.handle(m);
        return;
      }
      case 'message': {
        const control = m.data && typeof m.data === 'object' ? m.data.$switchboard : undefined;
        if (control === OFFER_ME.$switchboard) {
          this.peers.get(m.from)?.offerRequested();
          return;
        }
        if (control === RESYNC.$switchboard) {
          this.peers.get(m.from)?.resync(false);
          return;
        }
        const peer = this.peers.get(m.from) || { id: String(m.from), name: '' };
        this.emit('message', { peer, data: m.data, via: 'signal' });
        return;
      }
      default:
        this.#log('unexpected message', m.type);
    }
  }

  /**
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack|null} track
   */
  async #setLocal(kind, track) {
    const old = this.#tracks[kind];
    this.#tracks[kind] = track;
    if (this.#stream && old !== track) {
      if (old) this.#stream.removeTrack(old);
      if (track) this.#stream.addTrack(track);
    }
    if (!this.#canPublish()) return; // receive-only token: kept for a later session
    await Promise.all([...this.peers.values()].map((p) => p.setTrack(kind, track, this.#stream)));
  }

  #watchUnload() {
    if (!this.#opts.leaveOnUnload || typeof window === 'undefined' || this.#unload) return;
    this.#unload = new AbortController();
    window.addEventListener(
      'pagehide',
      () => {
        this.leave().catch(() => {});
      },
      { signal: this.#unload.signal },
    );
  }

  /** Close every peer connection and stop timers (no per-peer events). */
  #teardown() {
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
    if (this.#iceTimer) clearTimeout(this.#iceTimer);
    this.#iceTimer = null;
    this.#unload?.abort();
    this.#unload = null;
  }
}

export default Switchboard;

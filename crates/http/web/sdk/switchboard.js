// Switchboard SDK: join a room of a Switchboard server and talk to everyone in it over
// WebRTC: a full mesh in small rooms, one connection to the server's SFU in rooms whose
// topology is "sfu" (sfu.js). An ES module, usable straight from the server without a build step:
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
import { SfuMember } from './sfu.js';
import { SfuMode } from './topology.js';
import { IceServers } from './ice.js';
import { SipCalls, sipReport } from './sip.js';
import { checkOptions } from './options.js';
import { Line } from './calls.js';

/**
 * A far party of a direct call, on another server (XMPP or SIP federation): a mesh peer
 * that always leads the negotiation.
 * @param {{service?: string}} info
 */
const isRemote = (info) => info.service === 'remote';
/**
 * Server-side peers that are no member of the call: the SFUs (the room's own, `SFU`, and
 * in a cluster an edge per node, `SFU@<node>`) and the links between nodes' SFUs.
 * @param {any} info
 */
const isInfrastructure = (info) => info.service === 'sfu' || info.service === 'link';

export { SwitchboardError } from './errors.js';
export { Peer } from './peer.js';
export { SfuMember } from './sfu.js';
export { SipCalls } from './sip.js';
export { Line, Call } from './calls.js';

/** SDK version. */
export const VERSION = '1.0.0';
/** Signaling protocol version spoken. */
export const PROTOCOL = 1;

/** After a resume without gap, how long to wait before checking for lost offers. */
const RESYNC_DELAY_MS = 1000;

/**
 * @typedef {object} SwitchboardOptions
 * @property {string} room room to join (1-64 of `A-Za-z0-9_-.`)
 * @property {string} [url] server base URL, http(s); default: the page's origin
 * @property {string[]} [urls] instead of `url`: the base URLs of a cluster's nodes (signaling.js)
 * @property {string} [name] display name (1-64 characters; the server's default is "guest")
 * @property {string} [token] room token (JWT) when the server requires one
 * @property {'auto'|RTCIceServer[]} [iceServers] 'auto' (default): GET /api/ice-servers
 * @property {string} [region] with 'auto': ask a cluster for the TURN of a node in this region (`?region=`)
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] 'all' (default) or 'relay'
 * @property {'auto'|'ws'|'sse'} [transport] 'auto' (default): WebSocket, falling back to EventSource+POST
 * @property {'auto'|'sfu'|'mesh'} [topology] a new room's topology: 'auto' (default: mesh, SFU from the server's threshold on), 'sfu' or 'mesh'; only the room's creator decides
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
 * - `track` ({peer, track, streams, transceiver, source}): remote media arrived
 * - `track-removed` ({peer, track, source}): SFU rooms: the SFU stopped forwarding a track
 * - `topology` ({mode, switchMs}): the room changed between mesh and SFU
 * - `speaker` ({peer}): SFU rooms: the dominant speaker changed (null: silence)
 * - `layer` ({peer, mid, layer, track}): SFU rooms: the simulcast layer forwarded changed
 * - `message` ({peer, data, via}): an application message (`send`), `via` 'datachannel' | 'signal'
 * - `sip` ({peer, call, state?, reason?, dtmf?}): a phone call's progress or key (sip.js)
 * - `peer-state` ({peer, state}): the RTCPeerConnection's connectionState changed
 * - `channel-open` ({peer}): the data channel to `peer` is open
 * - `resumed` ({gap}): signaling came back after a transport loss
 * - `error` (SwitchboardError: {code, reason, fatal}): `fatal` means the session is over
 */
export class Switchboard extends Emitter {
  /** Remote participants by peer id. @type {Map<string, Peer|SfuMember>} */
  peers = new Map();
  /** Own peer id once joined. @type {string|null} */
  peerId = null;
  /** Grants of this session ('publish', 'subscribe', 'admin'). @type {string[]} */
  grants = [];
  /** Signaling state. @type {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
  state = 'idle';
  /** Phone calls through the server's SIP gateway (sip.js). @type {SipCalls} */
  sip;

  /** @type {Required<Omit<SwitchboardOptions, 'url'|'token'|'debug'|'audioCodec'>> & {token?: string}} */
  #opts;
  #sig;
  /** @type {IceServers} */
  #ice;
  /** The node URL whose /api/ice-servers answer `#ice` holds (its `node` names our SFU's). @type {string|null} */
  #iceUrl = null;
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
  /** Mesh or SFU, and the connection to the SFU (topology.js). @type {SfuMode} */
  #mode;

  /** @param {SwitchboardOptions} options */
  constructor(options) {
    super();
    const o = options || /** @type {SwitchboardOptions} */ ({});
    const { urls, transport, topology, iceServers, region, audioCodec } = checkOptions(o);
    this.#opts = {
      room: o.room,
      urls,
      name: o.name ? [...String(o.name)].slice(0, 64).join('') : '',
      token: o.token || undefined,
      iceServers,
      iceTransportPolicy: o.iceTransportPolicy || 'all',
      transport,
      topology,
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
    this.#mode = new SfuMode({
      peers: this.peers,
      emit: (event, arg) => this.emit(event, arg),
      log: this.#log,
      signal: (msg) => this.#sig.send(msg),
      selfId: () => String(this.peerId),
      rtcConfig: () => this.#rtcConfig(),
      canPublish: () => this.#canPublish(),
      tracks: () => this.#tracks,
      stream: this.#stream,
      audioCodec,
      addMeshPeer: (info, initiator) => this.#addPeer(info, initiator),
    });

    const sig = new Signaling({ urls, transport });
    this.#sig = sig;
    this.#ice = new IceServers({
      bases: () => sig.urls, // the node in use first
      token: this.#opts.token,
      region,
      option: iceServers,
      log: this.#log,
      live: () => this.state !== 'closed' && this.state !== 'idle',
      connections: () => this.#connections(),
    });

    const { room, token } = this.#opts;
    this.sip = new SipCalls({ base: () => sig.url, room, token, signal: (msg) => this.#sig.send(msg), peer: (id) => this.peers.get(id) });
    sig.log = this.#log;
    sig.canDeliver = (/** @type {any} */ m) => !m.to || this.peers.has(m.to) || m.to === this.#sfu?.id;
    sig.on('state', (/** @type {any} */ s) => this.#setState(s));
    sig.on('joined', (/** @type {any} */ e) => this.#onJoined(e.msg, e.rejoin));
    sig.on('resumed', (/** @type {any} */ e) => this.#onResumed(e.msg));
    sig.on('message', (/** @type {any} */ m) => this.#onSignal(m));
    sig.on('error', (/** @type {any} */ err) => this.#onSignalingError(err));
    sig.on('closed', () => this.#teardown());
  }

  /**
   * Sign in to `options.user`'s line to call people and be called (calls.js, docs/sdk.md
   * "Direct calls"). Resolves with the open Line.
   * @param {import('./calls.js').LineOptions} options
   * @returns {Promise<Line>}
   */
  static line(options) {
    return Line.open(options, (o) => new Switchboard(o));
  }

  /** Room name. */
  get room() {
    return this.#opts.room;
  }

  /** Own display name. */
  get name() {
    return this.#opts.name;
  }

  /** The server's base URL in use: with `urls`, the node the signaling is on (or last was). */
  get url() {
    return this.#sig.url;
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
    return this.#ice.list ? [...this.#ice.list] : [];
  }

  /** 'mesh' or 'sfu': how this page is connected to the others now. */
  get topology() {
    return this.#mode.topology;
  }

  /** SFU rooms: the connection to the SFU (`pc`, `id`, `layers`), else null. */
  get sfu() {
    return this.#sfu;
  }

  /** The room's SFU peers by id (one per node serving members of it, in a cluster). @type {Map<string, any>} */
  #sfuPeers = new Map();

  /**
   * The SFU to connect to: our node's edge (`SFU@<node>`, the node named by
   * /api/ice-servers), else the room's own (`SFU`), else any.
   */
  #pickSfu() {
    const all = [...this.#sfuPeers.values()];
    const node = this.#ice.node;
    return (node && all.find((p) => p.name === `SFU@${node}`)) || all.find((p) => p.name === 'SFU') || all[0] || null;
  }

  /** The connection to the SFU, if any. */
  get #sfu() {
    return this.#mode.link;
  }

  /** SFU rooms: the dominant speaker's peer id (null: silence or mesh). */
  get speaker() {
    return this.#sfu ? this.#sfu.speaker : null;
  }

  /** A plain summary. */
  toJSON() {
    return { room: this.room, name: this.name, peerId: this.peerId, state: this.state, transportKind: this.transportKind, topology: this.topology };
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
      await this.#ice.load();
      this.#iceUrl = this.url;
      await this.#sig.join({ room: this.#opts.room, name: this.#opts.name, token: this.#opts.token, topology: this.#opts.topology, sfuNode: this.#ice.node });
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
    const all = [...this.peers.values()];
    if (this.#sfu && all.length && all.every((p) => p instanceof SfuMember)) this.#sfu.send(data); // the SFU fans out
    else for (const peer of all) peer.send(data);
    return this.peers.size;
  }

  /**
   * Tell the SFU how large a remote video is shown, so it forwards a fitting simulcast
   * layer, or nothing for a hidden one. `target`: a peer id (all its videos) or a remote
   * video track; `size`: CSS pixels x devicePixelRatio, `null` or 0x0 = not visible.
   * Reported debounced; remembered across a mesh→SFU switch; no effect in mesh rooms.
   * @param {string|MediaStreamTrack} target
   * @param {{width: number, height: number}|null} size
   */
  setView(target, size) {
    const w = Number(size?.width) || 0;
    const h = Number(size?.height) || 0;
    const v = w > 0 && h > 0 ? { width: Math.round(w), height: Math.round(h) } : { width: 0, height: 0 };
    if (typeof target === 'string') this.#mode.views.byPeer.set(target, v);
    else if (target && typeof target === 'object' && target.kind === 'video') this.#mode.views.byTrack.set(target, v);
    else throw new SwitchboardError('bad-option', 'setView needs a peer id or a video track');
    this.#sfu?.viewChanged();
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
    for (const peer of this.peers.values()) if (peer instanceof Peer && (peerId === undefined || peer.id === peerId)) peer.restartIce();
    if (this.#sfu && (peerId === undefined || this.peers.get(peerId) instanceof SfuMember)) this.#sfu.peer.restartIce();
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

  /** Every RTCPeerConnection of this session (mesh peers and the SFU). */
  #connections() {
    const pcs = [...this.peers.values()].filter((p) => p instanceof Peer).map((p) => p.pc);
    if (this.#sfu) pcs.push(this.#sfu.pc);
    return pcs;
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
      iceServers: this.#ice.list || [],
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
      // A far party of a direct call leads the negotiation (it offers or asks for one).
      polite: isRemote(info) || String(this.peerId) > String(info.id),
      tracks: canOffer ? { ...this.#tracks } : { audio: null, video: null },
      stream: this.#stream,
    });
    this.peers.set(peer.id, peer);
    if (initiator && !canOffer) peer.askForOffer();
    return peer;
  }

  /**
   * Whether a member's media comes through the SFU (no connection of its own): every
   * member of an SFU room, and server-side participants (a WHIP publisher, a phone) but
   * a far party of a direct call, which is a mesh peer.
   * @param {{service?: string}} info
   */
  #viaSfu(info) {
    return this.topology === 'sfu' || (!!info.service && !isRemote(info));
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
      if (this.#sfu && req.to === this.#sfu.id) {
        // The SDK's own messages to the SFU: no business of the application's.
        if (err.code === 'forbidden' && req.type === 'offer') this.#sfu.peer.offerForbidden();
        else this.#log(`${req.type} to the SFU refused: ${err.code}`);
        return;
      }
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
    this.#mode.forget(id);
    this.emit('peer-left', { peer, reason });
  }

  /**
   * @param {any} msg the `joined` message
   * @param {boolean} rejoined
   */
  #onJoined(msg, rejoined) {
    if (rejoined) {
      for (const id of [...this.peers.keys()]) this.#removePeer(id, 'timeout');
      this.#mode.close();
    }
    this.peerId = String(msg.peerId);
    this.grants = Array.isArray(msg.grants) ? msg.grants : [];
    /** @type {{id: string, name?: string, identity?: string, service?: string}[]} */
    const infos = (Array.isArray(msg.peers) ? msg.peers : []).filter((/** @type {any} */ p) => p && p.id !== this.peerId);
    this.#sfuPeers = new Map(infos.filter((p) => p.service === 'sfu').map((p) => [String(p.id), p]));
    const sfu = this.#pickSfu();
    this.#mode.topology = msg.topology === 'sfu' || sfu ? 'sfu' : 'mesh';
    // Mesh: we are the newcomer and offer to everyone already there. SFU: one connection,
    // to the SFU participant (now, or when it joins).
    const peers = infos.filter((p) => !isInfrastructure(p)).map((p) => (this.#viaSfu(p) ? this.#mode.addMember(p) : this.#addPeer(p, !isRemote(p))));
    if (sfu) this.#mode.start(String(sfu.id));
    this.emit('joined', { peerId: this.peerId, peers, rejoined, topology: this.topology });
    this.#relearnNode();
  }

  /**
   * In a cluster, after the signaling moved to another node (a failover, or the first
   * node did not answer): ask that node's /api/ice-servers which node's SFU to use, tell
   * the signaling (the next `resume` names it), and move to that node's SFU if the room
   * has it. Until then the old node's name stands (the room's node then asks the node
   * our signaling reached for an edge).
   */
  async #relearnNode() {
    if (this.#opts.iceServers !== 'auto' || this.url === this.#iceUrl) return;
    this.#iceUrl = this.url;
    const before = this.#ice.node;
    await this.#ice.load();
    if (this.state === 'closed' || this.#ice.node === before) return;
    this.#log(`SFU node now ${this.#ice.node} (was ${before})`);
    this.#sig.setSfuNode(this.#ice.node);
    const pick = this.#pickSfu();
    if (pick && this.#sfu && String(pick.id) !== this.#sfu.id) this.#mode.start(String(pick.id));
  }

  /** @param {any} msg the `resumed` message */
  #onResumed(msg) {
    const gap = !!msg.gap;
    if (gap) {
      // Messages were lost: trust the member list and renegotiate with everyone.
      const all = Array.isArray(msg.peers) ? msg.peers.filter((/** @type {any} */ p) => p && p.id !== this.peerId) : [];
      const infos = all.filter((/** @type {any} */ p) => !isInfrastructure(p));
      this.#sfuPeers = new Map(all.filter((/** @type {any} */ p) => p.service === 'sfu').map((/** @type {any} */ p) => [String(p.id), p]));
      const sfu = this.#pickSfu();
      const ids = new Set(infos.map((/** @type {any} */ p) => String(p.id)));
      for (const id of [...this.peers.keys()]) if (!ids.has(id)) this.#removePeer(id, 'timeout');
      if (this.#sfu && (!sfu || String(sfu.id) !== this.#sfu.id)) this.#mode.gone();
      for (const info of infos) {
        if (this.peers.has(String(info.id))) continue;
        this.emit('peer-joined', this.#viaSfu(info) ? this.#mode.addMember(info) : this.#addPeer(info, false));
      }
      for (const peer of this.peers.values()) if (peer instanceof Peer) peer.recover();
      if (sfu && !this.#sfu) this.#mode.start(String(sfu.id));
      else this.#sfu?.peer.recover();
      this.#relearnNode();
    } else {
      // Nothing the server sent was lost, but what we sent just before the break may be.
      // Checked once the replay has been handled.
      setTimeout(() => {
        if (this.state !== 'open') return;
        for (const peer of this.peers.values()) if (peer instanceof Peer) peer.resync(true);
        this.#sfu?.peer.resync(false); // the SFU offers again by itself when it must
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
        if (info.service === 'sfu') {
          // The SFU itself is no participant. In a cluster a room has one SFU per node
          // that serves members of it: ours is the one of our node.
          this.#sfuPeers.set(info.id, info);
          const pick = this.#pickSfu();
          if (pick && pick.id === info.id) this.#mode.start(info.id);
          return;
        }
        if (info.service === 'link') return;
        const known = this.peers.get(info.id);
        if (known) {
          if (info.name) known.name = String(info.name);
          return;
        }
        // Other server-side participants (a WHIP publisher) only ever send through the SFU.
        if (this.#viaSfu(info)) {
          const member = this.#mode.addMember(info);
          this.emit('peer-joined', member);
          this.#sfu?.reconcile(); // its tracks may be mapped already
          setTimeout(() => this.#sfu?.announceLate(), 3000);
          return;
        }
        this.emit('peer-joined', this.#addPeer(info, false)); // it will offer to us
        return;
      }
      case 'peer-left': {
        const wasSfu = this.#sfuPeers.delete(String(m.peerId));
        if (this.#sfu && m.peerId === this.#sfu.id) {
          // Another SFU of the room (the room's own, when our node's edge went) takes over.
          const next = this.#pickSfu();
          if (next) {
            this.#mode.close(); // nobody to say `leave` to
            this.#mode.start(String(next.id));
          } else this.#mode.gone();
        } else if (!wasSfu) this.#removePeer(String(m.peerId), String(m.reason || 'left'));
        return;
      }
      case 'offer':
      case 'answer':
      case 'candidate': {
        if (this.#sfu && m.from === this.#sfu.id) {
          this.#sfu.peer.handle(m);
          return;
        }
        let peer = this.peers.get(m.from);
        if (peer instanceof SfuMember || (!peer && this.topology === 'sfu')) {
          this.#log(`${m.type} from ${m.from} ignored: SFU room`);
          return;
        }
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
        if (this.#sfu && m.from === this.#sfu.id) {
          if (m.data && typeof m.data === 'object' && typeof m.data.sfu === 'string') this.#sfu.onControl(m.data);
          return;
        }
        const control = m.data && typeof m.data === 'object' ? m.data.$switchboard : undefined;
        if (control === OFFER_ME.$switchboard) {
          this.peers.get(m.from)?.offerRequested();
          return;
        }
        if (control === RESYNC.$switchboard) {
          this.peers.get(m.from)?.resync(false);
          return;
        }
        const sip = sipReport(this.peers.get(m.from), m.data);
        if (sip) return void this.emit('sip', sip);
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
    const mesh = [...this.peers.values()].filter((p) => p instanceof Peer);
    await Promise.all([...mesh.map((p) => p.setTrack(kind, track, this.#stream)), this.#sfu?.setTrack(kind, track)]);
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
    this.#mode.close();
    this.#mode.topology = 'mesh';
    this.#ice.stop();
    this.#unload?.abort();
    this.#unload = null;
  }
}

export default Switchboard;

// Switchboard SDK: one remote participant and the RTCPeerConnection to it.
//
// Perfect negotiation (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example): the
// polite side rolls back its own offer on a collision, the impolite side ignores the
// other's. The first offer is the newcomer's (the "initiator"): the existing side does
// not offer before it has answered, so mesh setup needs no glare resolution at all.
// Remote ICE candidates wait until a remote description is set; ICE restarts on `failed`
// and on `disconnected` lasting more than 3 s.

import { SwitchboardError } from './errors.js';

/** How long `disconnected` may last before we restart ICE. */
const DISCONNECTED_RESTART_MS = 3000;
// A pair that has never connected is given this long from its first checks; then the peer
// is reported unreachable (and ICE restarted once, which recovers candidates lost on the
// way; more restarts on the same networks find no path either). Chromium rarely reaches
// 'failed' on its own: with continual gathering it goes back and forth between 'checking'
// and 'disconnected'. Working paths connect within a few seconds, even through a relay.
const UNCONNECTED_TIMEOUT_MS = 15000;
const MAX_UNCONNECTED_RESTARTS = 1;
/** Remote candidates kept while no remote description is set. */
const MAX_PENDING_CANDIDATES = 256;
/** Asking the other side for an offer (when we may not send one): at most this often. */
const ASK_INTERVAL_MS = 2000;
const MAX_ASKS = 5;
/** The SDK's own control messages (relayed as `message`; not shown to the application). */
export const OFFER_ME = Object.freeze({ $switchboard: 'offer-me' });
export const RESYNC = Object.freeze({ $switchboard: 'resync' });
/** Label and id of the one negotiated data channel. */
export const CHANNEL_LABEL = 'switchboard';
export const CHANNEL_ID = 0;

/**
 * What a Peer needs from its owner.
 * @typedef {object} PeerHost
 * @property {(msg: Record<string, unknown>) => void} signal send a signaling message (the host adds nothing; `to` is set here)
 * @property {(event: string, arg: unknown) => void} emit emit an SDK event
 * @property {(...args: unknown[]) => void} log debug log
 */

/**
 * Ways to adapt a Peer to the connection with the SFU (sfu.js); the mesh uses none.
 * @typedef {object} PeerHooks
 * @property {(pc: RTCPeerConnection) => void} [transceivers] set up the transceivers instead of the mesh default
 * @property {() => void} [beforeOffer] called right before each offer is sent (the SFU wants `publish` first)
 * @property {(ev: RTCTrackEvent) => void} [track] handles remote tracks instead of the `track` event
 * @property {(text: string) => void} [channelMessage] handles data-channel text instead of the `message` event
 * @property {() => void} [channelOpen] instead of the `channel-open` event
 * @property {() => void} [described] after a remote description was applied (and answered)
 * @property {(state: RTCPeerConnectionState) => void} [state] instead of the `peer-state` event
 * @property {boolean} [noOfferRequests] never ask the other side for an offer: it offers by itself
 */

/**
 * @typedef {object} PeerInfo
 * @property {string} id
 * @property {string} [name]
 * @property {string} [identity]
 */

/** @param {RTCRtpTransceiver} t */
function stopped(t) {
  return t.currentDirection === 'stopped' || t.direction === 'stopped';
}

/** A remote participant. */
export class Peer {
  /** Peer id (opaque, stable across a resume). */
  id;
  /** Display name. */
  name;
  /** Verified identity (the `sub` of its room token), if any. @type {string|undefined} */
  identity;
  /** @type {RTCPeerConnection} */
  pc;
  /** Remote streams received from this peer. @type {MediaStream[]} */
  streams = [];
  /** The RTCPeerConnection's connectionState. @type {RTCPeerConnectionState} */
  state = 'new';
  /** Whether this side yields on an offer collision (own peer id > remote peer id). */
  polite;
  /** Whether this side made the first offer (it joined after the other). @type {boolean} */
  initiator;
  /** The negotiated data channel (`negotiated: true, id: 0`). @type {RTCDataChannel} */
  channel;

  /** @type {PeerHost} */
  #host;
  /** Existing member waiting for the newcomer's first offer. */
  #awaitingOffer;
  #makingOffer = false;
  /** Our token allows offers (the `publish` grant) to this peer. */
  #canOffer = true;
  #askedAt = 0;
  #asks = 0;
  #ignoreOffer = false;
  #answerPending = false;
  /** @type {RTCIceCandidateInit[]} */
  #pendingCandidates = [];
  /** Incoming signaling is handled strictly in order. @type {Promise<void>} */
  #chain = Promise.resolve();
  #closed = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #disconnectedTimer = null;
  /** Set while retired (see `retire`). @type {ReturnType<typeof setTimeout> | null} */
  #retireTimer = null;
  /** ICE has been connected at least once (a path exists, or existed). */
  #everConnected = false;
  #unconnectedRestarts = 0;
  #reportedUnreachable = false;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #unconnectedTimer = null;
  /** @type {MediaStream | null} */
  #looseTracks = null;
  /** @type {PeerHooks} */
  #hooks;

  /**
   * @param {PeerHost} host
   * @param {PeerInfo} info
   * @param {{config: RTCConfiguration, initiator: boolean, polite: boolean, canOffer?: boolean,
   *   tracks: {audio: MediaStreamTrack|null, video: MediaStreamTrack|null}, stream: MediaStream, hooks?: PeerHooks}} opts
   */
  constructor(host, info, opts) {
    this.#canOffer = opts.canOffer !== false;
    const hooks = opts.hooks || {};
    this.#hooks = hooks;
    this.#host = host;
    this.id = String(info.id);
    this.name = info.name ? String(info.name) : '';
    this.identity = info.identity === undefined ? undefined : String(info.identity);
    this.polite = opts.polite;
    this.initiator = opts.initiator;
    this.#awaitingOffer = !opts.initiator;

    const pc = new RTCPeerConnection(opts.config);
    this.pc = pc;
    if (hooks.transceivers) hooks.transceivers(pc);
    else for (const kind of /** @type {const} */ (['audio', 'video'])) {
      const track = opts.tracks[kind];
      if (opts.initiator) {
        // The offerer always offers audio and video so it receives both, sending or not.
        pc.addTransceiver(track || kind, { direction: track ? 'sendrecv' : 'recvonly', streams: [opts.stream] });
      } else if (track) {
        // addTrack transceivers are reused for the matching m-lines of the incoming offer.
        pc.addTrack(track, opts.stream);
      }
    }
    this.channel = pc.createDataChannel(CHANNEL_LABEL, { negotiated: true, id: CHANNEL_ID });
    this.channel.onmessage = (ev) => this.#onChannelMessage(ev);
    this.channel.onopen = () => (hooks.channelOpen ? hooks.channelOpen() : this.#host.emit('channel-open', { peer: this }));

    pc.onnegotiationneeded = () => {
      this.#negotiate();
    };
    pc.onicecandidate = (ev) => {
      // End-of-candidates (null) is not sent: the other side has no use for it.
      if (ev.candidate && ev.candidate.candidate) this.#signal({ type: 'candidate', candidate: ev.candidate.toJSON() });
    };
    pc.ontrack = (ev) => this.#onTrack(ev);
    pc.onconnectionstatechange = () => {
      if (this.#closed) return;
      this.state = pc.connectionState;
      if (this.state === 'connected') this.#asks = 0;
      if (hooks.state) hooks.state(this.state);
      else this.#host.emit('peer-state', { peer: this, state: this.state });
      this.#watchIce();
    };
    pc.oniceconnectionstatechange = () => this.#watchIce();
  }

  /** A plain summary (the object itself holds the RTCPeerConnection). */
  toJSON() {
    return { id: this.id, name: this.name, identity: this.identity, state: this.state, polite: this.polite };
  }

  /**
   * Handle `offer`, `answer` or `candidate` from this peer, in arrival order.
   * @param {{type: string, sdp?: string, candidate?: RTCIceCandidateInit|null}} msg
   * @returns {Promise<void>}
   */
  handle(msg) {
    this.#chain = this.#chain
      .then(() => this.#handle(msg))
      .catch((err) => this.#host.log(`peer ${this.id}: ${msg.type} failed`, err));
    return this.#chain;
  }

  /**
   * Send `kind` media: `track` (or nothing when null) on this connection. Reuses the
   * transceiver of that kind (replaceTrack, no renegotiation unless its direction has to
   * change), else adds one (renegotiation).
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack|null} track
   * @param {MediaStream} stream the stream to announce the track in
   */
  async setTrack(kind, track, stream) {
    try {
      await this.#setTrack(kind, track, stream);
    } catch (err) {
      if (!this.#closed) throw err; // closed meanwhile (the peer left): nothing to do
    }
  }

  /**
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack|null} track
   * @param {MediaStream} stream
   */
  async #setTrack(kind, track, stream) {
    if (this.#closed) return;
    const tr = this.pc.getTransceivers().find((t) => !stopped(t) && t.receiver.track && t.receiver.track.kind === kind);
    if (tr) {
      if (tr.sender.track !== track) await tr.sender.replaceTrack(track);
      if (track) {
        if (typeof tr.sender.setStreams === 'function') tr.sender.setStreams(stream);
        if (tr.direction === 'recvonly') tr.direction = 'sendrecv';
        else if (tr.direction === 'inactive') tr.direction = 'sendonly';
      }
    } else if (track) {
      this.pc.addTrack(track, stream);
    }
  }

  /**
   * Send an application message: over the data channel when it is open, else relayed by
   * the signaling server. Returns which way it went.
   * @param {unknown} data any JSON value
   * @returns {'datachannel'|'signal'}
   */
  send(data) {
    const text = JSON.stringify(data);
    if (text === undefined) throw new SwitchboardError('bad-message', 'data is not JSON-serializable');
    if (this.channel.readyState === 'open') {
      this.channel.send(text);
      return 'datachannel';
    }
    this.#signal({ type: 'message', data });
    return 'signal';
  }

  /**
   * Restart ICE (new credentials, new candidates); renegotiates through perfect negotiation.
   * @param {string} [why]
   */
  restartIce(why = 'requested') {
    if (this.#closed) return;
    this.#host.log(`peer ${this.id}: ICE restart (${why})`);
    this.pc.restartIce();
  }

  /**
   * After signaling lost messages (`resumed` with `gap`): forget any half-done offer and
   * renegotiate with an ICE restart, which recovers lost descriptions and candidates.
   */
  recover() {
    if (this.#closed) return;
    this.#awaitingOffer = false;
    this.#chain = this.#chain
      .then(async () => {
        if (this.#closed) return;
        if (this.pc.signalingState === 'have-local-offer') {
          await this.pc.setLocalDescription({ type: 'rollback' });
        }
        this.restartIce('signaling gap');
        await this.#negotiate(); // (asks the peer to offer when we may not)
      })
      .catch((err) => this.#host.log(`peer ${this.id}: recovery failed`, err));
  }

  /**
   * Ask the peer to send an offer: for a session whose token lacks the `publish` grant
   * (the server refuses its offers), negotiation always starts on the other side.
   */
  askForOffer() {
    if (this.#closed || this.#hooks.noOfferRequests) return;
    const now = Date.now();
    if (now - this.#askedAt < ASK_INTERVAL_MS || this.#asks >= MAX_ASKS) return;
    this.#askedAt = now;
    this.#asks++;
    this.#host.log(`peer ${this.id}: asking for an offer`);
    this.#signal({ type: 'message', data: OFFER_ME });
  }

  /**
   * After our signaling connection came back: messages we sent just before it broke may
   * never have reached the server. Send our pending offer again (its SDP now carries the
   * candidates gathered so far) and, with `ask`, have the peer do the same.
   * @param {boolean} ask
   */
  resync(ask) {
    if (this.#closed) return;
    this.#chain = this.#chain
      .then(() => {
        const d = this.pc.localDescription;
        if (this.pc.signalingState === 'have-local-offer' && d && !this.#closed) {
          this.#host.log(`peer ${this.id}: sending our pending offer again`);
          this.#hooks.beforeOffer?.();
          this.#signal({ type: 'offer', sdp: d.sdp });
        }
        if (ask) this.#signal({ type: 'message', data: RESYNC });
      })
      .catch((err) => this.#host.log(`peer ${this.id}: resync failed`, err));
  }

  /** The peer asked us for an offer (it may not send one itself). */
  offerRequested() {
    if (this.#closed || !this.#canOffer) return;
    this.#awaitingOffer = false;
    const failed = ['failed', 'disconnected'].includes(this.pc.iceConnectionState);
    if (failed && this.pc.currentLocalDescription) this.pc.restartIce();
    this.#chain = this.#chain.then(() => this.#negotiate()).catch((err) => this.#host.log(`peer ${this.id}: offer failed`, err));
  }

  /** The server refused our offer (`forbidden`): from now on the peer offers. */
  offerForbidden() {
    if (this.#closed) return;
    this.#canOffer = false;
    this.#chain = this.#chain
      .then(async () => {
        if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({ type: 'rollback' });
        // Transceivers that only our own offer would have created can never be negotiated now.
        for (const t of this.pc.getTransceivers()) if (!t.mid && !stopped(t)) t.stop();
        this.askForOffer();
      })
      .catch((err) => this.#host.log(`peer ${this.id}: rollback failed`, err));
  }

  /**
   * Keep the connection for the other side only, for at most `ms`: a live switch to the
   * SFU is done here, but the other page may still be showing what we send until its own
   * switch is done. No more events or ICE restarts; closed as soon as the other side
   * closes its end (the data channel or the connection ends), or after `ms`; then
   * `onClosed`.
   * @param {number} ms
   * @param {() => void} onClosed
   */
  retire(ms, onClosed) {
    if (this.#closed || this.#retireTimer) return;
    this.#clearDisconnected();
    this.#clearUnconnected();
    const pc = this.pc;
    pc.ontrack = null;
    pc.onnegotiationneeded = null;
    pc.oniceconnectionstatechange = null;
    this.channel.onmessage = null;
    this.channel.onopen = null;
    const end = () => {
      this.close();
      onClosed();
    };
    this.channel.onclose = end;
    pc.onconnectionstatechange = () => {
      if (pc.connectionState !== 'connected' && pc.connectionState !== 'connecting') end();
    };
    if (this.channel.readyState !== 'open' || pc.connectionState !== 'connected') end();
    else this.#retireTimer = setTimeout(end, ms);
  }

  /** Close the connection (no event). */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retireTimer) clearTimeout(this.#retireTimer);
    if (this.#disconnectedTimer) clearTimeout(this.#disconnectedTimer);
    this.#clearUnconnected();
    this.#pendingCandidates = [];
    try {
      this.channel.close();
    } catch {
      /* already closed */
    }
    this.pc.close();
    this.state = 'closed';
  }

  get closed() {
    return this.#closed;
  }

  // ---------------------------------------------------------------------------------------

  /** @param {Record<string, unknown>} msg */
  #signal(msg) {
    if (this.#closed) return;
    this.#host.signal({ ...msg, to: this.id });
  }

  async #negotiate() {
    const pc = this.pc;
    if (this.#closed || this.#awaitingOffer) return;
    if (!this.#canOffer) {
      this.askForOffer();
      return;
    }
    if (this.#makingOffer || pc.signalingState !== 'stable') return;
    try {
      this.#makingOffer = true;
      await pc.setLocalDescription();
      const d = pc.localDescription;
      if (d && d.type === 'offer' && !this.#closed) {
        this.#hooks.beforeOffer?.();
        this.#signal({ type: 'offer', sdp: d.sdp });
      }
    } catch (err) {
      if (this.#closed) return;
      this.#host.log(`peer ${this.id}: creating an offer failed`, err);
      this.#host.emit('error', new SwitchboardError('negotiation-failed', `offer to ${this.id}: ${/** @type {Error} */ (err).message}`));
    } finally {
      this.#makingOffer = false;
    }
  }

  /** @param {{type: string, sdp?: string, candidate?: RTCIceCandidateInit|null}} msg */
  async #handle(msg) {
    if (this.#closed) return;
    if (msg.type === 'offer' || msg.type === 'answer') {
      if (typeof msg.sdp !== 'string') return;
      await this.#onDescription({ type: msg.type, sdp: msg.sdp });
    } else if (msg.type === 'candidate') {
      await this.#onCandidate(msg.candidate || null);
    }
  }

  /** @param {RTCSessionDescriptionInit} desc */
  async #onDescription(desc) {
    const pc = this.pc;
    const readyForOffer = !this.#makingOffer && (pc.signalingState === 'stable' || this.#answerPending);
    const collision = desc.type === 'offer' && !readyForOffer;
    this.#ignoreOffer = !this.polite && collision;
    if (this.#ignoreOffer) {
      this.#host.log(`peer ${this.id}: ignoring a colliding offer (impolite)`);
      return;
    }
    if (desc.type === 'answer' && pc.signalingState !== 'have-local-offer') {
      this.#host.log(`peer ${this.id}: stale answer ignored (${pc.signalingState})`);
      return;
    }
    try {
      this.#answerPending = desc.type === 'answer';
      await pc.setRemoteDescription(desc); // rolls back our own offer if needed (polite)
    } catch (err) {
      if (this.#closed) return;
      this.#host.emit('error', new SwitchboardError('negotiation-failed', `${desc.type} from ${this.id}: ${/** @type {Error} */ (err).message}`));
      return;
    } finally {
      this.#answerPending = false;
    }
    await this.#flushCandidates();
    if (desc.type === 'offer') {
      this.#asks = 0;
      await pc.setLocalDescription();
      const d = pc.localDescription;
      if (d && !this.#closed) this.#signal({ type: 'answer', sdp: d.sdp });
      // From now on this side may offer too; if our own media was not covered by the
      // offer, the browser fires negotiationneeded again once back in `stable`.
      this.#awaitingOffer = false;
    }
    this.#hooks.described?.();
  }

  /** @param {RTCIceCandidateInit|null} c */
  async #onCandidate(c) {
    if (!c || !c.candidate) return; // end-of-candidates: nothing to do
    if (!this.pc.remoteDescription) {
      if (this.#pendingCandidates.length < MAX_PENDING_CANDIDATES) this.#pendingCandidates.push(c);
      return;
    }
    await this.#addCandidate(c);
  }

  async #flushCandidates() {
    const list = this.#pendingCandidates;
    this.#pendingCandidates = [];
    for (const c of list) await this.#addCandidate(c);
  }

  /** @param {RTCIceCandidateInit} c */
  async #addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      // Candidates of an ignored offer, or of a previous ICE generation, are expected to fail.
      if (!this.#ignoreOffer && !this.#closed) this.#host.log(`peer ${this.id}: candidate not added`, err);
    }
  }

  /** @param {RTCTrackEvent} ev */
  #onTrack(ev) {
    if (this.#hooks.track) {
      this.#hooks.track(ev);
      return;
    }
    let streams = [...ev.streams];
    if (streams.length === 0) {
      // Sent without a stream id: collect such tracks in one stream of our own.
      if (!this.#looseTracks) this.#looseTracks = new MediaStream();
      if (!this.#looseTracks.getTracks().includes(ev.track)) this.#looseTracks.addTrack(ev.track);
      streams = [this.#looseTracks];
    }
    for (const s of streams) if (!this.streams.includes(s)) this.streams.push(s);
    const source = ev.track.kind === 'audio' ? 'microphone' : 'camera';
    this.#host.emit('track', { peer: this, track: ev.track, streams, transceiver: ev.transceiver, source });
  }

  /** @param {MessageEvent} ev */
  #onChannelMessage(ev) {
    if (typeof ev.data !== 'string') return;
    if (this.#hooks.channelMessage) {
      this.#hooks.channelMessage(ev.data);
      return;
    }
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      data = ev.data;
    }
    this.#host.emit('message', { peer: this, data, via: 'datachannel' });
  }

  #watchIce() {
    if (this.#closed) return;
    const cs = this.pc.connectionState;
    const ics = this.pc.iceConnectionState;
    if (ics === 'connected' || ics === 'completed') {
      this.#everConnected = true;
      this.#unconnectedRestarts = 0;
      this.#reportedUnreachable = false;
      this.#clearUnconnected();
    } else if (!this.#everConnected && ics === 'checking' && !this.#unconnectedTimer) {
      this.#unconnectedTimer = setTimeout(() => {
        this.#unconnectedTimer = null;
        const now = this.pc.iceConnectionState;
        if (!this.#closed && !this.#everConnected && now !== 'connected' && now !== 'completed') this.#noPathYet('no path after 15 s');
      }, UNCONNECTED_TIMEOUT_MS);
    }
    if (cs === 'failed' || ics === 'failed') {
      this.#clearDisconnected();
      if (!this.#everConnected) {
        this.#clearUnconnected();
        this.#noPathYet(`${cs === 'failed' ? 'connection' : 'ICE'} failed`);
        return;
      }
      this.restartIce(`${cs === 'failed' ? 'connection' : 'ICE'} failed`);
    } else if (cs === 'disconnected' || ics === 'disconnected') {
      // Before the first connection, 'disconnected' only means checks are going
      // unanswered so far: ICE goes on and ends in 'connected' or 'failed'.
      if (this.#disconnectedTimer || !this.#everConnected) return;
      this.#disconnectedTimer = setTimeout(() => {
        this.#disconnectedTimer = null;
        if (this.#closed) return;
        if (this.pc.connectionState === 'disconnected' || this.pc.iceConnectionState === 'disconnected') {
          this.restartIce('disconnected for 3 s');
        }
      }, DISCONNECTED_RESTART_MS);
    } else {
      this.#clearDisconnected();
    }
  }

  /** The pair has never connected and ICE gave up or ran out of time. */
  #noPathYet(why) {
    this.#reportUnreachable();
    if (this.#unconnectedRestarts < MAX_UNCONNECTED_RESTARTS) {
      this.#unconnectedRestarts++;
      this.restartIce(why);
    }
  }

  #clearUnconnected() {
    if (this.#unconnectedTimer) clearTimeout(this.#unconnectedTimer);
    this.#unconnectedTimer = null;
  }

  /** No candidate pair ever worked: tell the application once, with what would help. */
  #reportUnreachable() {
    if (this.#reportedUnreachable) return;
    this.#reportedUnreachable = true;
    const servers = this.pc.getConfiguration().iceServers || [];
    const urls = servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
    const hasTurn = urls.some((u) => /^turns?:/i.test(String(u)));
    const reason = hasTurn
      ? `no network path to ${this.name || this.id}, not even through the relay (TURN): a firewall may block it`
      : `no direct network path to ${this.name || this.id}, and the server offers no relay (TURN)`;
    this.#host.log(`peer ${this.id}: unreachable (${reason})`);
    const err = new SwitchboardError('peer-unreachable', reason);
    err.peer = this.id;
    this.#host.emit('error', err);
  }

  #clearDisconnected() {
    if (this.#disconnectedTimer) clearTimeout(this.#disconnectedTimer);
    this.#disconnectedTimer = null;
  }
}

// Switchboard SDK: SFU mode. In a room whose topology is "sfu" every page has ONE
// RTCPeerConnection, to the server's SFU participant (a room member with `service: "sfu"`),
// instead of one per remote participant. The SFU forwards everyone's media on it and
// relays data-channel messages; protocol: docs/signaling.md, "SFU rooms".
//
// The connection is a `Peer` (peer.js: perfect negotiation, ICE restarts) adapted by hooks:
// we are always the polite side, a `publish` message precedes each of our offers, remote
// tracks are attributed to participants through the SFU's `tracks` map (mid -> peer,
// source) rather than to the SFU itself, and data-channel text carries an envelope
// (`{to, data}` out, `{from, data}` in). Remote participants are `SfuMember`s: the same
// shape as a mesh `Peer`, sharing the one connection.

import { SwitchboardError } from './errors.js';
import { Peer } from './peer.js';
import { preferAudioCodec } from './options.js';

/** Camera simulcast layers (VP8): quarter, half and full resolution. */
export const SIMULCAST = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1500000 }),
]);
/** A screen share is sent as one full-resolution layer (the `f` encoding) with this ceiling. */
const SCREEN_MAX_BITRATE = 2500000;
/** Layout changes are reported to the SFU at most this often. */
const VIEW_DEBOUNCE_MS = 200;
/** What the SFU assumes for a video nobody reported a size for. */
const DEFAULT_VIEW = Object.freeze({ width: 640, height: 360 });
/** A member whose tracks never show up still gets `channel-open` after this long. */
const CHANNEL_OPEN_FALLBACK_MS = 3000;
/** `flowing()`: a video counts as decoding when a frame was decoded this recently. */
const FLOWING_WINDOW_MS = 1000;

/** @param {MediaStreamTrack|null} track */
function isScreen(track) {
  if (!track || track.kind !== 'video') return false;
  const s = typeof track.getSettings === 'function' ? track.getSettings() : {};
  return 'displaySurface' in s || track.contentHint === 'detail' || track.contentHint === 'text';
}

/**
 * A remote participant of an SFU room. Same fields as a mesh `Peer`; `pc` and `channel`
 * are the one connection to the SFU that every member shares.
 */
export class SfuMember {
  /** @type {string} */ id;
  /** @type {string} */ name;
  /** @type {string|undefined} */ identity;
  /** Set for a server-side participant (e.g. `whip`: a WHIP publisher). @type {string|undefined} */ service;
  /** The participant's received tracks. */
  stream = typeof MediaStream === 'undefined' ? /** @type {any} */ (null) : new MediaStream();
  /** Always false: we yield to the SFU. */
  polite = true;
  initiator = false;
  closed = false;
  /** `channel-open` was emitted for this member. */
  announced = false;
  /** @type {SfuLink|null} */
  #link;

  /**
   * @param {{id: string, name?: string, identity?: string, service?: string}} info
   * @param {SfuLink|null} link
   */
  constructor(info, link) {
    this.id = String(info.id);
    this.name = info.name ? String(info.name) : '';
    this.identity = info.identity === undefined ? undefined : String(info.identity);
    this.service = typeof info.service === 'string' ? info.service : undefined;
    this.#link = link;
  }

  /** @param {SfuLink|null} link */
  attach(link) {
    this.#link = link;
  }

  /** The connection to the SFU (shared by all members). */
  get pc() {
    return /** @type {RTCPeerConnection} */ (this.#link?.peer.pc ?? null);
  }

  /** The SFU data channel (shared). */
  get channel() {
    return /** @type {RTCDataChannel} */ (this.#link?.peer.channel ?? null);
  }

  get streams() {
    return this.stream ? [this.stream] : [];
  }

  /** The SFU connection's `connectionState` (`new` before it exists). */
  get state() {
    return this.closed ? 'closed' : this.#link ? this.#link.peer.state : 'new';
  }

  /** The video tracks of this member (for `setView`). */
  videoTracks() {
    return this.stream ? this.stream.getVideoTracks() : [];
  }

  /**
   * Send an application message to this member (through the SFU).
   * @param {unknown} data
   * @returns {'datachannel'|'signal'}
   */
  send(data) {
    if (!this.#link) throw new SwitchboardError('invalid-state', 'no connection to the SFU yet');
    return this.#link.send(data, this.id);
  }

  restartIce() {
    this.#link?.peer.restartIce('requested');
  }

  close() {
    this.closed = true;
  }

  toJSON() {
    return { id: this.id, name: this.name, identity: this.identity, service: this.service, state: this.state, polite: this.polite };
  }
}

/**
 * Tile sizes (CSS px x devicePixelRatio; 0x0 = hidden), by track or by member id.
 * @typedef {{byTrack: WeakMap<MediaStreamTrack, {width: number, height: number}>, byPeer: Map<string, {width: number, height: number}>}} Views
 */

/**
 * What the link needs from the Switchboard instance.
 * @typedef {object} SfuHost
 * @property {(msg: Record<string, unknown>) => boolean|void} signal send a signaling message
 * @property {(event: string, arg: unknown) => void} emit emit an SDK event
 * @property {(...args: unknown[]) => void} log
 * @property {(id: string) => SfuMember|undefined} member a participant in SFU mode, by id
 * @property {() => Iterable<SfuMember>} members every SfuMember
 * @property {(reason: string) => void} gone the SFU dropped this connection (`gone` message)
 */

/** The one connection to the SFU. */
export class SfuLink {
  /** The SFU's peer id. @type {string} */ id;
  /** @type {Peer} */ peer;
  /** Current dominant speaker's peer id (null: silence). @type {string|null} */
  speaker = null;
  /** Layer the SFU says it forwards, by mid (informative `layers` messages). @type {Map<string, string>} */
  layers = new Map();
  /** While true (a live mesh→SFU switch), remote tracks are not shown yet. */
  deferTracks = false;

  /** @type {SfuHost} */ #host;
  /** The SFU's map: mid -> remote track. @type {Map<string, {peer: string, source: string, kind: string}>} */
  #byMid = new Map();
  /** What the application was told: mid -> member, source, track. @type {Map<string, {member: SfuMember, source: string, track: MediaStreamTrack}>} */
  #shown = new Map();
  /** Our sending transceivers. */
  #tx = { audio: /** @type {RTCRtpTransceiver|null} */ (null), video: /** @type {RTCRtpTransceiver|null} */ (null) };
  #videoSource = 'camera';
  /** Tile sizes reported by the application (`Switchboard.setView`). @type {Views} */
  #views;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #viewTimer = null;
  #lastView = '';
  /** `flowing()`'s last sample per mid. @type {Map<string, {track: string, frames: number, at: number}>} */
  #decoded = new Map();
  #canPublish;
  #stream;
  /** The audio codec our audio transceiver offers (options.js); null: the browser's. @type {'pcmu'|'pcma'|null} */
  #audioCodec = null;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #fallbackTimer = null;

  /**
   * @param {SfuHost} host
   * @param {string} id the SFU participant's peer id
   * @param {{config: RTCConfiguration, canPublish: boolean, stream: MediaStream,
   *   tracks: {audio: MediaStreamTrack|null, video: MediaStreamTrack|null},
   *   views: Views, deferTracks: boolean, audioCodec?: 'pcmu'|'pcma'|null}} opts
   */
  constructor(host, id, opts) {
    this.#host = host;
    this.id = id;
    this.#audioCodec = opts.audioCodec || null;
    this.#canPublish = opts.canPublish;
    this.#stream = opts.stream;
    this.#views = opts.views;
    this.deferTracks = opts.deferTracks;
    const tracks = opts.canPublish ? opts.tracks : { audio: null, video: null };
    this.peer = new Peer(
      { signal: (m) => host.signal(m), emit: (e, a) => host.emit(e, a), log: host.log },
      { id, name: 'sfu' },
      {
        config: opts.config,
        // We always make the first offer (without the `publish` grant it sends nothing: the
        // data channel and, later, what the SFU adds). The SFU enforces the grants itself; a
        // hub that refuses the offer (`forbidden`) leaves the SFU to offer.
        initiator: true,
        canOffer: true,
        polite: true,
        tracks,
        stream: opts.stream,
        hooks: {
          transceivers: (pc) => {
            if (tracks.audio) this.#addSender(pc, 'audio', tracks.audio);
            if (tracks.video) this.#addSender(pc, 'video', tracks.video);
          },
          beforeOffer: () => this.#sendPublish(),
          track: () => queueMicrotask(() => this.reconcile()),
          described: () => this.reconcile(),
          channelMessage: (text) => this.#onChannelText(text),
          channelOpen: () => this.#announceAll(),
          state: (state) => {
            for (const m of host.members()) host.emit('peer-state', { peer: m, state });
          },
          noOfferRequests: true,
        },
      },
    );
  }

  /**
   * A message from the SFU participant (relayed `message` whose data has `sfu`).
   * @param {any} data
   */
  onControl(data) {
    switch (data.sfu) {
      case 'tracks': {
        const list = Array.isArray(data.tracks) ? data.tracks : [];
        this.#byMid.clear();
        for (const t of list) {
          if (!t || typeof t.mid !== 'string' || typeof t.peer !== 'string') continue;
          const kind = t.kind === 'audio' ? 'audio' : 'video';
          const source = typeof t.source === 'string' ? t.source : kind === 'audio' ? 'microphone' : 'camera';
          this.#byMid.set(t.mid, { peer: t.peer, source, kind });
        }
        this.reconcile();
        return;
      }
      case 'speaker': {
        const id = typeof data.peer === 'string' ? data.peer : null;
        if (id === this.speaker) return;
        this.speaker = id;
        this.#host.emit('speaker', { peer: id ? this.#host.member(id) || { id, name: '' } : null });
        return;
      }
      case 'error': {
        const err = new SwitchboardError(String(data.code || 'sfu-error'), String(data.reason || data.code || 'refused by the SFU'));
        this.#host.emit('error', err);
        return;
      }
      case 'gone': {
        // The SFU let go of this connection (nothing arrived for a while, ICE or DTLS
        // ended) while we are still in the room: a new connection is needed.
        const reason = typeof data.reason === 'string' ? data.reason : 'unknown';
        this.#host.log(`the SFU dropped our connection (${reason})`);
        this.#host.gone(reason);
        return;
      }
      case 'layers': {
        if (typeof data.mid !== 'string' || typeof data.layer !== 'string') return;
        this.layers.set(data.mid, data.layer);
        const shown = this.#shown.get(data.mid);
        this.#host.emit('layer', { peer: shown ? shown.member : null, mid: data.mid, layer: data.layer, track: shown ? shown.track : null });
        return;
      }
      default:
        this.#host.log(`unknown SFU message ${String(data.sfu)}`);
    }
  }

  /**
   * Bring what the application was told (`track` / `track-removed`) in line with the SFU's
   * map and the transceivers that exist. A mid may change hands when the SFU reuses an
   * m-line for another participant's track.
   */
  reconcile() {
    if (this.peer.closed) return;
    this.#scheduleView();
    if (this.deferTracks) return;
    const present = new Set();
    for (const t of this.peer.pc.getTransceivers()) {
      const mid = t.mid;
      if (mid === null || t === this.#tx.audio || t === this.#tx.video) continue;
      present.add(mid);
      const want = this.#byMid.get(mid);
      const member = want ? this.#host.member(want.peer) : undefined;
      const had = this.#shown.get(mid);
      if (had && (!member || had.member !== member || had.source !== want?.source || had.track !== t.receiver.track)) {
        this.#unshow(mid, had);
      }
      if (member && want && !this.#shown.has(mid) && t.receiver.track && t.receiver.track.kind === want.kind) {
        const track = t.receiver.track;
        this.#shown.set(mid, { member, source: want.source, track });
        if (member.stream && !member.stream.getTracks().includes(track)) member.stream.addTrack(track);
        this.#host.emit('track', { peer: member, track, streams: member.streams, transceiver: t, source: want.source });
        this.#announce(member);
      }
    }
    for (const [mid, had] of [...this.#shown]) if (!present.has(mid)) this.#unshow(mid, had);
  }

  /** Take back every track shown (`track-removed` each): this connection is being replaced. */
  unshowAll() {
    for (const [mid, had] of [...this.#shown]) this.#unshow(mid, had);
  }

  /** Forget a member that left (no events: `peer-left` says it all). @param {string} id */
  forget(id) {
    for (const [mid, had] of [...this.#shown]) if (had.member.id === id) this.#shown.delete(mid);
  }

  /**
   * Which members' tracks are flowing on this connection now: video decoded a new frame
   * within the last FLOWING_WINDOW_MS (a video that decoded once and was then paused by
   * the SFU, e.g. for a low bandwidth estimate, is not flowing), audio arriving.
   * @returns {Promise<Map<string, {video: boolean, audio: boolean}>>}
   */
  async flowing() {
    /** @type {Map<string, {video: boolean, audio: boolean}>} */
    const out = new Map();
    const stats = await this.peer.pc.getStats();
    const now = performance.now();
    stats.forEach((/** @type {any} */ s) => {
      if (s.type !== 'inbound-rtp' || typeof s.mid !== 'string') return;
      const want = this.#byMid.get(s.mid);
      if (!want) return;
      let ok;
      if (want.kind === 'video') {
        const frames = s.framesDecoded || 0;
        const seen = this.#decoded.get(s.mid);
        // The first sample is a baseline: progress is seen from the second on.
        if (!seen || seen.track !== s.trackIdentifier) this.#decoded.set(s.mid, { track: s.trackIdentifier, frames, at: -Infinity });
        else if (frames > seen.frames) this.#decoded.set(s.mid, { track: s.trackIdentifier, frames, at: now });
        ok = now - (this.#decoded.get(s.mid)?.at ?? -Infinity) < FLOWING_WINDOW_MS;
      } else {
        ok = (s.packetsReceived || 0) > 0;
      }
      const e = out.get(want.peer) || { video: false, audio: false };
      if (ok) e[want.kind === 'video' ? 'video' : 'audio'] = true;
      out.set(want.peer, e);
    });
    return out;
  }

  /**
   * Send `kind` media. The camera goes out as three simulcast layers, a screen (a track
   * from getDisplayMedia) as the full layer alone; changing between them needs no
   * renegotiation, only a `publish` message with the new source.
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack|null} track
   */
  async setTrack(kind, track) {
    if (this.peer.closed || !this.#canPublish) return;
    const tr = this.#tx[kind];
    if (!tr) {
      if (track) this.#addSender(this.peer.pc, kind, track); // renegotiates (negotiationneeded)
      return;
    }
    if (tr.sender.track !== track) await tr.sender.replaceTrack(track);
    if (track && typeof tr.sender.setStreams === 'function') tr.sender.setStreams(this.#stream);
    if (kind === 'video' && track) {
      const source = isScreen(track) ? 'screen' : 'camera';
      if (source !== this.#videoSource) {
        this.#videoSource = source;
        await this.#applyEncodings(tr.sender, source);
        this.#sendPublish();
      }
    }
  }

  /**
   * Send an application message through the SFU: to one member, or to everyone (`to`
   * absent). Over the data channel when open, else relayed by the signaling server
   * straight to the member(s).
   * @param {unknown} data
   * @param {string} [to]
   * @returns {'datachannel'|'signal'}
   */
  send(data, to) {
    const text = JSON.stringify(to === undefined ? { data } : { to, data });
    if (text === undefined) throw new SwitchboardError('bad-message', 'data is not JSON-serializable');
    if (this.peer.channel.readyState === 'open') {
      this.peer.channel.send(text);
      return 'datachannel';
    }
    const ids = to === undefined ? [...this.#host.members()].map((m) => m.id) : [to];
    for (const id of ids) this.#host.signal({ type: 'message', to: id, data });
    return 'signal';
  }

  /** The connection to the SFU. */
  get pc() {
    return this.peer.pc;
  }

  /** Tile sizes changed (`Switchboard.setView`): tell the SFU, debounced. */
  viewChanged() {
    this.#scheduleView();
  }

  close() {
    if (this.#viewTimer) clearTimeout(this.#viewTimer);
    if (this.#fallbackTimer) clearTimeout(this.#fallbackTimer);
    this.#viewTimer = this.#fallbackTimer = null;
    this.peer.close();
    this.#shown.clear();
  }

  // ---------------------------------------------------------------------------------------

  /**
   * @param {RTCPeerConnection} pc
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack} track
   */
  #addSender(pc, kind, track) {
    if (kind === 'audio') {
      this.#tx.audio = pc.addTransceiver(track, { direction: 'sendonly', streams: [this.#stream] });
      preferAudioCodec(this.#tx.audio, this.#audioCodec, this.#host.log);
      return;
    }
    this.#videoSource = isScreen(track) ? 'screen' : 'camera';
    this.#tx.video = pc.addTransceiver(track, {
      direction: 'sendonly',
      streams: [this.#stream],
      sendEncodings: SIMULCAST.map((e) => ({ ...e })),
    });
    if (this.#videoSource === 'screen') this.#applyEncodings(this.#tx.video.sender, 'screen').catch((e) => this.#host.log('setParameters failed', e));
  }

  /**
   * @param {RTCRtpSender} sender
   * @param {string} source
   */
  async #applyEncodings(sender, source) {
    const p = sender.getParameters();
    if (!p.encodings || p.encodings.length === 0) return;
    for (const e of p.encodings) {
      const layer = SIMULCAST.find((l) => l.rid === e.rid);
      if (!layer) continue;
      if (source === 'screen') {
        e.active = layer.rid === 'f';
        if (layer.rid === 'f') e.maxBitrate = SCREEN_MAX_BITRATE;
      } else {
        e.active = true;
        e.maxBitrate = layer.maxBitrate;
      }
    }
    await sender.setParameters(p);
  }

  /** `publish`: the sources of our sending m-lines, before each offer. */
  #sendPublish() {
    const tracks = [];
    const a = this.#tx.audio;
    const v = this.#tx.video;
    if (a && a.mid !== null) tracks.push({ mid: a.mid, source: 'microphone' });
    if (v && v.mid !== null) tracks.push({ mid: v.mid, source: this.#videoSource });
    this.#host.signal({ type: 'message', to: this.id, data: { sfu: 'publish', tracks } });
  }

  /**
   * @param {string} mid
   * @param {{member: SfuMember, source: string, track: MediaStreamTrack}} had
   */
  #unshow(mid, had) {
    this.#shown.delete(mid);
    if (had.member.stream && ![...this.#shown.values()].some((s) => s.track === had.track)) had.member.stream.removeTrack(had.track);
    this.#host.emit('track-removed', { peer: had.member, track: had.track, source: had.source });
  }

  /** @param {string} text */
  #onChannelText(text) {
    let env;
    try {
      env = JSON.parse(text);
    } catch {
      this.#host.log('SFU data channel: not JSON, dropped');
      return;
    }
    if (!env || typeof env !== 'object' || typeof env.from !== 'string' || !('data' in env)) return;
    const peer = this.#host.member(env.from) || { id: env.from, name: '' };
    this.#host.emit('message', { peer, data: env.data, via: 'datachannel' });
  }

  /**
   * `channel-open` for a member once both its connection to the SFU and ours carry data:
   * its first track shows that it is connected (or a timeout, for one that sends nothing).
   * @param {SfuMember} member
   */
  #announce(member) {
    if (member.announced || this.peer.channel.readyState !== 'open') return;
    member.announced = true;
    this.#host.emit('channel-open', { peer: member });
  }

  #announceAll() {
    for (const m of this.#host.members()) if ([...this.#shown.values()].some((s) => s.member === m)) this.#announce(m);
    this.#fallbackTimer = setTimeout(() => this.announceLate(), CHANNEL_OPEN_FALLBACK_MS);
  }

  /** Members that never showed a track get `channel-open` all the same. */
  announceLate() {
    if (this.peer.closed) return;
    for (const m of this.#host.members()) this.#announce(m);
  }

  #scheduleView() {
    if (this.#viewTimer || this.peer.closed) return;
    this.#viewTimer = setTimeout(() => {
      this.#viewTimer = null;
      this.#sendView();
    }, VIEW_DEBOUNCE_MS);
  }

  /**
   * `view`: the size of every remote video on the connection (0x0 = hidden, paused at the
   * SFU). The SFU takes a mid missing from the list as hidden, so every video of its map is
   * listed, also those not shown to the application yet (a live switch): at the size its
   * participant's tile has, or the default.
   */
  #sendView() {
    const tracks = [];
    for (const [mid, want] of this.#byMid) {
      if (want.kind !== 'video') continue;
      const s = this.#shown.get(mid);
      const v = (s && this.#views.byTrack.get(s.track)) || this.#views.byPeer.get(want.peer) || DEFAULT_VIEW;
      tracks.push({ mid, width: Math.max(0, Math.round(v.width)), height: Math.max(0, Math.round(v.height)) });
    }
    if (tracks.length === 0) return;
    const text = JSON.stringify(tracks);
    if (text === this.#lastView) return;
    this.#lastView = text;
    this.#host.signal({ type: 'message', to: this.id, data: { sfu: 'view', tracks } });
  }
}

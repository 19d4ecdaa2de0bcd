// The participant grid: one tile per participant, laid out to use the stage best for
// 1..8 tiles (and stacked on narrow screens), or a speaker view (the active speaker large,
// the others in a strip). Each remote tile's shown size (0x0 when off screen or the page is
// hidden) goes to `onView`, so an SFU sends only what is seen, at the size it is seen.

import { icon } from './icons.js';
import { el, initials, hue, toast } from './ui.js';

const GAP = 12;
const ASPECT = 16 / 9;
const NARROW = '(max-width: 720px)';

/** One participant's tile. */
export class Tile {
  /**
   * @param {{id: string, name: string, local: boolean}} who
   */
  constructor(who) {
    this.id = who.id;
    this.local = who.local;
    /** Remote media shown in this tile. */
    this.stream = new MediaStream();
    this.video = /** @type {HTMLVideoElement} */ (el('video', { autoplay: true, playsinline: true }));
    this.video.muted = who.local; // never play our own microphone back
    this.nameEl = el('span.peer-name');
    this.micOff = el('span.tile-mic-off', { title: 'Microphone off', html: icon('mic-off') });
    this.micOff.hidden = true;
    this.avatar = el('div.avatar', {}, [el('span.avatar-initials')]);
    this.stateEl = el('div.tile-state', {}, [el('span.spinner'), el('span.tile-state-text', { text: 'Connecting…' })]);
    this.stateEl.hidden = who.local;
    this.top = el('div.tile-top');
    this.el = el(`div.tile.${who.local ? 'local' : 'remote'}.no-video`, who.local ? {} : { 'data-peer-id': who.id }, [
      this.video,
      this.avatar,
      this.stateEl,
      this.top,
      el('div.tile-bottom', {}, [this.micOff, this.nameEl, who.local ? el('span.you-badge', { text: 'You' }) : null]),
    ]);
    this.video.addEventListener('resize', () => this.#updateVideo());
    this.video.addEventListener('loadeddata', () => this.#updateVideo());
    this.setName(who.name);
    /** What the participant says it sends. */
    this.media = { audio: true, video: true, screen: false };
  }

  /** @param {string} name */
  setName(name) {
    this.name = name || 'Guest';
    this.nameEl.textContent = this.name;
    /** @type {HTMLElement} */ (this.avatar.firstChild).textContent = initials(this.name);
    this.avatar.style.setProperty('--hue', String(hue(this.name)));
    this.el.setAttribute('aria-label', this.local ? `${this.name} (you)` : this.name);
  }

  /**
   * Show a local stream (own camera or screen).
   * @param {MediaStream|null} stream
   * @param {{mirror?: boolean}} [opts]
   */
  showLocal(stream, opts = {}) {
    this.el.classList.toggle('mirror', !!opts.mirror);
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    this.#play();
    this.#updateVideo();
  }

  /**
   * Add a remote track (replacing an older one of the same kind).
   * @param {MediaStreamTrack} track
   */
  addTrack(track) {
    for (const t of this.stream.getTracks()) {
      if (t.kind === track.kind && t !== track) this.stream.removeTrack(t);
    }
    if (!this.stream.getTracks().includes(track)) this.stream.addTrack(track);
    track.addEventListener('ended', () => {
      this.stream.removeTrack(track);
      this.#updateVideo();
    });
    track.addEventListener('mute', () => this.#updateVideo());
    track.addEventListener('unmute', () => this.#updateVideo());
    if (this.video.srcObject !== this.stream) this.video.srcObject = this.stream;
    this.#play();
    this.#updateVideo();
  }

  /**
   * Remove a remote track (the SFU stopped forwarding it).
   * @param {MediaStreamTrack} track
   */
  removeTrack(track) {
    if (this.stream.getTracks().includes(track)) this.stream.removeTrack(track);
    this.#updateVideo();
  }

  /**
   * What the participant says it is sending.
   * @param {{audio?: boolean, video?: boolean, screen?: boolean}} media
   */
  setMedia(media) {
    this.media = { ...this.media, ...media };
    this.micOff.hidden = this.media.audio !== false;
    this.el.classList.toggle('screen', !!this.media.screen);
    this.#updateVideo();
  }

  /** @param {RTCPeerConnectionState} state */
  setConnState(state) {
    // 'unreachable' (no path found) stays until a path shows up or the peer leaves: the
    // SDK's background ICE restart passes through 'connecting' meanwhile.
    if (this.el.dataset.state === 'unreachable' && state !== 'connected' && state !== 'closed') return;
    this.el.dataset.state = state;
    /** @type {Record<string, string>} */
    const texts = { new: 'Connecting…', connecting: 'Connecting…', disconnected: 'Reconnecting…', failed: 'Connection lost, retrying…', closed: 'Left', unreachable: 'No network path (needs a relay)' };
    const text = texts[state];
    this.stateEl.hidden = this.local || state === 'connected' || !text;
    if (text) /** @type {HTMLElement} */ (this.stateEl.lastChild).textContent = text;
  }

  /** @param {boolean} on */
  setSpeaking(on) {
    this.el.classList.toggle('speaking', on);
  }

  /** Show the avatar instead of the video when there is no picture to show. */
  #updateVideo() {
    const vt = /** @type {MediaStream|null} */ (this.video.srcObject)?.getVideoTracks()[0];
    const live = !!vt && vt.readyState === 'live' && (this.local ? vt.enabled : !vt.muted);
    const hasPicture = live && this.media.video !== false && this.video.videoWidth > 0;
    this.el.classList.toggle('no-video', !hasPicture);
  }

  #play() {
    const p = this.video.play();
    if (!p) return;
    p.catch((err) => {
      if (err && err.name === 'NotAllowedError' && !this.local) {
        // Autoplay with sound refused: play muted and offer to turn sound on.
        this.video.muted = true;
        this.video.play().catch(() => {});
        Tile.onAutoplayBlocked?.();
      }
      // AbortError: a newer srcObject/play() took over; nothing to do.
    });
  }

  /** Called once when the browser refused to play sound without a user gesture. @type {(() => void) | null} */
  static onAutoplayBlocked = null;
}

/** The grid of tiles. */
export class Grid {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    /** @type {Map<string, Tile>} */
    this.tiles = new Map();
    /** @type {Tile|null} */
    this.localTile = null;
    /** The call is over: no "waiting for others" placeholder. */
    this.ended = false;
    this.placeholder = el('div.placeholder-tile', {}, [
      el('div.placeholder-inner', {}, [
        el('span.placeholder-icon', { html: icon('users') }),
        el('strong', { text: 'Waiting for others to join' }),
        el('span.hint', { text: 'Share the invite link to bring people in.' }),
        el('button.btn.btn-small', { type: 'button', 'data-action': 'copy-link', html: `${icon('link')}<span>Copy invite link</span>` }),
      ]),
    ]);
    root.append(this.placeholder);
    /** Called with a remote tile's shown size. @type {((id: string, size: {width: number, height: number}) => void) | null} */
    this.onView = null;
    /** Speaker view: the featured tile large, the others small. */
    this.speakerView = false;
    /** The active speaker's peer id (featured in speaker view). @type {string|null} */
    this.speaker = null;
    /** @type {Map<Element, Tile>} */
    this.byEl = new Map();
    /** @type {Map<Tile, boolean>} */
    this.onScreen = new Map();
    this.visibility = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const t = this.byEl.get(e.target);
        if (!t) continue;
        this.onScreen.set(t, e.isIntersecting);
        this.reportView(t);
      }
    });
    this.sizes = new ResizeObserver((entries) => {
      for (const e of entries) {
        const t = this.byEl.get(e.target);
        if (t) this.reportView(t);
      }
    });
    document.addEventListener('visibilitychange', () => {
      for (const t of this.tiles.values()) this.reportView(t);
    });
    new ResizeObserver(() => this.layout()).observe(root);
    window.matchMedia(NARROW).addEventListener('change', () => this.layout());
  }

  /**
   * @param {string} name
   * @returns {Tile}
   */
  addLocal(name) {
    const t = new Tile({ id: 'local', name, local: true });
    this.localTile = t;
    this.root.prepend(t.el);
    this.layout();
    return t;
  }

  /**
   * @param {{id: string, name: string}} peer
   * @returns {Tile}
   */
  addRemote(peer) {
    let t = this.tiles.get(peer.id);
    if (t) return t;
    t = new Tile({ id: peer.id, name: peer.name, local: false });
    this.tiles.set(peer.id, t);
    this.root.insertBefore(t.el, this.placeholder);
    this.byEl.set(t.el, t);
    this.visibility.observe(t.el);
    this.sizes.observe(t.el);
    this.layout();
    return t;
  }

  /** @param {string} id */
  get(id) {
    return this.tiles.get(id);
  }

  /** @param {string} id */
  remove(id) {
    const t = this.tiles.get(id);
    if (!t) return;
    this.tiles.delete(id);
    this.visibility.unobserve(t.el);
    this.sizes.unobserve(t.el);
    this.byEl.delete(t.el);
    this.onScreen.delete(t);
    t.video.srcObject = null;
    t.el.remove();
    this.layout();
  }

  /**
   * Report a tile's shown size in device pixels (0x0: off screen or page hidden).
   * @param {Tile} t
   */
  reportView(t) {
    if (!this.onView) return;
    const r = t.el.getBoundingClientRect();
    const seen = this.onScreen.get(t) !== false && document.visibilityState !== 'hidden' && r.width > 0;
    const dpr = window.devicePixelRatio || 1;
    this.onView(t.id, seen ? { width: Math.round(r.width * dpr), height: Math.round(r.height * dpr) } : { width: 0, height: 0 });
  }

  /**
   * The active speaker (highlighted; featured in speaker view).
   * @param {string|null} id
   */
  setSpeaker(id) {
    if (id && !this.tiles.has(id)) id = null;
    if (id === this.speaker) return;
    if (!id && this.speakerView && this.speaker && this.tiles.has(this.speaker)) return; // keep the last one featured
    this.speaker = id;
    for (const t of this.tiles.values()) t.el.classList.toggle('active-speaker', t.id === id);
    if (this.speakerView) this.layout();
  }

  /** @param {boolean} on */
  setSpeakerView(on) {
    this.speakerView = on;
    this.layout();
  }

  clearRemotes() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
  }

  /** Size the tiles: the column count that gives the largest 16:9 tiles. */
  layout() {
    const alone = this.tiles.size === 0 && !this.ended;
    this.placeholder.hidden = !alone;
    const n = this.tiles.size + (this.localTile ? 1 : 0) + (alone ? 1 : 0);
    this.root.dataset.count = String(this.tiles.size + (this.localTile ? 1 : 0));
    const W = this.root.clientWidth;
    const H = this.root.clientHeight;
    if (W === 0) return;
    const featured = this.speakerView ? this.tiles.get(this.speaker || '') || this.tiles.values().next().value : undefined;
    this.root.classList.toggle('speaker-view', !!featured);
    for (const t of this.tiles.values()) t.el.classList.toggle('featured', t === featured);
    if (featured) {
      // Speaker view: the featured tile as large as fits above one strip of small ones.
      const strip = 90;
      const fw = Math.min(W, (H - strip - GAP) * ASPECT);
      this.root.style.setProperty('--feature-w', `${Math.max(160, Math.floor(fw))}px`);
      this.root.style.setProperty('--tile-w', `${Math.floor(strip * ASPECT)}px`);
      return;
    }
    let cols = 1;
    let w = W;
    if (window.matchMedia(NARROW).matches) {
      cols = n <= 2 ? 1 : 2;
      w = (W - GAP * (cols - 1)) / cols;
    } else {
      let best = 0;
      for (let c = 1; c <= n; c++) {
        const rows = Math.ceil(n / c);
        const cw = Math.min((W - GAP * (c - 1)) / c, ((H - GAP * (rows - 1)) / rows) * ASPECT);
        if (cw > best + 0.5) {
          best = cw;
          cols = c;
        }
      }
      w = best;
    }
    this.root.style.setProperty('--cols', String(cols));
    this.root.style.setProperty('--tile-w', `${Math.max(120, Math.floor(w))}px`);
  }
}

/** Ask for a click when autoplay with sound was refused; unmutes every remote tile. */
export function installAutoplayUnlock(/** @type {Grid} */ grid) {
  let shown = false;
  Tile.onAutoplayBlocked = () => {
    if (shown) return;
    shown = true;
    const unlock = () => {
      for (const t of grid.tiles.values()) {
        t.video.muted = false;
        t.video.play().catch(() => {});
      }
      shown = false;
    };
    toast('Your browser blocked sound until you interact with the page.', {
      kind: 'warn',
      icon: 'speaker',
      ms: 15000,
      action: { label: 'Turn sound on', run: unlock },
    });
    document.addEventListener('pointerdown', unlock, { once: true });
  };
}

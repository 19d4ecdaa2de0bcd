// Local media: camera, microphone, screen share and device selection. What is sent is
// handed to `publish(kind, track)` (the SDK's replaceTrack) whenever it changes.

/**
 * @typedef {'audio'|'video'} Kind
 * @typedef {{deviceId: string, label: string}} DeviceOption
 */

const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };

/**
 * The app's media error code for a getUserMedia failure.
 * @param {unknown} err
 */
export function mediaErrorCode(err) {
  const name = err && typeof err === 'object' && 'name' in err ? String(err.name) : '';
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') return 'permission-denied';
  if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError') return 'no-devices';
  if (name === 'NotReadableError' || name === 'TrackStartError' || name === 'AbortError') return 'device-in-use';
  return 'media-failed';
}

export class LocalMedia {
  /** @type {MediaStreamTrack|null} */
  mic = null;
  /** @type {MediaStreamTrack|null} */
  cam = null;
  /** @type {MediaStreamTrack|null} */
  screen = null;
  /** The user wants the microphone on (unmuted). */
  micOn = true;
  /** The user wants the camera on. */
  camOn = true;
  /** Chosen devices ('' = browser default). */
  selected = { audioinput: '', videoinput: '', audiooutput: '' };

  /**
   * @param {{publish: (kind: Kind, track: MediaStreamTrack|null) => Promise<void>, onChange: () => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.supported = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
    this.canShareScreen = !!(navigator.mediaDevices && 'getDisplayMedia' in navigator.mediaDevices);
  }

  /**
   * Open camera and microphone. Returns an error code when one or both could not be had
   * (the call then goes on without them).
   * @returns {Promise<string|null>}
   */
  async start() {
    if (!this.supported) return window.isSecureContext ? 'no-devices' : 'insecure-context';
    try {
      const s = await navigator.mediaDevices.getUserMedia({ audio: AUDIO, video: VIDEO });
      this.mic = s.getAudioTracks()[0] || null;
      this.cam = s.getVideoTracks()[0] || null;
    } catch (err) {
      const code = mediaErrorCode(err);
      if (code === 'permission-denied') {
        this.#changed();
        return code;
      }
      // One of the two may still work on its own (no camera, camera busy, ...).
      this.mic = await this.#open('audio').catch(() => null);
      this.cam = await this.#open('video').catch(() => null);
      if (!this.mic && !this.cam) {
        this.#changed();
        return code;
      }
    }
    this.#changed();
    return null;
  }

  /** The stream to publish first: microphone and camera. */
  outgoing() {
    const s = new MediaStream();
    if (this.mic) s.addTrack(this.mic);
    const v = this.videoTrack();
    if (v) s.addTrack(v);
    return s;
  }

  /** The video being sent: the screen while sharing, else the camera when on. */
  videoTrack() {
    return this.screen || (this.camOn ? this.cam : null);
  }

  /** What we send, for the other participants' tiles. */
  state() {
    return { audio: !!this.mic && this.micOn, video: !!this.videoTrack(), screen: !!this.screen };
  }

  /**
   * Mute or unmute; opens the microphone if we have none yet (e.g. permission came later).
   * @param {boolean} on
   */
  async setMic(on) {
    if (on && !this.mic) {
      const t = await this.#open('audio');
      this.mic = t;
      await this.hooks.publish('audio', t);
    }
    this.micOn = on;
    if (this.mic) this.mic.enabled = on;
    this.#changed();
  }

  /**
   * Camera on/off. Off stops the camera (its light goes out) and sends no video.
   * @param {boolean} on
   */
  async setCam(on) {
    if (on === this.camOn && (!on || this.cam)) return;
    if (on) {
      const t = await this.#open('video');
      this.cam = t;
      this.camOn = true;
      if (!this.screen) await this.hooks.publish('video', t);
    } else {
      this.camOn = false;
      const old = this.cam;
      this.cam = null;
      if (!this.screen) await this.hooks.publish('video', null);
      old?.stop();
    }
    this.#changed();
  }

  /**
   * Share the screen instead of the camera. Resolves false when the user cancelled.
   * @returns {Promise<boolean>}
   */
  async startScreen() {
    if (this.screen) return true;
    let s;
    try {
      s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    } catch (err) {
      if (err && /** @type {Error} */ (err).name === 'NotAllowedError') return false; // cancelled in the picker
      throw err;
    }
    const t = s.getVideoTracks()[0];
    if (!t) return false;
    try {
      t.contentHint = 'detail';
    } catch {
      /* not supported */
    }
    this.screen = t;
    t.addEventListener('ended', () => {
      this.stopScreen().catch(() => {});
    });
    await this.hooks.publish('video', t);
    this.#changed();
    return true;
  }

  /** Stop sharing and go back to the camera (if it is on). */
  async stopScreen() {
    const t = this.screen;
    if (!t) return;
    this.screen = null;
    await this.hooks.publish('video', this.camOn ? this.cam : null);
    t.stop();
    this.#changed();
  }

  /**
   * Use another device for `kind`.
   * @param {'audioinput'|'videoinput'|'audiooutput'} kind
   * @param {string} deviceId
   */
  async selectDevice(kind, deviceId) {
    this.selected[kind] = deviceId;
    if (kind === 'audiooutput') {
      this.#changed();
      return;
    }
    if (kind === 'audioinput') {
      if (!this.mic) return;
      const old = this.mic;
      old.stop(); // some platforms cannot open two microphones at once
      let t;
      try {
        t = await this.#open('audio');
      } catch (err) {
        this.mic = await this.#open('audio', '').catch(() => null);
        await this.hooks.publish('audio', this.mic);
        this.#changed();
        throw err;
      }
      t.enabled = this.micOn;
      this.mic = t;
      await this.hooks.publish('audio', t);
    } else {
      if (!this.cam || !this.camOn) return;
      const old = this.cam;
      old.stop();
      let t;
      try {
        t = await this.#open('video');
      } catch (err) {
        this.cam = await this.#open('video', '').catch(() => null);
        if (!this.screen) await this.hooks.publish('video', this.cam);
        this.#changed();
        throw err;
      }
      this.cam = t;
      if (!this.screen) await this.hooks.publish('video', t);
    }
    this.#changed();
  }

  /**
   * Devices by kind (labels are empty before permission was granted).
   * @returns {Promise<Record<'audioinput'|'videoinput'|'audiooutput', DeviceOption[]>>}
   */
  async devices() {
    /** @type {Record<'audioinput'|'videoinput'|'audiooutput', DeviceOption[]>} */
    const out = { audioinput: [], videoinput: [], audiooutput: [] };
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return out;
    const list = await navigator.mediaDevices.enumerateDevices();
    for (const d of list) {
      if (!(d.kind in out) || !d.deviceId) continue;
      const n = out[d.kind].length + 1;
      const fallback = d.kind === 'audioinput' ? `Microphone ${n}` : d.kind === 'videoinput' ? `Camera ${n}` : `Speaker ${n}`;
      out[d.kind].push({ deviceId: d.deviceId, label: d.label || fallback });
    }
    return out;
  }

  /** Stop everything (leaving). */
  stopAll() {
    for (const t of [this.mic, this.cam, this.screen]) t?.stop();
    this.mic = this.cam = this.screen = null;
    this.#changed();
  }

  /**
   * @param {Kind} kind
   * @param {string} [deviceId] default: the selected one
   * @returns {Promise<MediaStreamTrack>}
   */
  async #open(kind, deviceId) {
    if (!this.supported) throw Object.assign(new Error('no media devices'), { name: window.isSecureContext ? 'NotFoundError' : 'SecurityError' });
    const id = deviceId === undefined ? this.selected[kind === 'audio' ? 'audioinput' : 'videoinput'] : deviceId;
    const base = kind === 'audio' ? AUDIO : VIDEO;
    const constraints = id ? { ...base, deviceId: { exact: id } } : base;
    const s = await navigator.mediaDevices.getUserMedia(kind === 'audio' ? { audio: constraints } : { video: constraints });
    return kind === 'audio' ? s.getAudioTracks()[0] : s.getVideoTracks()[0];
  }

  /** Remember which devices the browser picked, for the selects. */
  #remember() {
    const a = this.mic?.getSettings().deviceId;
    const v = this.cam?.getSettings().deviceId;
    if (a) this.selected.audioinput = a;
    if (v) this.selected.videoinput = v;
  }

  #changed() {
    this.#remember();
    this.hooks.onChange();
  }
}

// Switchboard SDK: the ICE servers of a session. With `iceServers: 'auto'` they come from
// GET /api/ice-servers (STUN and TURN with time-limited credentials), refreshed at 80 % of
// their `ttl` and pushed into every live RTCPeerConnection, so calls that outlast the
// credentials can still restart ICE through the relay.

const ICE_FETCH_TIMEOUT_MS = 5000;
/** After a failed refresh, try again this much later. */
const RETRY_MS = 60000;

export class IceServers {
  /** The servers in use. @type {RTCIceServer[] | null} */
  list = null;
  /** The answering node's name, in a cluster. @type {string | null} */
  node = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  #opts;

  /**
   * @param {{bases: () => string[], token?: string, region?: string | null, option: 'auto'|RTCIceServer[],
   *   log: (...a: unknown[]) => void, live: () => boolean, connections: () => RTCPeerConnection[]}} opts
   *   `bases`: the server's base URLs, the node in use first; `region`: ask a cluster for the TURN
   *   of a node there; `live`: the session still wants refreshes;
   *   `connections`: where fresh servers go
   */
  constructor(opts) {
    this.#opts = opts;
  }

  /** Load them before joining (failure: host candidates only). */
  async load() {
    const o = this.#opts.option;
    if (o !== 'auto') {
      this.list = o;
      return;
    }
    const fetched = await this.#fetch();
    if (fetched) this.list = fetched;
    else if (!this.list) this.list = [];
  }

  stop() {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /**
   * GET /api/ice-servers from the first node that answers; null when none does (we then go
   * on with host candidates).
   */
  async #fetch() {
    for (const base of this.#opts.bases()) {
      const servers = await this.#fetchFrom(base);
      if (servers) return servers;
    }
    return null;
  }

  /** @param {string} base */
  async #fetchFrom(base) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), ICE_FETCH_TIMEOUT_MS);
    try {
      // A server with room tokens gives relay credentials only to their holders.
      const headers = this.#opts.token ? { authorization: `Bearer ${this.#opts.token}` } : undefined;
      const query = this.#opts.region ? `?region=${encodeURIComponent(this.#opts.region)}` : '';
      const res = await fetch(`${base}/api/ice-servers${query}`, { signal: ctrl.signal, cache: 'no-store', headers });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = await res.json();
      if (!body || !Array.isArray(body.iceServers)) throw new Error('no iceServers in the answer');
      if (typeof body.node === 'string') this.node = body.node;
      const ttl = Number(body.ttl);
      this.stop();
      if (ttl > 0) {
        // Refresh time-limited TURN credentials before they expire.
        this.#timer = setTimeout(() => this.#refresh(), Math.max(30, ttl * 0.8) * 1000);
      }
      return /** @type {RTCIceServer[]} */ (body.iceServers);
    } catch (err) {
      this.#opts.log(`GET ${base}/api/ice-servers failed`, err);
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  async #refresh() {
    this.#timer = null;
    if (!this.#opts.live()) return;
    const fresh = await this.#fetch();
    if (!fresh) {
      this.#timer = setTimeout(() => this.#refresh(), RETRY_MS);
      return;
    }
    this.list = fresh;
    for (const pc of this.#opts.connections()) {
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers: fresh });
      } catch (err) {
        this.#opts.log('setConfiguration failed', err);
      }
    }
  }
}

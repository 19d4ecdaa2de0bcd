// Switchboard SDK: a room's topology as this page lives it. A mesh room has a `Peer` per
// member; an SFU room has `SfuMember`s sharing one `SfuLink` to the server's SFU
// participant. This module owns the SFU side and the changes between the two: the live
// mesh→SFU switch (mesh connections stay until the SFU connection decodes what they
// carried, so nobody's picture stops) and the way back when the SFU leaves.

import { Peer } from './peer.js';
import { SfuLink, SfuMember } from './sfu.js';

/** A live mesh→SFU switch keeps the mesh connections at most this long. */
const SWITCH_TIMEOUT_MS = 10000;
const SWITCH_POLL_MS = 200;
/** After the SFU dropped our connection, a new one at most this often. */
const RECONNECT_MIN_MS = 3000;

/**
 * What the mode needs from the Switchboard instance.
 * @typedef {object} ModeContext
 * @property {Map<string, Peer|SfuMember>} peers the members (changed in place)
 * @property {(event: string, arg: unknown) => void} emit
 * @property {(...args: unknown[]) => void} log
 * @property {(msg: Record<string, unknown>) => boolean|void} signal
 * @property {() => string} selfId own peer id
 * @property {() => RTCConfiguration} rtcConfig
 * @property {() => boolean} canPublish
 * @property {() => {audio: MediaStreamTrack|null, video: MediaStreamTrack|null}} tracks what is published
 * @property {MediaStream} stream the stream the tracks are announced in
 * @property {'pcmu'|'pcma'|null} audioCodec the audio codec to send (null: the browser's choice, Opus)
 * @property {(info: {id: string, name?: string, identity?: string}, initiator: boolean) => Peer} addMeshPeer
 */

export class SfuMode {
  /** 'mesh' or 'sfu'. */
  topology = 'mesh';
  /** The connection to the SFU. @type {SfuLink|null} */
  link = null;
  /** Tile sizes reported with `setView`. @type {import('./sfu.js').Views} */
  views = { byTrack: new WeakMap(), byPeer: new Map() };
  /** @type {ModeContext} */
  #ctx;
  /** @type {import('./sfu.js').SfuHost} */
  #host;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #switchTimer = null;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #reconnectTimer = null;
  #reconnectedAt = 0;
  /** Mesh connections kept after a live switch for the pages still switching. @type {Set<Peer>} */
  #retired = new Set();

  /** @param {ModeContext} ctx */
  constructor(ctx) {
    this.#ctx = ctx;
    this.#host = {
      signal: ctx.signal,
      emit: ctx.emit,
      log: ctx.log,
      member: (id) => {
        const m = ctx.peers.get(id);
        return m instanceof SfuMember ? m : undefined;
      },
      members: () => [...ctx.peers.values()].filter((m) => m instanceof SfuMember),
      gone: () => this.#reconnect(),
    };
  }

  /** A participant of an SFU room (no connection of its own). @param {{id: string, name?: string, identity?: string, service?: string}} info */
  addMember(info) {
    const m = new SfuMember(info, this.link);
    this.#ctx.peers.set(m.id, m);
    return m;
  }

  /**
   * The SFU participant is in the room: connect to it. Mesh connections (a live switch)
   * stay until the SFU delivers what they carried.
   * @param {string} id
   */
  start(id) {
    if (this.link) {
      if (this.link.id === id) return;
      // Another SFU of the room (our node's edge, in a cluster): the one we leave drops
      // our tracks at once, or its subscribers would see them stand still for a while.
      this.#host.signal({ type: 'message', to: this.link.id, data: { sfu: 'leave' } });
      this.close();
    }
    const ctx = this.#ctx;
    const mesh = [...ctx.peers.values()].some((p) => p instanceof Peer);
    this.topology = 'sfu';
    const link = new SfuLink(this.#host, id, {
      config: ctx.rtcConfig(),
      canPublish: ctx.canPublish(),
      stream: ctx.stream,
      tracks: { ...ctx.tracks() },
      views: this.views,
      deferTracks: mesh,
      audioCodec: ctx.audioCodec,
    });
    this.link = link;
    for (const p of ctx.peers.values()) if (p instanceof SfuMember) p.attach(link);
    if (mesh) this.#watchSwitch(link, performance.now());
  }

  /** Close the SFU connection (no events). */
  close() {
    for (const p of this.#retired) p.close();
    this.#retired.clear();
    if (this.#switchTimer) clearTimeout(this.#switchTimer);
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#switchTimer = this.#reconnectTimer = null;
    this.link?.close();
    this.link = null;
  }

  /** The SFU participant left the room: back to a mesh with everyone. */
  gone() {
    const ctx = this.#ctx;
    this.close();
    this.topology = 'mesh';
    for (const m of [...ctx.peers.values()]) {
      if (!(m instanceof SfuMember) || m.service) continue; // services only send through the SFU
      ctx.peers.delete(m.id);
      // Nobody is the newcomer here: the polite side (greater id) offers.
      ctx.addMeshPeer(m, ctx.selfId() > m.id);
    }
    ctx.emit('topology', { mode: 'mesh', switchMs: null });
  }

  /**
   * The SFU dropped our connection while we are in the room (`gone`): a new connection
   * (new offer, the SFU makes a new participant of it), not more often than every 3 s.
   */
  #reconnect() {
    const link = this.link;
    if (!link || this.#reconnectTimer) return;
    const wait = Math.max(0, this.#reconnectedAt + RECONNECT_MIN_MS - performance.now());
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.link !== link) return; // closed or replaced meanwhile
      this.#reconnectedAt = performance.now();
      link.unshowAll();
      this.close();
      this.start(link.id);
    }, wait);
  }

  /** Forget a member that left. @param {string} id */
  forget(id) {
    this.views.byPeer.delete(id);
    this.link?.forget(id);
  }

  /**
   * Live switch: poll until every mesh peer's media decodes on the SFU connection (or
   * SWITCH_TIMEOUT_MS), then show the SFU's tracks, retire the mesh connections (kept,
   * unseen, until the other end closes them or SWITCH_TIMEOUT_MS) and emit `topology`
   * with the time it took.
   * @param {SfuLink} link
   * @param {number} start
   */
  #watchSwitch(link, start) {
    const ctx = this.#ctx;
    this.#switchTimer = setTimeout(async () => {
      this.#switchTimer = null;
      if (link !== this.link || link.peer.closed) return;
      let done = performance.now() - start >= SWITCH_TIMEOUT_MS;
      if (!done) {
        const flowing = await link.flowing().catch(() => new Map());
        if (link !== this.link) return;
        done = [...ctx.peers.values()].every((p) => {
          if (!(p instanceof Peer)) return true;
          const f = flowing.get(p.id);
          const video = p.streams.some((st) => st.getVideoTracks().some((t) => t.readyState === 'live' && !t.muted));
          const audio = p.streams.some((st) => st.getAudioTracks().some((t) => t.readyState === 'live'));
          return (!video || !!f?.video) && (!audio || !!f?.audio);
        });
      }
      if (!done) {
        this.#watchSwitch(link, start);
        return;
      }
      const switchMs = Math.round(performance.now() - start);
      ctx.log(`mesh → SFU switch done in ${switchMs} ms`);
      const old = [...ctx.peers.values()].filter((p) => p instanceof Peer);
      for (const p of old) ctx.peers.set(p.id, new SfuMember(p, link));
      link.deferTracks = false;
      link.reconcile();
      // Our mesh connections stay for the pages still switching (each closes its end
      // when done, which closes ours), at most SWITCH_TIMEOUT_MS: closing them here would
      // freeze our video on a page that still shows the mesh.
      for (const p of old) {
        p.retire(SWITCH_TIMEOUT_MS, () => this.#retired.delete(p));
        if (!p.closed) this.#retired.add(p);
      }
      for (const p of old) ctx.emit('peer-state', { peer: ctx.peers.get(p.id), state: link.peer.state });
      ctx.emit('topology', { mode: 'sfu', switchMs });
    }, SWITCH_POLL_MS);
  }
}

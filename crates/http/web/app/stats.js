// Per-peer connection panel, refreshed from getStats() every 2 s: candidate types of the
// selected pair (and the relay protocol), RTT, inbound/outbound bitrate, packet loss.
// In SFU rooms every peer shares the one connection to the SFU: its report is fetched once
// per tick, and each peer's inbound figures are those of its own tracks.

import { icon } from './icons.js';
import { el } from './ui.js';

const INTERVAL_MS = 2000;

/**
 * @typedef {object} ConnSample
 * @property {string} localType host | srflx | prflx | relay
 * @property {string} remoteType
 * @property {string} protocol udp | tcp (local candidate)
 * @property {string} relayProtocol udp | tcp | tls when the local candidate is a relay
 * @property {string} localAddress
 * @property {string} remoteAddress
 * @property {number|null} rttMs
 * @property {number} inKbps
 * @property {number} outKbps
 * @property {number} lossPct inbound packet loss over the last interval
 * @property {string} video inbound video resolution and frame rate
 */

/**
 * Totals of one getStats() call; inbound only for the tracks in `only` when given.
 * @param {RTCStatsReport} report
 * @param {Set<string>|null} only
 */
function totals(report, only) {
  /** @type {any} */
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair;
  });
  if (!pair) {
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated || s.selected)) pair = pair || s;
    });
  }
  let bytesIn = 0;
  let bytesOut = 0;
  let lost = 0;
  let received = 0;
  let video = '';
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && (!only || only.has(s.trackIdentifier))) {
      bytesIn += s.bytesReceived || 0;
      lost += Math.max(0, s.packetsLost || 0);
      received += s.packetsReceived || 0;
      if (s.kind === 'video' && s.frameWidth) video = `${s.frameWidth}×${s.frameHeight}${s.framesPerSecond ? ` · ${Math.round(s.framesPerSecond)} fps` : ''}`;
    } else if (s.type === 'outbound-rtp') {
      bytesOut += s.bytesSent || 0;
    }
  });
  const local = pair ? report.get(pair.localCandidateId) : null;
  const remote = pair ? report.get(pair.remoteCandidateId) : null;
  return { pair, local, remote, bytesIn, bytesOut, lost, received, video, at: performance.now() };
}

/** One `.conn-panel` for one peer. */
class Panel {
  /** @param {string} peerId */
  constructor(peerId) {
    this.el = el('div.conn-panel', { 'data-peer-id': peerId, 'data-quality': 'unknown' });
    this.summary = el('button.conn-summary', { type: 'button', title: 'Connection details', 'aria-expanded': 'false' });
    this.summaryIcon = el('span.conn-bars', { html: icon('signal') });
    this.summaryText = el('span.conn-summary-text', { text: 'Connecting…' });
    this.summary.append(this.summaryIcon, this.summaryText);
    this.details = el('dl.conn-details');
    /** @type {Record<string, HTMLElement>} */
    this.fields = {};
    for (const [key, label] of [
      ['route', 'Route'],
      ['relay', 'Relay'],
      ['rtt', 'RTT'],
      ['in', 'Inbound'],
      ['out', 'Outbound'],
      ['loss', 'Packet loss'],
      ['video', 'Video in'],
    ]) {
      const dd = el('dd', { 'data-field': key, text: '–' });
      this.fields[key] = dd;
      this.details.append(el('div.conn-row', {}, [el('dt', { text: label }), dd]));
    }
    this.el.append(this.summary, this.details);
    this.summary.addEventListener('click', () => {
      const open = this.el.classList.toggle('open');
      this.summary.setAttribute('aria-expanded', String(open));
    });
  }

  /** @param {ConnSample} s */
  show(s) {
    const d = this.el.dataset;
    d.localType = s.localType;
    d.remoteType = s.remoteType;
    d.protocol = s.protocol;
    d.relayProtocol = s.relayProtocol;
    d.rttMs = s.rttMs === null ? '' : String(Math.round(s.rttMs));
    d.inKbps = String(Math.round(s.inKbps));
    d.outKbps = String(Math.round(s.outKbps));
    d.loss = s.lossPct.toFixed(1);
    const q = !s.localType ? 'unknown' : (s.rttMs ?? 0) > 400 || s.lossPct > 8 ? 'poor' : (s.rttMs ?? 0) > 150 || s.lossPct > 2 ? 'fair' : 'good';
    d.quality = q;
    const local = s.localType ? `${s.localType}${s.localType === 'relay' && s.relayProtocol ? `/${s.relayProtocol}` : ''}` : '?';
    const route = s.localType ? `${local} ↔ ${s.remoteType || '?'} (${s.protocol || '?'})` : 'no route yet';
    const rtt = s.rttMs === null ? '–' : `${Math.round(s.rttMs)} ms`;
    this.summaryText.textContent = s.localType ? `${local} ↔ ${s.remoteType} · ${rtt}` : 'Connecting…';
    this.fields.route.textContent = route;
    this.fields.relay.textContent = s.localType === 'relay' ? `TURN over ${s.relayProtocol || '?'}` : s.remoteType === 'relay' ? 'remote side relayed' : 'direct (no relay)';
    this.fields.rtt.textContent = rtt;
    this.fields.in.textContent = rate(s.inKbps);
    this.fields.out.textContent = rate(s.outKbps);
    this.fields.loss.textContent = `${s.lossPct.toFixed(1)} %`;
    this.fields.video.textContent = s.video || '–';
    this.el.title = `${route} · RTT ${rtt} · ↓ ${rate(s.inKbps)} ↑ ${rate(s.outKbps)} · loss ${s.lossPct.toFixed(1)} %`;
  }
}

/** @param {number} kbps */
function rate(kbps) {
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(2)} Mb/s` : `${Math.round(kbps)} kb/s`;
}

/** Polls getStats() of every peer and updates its panel. */
export class StatsMonitor {
  /**
   * @param {() => Iterable<{id: string, pc: RTCPeerConnection, streams: MediaStream[]}>} peers
   */
  constructor(peers) {
    this.peers = peers;
    /** @type {Map<string, Panel>} */
    this.panels = new Map();
    /** @type {Map<string, ReturnType<typeof totals>>} */
    this.prev = new Map();
    /** @type {ReturnType<typeof setInterval> | null} */
    this.timer = null;
    this.busy = false;
  }

  /**
   * The panel element for `peerId` (created on first use).
   * @param {string} peerId
   */
  panel(peerId) {
    let p = this.panels.get(peerId);
    if (!p) {
      p = new Panel(peerId);
      this.panels.set(peerId, p);
    }
    return p.el;
  }

  /** @param {string} peerId */
  forget(peerId) {
    this.panels.get(peerId)?.el.remove();
    this.panels.delete(peerId);
    this.prev.delete(peerId);
  }

  start() {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.tick().catch((err) => console.debug('stats', err));
    }, INTERVAL_MS);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async tick() {
    if (this.busy) return;
    this.busy = true;
    try {
      const peers = [...this.peers()];
      /** @type {Map<RTCPeerConnection, Promise<RTCStatsReport|null>>} */
      const reports = new Map();
      const shared = new Set();
      for (const p of peers) {
        if (!p.pc) continue;
        if (reports.has(p.pc)) shared.add(p.pc);
        else reports.set(p.pc, p.pc.getStats().catch(() => null)); // null: closed meanwhile
      }
      await Promise.all(
        peers.map(async (peer) => {
          const panel = this.panels.get(peer.id);
          if (!panel || !peer.pc || peer.pc.connectionState === 'closed') return;
          const report = await reports.get(peer.pc);
          if (!report) return;
          const only = shared.has(peer.pc) ? new Set(peer.streams.flatMap((st) => st.getTracks().map((t) => t.id))) : null;
          const now = totals(report, only);
          const before = this.prev.get(peer.id);
          this.prev.set(peer.id, now);
          const dt = before ? (now.at - before.at) / 1000 : 0;
          const dLost = before ? Math.max(0, now.lost - before.lost) : now.lost;
          const dRecv = before ? Math.max(0, now.received - before.received) : now.received;
          /** @type {any} */
          const l = now.local || {};
          /** @type {any} */
          const r = now.remote || {};
          const rtt = now.pair && typeof now.pair.currentRoundTripTime === 'number' ? now.pair.currentRoundTripTime * 1000 : null;
          panel.show({
            localType: l.candidateType || '',
            remoteType: r.candidateType || '',
            protocol: l.protocol || '',
            relayProtocol: l.relayProtocol || '',
            localAddress: l.address ? `${l.address}:${l.port}` : '',
            remoteAddress: r.address ? `${r.address}:${r.port}` : '',
            rttMs: rtt,
            inKbps: dt > 0 ? Math.max(0, ((now.bytesIn - /** @type {any} */ (before).bytesIn) * 8) / dt / 1000) : 0,
            outKbps: dt > 0 ? Math.max(0, ((now.bytesOut - /** @type {any} */ (before).bytesOut) * 8) / dt / 1000) : 0,
            lossPct: dLost + dRecv > 0 ? (dLost / (dLost + dRecv)) * 100 : 0,
            video: now.video,
          });
        }),
      );
    } finally {
      this.busy = false;
    }
  }
}

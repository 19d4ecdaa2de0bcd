// Helpers of the SFU browser tests (sfu*.test.mjs): a server with the SFU on a known port,
// what a page shows and decodes per remote member (by the tracks of its tile, on whichever
// connection carries them), the page's connections, a stall monitor for the live switch.
import { waitFor, sleep, freePortTcpUdp, launchBrowser, toneWav } from './harness.mjs';

/**
 * Chromium for the SFU tests: the fake microphone plays a steady tone (the default one
 * only beeps now and then, which the SFU's speaker detection rightly takes for silence).
 */
export function launchSfuBrowser() {
  return launchBrowser([`--use-file-for-fake-audio-capture=${toneWav()}`]);
}

/** Every RTCPeerConnection a page creates, in window.__pcs (the SDK sees the subclass). */
export const COUNT_PCS = () => {
  const Orig = window.RTCPeerConnection;
  const all = [];
  window.__pcs = all;
  window.RTCPeerConnection = class extends Orig {
    constructor(...a) {
      super(...a);
      all.push(this);
    }
  };
};

/** The fake camera at `w`x`h` and `fps` (the app asks for 1280x720 at 30). */
export const fakeCamera = (w, h, fps) => `(() => {
  const md = navigator.mediaDevices;
  const orig = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => {
    if (c && c.video) c = { ...c, video: { ...(typeof c.video === 'object' ? c.video : {}), width: { ideal: ${w} }, height: { ideal: ${h} }, frameRate: { ideal: ${fps}, max: ${fps} } } };
    return orig(c);
  };
})()`;
export const SMALL_CAMERA = fakeCamera(320, 180, 15);

/**
 * No microphone, and the camera at 320x180 and 10 fps: for tests of many pages on two
 * cores that check only video. Measured with five pages in sfu-switch.test.mjs: with the
 * microphone and 15 fps both cores stayed 100 % busy and stalls across the switch reached
 * 6 s on a slow day; this way about 60 % of the cores stayed idle and stalls were under
 * 0.7 s, a busy loop beside them included.
 */
export const VIDEO_ONLY = `(() => {
  const md = navigator.mediaDevices;
  const orig = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => orig({ ...c, audio: false, video: { width: { ideal: 320 }, height: { ideal: 180 }, frameRate: { ideal: 10, max: 10 } } });
})()`;

/** A server with the SFU on a known free UDP port, announcing 127.0.0.1. */
export async function sfuServer(s, extra = []) {
  const sfuPort = await freePortTcpUdp();
  const server = await s.server({ args: ['--sfu-port', String(sfuPort), '--sfu-candidate', '127.0.0.1', ...extra] });
  server.sfuPort = sfuPort;
  return server;
}

/**
 * What page `p` shows for each remote member: the tile's current video and audio tracks
 * and their inbound-rtp stats (looked up by track id on every connection of the page).
 */
export function sfuMedia(p) {
  return p.page.evaluate(async () => {
    const { sb, grid } = window.sbApp;
    const pcs = new Set();
    if (sb.sfu) pcs.add(sb.sfu.pc);
    for (const m of sb.peers.values()) if (m.pc) pcs.add(m.pc);
    const byTrack = new Map();
    for (const pc of pcs) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.trackIdentifier) byTrack.set(s.trackIdentifier, s); });
    }
    const members = {};
    for (const [id, m] of sb.peers) {
      const tile = grid.get(id);
      const tracks = tile ? tile.stream.getTracks() : [];
      const v = tracks.find((t) => t.kind === 'video');
      const a = tracks.find((t) => t.kind === 'audio');
      const vs = v ? byTrack.get(v.id) : undefined;
      const as = a ? byTrack.get(a.id) : undefined;
      members[id] = {
        viaSfu: !!sb.sfu && m.pc === sb.sfu.pc,
        video: v ? v.id : null,
        framesDecoded: vs ? vs.framesDecoded || 0 : 0,
        videoPackets: vs ? vs.packetsReceived || 0 : 0,
        keyFrames: vs ? vs.keyFramesDecoded || 0 : 0,
        pli: vs ? vs.pliCount || 0 : 0,
        frameHeight: vs ? vs.frameHeight || 0 : 0,
        videoWidth: tile ? tile.video.videoWidth : 0,
        audioEnergy: as ? as.totalAudioEnergy || 0 : 0,
        audioPackets: as ? as.packetsReceived || 0 : 0,
      };
    }
    return { topology: sb.topology, members };
  });
}

/**
 * Page `p` decodes video from every one of `ids` (framesDecoded of the shown track strictly
 * rising over 3 samples, a picture in the tile), with `audio` inbound audio energy and
 * packets rising too, and with `viaSfu` all of it on the SFU connection.
 */
export async function expectAllFlowing(p, ids, { audio = false, viaSfu = true, timeout = 60000, interval = 800 } = {}) {
  const deadline = Date.now() + timeout;
  const seen = [];
  const rising = (xs) => xs.every((x, i) => i === 0 || x > xs[i - 1]);
  for (;;) {
    seen.push(await sfuMedia(p));
    const win = seen.slice(-3);
    const bad = [];
    for (const id of ids) {
      const xs = win.map((w) => w.members[id]).filter(Boolean);
      const ok = xs.length === 3 && xs.every((x) => x.video && x.video === xs[0].video) && xs[0].framesDecoded > 0 &&
        rising(xs.map((x) => x.framesDecoded)) && xs[2].videoWidth > 0 &&
        (!audio || (rising(xs.map((x) => x.audioPackets)) && xs[2].audioEnergy > xs[0].audioEnergy)) &&
        (!viaSfu || xs.every((x) => x.viaSfu));
      if (!ok) bad.push(id);
    }
    if (bad.length === 0) return win;
    if (Date.now() > deadline) {
      const tail = (id) => seen.slice(-6).map((w) => w.members[id]);
      throw new Error(`${p.name}: media not flowing from ${bad.length}/${ids.length} within ${timeout} ms: ` +
        bad.map((id) => `${id}: ${JSON.stringify(tail(id))}`).join('\n'));
    }
    await sleep(interval);
  }
}

/** The page's live RTCPeerConnections and the selected pair of each. */
export function connections(p) {
  return p.page.evaluate(async () => {
    const out = [];
    for (const pc of window.__pcs || []) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      let pair = null;
      stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
      const pick = (c) => c && { candidateType: c.candidateType, address: c.address, port: c.port, protocol: c.protocol, url: c.url };
      out.push({
        isSfu: !!window.sbApp.sb.sfu && pc === window.sbApp.sb.sfu.pc,
        state: pc.connectionState,
        local: pair ? pick(stats.get(pair.localCandidateId)) : null,
        remote: pair ? pick(stats.get(pair.remoteCandidateId)) : null,
      });
    }
    return out;
  });
}

/** The page's only live connection is to the SFU's port; returns it. */
export async function expectOnlySfuConnection(p, server) {
  return waitFor(async () => {
    const cs = await connections(p);
    return cs.length === 1 && cs[0].isSfu && cs[0].remote && cs[0].remote.port === server.sfuPort && cs[0];
  }, { timeout: 20000, what: `${p.name}: exactly one connection, to the SFU port ${server.sfuPort}` });
}

/**
 * In page p, sample every 200 ms the framesDecoded of the video each tile shows and keep,
 * per remote member, the longest time without a new decoded frame (a changed track counts
 * as no progress until it decodes more). window.__gaps().
 */
export function startGapMonitor(p) {
  return p.page.evaluate(() => {
    const state = new Map(); // id -> {track, frames, at, maxGap}
    let stop = false;
    window.__stopGaps = () => { stop = true; };
    window.__gaps = () => Object.fromEntries([...state].map(([id, s]) => [id, Math.max(s.maxGap, performance.now() - s.at)]));
    // Where the longest gap of each video ended, in ms after the monitor started.
    const t0 = performance.now();
    window.__gapEnds = () => Object.fromEntries([...state].map(([id, s]) => [id, Math.round(s.maxGapEnd - t0)]));
    window.__gapT0 = t0;
    // The longest sampling round (getStats of every connection): a long one means the
    // page itself was stalled, not one video.
    window.__sampling = { longest: 0, at: 0 };
    (async () => {
      while (!stop) {
        const round = performance.now();
        const { sb, grid } = window.sbApp;
        const pcs = new Set();
        if (sb.sfu) pcs.add(sb.sfu.pc);
        for (const m of sb.peers.values()) if (m.pc) pcs.add(m.pc);
        const frames = new Map();
        for (const pc of pcs) {
          if (pc.connectionState === 'closed') continue;
          try {
            (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier) frames.set(s.trackIdentifier, s.framesDecoded || 0); });
          } catch { /* closed meanwhile */ }
        }
        const now = performance.now();
        if (now - round > window.__sampling.longest) window.__sampling = { longest: now - round, at: now };
        for (const id of sb.peers.keys()) {
          const v = grid.get(id)?.stream.getVideoTracks()[0];
          if (!v) continue;
          const f = frames.get(v.id) || 0;
          const s = state.get(id);
          if (!s) {
            if (f > 0) state.set(id, { track: v.id, frames: f, at: now, maxGap: 0, maxGapEnd: now });
            continue;
          }
          if (s.track !== v.id) {
            s.track = v.id;
            s.frames = f;
          } else if (f > s.frames) {
            if (now - s.at > s.maxGap) s.maxGapEnd = now;
            s.maxGap = Math.max(s.maxGap, now - s.at);
            s.frames = f;
            s.at = now;
          }
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
  });
}

// Chromium accepts what came through Jingle: two peer connections in one headless page
// (loopback), the offerer with camera, microphone and a data channel, the answerer with
// its own camera and microphone. Each description goes SDP -> Jingle -> XML -> Jingle ->
// SDP through the `via_jingle` example before the other side sets it, twice: once after
// ICE gathering (the candidates inside the descriptions), once at once with every
// candidate trickled through a transport-info (`via_jingle trickle`) into
// addIceCandidate. Passes when, each time, both sides decode video frames, receive audio
// packets, and a data-channel message crosses each way.
//
//   (cd tests/browser && npm ci)
//   cargo build -p switchboard-xmpp --example via_jingle
//   node crates/xmpp/tests/browser/interop.mjs
//
// Uses Debian's /usr/bin/chromium (SB_CHROMIUM to override); binds only 127.0.0.1.
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../../../..');
const require = createRequire(path.join(root, 'tests/browser/package.json'));
const { chromium } = require('playwright-core');
const viaJingle = process.env.SB_VIA_JINGLE || path.join(root, 'target/debug/examples/via_jingle');

const server = http.createServer((_, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>interop</title>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));

const browser = await chromium.launch({
  executablePath: process.env.SB_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--disable-features=WebRtcHideLocalIpsWithMdns', '--allow-loopback-in-peer-connection',
  ],
});
let failed = false;
try {
  const page = await browser.newPage();
  await page.exposeFunction('viaJingle', (sdp, side) => execFileSync(viaJingle, [side], { input: sdp, encoding: 'utf8' }));
  await page.exposeFunction('viaTransportInfo', (list) => JSON.parse(execFileSync(viaJingle, ['trickle'], { input: JSON.stringify(list), encoding: 'utf8' })));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  for (const trickle of [false, true]) {
  const result = await page.evaluate(async (trickle) => {
    const gathered = (pc) => new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    });
    const offerer = new RTCPeerConnection();
    const answerer = new RTCPeerConnection();
    let trickled = 0;
    // A candidate can arrive before its description: hold it until that is set.
    const remoteSet = new Map();
    for (const pc of [offerer, answerer]) {
      let done;
      remoteSet.set(pc, new Promise((r) => { done = r; }));
      const set = pc.setRemoteDescription.bind(pc);
      pc.setRemoteDescription = async (d) => { await set(d); done(); };
    }
    if (trickle) {
      // Each candidate crosses as its own transport-info, as a browser trickles them.
      const relay = (from, to) => {
        from.onicecandidate = async (e) => {
          if (!e.candidate || !e.candidate.candidate) return;
          const c = e.candidate;
          const [back] = await window.viaTransportInfo([{ mid: c.sdpMid, candidate: c.candidate, ufrag: c.usernameFragment }]);
          await remoteSet.get(to);
          await to.addIceCandidate({ candidate: back.candidate, sdpMid: back.mid, usernameFragment: back.ufrag });
          trickled++;
        };
      };
      relay(offerer, answerer);
      relay(answerer, offerer);
    }
    const a = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    for (const t of a.getTracks()) offerer.addTrack(t, a);
    const dcA = offerer.createDataChannel('chat');
    const gotB = new Promise((resolve) => {
      answerer.ondatachannel = (e) => {
        e.channel.onmessage = (m) => { e.channel.send('pong'); resolve(m.data); };
      };
    });
    const gotA = new Promise((resolve) => { dcA.onmessage = (m) => resolve(m.data); });
    dcA.onopen = () => dcA.send('ping');

    await offerer.setLocalDescription(await offerer.createOffer());
    if (!trickle) await gathered(offerer);
    const offer = await window.viaJingle(offerer.localDescription.sdp, 'initiator');
    await answerer.setRemoteDescription({ type: 'offer', sdp: offer });
    const b = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    for (const t of b.getTracks()) answerer.addTrack(t, b);
    await answerer.setLocalDescription(await answerer.createAnswer());
    if (!trickle) await gathered(answerer);
    const answer = await window.viaJingle(answerer.localDescription.sdp, 'responder');
    await offerer.setRemoteDescription({ type: 'answer', sdp: answer });

    const limit = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out: ${what}`)), ms))]);
    const messages = await limit(Promise.all([gotB, gotA]), 20000, 'data channel messages');
    const inbound = async (pc) => {
      const out = {};
      (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') out[s.kind] = s; });
      return out;
    };
    let stats;
    for (let i = 0; i < 100; i++) {
      const [o, r] = [await inbound(offerer), await inbound(answerer)];
      stats = { offerer: { framesDecoded: o.video?.framesDecoded || 0, audioPackets: o.audio?.packetsReceived || 0 },
        answerer: { framesDecoded: r.video?.framesDecoded || 0, audioPackets: r.audio?.packetsReceived || 0 } };
      if (stats.offerer.framesDecoded > 10 && stats.answerer.framesDecoded > 10 && stats.offerer.audioPackets > 10 && stats.answerer.audioPackets > 10) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const candidatesInOffer = offer.split('\r\n').filter((l) => l.startsWith('a=candidate')).length;
    offerer.close();
    answerer.close();
    for (const t of [...a.getTracks(), ...b.getTracks()]) t.stop();
    return { messages, stats, trickled, candidatesInOffer };
  }, trickle);
  const how = trickle ? 'trickled through transport-info' : 'candidates in the descriptions';
  console.log(`${how}: ${JSON.stringify(result)}`);
  const s = result.stats;
  const ok = result.messages[0] === 'ping' && result.messages[1] === 'pong'
    && s.offerer.framesDecoded > 10 && s.answerer.framesDecoded > 10
    && s.offerer.audioPackets > 10 && s.answerer.audioPackets > 10
    && (trickle ? result.trickled > 0 && result.candidatesInOffer === 0 : result.candidatesInOffer > 0);
  console.log(ok ? `interop (${how}): Chromium decoded audio, video and data through Jingle both ways` : `interop (${how}): FAILED`);
  failed = failed || !ok;
  }
} catch (e) {
  console.log(`interop: FAILED: ${e.message}`);
  failed = true;
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);

// Chromium accepts what came through Jingle: two peer connections in one headless page
// (loopback), the offerer with camera, microphone and a data channel, the answerer with
// its own camera and microphone. Each description (after ICE gathering, so it carries the
// candidates) goes SDP -> Jingle -> XML -> Jingle -> SDP through the `via_jingle` example
// before the other side sets it. Passes when both sides decode video frames, receive
// audio packets, and a data-channel message crosses each way.
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
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const result = await page.evaluate(async () => {
    const gathered = (pc) => new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    });
    const offerer = new RTCPeerConnection();
    const answerer = new RTCPeerConnection();
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
    await gathered(offerer);
    const offer = await window.viaJingle(offerer.localDescription.sdp, 'initiator');
    await answerer.setRemoteDescription({ type: 'offer', sdp: offer });
    const b = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    for (const t of b.getTracks()) answerer.addTrack(t, b);
    await answerer.setLocalDescription(await answerer.createAnswer());
    await gathered(answerer);
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
    return { messages, stats, ice: [offerer.iceConnectionState, answerer.iceConnectionState], offerLines: offer.split('\r\n').length, answerLines: answer.split('\r\n').length };
  });
  console.log(JSON.stringify(result));
  const s = result.stats;
  const ok = result.messages[0] === 'ping' && result.messages[1] === 'pong'
    && s.offerer.framesDecoded > 10 && s.answerer.framesDecoded > 10
    && s.offerer.audioPackets > 10 && s.answerer.audioPackets > 10;
  console.log(ok ? 'interop: Chromium decoded audio, video and data through Jingle both ways' : 'interop: FAILED');
  failed = !ok;
} catch (e) {
  console.log(`interop: FAILED: ${e.message}`);
  failed = true;
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);

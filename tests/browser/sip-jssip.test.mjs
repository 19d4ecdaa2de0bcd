// JsSIP (from npm, bundled for the page by esbuild) in Chromium calls a room straight
// over the gateway's SIP WebSocket (RFC 7118, ws://<http>/sip): the browser softphone
// case of issue 12, with JsSIP's own defaults (DTLS-SRTP, ICE without trickle). Page 1 is
// the softphone, its microphone a 440 Hz tone; page 2 is a member of the room in the web
// app (the SDK), its microphone 1,000 Hz. What is checked is what users would notice: the
// call is answered, each side hears the other's tone (WebAudio analyser), hanging up in
// JsSIP removes the phone's tile from the room, and the gateway's gauges (connections
// included, once JsSIP stops) return to 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { scope, randomId, waitFor, launchBrowser, toneWav } from './harness.mjs';
import { SMALL_CAMERA } from './sfu-helpers.mjs';
import { sipServer, metrics, waitTileState, waitNoTile, heardTone, expectGaugesZero, installToneAnalyser, jssipBundle } from './sip-lab.mjs';

let phoneBrowser;
let memberBrowser;
before(async () => {
  phoneBrowser = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav({ hz: 440, seconds: 4 })}`]);
  memberBrowser = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav({ hz: 1000, seconds: 4 })}`]);
});
after(async () => {
  await phoneBrowser?.close();
  await memberBrowser?.close();
});

/**
 * The dominant frequency on the JsSIP call's received audio track and its level in dBFS
 * (sip-lab.mjs's `installToneAnalyser`, as heardTone).
 */
async function phoneHears(p) {
  await installToneAnalyser(p.page);
  return p.page.evaluate(async () => {
    const pc = window.__session?.connection;
    const track = pc?.getReceivers().map((r) => r.track).find((t) => t?.kind === 'audio');
    if (!track) return { hz: 0, db: -Infinity, why: `no audio receiver (peer connection ${pc?.connectionState}, ${pc?.getReceivers().length} receivers)` };
    return window.__toneOf(track);
  });
}

/** The JsSIP call's inbound audio statistics and codec, for a failure's message. */
function inboundAudio(p) {
  return p.page.evaluate(async () => {
    const stats = await window.__session?.connection?.getStats();
    const out = [];
    stats?.forEach((r) => {
      if (r.type === 'inbound-rtp' || r.type === 'codec' || (r.type === 'candidate-pair' && r.nominated)) {
        out.push({ type: r.type, kind: r.kind, packets: r.packetsReceived, bytes: r.bytesReceived, lost: r.packetsLost, mime: r.mimeType, pt: r.payloadType, audioLevel: r.audioLevel, state: r.state });
      }
    });
    return out;
  });
}

test('JsSIP over WebSocket calls a room: answered, tones both ways, its hangup removes the tile; the room hangs up the next call; gauges back to 0', { timeout: 120000 }, () => scope('sip-jssip', async (s) => {
  const server = await sipServer(s);
  const room = randomId('jssip-');
  const member = await s.open(memberBrowser, server, room, { name: 'Ada', query: { topology: 'sfu' }, init: [SMALL_CAMERA] });
  await member.joined();

  // Any page of the server's origin serves as the softphone's; its CSP (which allows no
  // inline script) is the app's, not the softphone's, so it is bypassed.
  const phone = await s.openPage(phoneBrowser, server, '/', { name: 'jssip', contextOptions: { bypassCSP: true } });
  await phone.page.addScriptTag({ content: jssipBundle() });
  const wsUrl = `${server.url.replace(/^http/, 'ws')}/sip`;
  await phone.page.evaluate(async ({ wsUrl }) => {
    const socket = new JsSIP.WebSocketInterface(wsUrl);
    const ua = new JsSIP.UA({ sockets: [socket], uri: 'sip:softphone@example.invalid', display_name: 'Softphone', register: false });
    window.__ua = ua;
    await new Promise((resolve, reject) => {
      ua.on('connected', resolve);
      ua.on('disconnected', () => reject(new Error('JsSIP could not connect to the SIP WebSocket')));
      ua.start();
    });
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    // Place a call; its events go to window.__events.
    window.__dial = (target) => {
      window.__events = [];
      const note = (e) => window.__events.push(e);
      const session = ua.call(target, { mediaStream: mic, pcConfig: { iceServers: [] } });
      window.__session = session;
      for (const ev of ['progress', 'accepted', 'confirmed']) session.on(ev, () => note(ev));
      // Play what the call receives, as a softphone does (Chromium decodes a remote track
      // for WebAudio only while something plays it).
      session.on('confirmed', () => {
        const track = session.connection.getReceivers().map((r) => r.track).find((t) => t?.kind === 'audio');
        if (!track) return;
        const audio = document.createElement('audio');
        audio.autoplay = true;
        audio.srcObject = new MediaStream([track]);
        document.body.append(audio);
      });
      session.on('failed', (e) => note(`failed: ${e.cause} ${e.message?.status_code || ''}`));
      session.on('ended', (e) => note(`ended: ${e.cause} by ${e.originator}`));
    };
  }, { wsUrl });
  const target = `sip:${room}@127.0.0.1`;
  await phone.page.evaluate((t) => window.__dial(t), target);

  const events = () => phone.page.evaluate(() => window.__events);
  const confirmed = () => waitFor(async () => {
    const ev = await events();
    if (ev.some((e) => e.startsWith('failed') || e.startsWith('ended'))) throw new Error(`JsSIP's call did not connect: ${ev.join(', ')}`);
    return ev.includes('confirmed');
  }, { timeout: 20000, what: 'JsSIP: the call confirmed (200 OK and ACK)' });
  await confirmed();
  const tile = await waitTileState(member, /^Connected$/, 20000);
  const m = await metrics(server);
  assert.equal(m.switchboard_sip_calls, 1, 'one SIP call up');
  assert.equal(m.switchboard_sip_connections, 1, "JsSIP's WebSocket");

  // The room hears the softphone's 440 Hz, the softphone the member's 1,000 Hz.
  let inRoom = null;
  await waitFor(async () => {
    inRoom = await heardTone(member, tile.id);
    return inRoom && Math.abs(inRoom.hz - 440) <= 15 && inRoom.db > -60;
  }, { timeout: 20000, interval: 300, what: "the member: JsSIP's 440 Hz on the call's track" }).catch((e) => {
    e.message += `\nlast: ${JSON.stringify(inRoom)}`;
    throw e;
  });
  let inPhone = null;
  try {
    await waitFor(async () => {
      inPhone = await phoneHears(phone);
      return inPhone && Math.abs(inPhone.hz - 1000) <= 15 && inPhone.db > -60;
    }, { timeout: 20000, interval: 300, what: "JsSIP: the member's 1,000 Hz on the call's track" });
  } catch (e) {
    e.message += `\nlast: ${JSON.stringify(inPhone)}\nJsSIP's inbound RTP: ${JSON.stringify(await inboundAudio(phone))}`;
    throw e;
  }

  // JsSIP hangs up: the tile goes, the call's gauges return to 0; once JsSIP stops, so
  // does its connection.
  await phone.page.evaluate(() => window.__session.terminate());
  await waitNoTile(member);
  await waitFor(async () => (await events()).some((e) => e.startsWith('ended')), { timeout: 5000, what: "JsSIP's ended event" });
  await expectGaugesZero(server);
  const firstCall = (await events()).join(' ');

  // Again, and the member hangs up from the tile: the gateway's BYE reaches JsSIP over
  // its WebSocket (RFC 7118 §5), not an address of the .invalid Via or Contact.
  await phone.page.evaluate((t) => window.__dial(t), target);
  await confirmed();
  const again = await waitTileState(member, /^Connected$/, 20000);
  await member.page.click(`.tile.sip[data-peer-id="${again.id}"] .sip-hangup`);
  await waitFor(async () => (await events()).some((e) => e.startsWith('ended')), { timeout: 10000, what: "JsSIP's ended event after the member's hangup" });
  const ended = (await events()).find((e) => e.startsWith('ended'));
  assert.match(ended, /by remote$/, 'JsSIP saw the gateway hang up');
  await waitNoTile(member);
  await expectGaugesZero(server);
  await phone.page.evaluate(() => window.__ua.stop());
  let last = {};
  await waitFor(async () => {
    last = await metrics(server);
    return last.switchboard_sip_connections === 0 && last.switchboard_sip_dialogs === 0 && last.switchboard_sip_media_tasks === 0;
  }, { timeout: 10000, what: `connections, dialogs and media tasks at 0 (last: ${JSON.stringify(last)})` });
  process.stderr.write(`[sip-jssip] the room heard ${inRoom.hz.toFixed(1)} Hz at ${inRoom.db.toFixed(1)} dB; JsSIP heard ${inPhone.hz.toFixed(1)} Hz at ${inPhone.db.toFixed(1)} dB; JsSIP events: ${firstCall}; then ${(await events()).join(' ')}\n`);
}));

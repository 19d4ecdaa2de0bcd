// Chromium accepts what came through Jingle (crates/xmpp, the SDP <-> Jingle mapper of
// issue 13): two peer connections in one headless page, the offerer with camera,
// microphone and a data channel, the answerer with its own camera and microphone. Each
// description goes SDP -> Jingle -> XML -> Jingle -> SDP through the `via_jingle` example
// before the other side sets it, twice: once after ICE gathering (the candidates inside
// the descriptions), once at once with every candidate trickled through its own
// transport-info (`via_jingle trickle`) into addIceCandidate. Each time both sides must
// decode video frames, receive audio packets, and get a data-channel message.
//
// Needs the `via_jingle` binary: run.sh builds it (cargo build -p switchboard-xmpp
// --example via_jingle) unless SB_VIA_JINGLE names one. A missing binary is a harness
// failure; the binary refusing a browser's description is a verdict.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { launchBrowser, loadPage, scope, waitFor, Participant, HarnessError, ROOT } from './harness.mjs';

const VIA_JINGLE = process.env.SB_VIA_JINGLE || path.join(ROOT, 'target/debug/examples/via_jingle');
// Enough media to be sure it flows, as the mesh tests ask (about a second of each).
const ENOUGH = 10;

/** Run via_jingle with `args` on `input`; a refusal names the step and what it said. */
function viaJingle(args, input, what) {
  const r = spawnSync(VIA_JINGLE, args, { input, encoding: 'utf8', timeout: 10000 });
  if (r.error) throw new Error(`via_jingle ${args.join(' ')} (${what}) did not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`via_jingle ${args.join(' ')} refused ${what} (exit ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

let browser;
let site;
before(async () => {
  if (!existsSync(VIA_JINGLE)) {
    throw new HarnessError(`via_jingle binary at ${VIA_JINGLE} (run.sh builds it: cargo build -p switchboard-xmpp --example via_jingle)`, 0, new Error('not found'));
  }
  // A blank page on 127.0.0.1: a secure context, so getUserMedia works.
  site = http.createServer((_, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><meta charset="utf-8"><title>jingle</title>');
  });
  await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  site?.close();
});

// In the page: both peer connections, media and data set up, the offer and the answer
// each through Jingle (window.viaJingle), candidates either inside the descriptions or
// trickled (window.viaTransportInfo). Progress is kept in window.jt for the test to poll.
// Resolves with what the mapped descriptions carried; throws naming the step that failed.
const CALL_THROUGH_JINGLE = async (trickle) => {
  const step = async (what, fn) => {
    try { return await fn(); } catch (e) { throw new Error(`${what}: ${e.message}`); }
  };
  const gathered = (pc, who) => new Promise((resolve, reject) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(() => reject(new Error(`${who}'s ICE gathering did not complete within 20 s`)), 20000);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
  const offerer = new RTCPeerConnection();
  const answerer = new RTCPeerConnection();
  const jt = { offerer, answerer, streams: [], messages: {}, trickled: { offerer: 0, answerer: 0 }, errors: [] };
  window.jt = jt;
  // A trickled candidate can arrive before its description: hold it until that is set.
  const remoteSet = new Map();
  for (const pc of [offerer, answerer]) {
    let done;
    remoteSet.set(pc, new Promise((r) => { done = r; }));
    const set = pc.setRemoteDescription.bind(pc);
    pc.setRemoteDescription = async (d) => { await set(d); done(); };
  }
  if (trickle) {
    // Each candidate crosses as its own transport-info, as a browser trickles them.
    const relay = (fromName, from, toName, to) => {
      from.onicecandidate = async (e) => {
        if (!e.candidate || !e.candidate.candidate) return;
        const c = e.candidate;
        try {
          const back = await window.viaTransportInfo([{ mid: c.sdpMid, candidate: c.candidate, ufrag: c.usernameFragment }]);
          if (back.length !== 1) throw new Error(`1 candidate went in, ${back.length} came back`);
          await remoteSet.get(to);
          await to.addIceCandidate({ candidate: back[0].candidate, sdpMid: back[0].mid, usernameFragment: back[0].ufrag });
          jt.trickled[fromName]++;
        } catch (err) {
          jt.errors.push(`${fromName}'s candidate ${c.candidate} through transport-info to ${toName}: ${err.message}`);
        }
      };
    };
    relay('offerer', offerer, 'answerer', answerer);
    relay('answerer', answerer, 'offerer', offerer);
  }
  const a = await step('getUserMedia for the offerer', () => navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
  jt.streams.push(a);
  for (const t of a.getTracks()) offerer.addTrack(t, a);
  const dcA = offerer.createDataChannel('chat');
  answerer.ondatachannel = (e) => {
    e.channel.onmessage = (m) => { jt.messages.answerer = m.data; e.channel.send('pong'); };
  };
  dcA.onmessage = (m) => { jt.messages.offerer = m.data; };
  dcA.onopen = () => dcA.send('ping');

  await step('the offerer creating its offer', async () => offerer.setLocalDescription(await offerer.createOffer()));
  if (!trickle) await gathered(offerer, 'the offerer');
  const offer = await step('the offer through Jingle (session-initiate)', () => window.viaJingle(offerer.localDescription.sdp, 'initiator'));
  await step('the answerer setting the offer that came through Jingle', () => answerer.setRemoteDescription({ type: 'offer', sdp: offer }));
  const b = await step('getUserMedia for the answerer', () => navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
  jt.streams.push(b);
  for (const t of b.getTracks()) answerer.addTrack(t, b);
  await step('the answerer creating its answer', async () => answerer.setLocalDescription(await answerer.createAnswer()));
  if (!trickle) await gathered(answerer, 'the answerer');
  const answer = await step('the answer through Jingle (session-accept)', () => window.viaJingle(answerer.localDescription.sdp, 'responder'));
  await step('the offerer setting the answer that came through Jingle', () => offerer.setRemoteDescription({ type: 'answer', sdp: answer }));
  const candidates = (sdp) => sdp.split('\r\n').filter((l) => l.startsWith('a=candidate')).length;
  return { candidatesInOffer: candidates(offer), candidatesInAnswer: candidates(answer) };
};

// Per side, what arrived from the other: inbound-rtp video frames decoded, audio packets.
const MEDIA = async () => {
  const inbound = async (pc) => {
    const out = { framesDecoded: 0, audioPackets: 0 };
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') out.framesDecoded = s.framesDecoded || 0;
      if (s.kind === 'audio') out.audioPackets = s.packetsReceived || 0;
    });
    return out;
  };
  return { offerer: await inbound(window.jt.offerer), answerer: await inbound(window.jt.answerer) };
};

async function callThroughJingle(trickle) {
  const how = trickle ? 'candidates trickled through transport-info' : 'candidates in the descriptions';
  await scope(`jingle: ${how}`, async (s) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const p = s.track(new Participant('page', context, page));
    await page.exposeFunction('viaJingle', (sdp, side) => viaJingle([side], sdp, `the ${side === 'initiator' ? 'offer' : 'answer'} Chromium wrote`));
    await page.exposeFunction('viaTransportInfo', (list) => JSON.parse(viaJingle(['trickle'], JSON.stringify(list), `trickled candidates ${JSON.stringify(list)}`)));
    await loadPage(page, `http://127.0.0.1:${site.address().port}/`, { what: 'the blank page' });

    const carried = await page.evaluate(CALL_THROUGH_JINGLE, trickle);
    if (trickle) {
      assert.equal(carried.candidatesInOffer, 0, 'the trickled offer went through Jingle before gathering, so it should carry no candidate');
      assert.equal(carried.candidatesInAnswer, 0, 'the trickled answer went through Jingle before gathering, so it should carry no candidate');
    } else {
      assert.ok(carried.candidatesInOffer > 0, 'the offer that came through Jingle lost its gathered candidates');
      assert.ok(carried.candidatesInAnswer > 0, 'the answer that came through Jingle lost its gathered candidates');
    }

    const state = () => p.page.evaluate(() => ({
      messages: window.jt.messages,
      trickled: window.jt.trickled,
      errors: window.jt.errors,
      ice: { offerer: window.jt.offerer.iceConnectionState, answerer: window.jt.answerer.iceConnectionState },
    }));
    // waitFor's message names what was awaited; `last` says how far it got.
    const until = async (what, fn, read) => {
      let last;
      try {
        return await waitFor(async () => fn((last = await read())) && last, { timeout: 20000, what });
      } catch (e) {
        e.message += `; last seen: ${JSON.stringify(last)}`;
        throw e;
      }
    };
    const exchanged = await until(`a data-channel message each way through Jingle (${how}): "ping" offerer -> answerer, "pong" back`,
      (st) => st.errors.length || (st.messages.answerer === 'ping' && st.messages.offerer === 'pong'), state);
    assert.deepEqual(exchanged.errors, [], `a trickled candidate did not make it through Jingle (${how})`);

    const media = await until(`video frames decoded (> ${ENOUGH}) and audio packets received (> ${ENOUGH}) by both sides from each other through Jingle (${how})`,
      (m) => [m.offerer, m.answerer].every((x) => x.framesDecoded > ENOUGH && x.audioPackets > ENOUGH), () => p.page.evaluate(MEDIA));

    // Each side's candidates crossed (trickled: each through its own transport-info;
    // otherwise inside the descriptions, nothing trickled), and none was refused on the way.
    const st = trickle
      ? await until(`a candidate of each side trickled through transport-info into the other's addIceCandidate`,
        (x) => x.errors.length || (x.trickled.offerer > 0 && x.trickled.answerer > 0), state)
      : await state();
    assert.deepEqual(st.errors, [], `a trickled candidate did not make it through Jingle (${how})`);
    if (!trickle) assert.deepEqual(st.trickled, { offerer: 0, answerer: 0 }, 'nothing trickled when the candidates are in the descriptions');
    process.stderr.write(`[jingle] ${how}: ${JSON.stringify({ ...carried, trickled: st.trickled, media })}\n`);

    await page.evaluate(() => {
      for (const st of window.jt.streams) for (const t of st.getTracks()) t.stop();
      window.jt.offerer.close();
      window.jt.answerer.close();
    });
  });
}

test('Chromium decodes video, audio and data both ways through Jingle, candidates in the descriptions', () => callThroughJingle(false));
test('Chromium decodes video, audio and data both ways through Jingle, candidates trickled through transport-info', () => callThroughJingle(true));

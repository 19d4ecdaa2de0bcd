// Calls that have to survive something: both sides renegotiating at once (glare), the
// signaling connection cut by the server side, the TURN allocation killed under a relayed
// call, and a network where WebSockets do not work (SSE fallback).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, scope, openCall, expectMesh, randomId, waitFor, killTcp, countTcp,
} from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** ICE ufrags of the local and remote descriptions of p's connection to `id`, and its signalingState. */
async function negotiationState(p, id) {
  return p.page.evaluate((id) => {
    const pc = window.sbApp.sb.peers.get(id).pc;
    const ufrag = (d) => (d && d.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];
    return {
      local: ufrag(pc.currentLocalDescription), remote: ufrag(pc.currentRemoteDescription),
      signalingState: pc.signalingState, connectionState: pc.connectionState,
      transceivers: pc.getTransceivers().length,
    };
  }, id);
}

/** Wait until both ends are stable and both ufrags of each side differ from `before`. */
async function waitRestarted(p, id, before, timeout = 30000) {
  return waitFor(async () => {
    const n = await negotiationState(p, id);
    return n.signalingState === 'stable' && n.local && n.remote && n.local !== before.local && n.remote !== before.remote && n;
  }, { timeout, what: `${p.name}: ICE restart completed (before ${JSON.stringify(before)})` });
}

const stateOf = (e) => (typeof e.detail === 'string' ? e.detail : e.detail && e.detail.state);

test('glare: both peers renegotiate at the same instant and end stable with media flowing', (t) => scope('glare', async (s) => {
  const server = await s.server();
  const [ada, bob] = await openCall(s, browser, server, randomId('glare-'), ['Ada', 'Bob']);
  await expectMesh([ada, bob]);
  const pairs = [[ada, bob], [bob, ada]];
  for (const [p, q] of pairs) {
    await p.recordEvents();
    await p.page.evaluate((id) => {
      const pc = window.sbApp.sb.peers.get(id).pc;
      window.__sigStates = [];
      pc.addEventListener('signalingstatechange', () => window.__sigStates.push(pc.signalingState));
    }, q.peerId);
  }
  // A collision shows as an offer received while our own was out: have-local-offer followed by
  // have-remote-offer (polite side, after its implicit rollback).
  const collided = async () => {
    const seqs = await Promise.all(pairs.map(([p]) => p.page.evaluate(() => window.__sigStates.splice(0))));
    return { seqs, collided: seqs.some((xs) => xs.some((x, i) => x === 'have-local-offer' && xs.slice(i + 1).includes('have-remote-offer'))) };
  };

  // Round 1: both restart ICE in the same millisecond (same machine clock), so both offers cross.
  const before = await Promise.all(pairs.map(([p, q]) => negotiationState(p, q.peerId)));
  let at = Date.now() + 500;
  await Promise.all(pairs.map(([p, q]) => p.page.evaluate(async ({ at, id }) => {
    const pc = window.sbApp.sb.peers.get(id).pc;
    await new Promise((r) => setTimeout(r, at - Date.now()));
    pc.restartIce();
  }, { at, id: q.peerId })));
  await Promise.all(pairs.map(([p, q], i) => waitRestarted(p, q.peerId, before[i])));
  const round1 = await collided();

  // Round 2: both add a new video track (a canvas) at the same instant.
  at = Date.now() + 500;
  await Promise.all(pairs.map(([p, q]) => p.page.evaluate(async ({ at, id }) => {
    const pc = window.sbApp.sb.peers.get(id).pc;
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 240;
    const g = canvas.getContext('2d');
    let n = 0;
    window.__glareTimer = setInterval(() => { g.fillStyle = `hsl(${(n += 7) % 360},80%,50%)`; g.fillRect(0, 0, 320, 240); }, 50);
    const stream = canvas.captureStream(20);
    await new Promise((r) => setTimeout(r, at - Date.now()));
    pc.addTrack(stream.getVideoTracks()[0], stream);
  }, { at, id: q.peerId })));
  for (const [p, q] of pairs) {
    await waitFor(async () => {
      const [n, m] = [await negotiationState(p, q.peerId), await p.media(q.peerId)];
      return n.signalingState === 'stable' && m.videos.length >= 2 && m.videos.every((v) => v.framesDecoded > 0) && { n, m };
    }, { timeout: 20000, what: `${p.name}: stable with two decoding inbound videos from ${q.name}` });
  }
  const round2 = await collided();
  t.diagnostic(`signaling states, round 1: ${JSON.stringify(round1.seqs)}; round 2: ${JSON.stringify(round2.seqs)}`);
  assert.ok(round1.collided || round2.collided, 'the offers never collided: this run did not test glare');
  for (const [p, q] of pairs) {
    await p.expectFlowing(q.peerId);
    const n = await negotiationState(p, q.peerId);
    assert.equal(n.signalingState, 'stable');
    assert.equal(n.connectionState, 'connected');
    const errs = (await p.events()).filter((e) => e.ev === 'error' || e.ev === 'peer-left');
    assert.deepEqual(errs, [], `${p.name} saw ${JSON.stringify(errs)}`);
  }
  for (const [p] of pairs) await p.page.evaluate(() => clearInterval(window.__glareTimer));
}));

test('server drops the WebSocket mid-call: the client resumes, media and chat keep working', () => scope('ws-drop', async (s) => {
  const server = await s.server();
  const [ada, bob] = await openCall(s, browser, server, randomId('drop-'), ['Ada', 'Bob']);
  await expectMesh([ada, bob]);
  for (const p of [ada, bob]) {
    await p.recordEvents();
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.transportKind), 'ws');
  }
  const killed = killTcp(server.httpPort);
  assert.ok(killed >= 2, `ss -K killed ${killed} connections on the HTTP port, expected both WebSockets`);

  for (const p of [ada, bob]) {
    await waitFor(async () => {
      const st = (await p.events()).filter((e) => e.ev === 'state').map(stateOf);
      return st.includes('reconnecting') && st.at(-1) === 'open' && st;
    }, { timeout: 20000, what: `${p.name}: signaling state reconnecting -> open` });
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.peerId), p.peerId, `${p.name}: peer id changed across the resume`);
  }
  assert.ok(countTcp(server.httpPort) >= 2, 'the clients did not reconnect to the HTTP port');
  await expectMesh([ada, bob]);
  for (const p of [ada, bob]) {
    const evs = (await p.events()).filter((e) => ['peer-left', 'peer-joined', 'joined', 'error'].includes(e.ev));
    assert.deepEqual(evs, [], `${p.name} saw ${JSON.stringify(evs)} across the resume`);
  }
  await ada.chat('after the drop');
  await bob.waitChat('after the drop', 'Ada');
  await bob.chat('still here');
  await ada.waitChat('still here', 'Bob');

  // Signaling itself works after the resume: an ICE restart needs an offer/answer relayed.
  const before = await negotiationState(ada, bob.peerId);
  await ada.page.evaluate((id) => window.sbApp.sb.peers.get(id).pc.restartIce(), bob.peerId);
  await waitRestarted(ada, bob.peerId, before);
  await expectMesh([ada, bob]);
}));

/** page.route handler: keep only the TURN-over-TCP URLs of /api/ice-servers. */
async function turnTcpOnly(context) {
  await context.route('**/api/ice-servers*', async (route) => {
    const resp = await route.fetch();
    const body = await resp.json();
    body.iceServers = body.iceServers
      .map((sv) => ({ ...sv, urls: [].concat(sv.urls).filter((u) => /^turn:/.test(u) && /transport=tcp/.test(u)) }))
      .filter((sv) => sv.urls.length);
    await route.fulfill({ response: resp, json: body });
  });
}

test('ICE restart recovers a relayed call whose TURN-over-TCP allocation was killed', () => scope('turn-kill', async (s) => {
  const server = await s.server();
  const [ada, bob] = await openCall(s, browser, server, randomId('turnkill-'), ['Ada', 'Bob'],
    { query: { policy: 'relay' }, route: turnTcpOnly });
  await expectMesh([ada, bob]);
  const pairs = [[ada, bob], [bob, ada]];
  const before = [];
  for (const [p, q] of pairs) {
    const pair = await p.selectedPair(q.peerId);
    assert.equal(pair.local.candidateType, 'relay', JSON.stringify(pair));
    assert.equal(pair.local.relayProtocol, 'tcp', JSON.stringify(pair));
    assert.equal(pair.remote.candidateType, 'relay', JSON.stringify(pair));
    before.push(await negotiationState(p, q.peerId));
    await p.recordEvents();
  }
  const killed = killTcp(server.turnTcpPort);
  assert.ok(killed >= 2, `ss -K killed ${killed} TURN/TCP connections, expected one per page`);

  for (const [[p, q], b] of pairs.map((x, i) => [x, before[i]])) {
    // Recovered: decoding again and relayed again (after an ICE restart: new ufrags).
    await waitFor(async () => {
      const n = await negotiationState(p, q.peerId);
      return n.local !== b.local && n.signalingState === 'stable' && n.connectionState === 'connected' && n;
    }, { timeout: 40000, what: `${p.name}: ICE restarted and connected again` });
    await p.expectFlowing(q.peerId, { timeout: 20000 });
    const pair = await p.selectedPair(q.peerId);
    assert.equal(pair.local.candidateType, 'relay', JSON.stringify(pair));
    assert.equal(pair.local.relayProtocol, 'tcp', JSON.stringify(pair));
    assert.equal(pair.remote.candidateType, 'relay', JSON.stringify(pair));
    const left = (await p.events()).filter((e) => e.ev === 'peer-left');
    assert.deepEqual(left, [], `${p.name} saw ${JSON.stringify(left)}`);
  }
  assert.ok(countTcp(server.turnTcpPort) >= 2, 'no new TURN/TCP connections after the restart');
}));

/** Init script for a network where WebSockets never connect: every WebSocket errors and closes. */
function blockWebSocket() {
  class BlockedWebSocket extends EventTarget {
    constructor(url) {
      super();
      this.url = String(url); this.readyState = 0; this.protocol = ''; this.extensions = ''; this.bufferedAmount = 0; this.binaryType = 'blob';
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      window.__blockedWebSockets = (window.__blockedWebSockets || 0) + 1;
      setTimeout(() => {
        this.readyState = 3;
        const err = new Event('error');
        this.dispatchEvent(err); if (this.onerror) this.onerror(err);
        const close = new CloseEvent('close', { code: 1006, reason: '', wasClean: false });
        this.dispatchEvent(close); if (this.onclose) this.onclose(close);
      }, 30);
    }
    send() { throw new DOMException('WebSocket is not open', 'InvalidStateError'); }
    close() { this.readyState = 3; }
  }
  Object.assign(BlockedWebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = BlockedWebSocket;
}

test('SSE fallback: with WebSocket blocked the call signals over SSE + POST; media and chat work, and a cut stream resumes', () => scope('sse', async (s) => {
  const server = await s.server();
  const [ada, bob] = await openCall(s, browser, server, randomId('sse-'), ['Ada', 'Bob'], { init: [blockWebSocket] });
  for (const p of [ada, bob]) {
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.transportKind), 'sse', `${p.name}: transportKind`);
    assert.ok(await p.page.evaluate(() => window.__blockedWebSockets > 0), `${p.name}: never tried a WebSocket`);
  }
  await expectMesh([ada, bob], { audio: true });
  await ada.chat('over sse');
  await bob.waitChat('over sse', 'Ada');
  await bob.chat('sse reply');
  await ada.waitChat('sse reply', 'Bob');

  // Cut the event streams from the server side: the SDK opens a new /sse and resumes.
  for (const p of [ada, bob]) await p.recordEvents();
  const killed = killTcp(server.httpPort);
  assert.ok(killed >= 2, `ss -K killed ${killed} connections on the HTTP port`);
  for (const p of [ada, bob]) {
    await waitFor(async () => {
      const st = (await p.events()).filter((e) => e.ev === 'state').map(stateOf);
      return st.includes('reconnecting') && st.at(-1) === 'open' && st;
    }, { timeout: 20000, what: `${p.name}: signaling state reconnecting -> open` });
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.peerId), p.peerId);
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.transportKind), 'sse');
  }
  const before = await negotiationState(ada, bob.peerId);
  await ada.page.evaluate((id) => window.sbApp.sb.peers.get(id).pc.restartIce(), bob.peerId);
  await waitRestarted(ada, bob.peerId, before);
  await expectMesh([ada, bob]);
  for (const p of [ada, bob]) {
    const evs = (await p.events()).filter((e) => ['peer-left', 'peer-joined', 'error'].includes(e.ev));
    assert.deepEqual(evs, [], `${p.name} saw ${JSON.stringify(evs)}`);
  }
}));

/**
 * Init script: the page's signaling transports can be cut and kept from reconnecting, as in
 * a network outage of this one client. window.__outage(true) closes every WebSocket and
 * EventSource the page opened and makes new ones fail (they are pointed at a closed port);
 * window.__outage(false) ends the outage.
 */
function outageSwitch() {
  const RealWS = window.WebSocket;
  const RealES = window.EventSource;
  const open = new Set();
  let down = false;
  const dead = (proto) => `${proto}://127.0.0.1:9/outage`;
  class WS extends RealWS {
    constructor(url, protocols) {
      super(down ? dead('ws') : url, protocols);
      open.add(this);
      this.addEventListener('close', () => open.delete(this));
    }
  }
  class ES extends RealES {
    constructor(url, init) {
      super(down ? dead('http') : url, init);
      open.add(this);
    }
  }
  window.WebSocket = WS;
  window.EventSource = ES;
  window.__outage = (on) => {
    down = on;
    if (on) for (const t of [...open]) { t.close(); open.delete(t); }
    return open.size;
  };
}

test('messages for a client whose connection is down are kept and replayed when it resumes', () => scope('replay', async (s) => {
  const server = await s.server();
  const [ada, bob] = await openCall(s, browser, server, randomId('replay-'), ['Ada', 'Bob'], { init: [outageSwitch] });
  await expectMesh([ada, bob]);
  for (const p of [ada, bob]) await p.recordEvents();
  await bob.page.evaluate(() => window.__outage(true));
  await waitFor(async () => (await bob.events()).some((e) => e.ev === 'state' && stateOf(e) === 'reconnecting'),
    { timeout: 10000, what: 'Bob: signaling state reconnecting' });
  // While Bob is away, Ada restarts ICE: her offer (and candidates) must wait for Bob at the server.
  const before = await negotiationState(ada, bob.peerId);
  await ada.page.evaluate((id) => window.sbApp.sb.peers.get(id).pc.restartIce(), bob.peerId);
  await waitFor(async () => (await negotiationState(ada, bob.peerId)).signalingState === 'have-local-offer',
    { timeout: 10000, what: 'Ada: offer sent' });
  await bob.page.evaluate(() => window.__outage(false));
  await waitFor(async () => {
    const st = (await bob.events()).filter((e) => e.ev === 'state').map(stateOf);
    return st.at(-1) === 'open' && st;
  }, { timeout: 20000, what: 'Bob: signaling open again' });
  const resumed = (await bob.events()).filter((e) => e.ev === 'resumed');
  assert.equal(resumed.length, 1, `Bob's resumed events: ${JSON.stringify(resumed)}`);
  assert.equal(resumed[0].detail.gap, false, 'nothing was lost, yet the resume reported a gap');
  assert.equal(await bob.page.evaluate(() => window.sbApp.sb.peerId), bob.peerId);
  await waitRestarted(ada, bob.peerId, before);
  await expectMesh([ada, bob]);
  for (const p of [ada, bob]) {
    const evs = (await p.events()).filter((e) => ['peer-left', 'peer-joined', 'joined', 'error'].includes(e.ev));
    assert.deepEqual(evs, [], `${p.name} saw ${JSON.stringify(evs)}`);
  }
}));

test('an outage longer than --signal-grace: the others see peer-left (timeout); the client joins again and the call comes back', () => scope('grace', async (s) => {
  const server = await s.server({ args: ['--signal-grace', '2'] });
  const [ada, bob] = await openCall(s, browser, server, randomId('grace-'), ['Ada', 'Bob'], { init: [outageSwitch] });
  await expectMesh([ada, bob]);
  for (const p of [ada, bob]) await p.recordEvents();
  await bob.page.evaluate(() => window.__outage(true));
  const left = await waitFor(async () => (await ada.events()).find((e) => e.ev === 'peer-left'),
    { timeout: 15000, what: 'Ada: peer-left for Bob' });
  assert.equal(left.detail.reason, 'timeout', JSON.stringify(left));
  await ada.waitRemoteTiles([]);
  await bob.page.evaluate(() => window.__outage(false));
  // Bob's resume is refused (the session is gone); the SDK joins again with a new peer id.
  const newId = await waitFor(async () => {
    const id = await bob.page.evaluate(() => window.sbApp.sb.peerId);
    return id && id !== bob.peerId && id;
  }, { timeout: 20000, what: 'Bob: joined again with a new peer id' });
  bob.peerId = newId;
  await expectMesh([ada, bob]);
  assert.deepEqual(await ada.remoteTileIds(), [newId]);
  assert.deepEqual(await bob.remoteTileIds(), [ada.peerId]);
}));

// An independent Jingle peer calls ada and ada calls it (issue 13, "Show it"). The peer is
// tests/federation/jingle_peer.py: slixmpp for XMPP, aiortc for media and its own SDP <->
// Jingle mapping (jingle_map.py), none of it Switchboard's. It signs in as the ordinary
// account carol@b.test at prosody b.test (c2s); ada's Chromium page is signed in to
// Switchboard A, the component sb.a.test of prosody a.test, with s2s between the two
// prosody servers (trapezoid-lab.mjs). So every stanza of a call crosses Switchboard's
// component link, both prosody servers and s2s, and the only Jingle mapping on the path
// besides the peer's own is Switchboard's.
//  a) carol calls ada@sb.a.test: ada's page rings from xmpp:carol@b.test and accepts; ada's
//     page decodes carol's video and hears her tone (frames, packets, energy rising), carol
//     decodes ada's fake camera and tone mic; ada hangs up, carol sees the session end.
//  b) ada dials xmpp:carol@b.test: carol's peer answers; both decode as above; carol hangs
//     up and ada's page says so.
// Candidates: ada's page trickles hers (transport-info) both times; carol's go inside her
// session-initiate in a), trickled one transport-info each (--trickle) in b).
// The media goes between Chromium and aiortc directly: ada's selected pair's remote end is
// the peer's UDP socket. aiortc gathers every interface address but 127.0.0.1, and run.sh's
// namespace has only lo, so this file adds 127.0.0.3/8 to lo for the peer (removed after).
// A missing /usr/bin/python3 module (python3-slixmpp, python3-aiortc) is a harness failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import readline from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, toneWav, scope, waitFor, sleep, HarnessError, socketOwner } from './harness.mjs';
import { SIDES, startProsodyPair, startSideServer, stanzaMark, stanzasSince, signIn, dial, ringsAt, outcome, inCall, expectDecoding } from './trapezoid-lab.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PEER = path.resolve(HERE, '../federation/jingle_peer.py');
/** Debian's python3 with python3-slixmpp and python3-aiortc (not a pyenv one first on PATH). */
const PYTHON = process.env.SB_PEER_PYTHON || '/usr/bin/python3';
/** The peer's own host address (see the header). */
const PEER_IP = '127.0.0.3';
const CAROL = { jid: 'carol@b.test', password: 'carol-pw', server: `${SIDES.b.ip}:5222` };
/** What carol must have decoded of ada's media: frames of each kind, and the tone's level. */
const MIN_FRAMES = 50;
const MIN_RMS = 0.02;

let browser;
let lab;
let addedIp = false;
before(async () => {
  const t0 = Date.now();
  try {
    execFileSync(PYTHON, ['-c', 'import slixmpp, aiortc'], { stdio: 'pipe' });
  } catch (e) {
    throw new HarnessError(`${PYTHON} cannot import slixmpp and aiortc (apt-get install python3-slixmpp python3-aiortc)`, Date.now() - t0, new Error(String(e.stderr || e.message)));
  }
  try {
    execFileSync('ip', ['addr', 'add', `${PEER_IP}/8`, 'dev', 'lo'], { stdio: 'pipe' });
    addedIp = true;
  } catch (e) {
    if (!/File exists/.test(String(e.stderr))) throw new HarnessError(`ip addr add ${PEER_IP}/8 dev lo`, Date.now() - t0, new Error(String(e.stderr || e.message)));
  }
  lab = await startProsodyPair();
  lab.b.register('carol', CAROL.password);
  browser = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav()}`]);
});
after(async () => {
  await browser?.close();
  await lab?.stop();
  if (addedIp) {
    try { execFileSync('ip', ['addr', 'del', `${PEER_IP}/8`, 'dev', 'lo'], { stdio: 'pipe' }); } catch { /* the namespace goes anyway */ }
  }
});

/**
 * jingle_peer.py signed in as carol, its JSON lines in `events` (see its header); `args`:
 * its options and mode (`call JID` / `answer`).
 */
class JinglePeer {
  constructor(args) {
    this.args = args;
    this.events = [];
    this.stderr = '';
    this.child = spawn(PYTHON, [PEER, '--jid', `${CAROL.jid}/peer`, '--password', CAROL.password, '--server', CAROL.server, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exit = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve(code ?? signal)));
    this.exitCode = undefined;
    this.exit.then((c) => { this.exitCode = c; });
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line));
      } catch {
        this.stderr += `(stdout) ${line}\n`;
      }
    });
    this.child.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-4000); });
  }

  get pid() { return this.child.pid; }

  describe() {
    const shown = this.events.filter((e) => e.event !== 'remote_candidate');
    return `jingle_peer.py ${this.args.join(' ')} (exit ${this.exitCode}):\n${shown.map((e) => JSON.stringify(e)).join('\n')}\n--- stderr:\n${this.stderr.slice(-1500)}`;
  }

  /** The first event `name` that satisfies `pred`, waiting up to `timeout`; its exit ends the wait. */
  async event(name, pred = () => true, timeout = 20000) {
    const find = () => this.events.find((e) => e.event === name && pred(e));
    try {
      return await waitFor(() => {
        const e = find();
        if (e) return e;
        if (this.exitCode !== undefined) throw new Error(`the peer exited ${this.exitCode} first`);
        return null;
      }, { timeout, interval: 100, what: `carol's peer: ${name}` });
    } catch (e) {
      e.message += `\n${this.describe()}`;
      throw e;
    }
  }

  /** Its exit code, within `timeout` (else a verdict). */
  async exited(timeout = 15000) {
    const code = await Promise.race([this.exit, sleep(timeout).then(() => 'still running')]);
    assert.notEqual(code, 'still running', `carol's peer did not exit within ${timeout} ms\n${this.describe()}`);
    return code;
  }

  async stop() {
    if (this.exitCode !== undefined) return;
    this.child.kill('SIGTERM');
    if (await Promise.race([this.exit.then(() => false), sleep(5000).then(() => true)])) this.child.kill('SIGKILL');
    await this.exit;
  }
}

/** A test scope that stops the peer and adds its output and both prosody logs to a failure. */
function withPeer(label, fn) {
  return scope(label, async (s) => {
    const peers = [];
    const start = (args) => {
      const p = new JinglePeer(args);
      peers.push(p);
      return p;
    };
    try {
      await fn(s, start);
    } catch (e) {
      e.message += `\n${peers.map((p) => p.describe()).join('\n')}\n--- prosody a.test:\n${lab.a.tail(25)}\n--- prosody b.test:\n${lab.b.tail(25)}`;
      throw e;
    } finally {
      await Promise.all(peers.map((p) => p.stop()));
    }
  });
}

/** carol's last media line decodes ada: enough video (with a size) and audio frames, the tone audible. */
async function carolDecodes(peer) {
  const m = await peer.event('media', (e) => e.video_frames >= MIN_FRAMES && e.audio_frames >= MIN_FRAMES && e.width > 0 && e.audio_rms > MIN_RMS, 30000);
  return m;
}

/** ada's decoding connection receives from carol's peer itself: the remote end is the peer's socket, a signalled host candidate. */
function expectDirect(adaGets, peer) {
  const remote = adaGets.pair && adaGets.pair.remote;
  assert.ok(remote, `a selected pair on ada's page: ${JSON.stringify(adaGets)}`);
  assert.equal(remote.address, PEER_IP, `ada's remote end is the peer's host address: ${JSON.stringify(adaGets.pair)}`);
  // A host candidate, not one learnt from the peer's checks (prflx): carol's candidates
  // reached ada's page through Switchboard's mapping (in the Jingle description or trickled).
  assert.equal(remote.candidateType, 'host', `carol's candidate was signalled to ada: ${JSON.stringify(adaGets.pair)}`);
  assert.equal(socketOwner(remote.port, 'udp'), peer.pid, `UDP ${remote.address}:${remote.port} belongs to carol's peer (pid ${peer.pid})`);
  return `${adaGets.pair.local.address}:${adaGets.pair.local.port} <-> ${remote.address}:${remote.port} (${remote.candidateType}/${remote.protocol})`;
}

/** Stanzas that crossed s2s each way since `mark`, for the report. */
function s2sSummary(mark) {
  const c = stanzasSince(lab, mark);
  const kinds = (d) => Object.entries(d.kinds).map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
  return { aToB: c.aToB.acrossS2s, bToA: c.bToA.acrossS2s, text: `a.test→b.test ${c.aToB.acrossS2s} (${kinds(c.aToB)}), b.test→a.test ${c.bToA.acrossS2s} (${kinds(c.bToA)})` };
}

function report(t, line) {
  process.stderr.write(`[jingle-peer] ${line}\n`);
  t.diagnostic(line);
}

const adaMedia = (g) => `${g.framesDecoded} frames (${g.frameWidth} px wide), ${g.audioPackets} audio packets, audio energy ${g.audioEnergy.toFixed(3)}`;
const carolMedia = (m) => `${m.video_frames} video frames (${m.width}x${m.height}), ${m.audio_frames} audio frames, audio RMS ${m.audio_rms}`;

test('carol, an independent Jingle peer (slixmpp + aiortc) at b.test, calls ada@sb.a.test: ada rings, accepts, both decode audio and video; ada hangs up', (t) => withPeer('jingle-peer-calls-ada', async (s, start) => {
  const a = await startSideServer(s, SIDES.a, lab.a);
  const ada = await signIn(s, browser, a, 'ada', 'Ada');
  const mark = stanzaMark(lab);
  // Her call lasts until ada hangs up (--seconds is longer than the test).
  const carol = start(['--seconds', '120', '--min-frames', String(MIN_FRAMES), '--timeout', '30', 'call', 'ada@sb.a.test']);
  await carol.event('proposed');
  const dlg = await ringsAt(ada, 'xmpp:carol@b.test', 20000);
  await carol.event('ringing');
  await dlg.getByRole('button', { name: 'Accept' }).click();
  await inCall(ada);
  await carol.event('accepted');
  await carol.event('connection', (e) => e.state === 'connected', 20000);

  const [adaGets, carolGets] = await Promise.all([expectDecoding(ada), carolDecodes(carol)]);
  await carol.event('remote_candidate'); // ada's, trickled
  report(t, `carol -> ada: ada decoded ${adaMedia(adaGets)}; carol decoded ${carolMedia(carolGets)}; media ${expectDirect(adaGets, carol)}`);

  await ada.page.getByRole('button', { name: 'Hang up' }).click();
  await outcome(ada, 'hangup', { text: /You hung up/ });
  const ended = await carol.event('ended', () => true, 15000);
  assert.deepEqual([ended.reason, ended.by], ['success', 'remote'], `carol saw ada end the session: ${JSON.stringify(ended)}`);
  assert.equal(await carol.exited(), 0, `carol's peer: call connected, >= ${MIN_FRAMES} frames of each kind\n${carol.describe()}`);
  const last = carol.events.filter((e) => e.event === 'media').pop();
  const crossed = s2sSummary(mark);
  assert.ok(crossed.aToB > 0 && crossed.bToA > 0, `stanzas crossed s2s both ways: ${crossed.text}`);
  report(t, `carol's last media line: ${carolMedia(last)}; stanzas over s2s: ${crossed.text}`);
}));

test('ada dials xmpp:carol@b.test: the independent peer answers, both decode audio and video; carol hangs up and ada\'s page says so', (t) => withPeer('jingle-peer-ada-calls', async (s, start) => {
  const a = await startSideServer(s, SIDES.a, lab.a);
  const ada = await signIn(s, browser, a, 'ada', 'Ada');
  // carol answers after ringing 0.5 s and hangs up after 15 s of connected media (time for both to decode on a busy machine).
  const carol = start(['--seconds', '15', '--min-frames', String(MIN_FRAMES), '--timeout', '30', '--trickle', 'answer']);
  await carol.event('connected');
  const mark = stanzaMark(lab);
  await dial(ada, 'xmpp:carol@b.test');
  const incoming = await carol.event('incoming');
  assert.equal(incoming.from.split('/')[0], 'ada@sb.a.test', `the call comes from ada's JID: ${JSON.stringify(incoming)}`);
  assert.deepEqual([...incoming.media].sort(), ['audio', 'video'], `ada proposes audio and video: ${JSON.stringify(incoming)}`);
  await inCall(ada);
  assert.match(await ada.page.locator('#call-title').textContent(), /carol@b\.test/);
  await carol.event('connection', (e) => e.state === 'connected', 20000);

  const [adaGets, carolGets] = await Promise.all([expectDecoding(ada), carolDecodes(carol)]);
  await carol.event('remote_candidate'); // ada's, trickled
  report(t, `ada -> carol: ada decoded ${adaMedia(adaGets)}; carol decoded ${carolMedia(carolGets)}; media ${expectDirect(adaGets, carol)}`);

  await outcome(ada, 'hangup', { text: /carol@b\.test hung up/, timeout: 30000 });
  const ended = await carol.event('ended', () => true, 15000);
  assert.deepEqual([ended.reason, ended.by], ['success', 'local'], `carol hung up: ${JSON.stringify(ended)}`);
  assert.equal(await carol.exited(), 0, `carol's peer: call connected, >= ${MIN_FRAMES} frames of each kind\n${carol.describe()}`);
  const last = carol.events.filter((e) => e.event === 'media').pop();
  const crossed = s2sSummary(mark);
  assert.ok(crossed.aToB > 0 && crossed.bToA > 0, `stanzas crossed s2s both ways: ${crossed.text}`);
  report(t, `carol's last media line: ${carolMedia(last)}; stanzas over s2s: ${crossed.text}`);
}));

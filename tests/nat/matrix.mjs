// The NAT traversal matrix: two real Chromiums, each in its own client namespace of the NAT
// lab (tests/nat/lab.sh, with NATLAB_TWINS=1 so two NATs of each kind exist), call each
// other through Switchboard's web app served from the lab's public segment, for every pair
// of client kinds, once with STUN only and once with STUN + TURN. Each case must connect or
// fail exactly as ICE predicts (predict.mjs), select the most direct candidate pair, and
// decode media when connected. Writes its table to target/nat-matrix.md (or $NAT_MATRIX_DOC)
// and fails when its verdicts differ from the committed docs/nat-matrix.md.
//
// Run it through tests/nat/matrix.sh, which builds the lab around it. Env:
//   NATLAB_* (from lab.sh), SWITCHBOARD_BIN, CHROMIUM (default /usr/bin/chromium),
//   NAT_MATRIX_DOC (where the table goes; `-` for none and no comparison), NAT_MATRIX_ONLY (a regexp on case
//   names, e.g. 'symmetric'), NAT_MATRIX_VERBOSE=1 (server and page logs on stderr).

import { createRequire } from 'node:module';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { KINDS, predict } from './predict.mjs';
import { casesFor, writeDoc, verdictDiff } from './matrix-doc.mjs';
import { launch, warmUp, loadPage, isHarnessFailure } from '../browser/chromium.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const require = createRequire(path.join(ROOT, 'tests/browser/package.json'));
const { chromium } = require('playwright-core');

const env = process.env;
const BIN = env.SWITCHBOARD_BIN;
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const PUB = env.NATLAB_PUB;
const SERVER_IP = env.NATLAB_SERVER_IP;
const OTHER_IP = env.NATLAB_OTHER_IP;
const VERBOSE = !!env.NAT_MATRIX_VERBOSE;
const ORIGIN = `https://${SERVER_IP}`;
const CONNECT_TIMEOUT = 30000;
// Joining the room once the page runs (signaling): a verdict, unlike the page loading.
const JOIN_TIMEOUT = 20000;
// A case that should fail must end with the app telling the user so: the SDK reports
// `peer-unreachable` 15 s after the first checks (Chromium itself seldom reaches 'failed':
// with continual gathering it swings between 'checking' and 'disconnected').
const FAIL_TIMEOUT = 35000;
// How many calls predicted to fail run at once (NAT_MATRIX_FAIL_LANES, default 4).
const FAIL_LANES = Math.max(1, Number.parseInt(env.NAT_MATRIX_FAIL_LANES || '4', 10) || 1);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

if (!BIN || !PUB || !SERVER_IP) {
  log('matrix.mjs runs inside the NAT lab: use tests/nat/matrix.sh');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------
// The server: Switchboard in the public namespace, HTTPS and TURN/TLS together on 443.

const children = new Set();
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ } });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

/**
 * withTurn false: only static TURN users, so /api/ice-servers lists STUN alone (a
 * STUN-only deployment); true: a REST secret, so it lists STUN and TURN over UDP, TCP and
 * TLS (5349 and 443).
 */
async function startServer(withTurn) {
  const args = ['serve', '-L', SERVER_IP, '-L', OTHER_IP, '-p', '3478',
    '--http-listen', `${SERVER_IP}:443`, '--tls-self-signed', '--turn-on-http-port',
    // The lab's "internet" is TEST-NET-3, which a relay refuses by default.
    '--allowed-peer-ip', '203.0.113.0/24', '--metrics-listen', 'off', '--drain-timeout', '1'];
  if (withTurn) args.push('--static-auth-secret', 'nat-matrix-secret');
  else args.push('--user', 'lab:lab');
  const child = spawn('ip', ['netns', 'exec', PUB, BIN, ...args], {
    env: { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const lines = [];
  let exited = null;
  child.on('exit', (code, sig) => { exited = { code, sig }; children.delete(child); });
  for (const s of [child.stdout, child.stderr]) {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\x1b\[[0-9;]*m/g, '');
        buf = buf.slice(i + 1);
        lines.push(line);
        if (VERBOSE) log(`[server] ${line}`);
      }
    });
  }
  const deadline = Date.now() + 15000;
  while (!lines.some((l) => l.includes('HTTP API on https://'))) {
    if (exited || Date.now() > deadline) {
      throw new Error(`switchboard did not start (${JSON.stringify(exited)}):\n${lines.join('\n')}`);
    }
    await sleep(50);
  }
  return {
    lines,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      for (let i = 0; i < 40 && !exited; i++) await sleep(50);
      if (!exited) child.kill('SIGKILL');
    },
  };
}

// ---------------------------------------------------------------------------------------
// Browsers: Debian's Chromium started inside a client namespace through a wrapper, so
// playwright (here, in the root namespace) drives it over its pipe.

const WRAPPERS = mkdtempSync(path.join(tmpdir(), 'nat-matrix-'));
process.on('exit', () => rmSync(WRAPPERS, { recursive: true, force: true }));

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-features=WebRtcHideLocalIpsWithMdns', // real host candidates, as on a LAN
  // The server's certificate is self-signed (HTTPS and TURN/TLS on 443).
  '--ignore-certificate-errors',
];

/** Chromium in namespace `ns`, under the harness's start-up limit (chromium.mjs). */
async function launchIn(ns) {
  const wrapper = path.join(WRAPPERS, `chromium-${ns}`);
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec '${ns}' '${CHROMIUM}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  return launch(chromium, { executablePath: wrapper, args: CHROMIUM_ARGS, label: `in namespace ${ns}` });
}

// Records every RTCPeerConnection's ICE states and gathered candidates, and the moment the
// first video frame was decoded, in window.__nat (times from Date.now(), one clock for all
// pages of the machine).
const RECORDER = () => {
  const rec = { ice: [], candidates: [], firstFrame: null, pcs: [], errors: [], checks: { succeeded: 0, requestsSent: 0, remoteCandidates: 0 } };
  window.__nat = rec;
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      rec.pcs.push(this);
      this.addEventListener('iceconnectionstatechange', () => rec.ice.push({ t: Date.now(), state: this.iceConnectionState }));
      this.addEventListener('icecandidate', (e) => {
        const c = e.candidate;
        if (c && c.candidate) rec.candidates.push({ type: c.type, protocol: c.protocol, address: c.address, port: c.port, relayProtocol: c.relayProtocol || null, url: c.url || null });
      });
    }
  };
  setInterval(async () => {
    if (rec.firstFrame) return;
    for (const pc of rec.pcs) {
      try {
        (await pc.getStats()).forEach((s) => {
          if (!rec.firstFrame && s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) rec.firstFrame = Date.now();
        });
      } catch { /* closed */ }
    }
  }, 50);
  // Connectivity checks, kept as the highest counts seen: an ICE restart starts new pairs
  // from zero.
  setInterval(async () => {
    for (const pc of rec.pcs) {
      const n = { succeeded: 0, requestsSent: 0, remoteCandidates: 0 };
      try {
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'candidate-pair') {
            if (s.state === 'succeeded') n.succeeded++;
            n.requestsSent += s.requestsSent || 0;
          } else if (s.type === 'remote-candidate') n.remoteCandidates++;
        });
      } catch { /* closed */ }
      for (const k of Object.keys(n)) rec.checks[k] = Math.max(rec.checks[k], n[k]);
    }
  }, 300);
};

/** A participant's view: ICE history, candidates, selected pair, media counters. */
async function snapshot(page) {
  return page.evaluate(async () => {
    const rec = window.__nat;
    const sb = window.sbApp && window.sbApp.sb;
    const peer = sb ? [...sb.peers.values()][0] : null;
    const tile = document.querySelector('.tile.remote');
    const out = {
      ice: rec.ice, candidates: rec.candidates, firstFrame: rec.firstFrame, errors: rec.errors, pair: null,
      frames: 0, width: 0, audioPackets: 0, tileState: tile ? tile.dataset.state || null : null,
      checks: rec.checks,
    };
    if (!peer || !peer.pc) return out;
    const stats = await peer.pc.getStats();
    let pairId = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId && stats.get(pairId);
    const pick = (c) => c && { type: c.candidateType, address: c.address, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol || null, url: c.url || null };
    if (pair) out.pair = { local: pick(stats.get(pair.localCandidateId)), remote: pick(stats.get(pair.remoteCandidateId)) };
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') { out.frames = Math.max(out.frames, s.framesDecoded || 0); out.width = Math.max(out.width, s.frameWidth || 0); }
      if (s.kind === 'audio') out.audioPackets = Math.max(out.audioPackets, s.packetsReceived || 0);
    });
    return out;
  });
}

// ---------------------------------------------------------------------------------------
// One case.

const connectedStates = ['connected', 'completed'];
const everConnected = (snap) => snap.ice.some((e) => connectedStates.includes(e.state));
const unreachable = (snap) => snap.errors.find((e) => e.code === 'peer-unreachable');

async function runCase(c) {
  const nsA = env[`NATLAB_NS_${c.a.toUpperCase()}`];
  const nsB = env[`NATLAB_NS_${c.b.toUpperCase()}_B`];
  const browsers = await Promise.all([launchIn(nsA), launchIn(nsB)]);
  const pages = [];
  const pageErrors = [];
  try {
    const room = `nat-${c.name}-${Date.now().toString(36)}`;
    const open = async (browser, who) => {
      const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 960, height: 640 } });
      await context.addInitScript(RECORDER);
      const page = await context.newPage();
      page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
      if (VERBOSE) page.on('console', (m) => log(`[${c.name} ${who}] ${m.text()}`));
      await loadPage(page, `${ORIGIN}/r/${room}?name=${who}`, { ready: () => !!window.sbApp, what: `${who}'s room page` });
      const joined = await page.evaluate(async (ms) => {
        const ok = await Promise.race([
          window.sbApp.ready.then(() => true, () => false),
          new Promise((r) => setTimeout(() => r(false), ms)),
        ]);
        if (ok) window.sbApp.sb.on('error', (e) => window.__nat.errors.push({ t: Date.now(), code: e.code, peer: e.peer, reason: e.reason }));
        return ok;
      }, JOIN_TIMEOUT);
      if (!joined) throw new Error(`${who} did not join the room within ${JOIN_TIMEOUT / 1000} s`);
      pages.push(page);
      return page;
    };
    const pa = await open(browsers[0], 'a');
    // Times count from the moment b opens the room link: the call starts when b joins.
    const t0 = Date.now();
    const pb = await open(browsers[1], 'b');
    const deadline = t0 + (c.expect.connects ? CONNECT_TIMEOUT : FAIL_TIMEOUT);
    let sa;
    let sb;
    for (;;) {
      [sa, sb] = await Promise.all([snapshot(pa), snapshot(pb)]);
      const done = c.expect.connects
        ? sa.frames > 0 && sb.frames > 0 && sa.pair && sb.pair
        // Both told (the SDK's error) and both tiles showing it: the tile follows the error,
        // but a peer's tile made or redrawn meanwhile starts from its connection state.
        : (unreachable(sa) && unreachable(sb) && sa.tileState === 'unreachable' && sb.tileState === 'unreachable')
          || everConnected(sa) || everConnected(sb);
      if (done || Date.now() > deadline) break;
      await sleep(250);
    }
    const result = { ...c, t0, views: { a: sa, b: sb }, pageErrors };
    if (c.expect.connects && sa.frames > 0 && sb.frames > 0) {
      // Media keeps flowing both ways: decoded frames and audio packets rise.
      await sleep(1500);
      const [la, lb] = await Promise.all([snapshot(pa), snapshot(pb)]);
      result.flowing = la.frames > sa.frames && lb.frames > sb.frames && la.audioPackets > sa.audioPackets && lb.audioPackets > sb.audioPackets && la.width > 0 && lb.width > 0;
      result.views = { a: la, b: lb };
    }
    return result;
  } finally {
    await Promise.all(browsers.map((b) => b.close().catch(() => {})));
  }
}

// ---------------------------------------------------------------------------------------
// Judging a result against the prediction.

const isRelay = (snap) => snap.pair && snap.pair.local && snap.pair.local.type === 'relay';

/** The reasons a result differs from the prediction (empty: as predicted). */
function judge(r) {
  const bad = [];
  const v = r.views;
  const connected = everConnected(v.a) && everConnected(v.b);
  if (r.pageErrors.length) bad.push(`page errors: ${r.pageErrors.join('; ')}`);
  if (!r.expect.connects) {
    if (everConnected(v.a) || everConnected(v.b)) bad.push('connected, but ICE predicts no path');
    for (const side of ['a', 'b']) {
      const s = v[side];
      if (!unreachable(s)) bad.push(`${side}: the app did not report the peer unreachable within ${FAIL_TIMEOUT / 1000} s (ICE states ${s.ice.map((e) => e.state).join('>')})`);
      else if (s.tileState !== 'unreachable') bad.push(`${side}: the tile shows '${s.tileState}', not 'unreachable'`);
      // A genuine traversal failure: candidates were exchanged and checks sent, none answered.
      if (s.checks.remoteCandidates === 0) bad.push(`${side}: never received the peer's candidates`);
      if (s.checks.requestsSent === 0) bad.push(`${side}: sent no connectivity checks`);
      if (s.checks.succeeded > 0) bad.push(`${side}: ${s.checks.succeeded} candidate pair(s) succeeded`);
    }
    return bad;
  }
  if (!connected) {
    bad.push(`did not connect within ${CONNECT_TIMEOUT / 1000} s (states: a ${v.a.ice.map((e) => e.state).join('>')}, b ${v.b.ice.map((e) => e.state).join('>')})`);
    return bad;
  }
  for (const side of ['a', 'b']) if (unreachable(v[side])) bad.push(`${side}: reported the peer unreachable although it connected`);
  if (!(v.a.frames > 0 && v.b.frames > 0)) bad.push(`no decoded video (a ${v.a.frames} frames, b ${v.b.frames})`);
  else if (!r.flowing) bad.push('media stopped after the first frames');
  for (const side of ['a', 'b']) {
    const need = r.expect.relay[side];
    const s = v[side];
    if (!s.pair) { bad.push(`${side}: no selected candidate pair`); continue; }
    if (need === 'none' && isRelay(s)) bad.push(`${side}: relays although a direct path exists`);
    if (need === 'tls' && !(isRelay(s) && s.pair.local.relayProtocol === 'tls' && /:443\b/.test(s.pair.local.url || ''))) {
      bad.push(`${side}: should relay over TURN/TLS on 443, selected ${JSON.stringify(s.pair.local)}`);
    }
  }
  if (r.expect.relay.a === 'one-side') {
    const n = [v.a, v.b].filter(isRelay).length;
    if (n === 0) bad.push('no side relays, but no direct path exists');
    if (n === 2) bad.push('both sides relay; one relay is enough (the other side reaches it directly)');
  }
  return bad;
}

// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// The app's network test page (/network) in each client namespace, against nat-probe there.

/** `switchboard nat-probe --json` inside namespace ns (its exit code says nothing here). */
function natProbe(ns) {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, BIN, 'nat-probe', '--server', SERVER_IP, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.add(child);
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', () => {
      children.delete(child);
      try { resolve(JSON.parse(out)); } catch { resolve({ error: `unparsable nat-probe output: ${out.slice(0, 200)}` }); }
    });
  });
}

async function runNetworkTest(kind, probe) {
  const browser = await launchIn(env[`NATLAB_NS_${kind.toUpperCase()}`]);
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await loadPage(page, `${ORIGIN}/network`, { ready: () => !!window.sbNetTest, what: 'the network test page' });
    const result = await page.evaluate(() => window.sbNetTest.done);
    // What a person reads on the page, not only what the script returned.
    const shown = await page.evaluate(() => ({
      verdict: document.querySelector('#net-verdict').dataset.verdict,
      title: document.querySelector('#net-verdict-title').textContent,
      mapping: document.querySelector('#net-mapping').textContent,
      filtering: document.querySelector('#net-filtering').textContent,
      relay: document.querySelector('#net-relay').textContent,
      candidateRows: [...document.querySelectorAll('#net-candidates tr')].map((tr) => tr.dataset.type),
    }));
    return { kind, probe, result, shown, pageErrors };
  } finally {
    await browser.close().catch(() => {});
  }
}

function judgeNetworkTest(t) {
  const bad = [];
  const { probe, result: r, shown } = t;
  if (!probe.direct_calls) bad.push(`nat-probe: ${probe.error || 'no verdict'}`);
  if (t.pageErrors.length) bad.push(`page errors: ${t.pageErrors.join('; ')}`);
  if (shown.verdict !== probe.direct_calls) bad.push(`page verdict ${shown.verdict}, nat-probe ${probe.direct_calls}`);
  if (probe.behind_nat && r.mapping !== probe.mapping) bad.push(`page mapping ${r.mapping}, nat-probe ${probe.mapping}`);
  if (probe.filtering && r.filtering !== probe.filtering) bad.push(`page filtering ${r.filtering}, nat-probe ${probe.filtering}`);
  if (r.filtering && !shown.filtering.includes(r.filtering)) bad.push(`filtering not shown: ${shown.filtering}`);
  if (!shown.candidateRows.includes('host')) bad.push('no host candidate listed');
  if (KINDS[t.kind].udp && probe.behind_nat && !shown.candidateRows.includes('srflx')) bad.push('no server-reflexive candidate listed');
  const reach = (re) => r.relays.filter((x) => re.test(x.url)).map((x) => x.ok);
  const tls443 = reach(/^turns:.*:443\b/);
  if (!tls443.length || !tls443.every(Boolean)) bad.push('TURN over TLS on 443 not shown reachable');
  const udpTurn = reach(/^turn:.*transport=udp/);
  if (KINDS[t.kind].udp && !udpTurn.every(Boolean)) bad.push('TURN over UDP not shown reachable');
  if (!KINDS[t.kind].udp && udpTurn.some(Boolean)) bad.push('TURN over UDP shown reachable through a firewall that blocks UDP');
  return bad;
}

const only = env.NAT_MATRIX_ONLY ? new RegExp(env.NAT_MATRIX_ONLY) : null;
const started = Date.now();
const results = [];
const netResults = [];
let passed = 0;
let failed = 0;
let harness = 0;
let warmed = false;
/** Count a result: as predicted, a verdict against it, or a harness failure. */
function tally(label, problems, error) {
  if (error && isHarnessFailure(error)) {
    harness++;
    log(`HARNESS ${label}: ${error.message.split('\n')[0]}`);
  } else if (problems.length === 0) {
    passed++;
    log(`ok   ${label}`);
  } else {
    failed++;
    log(`FAIL ${label}: ${problems.join('; ')}`);
    if (error) log(error.stack);
  }
}
for (const turn of [false, true]) {
  const cases = casesFor(Object.keys(KINDS), turn).filter((c) => !only || only.test(c.name));
  const networkTests = turn && (!only || only.test('network-test'));
  if (!cases.length && !networkTests) continue;
  for (const c of cases) c.expect = predict(c.a, c.b, turn);
  const server = await startServer(turn);
  try {
    if (!warmed) {
      // Once, before anything is timed: a new machine's first Chromium start, first
      // HTTPS page and first media pipeline (chromium.mjs), in a client namespace.
      const ns = env.NATLAB_NS_OPEN;
      try {
        const browser = await launchIn(ns);
        try {
          const ms = await warmUp(browser, { url: `${ORIGIN}/`, contextOptions: { ignoreHTTPSErrors: true } });
          log(`nat lab: Chromium warmed up in ${(ms / 1000).toFixed(1)} s (namespace ${ns})`);
        } finally {
          await browser.close().catch(() => {});
        }
      } catch (e) {
        tally('warm-up', [e.message], e);
        throw e;
      }
      warmed = true;
    }
    const attempt = async (c) => {
      try {
        const r = await runCase(c);
        r.problems = judge(r);
        return r;
      } catch (e) {
        const what = isHarnessFailure(e) ? e.message.split('\n')[0] : `setting up the call failed: ${e.message.split('\n')[0]}`;
        return { ...c, error: e, harness: isHarnessFailure(e), problems: [what] };
      }
    };
    // Calls ICE predicts to connect run one at a time (their first-frame times are in the
    // table). The others spend their time waiting for the SDK's peer-unreachable, 15 s
    // after the first checks, with nothing to measure: FAIL_LANES of them side by side.
    // Concurrent cases share client namespaces (and NATs), which changes nothing for
    // them: every Chromium has its own sockets, so its own NAT mappings, and ICE only
    // ever checks toward its own peer's candidates.
    const byCase = new Map();
    for (const c of cases.filter((c) => c.expect.connects)) byCase.set(c, await attempt(c));
    const failing = cases.filter((c) => !c.expect.connects);
    for (let i = 0; i < failing.length; i += FAIL_LANES) {
      const batch = failing.slice(i, i + FAIL_LANES);
      const rs = await Promise.all(batch.map(attempt));
      batch.forEach((c, k) => byCase.set(c, rs[k]));
    }
    for (const c of cases) {
      const r = byCase.get(c);
      results.push(r);
      tally(c.name, r.problems, r.error);
    }
    if (networkTests) {
      const kinds = Object.keys(KINDS);
      const probes = await Promise.all(kinds.map((k) => natProbe(env[`NATLAB_NS_${k.toUpperCase()}`])));
      for (const [i, kind] of kinds.entries()) {
        let t;
        let error = null;
        try {
          t = await runNetworkTest(kind, probes[i]);
          t.problems = judgeNetworkTest(t);
        } catch (e) {
          error = e;
          t = { kind, probe: probes[i], harness: isHarnessFailure(e), problems: [e.message.split('\n')[0]] };
        }
        netResults.push(t);
        tally(`network-test-${kind}`, t.problems, error);
      }
    }
  } catch (e) {
    if (!isHarnessFailure(e)) throw e;
    break; // the warm-up failed: nothing after it could be judged
  } finally {
    await server.stop();
  }
}
const seconds = Math.round((Date.now() - started) / 1000);
const chromiumVersion = (() => { try { return execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8' }).trim(); } catch { return 'chromium'; } })();
if (env.NAT_MATRIX_DOC !== '-') {
  const doc = env.NAT_MATRIX_DOC || path.join(ROOT, 'target/nat-matrix.md');
  mkdirSync(path.dirname(doc), { recursive: true });
  writeDoc(doc, results, netResults, { seconds, chromiumVersion, partial: !!only });
  log(`wrote ${doc}`);
  // The committed table is a claim about the code: a run whose verdicts differ fails.
  const committed = path.join(ROOT, 'docs/nat-matrix.md');
  if (path.resolve(doc) !== committed) {
    const diff = verdictDiff(readFileSync(doc, 'utf8'), readFileSync(committed, 'utf8'), { partial: !!only });
    tally('docs/nat-matrix.md', diff.length ? [`verdicts differ from ${doc} (copy it there if the change is intended)`] : [], null);
    for (const line of diff) log(`    ${line}`);
  }
}
console.log(`nat matrix: ${passed} passed, ${failed} failed, ${harness} harness failures (${seconds} s)`);
process.exit(failed || harness ? 1 : 0);

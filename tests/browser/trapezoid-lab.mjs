// The trapezoid lab of trapezoid.test.mjs (issue 13, "Show it"): two Debian prosody servers,
// `a.test` on 127.0.0.1 and `b.test` on 127.0.0.2, with s2s (dialback) between them and a
// component `sb.a.test` / `sb.b.test` on each (XEP-0114) and c2s accounts for ordinary
// clients (Prosody.register), the config tests/federation/prosody.cfg.lua.in that
// crates/xmpp/src/lab.rs renders too; two Switchboard servers, A on 127.0.0.1 and B on
// 127.0.0.2, each attached to its prosody as that component; Chromium pages signed in to their lines.
// Everything runs in run.sh's loopback-only namespace (127.0.0.2 is on `lo` too), so a
// stanza from A to B has no way but through both prosody servers, and the browsers' only
// candidates are loopback host candidates.
//
// What crossed the servers is read from prosody's debug log: the router logs every stanza a
// server takes in with its top tag (its `from` and `to`): `Received[component]` from its
// component, `Received[s2sin]` from the other server. So a stanza from A's component to B's
// is seen twice: taken from sb.a.test by a.test, then taken over s2s by b.test. (Neither
// `Sending[s2sout]` counts, as a stanza queued while the s2s link comes up is sent without
// that line, nor the hand-over to a component, which prosody 0.12 does not log.)
//
// Prosody not listening within 20 s is a HarnessError (not a verdict); a Switchboard that
// does not attach as its component is a verdict.
//
// Over SIP (overSip, at the end) there is no prosody: A and B each run the SIP gateway on
// their own address and call each other directly (`--sip-federation`); what crossed is read
// from the two Switchboards' logs.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync, openSync, closeSync, rmSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { HarnessError } from './chromium.mjs';
import { sleep, waitFor, socketOwner, freePortTcpUdp } from './harness.mjs';
import * as calls from './calls-lab.mjs';
import { COUNT_PCS } from './sfu-helpers.mjs';

/** The component secret of both prosody servers (the lab's only secret). */
export const SECRET = 'trapezoid-secret';
const PROSODY_START_LIMIT_MS = Number(process.env.SB_PROSODY_STARTUP_TIMEOUT_MS || 20000);
/** How long a Switchboard has to attach to its prosody as the component (a verdict). */
const COMPONENT_LIMIT_MS = 15000;

/** The two sides: the call domain, its prosody's address, the component Switchboard attaches as. */
export const SIDES = {
  a: { name: 'a', domain: 'a.test', component: 'sb.a.test', ip: '127.0.0.1' },
  b: { name: 'b', domain: 'b.test', component: 'sb.b.test', ip: '127.0.0.2' },
};

// ---------------------------------------------------------------------------------------
// prosody

const running = new Set();
process.on('exit', () => {
  for (const c of running) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/** The prosody config of every federation lab (placeholders @NAME@; see its header). */
export const PROSODY_TEMPLATE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../federation/prosody.cfg.lua.in');

/**
 * PROSODY_TEMPLATE filled in for `side` (the same config as crates/xmpp/src/lab.rs and
 * tests/federation/jingle-peer-lab.sh render); a placeholder left over is a HarnessError.
 */
export function prosodyConfig(side, home, log, hosts) {
  const values = { HOME: home, LOG: log, IP: side.ip, DOMAIN: side.domain, HOSTS: hosts, SECRET };
  const text = readFileSync(PROSODY_TEMPLATE, 'utf8').replace(/@([A-Z]+)@/g, (m, k) => (k in values ? values[k] : m));
  const left = text.match(/@[A-Z]+@/);
  if (left) throw new HarnessError(`${PROSODY_TEMPLATE}: no value for ${left[0]}`, 0, new Error('template'));
  return text;
}

/** TCP connect to host:port succeeds. */
function listening(host, port) {
  return new Promise((resolve) => {
    const c = net.connect(port, host);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** One prosody server of the lab. */
export class Prosody {
  constructor(side, child, home, logFile, config) {
    this.side = side;
    this.child = child;
    this.home = home;
    this.logFile = logFile;
    this.config = config;
  }

  /** A c2s account `user@<domain>` with `password` (prosodyctl; failing is a HarnessError). */
  register(user, password) {
    const t0 = Date.now();
    try {
      execFileSync('prosodyctl', ['--config', this.config, 'register', user, this.side.domain, password], { stdio: 'pipe', timeout: 15000 });
    } catch (e) {
      throw new HarnessError(`prosodyctl register ${user}@${this.side.domain}`, Date.now() - t0, new Error(`${e.message} ${e.stderr || ''}`));
    }
  }

  get pid() { return this.child.pid; }

  /** Its debug log from byte `from` on. */
  log(from = 0) {
    try {
      return readFileSync(this.logFile).subarray(from).toString('utf8');
    } catch {
      return '';
    }
  }

  /** Bytes of log so far (a mark for log(from)). */
  logSize() {
    try {
      return readFileSync(this.logFile).length;
    } catch {
      return 0;
    }
  }

  tail(n = 30) {
    return this.log().split('\n').slice(-n).join('\n');
  }

  /**
   * How many times `component` attached to this prosody (`External component successfully
   * authenticated`, logged under the component's host) since byte `from`.
   */
  componentLogins(component, from = 0) {
    return this.log(from).split('\n').filter((l) => l.startsWith(`${component}:component`) || l.includes(` ${component}:component`))
      .filter((l) => l.includes('External component successfully authenticated')).length;
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      if (!(await Promise.race([gone.then(() => true), sleep(3000)]))) {
        this.child.kill('SIGKILL');
        await gone;
      }
    }
    running.delete(this.child);
  }
}

async function startProsody(side, dir, hosts) {
  const t0 = Date.now();
  const home = path.join(dir, side.name);
  mkdirSync(path.join(home, 'data'), { recursive: true });
  const logFile = path.join(home, 'prosody.log');
  const cfg = path.join(home, 'prosody.cfg.lua');
  writeFileSync(cfg, prosodyConfig(side, home, logFile, hosts));
  const out = openSync(path.join(home, 'stdout.log'), 'a');
  const child = spawn('prosody', ['--config', cfg, '-F'], { stdio: ['ignore', out, out] });
  closeSync(out);
  running.add(child);
  const p = new Prosody(side, child, home, logFile, cfg);
  let spawnError = null;
  child.once('error', (e) => { spawnError = e; });
  for (;;) {
    if (await listening(side.ip, 5347) && await listening(side.ip, 5269) && await listening(side.ip, 5222)) return p;
    if (spawnError || child.exitCode !== null || Date.now() - t0 > PROSODY_START_LIMIT_MS) {
      let stdout = '';
      try { stdout = readFileSync(path.join(home, 'stdout.log'), 'utf8'); } catch { /* none */ }
      await p.stop();
      throw new HarnessError(`prosody ${side.domain} did not listen on ${side.ip}:5347, :5269 and :5222`, Date.now() - t0,
        new Error(`${spawnError ? `${spawnError.message} (install Debian's prosody)` : `exit ${child.exitCode}`}; ${stdout.slice(-800)}${p.tail(15)}`));
    }
    await sleep(100);
  }
}

/**
 * Both prosody servers (a.test on 127.0.0.1, b.test on 127.0.0.2), each with its component
 * open for Switchboard. Resolves to { a, b, dir, stop() }; not listening within 20 s is a
 * HarnessError.
 */
export async function startProsodyPair() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-trapezoid-'));
  const hosts = path.join(dir, 'hosts');
  writeFileSync(hosts, Object.values(SIDES).map((s) => `${s.ip} ${s.domain} ${s.component}`).join('\n') + '\n');
  const a = await startProsody(SIDES.a, dir, hosts);
  let b;
  try {
    b = await startProsody(SIDES.b, dir, hosts);
  } catch (e) {
    await a.stop();
    throw e;
  }
  return {
    a, b, dir,
    async stop() {
      await Promise.all([a.stop(), b.stop()]);
      if (!process.env.SB_KEEP_PROSODY_LOGS) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------
// Switchboard, attached to its prosody

/** The options that make `side`'s Switchboard a component of its prosody, federating with `peers`. */
export function federationArgs(side, peers) {
  return ['--call-domain', side.domain, '--xmpp-component', side.component, '--xmpp-server', `${side.ip}:5347`,
    '--xmpp-secret', SECRET, '--federation-allow', peers.map((p) => p.domain).join(',')];
}

/**
 * Switchboard for `side` (on its address) in test scope `s`. With `federation` (default) it
 * attaches to `prosody` as the side's component, federating with the other side; resolves
 * once prosody logged the component's login (within 15 s: else a verdict, with both logs).
 * `extra`: more server options.
 */
export async function startSideServer(s, side, prosody, { federation = true, extra = [] } = {}) {
  const other = side === SIDES.a ? SIDES.b : SIDES.a;
  const mark = prosody.logSize();
  const args = federation ? federationArgs(side, [other]) : ['--call-domain', side.domain];
  const server = await s.server({ host: side.ip, args: [...args, ...extra] });
  server.side = side;
  if (federation) {
    await waitFor(() => prosody.componentLogins(side.component, mark) > 0, { timeout: COMPONENT_LIMIT_MS, interval: 100, what: `Switchboard ${side.name.toUpperCase()} attached to prosody ${side.domain} as ${side.component}` })
      .catch((e) => {
        e.message += `\n--- prosody ${side.domain}:\n${prosody.tail(20)}\n--- switchboard:\n${server.lines.slice(-20).join('\n')}`;
        throw e;
      });
  }
  return server;
}

// ---------------------------------------------------------------------------------------
// Stanzas through the servers

const STANZA_LINE = /\bReceived\[(component|s2sin)\]: <(message|iq|presence)\b([^>]*)>/;

/** `x@d/r` -> `d` */
const domainOf = (jid) => String(jid || '').replace(/^[^@/]*@/, '').replace(/\/.*$/, '');
/** Which side a JID belongs to (its domain is the side's or a subdomain of it), or null. */
function sideOf(jid) {
  const d = domainOf(jid);
  for (const side of Object.values(SIDES)) if (d === side.domain || d.endsWith(`.${side.domain}`)) return side.name;
  return null;
}

/** Where each prosody's log stands now: the start of a stanza count. */
export function stanzaMark(lab) {
  return { a: lab.a.logSize(), b: lab.b.logSize() };
}

/**
 * Stanzas (message, iq, presence) between the two sides since `mark`, per direction:
 * `aToB: { fromComponent, acrossS2s, kinds }` = taken by a.test from A's component, taken by
 * b.test over s2s, and of those over s2s how many of each element (`{message: 2, iq: 5}`:
 * XEP-0353 messages, Jingle IQs and their results); `bToA` the same way back. An error
 * bounced for an unknown server (`c.test`) is from neither side and not counted.
 */
export function stanzasSince(lab, mark) {
  const count = () => ({ fromComponent: 0, acrossS2s: 0, kinds: {} });
  const out = { aToB: count(), bToA: count() };
  for (const [name, prosody] of [['a', lab.a], ['b', lab.b]]) {
    for (const line of prosody.log(mark[name]).split('\n')) {
      const m = line.match(STANZA_LINE);
      if (!m) continue;
      const attr = (k) => (m[3].match(new RegExp(`\\s${k}='([^']*)'`)) || [])[1];
      const from = sideOf(attr('from'));
      const to = sideOf(attr('to'));
      if (!from || !to || from === to) continue;
      const dir = from === 'a' ? out.aToB : out.bToA;
      if (m[1] === 'component' && name === from) dir.fromComponent++;
      else if (m[1] === 's2sin' && name === to) {
        dir.acrossS2s++;
        dir.kinds[m[2]] = (dir.kinds[m[2]] || 0) + 1;
      }
    }
  }
  return out;
}

/**
 * The stanzas of a call since `mark` crossed both servers both ways: some went each way,
 * and every one a component sent to the other side was taken by the other server over s2s
 * (waiting up to 5 s for the last ones). Returns the counts.
 */
export async function expectStanzasCrossed(lab, mark) {
  let last;
  try {
    return await waitFor(() => {
      last = stanzasSince(lab, mark);
      const whole = (d) => d.fromComponent > 0 && d.acrossS2s === d.fromComponent;
      return whole(last.aToB) && whole(last.bToA) && last;
    }, { timeout: 5000, interval: 250, what: 'every stanza of the call through both prosody servers' });
  } catch (e) {
    e.message += `: ${JSON.stringify(last)}`;
    throw e;
  }
}

/** One line for a report: `A→B 7 (7 over s2s: 2 message, 5 iq), B→A ...`. */
export const stanzaSummary = (c) => {
  const one = (d) => `${d.fromComponent} (${d.acrossS2s} over s2s: ${Object.entries(d.kinds).map(([k, n]) => `${n} ${k}`).join(', ') || 'none'})`;
  return `A→B ${one(c.aToB)}, B→A ${one(c.bToA)}`;
};

// ---------------------------------------------------------------------------------------
// Pages: lines, calls, media on every connection of the page

/**
 * A lobby page of `server` signed in as `user` (`?user=`), its connections counted. The
 * Participant is named `name@A` (its side) and gets `user` and `address` (`user@domain` of
 * the server's side).
 */
export async function signIn(s, browser, server, user, name) {
  const p = await calls.signIn(s, browser, server, user, name, { label: `${name}@${server.side.name.toUpperCase()}`, initScript: COUNT_PCS });
  p.address = `${user}@${server.side.domain}`;
  p.server = server;
  return p;
}

export { dial } from './calls-lab.mjs';

/** The incoming-call screen of `p`, naming `caller` (an address); returns the dialog. */
export const ringsAt = (p, caller, timeout = 15000) => calls.ringsAt(p, caller, timeout);

/** calls-lab.mjs's outcome, waiting 15 s by default (across two servers). */
export const outcome = (p, reason, { text = null, timeout = 15000 } = {}) => calls.outcome(p, reason, { text, timeout });

/** The page's call view shows and its call room session is open (within 20 s across two servers). */
export const inCall = (p, timeout = 20000) => calls.inCall(p, timeout);

/**
 * What page `p` receives on each of its live connections: inbound video frames decoded and
 * size, inbound audio packets and energy, and the selected candidate pair.
 */
export function pageMedia(p) {
  return p.page.evaluate(async () => {
    const out = [];
    for (const [index, pc] of (window.__pcs || []).entries()) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      const c = { index, state: pc.connectionState, framesDecoded: 0, frameWidth: 0, audioPackets: 0, audioEnergy: 0, pair: null };
      let pairId = null;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') {
          c.framesDecoded = Math.max(c.framesDecoded, s.framesDecoded || 0);
          c.frameWidth = Math.max(c.frameWidth, s.frameWidth || 0);
        } else if (s.kind === 'audio') {
          c.audioPackets = Math.max(c.audioPackets, s.packetsReceived || 0);
          c.audioEnergy = Math.max(c.audioEnergy, s.totalAudioEnergy || 0);
        }
      });
      const pair = pairId ? stats.get(pairId) : null;
      if (pair) {
        const pick = (x) => x && { candidateType: x.candidateType, address: x.address, port: x.port, protocol: x.protocol, url: x.url };
        c.pair = { local: pick(stats.get(pair.localCandidateId)), remote: pick(stats.get(pair.remoteCandidateId)), bytesReceived: pair.bytesReceived };
      }
      out.push(c);
    }
    return out;
  });
}

/**
 * Page `p` decodes video and hears audio on one of its connections: framesDecoded, audio
 * packets and audio energy each strictly rise over 3 samples 600 ms apart, with a frame size.
 * Returns that connection's last sample (with its selected pair).
 */
export async function expectDecoding(p, { timeout = 30000, interval = 600 } = {}) {
  const deadline = Date.now() + timeout;
  const seen = [];
  const rising = (xs) => xs.every((x, i) => i === 0 || x > xs[i - 1]);
  for (;;) {
    seen.push(await pageMedia(p));
    const win = seen.slice(-3);
    if (win.length === 3) {
      for (const c of win[2]) {
        const xs = win.map((w) => w.find((x) => x.index === c.index));
        if (xs.some((x) => !x)) continue;
        if (xs[0].framesDecoded > 0 && c.frameWidth > 0 && rising(xs.map((x) => x.framesDecoded)) &&
            rising(xs.map((x) => x.audioPackets)) && rising(xs.map((x) => x.audioEnergy))) return c;
      }
    }
    if (Date.now() > deadline) {
      throw new Error(`${p.name}: no connection decodes video and audio within ${timeout} ms: ${JSON.stringify(seen.slice(-3))}`);
    }
    await sleep(interval);
  }
}

/** The program a pid runs (its /proc exe), or '?'. */
function exeOf(pid) {
  try { return readlinkSync(`/proc/${pid}/exe`); } catch { return '?'; }
}

/**
 * The media of a call went browser to browser: each page's selected pair is host to host over
 * UDP on loopback, each page's remote candidate is the other page's local one, and the UDP
 * socket behind each of them belongs to a Chromium process, none of the `servers` and of no
 * process in `others` (pids: the prosody servers) (so no relay, no server address is on the
 * path). `aConn`, `bConn`: expectDecoding's results. Returns a one-line description.
 */
export function expectBrowserToBrowser(aConn, bConn, { servers = [], others: pids = [] } = {}) {
  const others = new Set([...servers.map((s) => s.pid), ...pids]);
  for (const c of [aConn, bConn]) {
    assert.ok(c.pair && c.pair.local && c.pair.remote, `a selected candidate pair: ${JSON.stringify(c)}`);
    for (const end of [c.pair.local, c.pair.remote]) {
      assert.equal(end.candidateType, 'host', `host candidates only, no relay or reflexive: ${JSON.stringify(c.pair)}`);
      assert.equal(end.protocol, 'udp', `over UDP: ${JSON.stringify(c.pair)}`);
      assert.match(end.address, /^127\./, `on loopback: ${JSON.stringify(c.pair)}`);
    }
  }
  const same = (x, y) => x.address === y.address && x.port === y.port;
  assert.ok(same(aConn.pair.remote, bConn.pair.local) && same(bConn.pair.remote, aConn.pair.local),
    `each page's remote candidate is the other page's local one: ${JSON.stringify(aConn.pair)} vs ${JSON.stringify(bConn.pair)}`);
  for (const end of [aConn.pair.local, bConn.pair.local]) {
    const pid = socketOwner(end.port, 'udp');
    assert.ok(pid, `an owner of UDP port ${end.port}`);
    assert.ok(!others.has(pid), `UDP ${end.address}:${end.port} belongs to a server process (${pid})`);
    assert.match(exeOf(pid), /chrom/i, `UDP ${end.address}:${end.port} belongs to ${exeOf(pid)} (pid ${pid}), not Chromium`);
  }
  return `${aConn.pair.local.address}:${aConn.pair.local.port} <-> ${bConn.pair.local.address}:${bConn.pair.local.port} (host/udp, both Chromium's)`;
}

// ---------------------------------------------------------------------------------------
// Setup times

/**
 * Record on caller page `p` when each outgoing call is dialled, rung, answered and its first
 * remote video frame decoded (Date.now(), in the page: window.__setups). Call after signIn;
 * calling it again empties the record.
 */
export function recordSetups(p) {
  return p.page.evaluate(() => {
    if (window.__setups) {
      window.__setups.length = 0;
      return;
    }
    window.__setups = [];
    window.sbApp.line.on('call', (call) => {
      if (call.direction !== 'outgoing') return;
      const t = { dial: Date.now() };
      window.__setups.push(t);
      call.on('ringing', () => { t.ringing ??= Date.now(); });
      call.on('answered', () => { t.answered ??= Date.now(); });
      call.on('ended', () => { t.ended ??= Date.now(); });
      // The first decoded frame on any connection made since the dial (polled every 20 ms).
      const before = new Set(window.__pcs);
      const poll = async () => {
        if (t.media || t.ended) return;
        for (const pc of window.__pcs) {
          if (before.has(pc) || pc.connectionState === 'closed') continue;
          let frames = 0;
          (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames = Math.max(frames, s.framesDecoded || 0); });
          if (frames > 0) { t.media ??= Date.now(); return; }
        }
        setTimeout(poll, 20);
      };
      poll();
    });
  });
}

/** Callee page `p` accepts every incoming call at once (the Accept button, clicked in the page). */
export function autoAccept(p) {
  return p.page.evaluate(() => {
    window.sbApp.line.on('incoming', () => setTimeout(() => document.querySelector('#accept-call').click(), 0));
  });
}

/** The setups recorded on `p` (recordSetups). */
export const setups = (p) => p.page.evaluate(() => window.__setups);

export const median = (xs) => {
  const v = [...xs].sort((x, y) => x - y);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

// ---------------------------------------------------------------------------------------
// The two ways across: XMPP/Jingle through both prosody servers, or SIP between the two
// Switchboards directly. trapezoid.test.mjs runs the same calls over each; a way says how
// its servers start and what crossing the servers means for it.
//
//   { name, label, crossing (what crossed() checks, in words), servers(s, extra) -> {a, b}
//     (starting the way's lab, once, on the first call), stop(), others() (pids that must
//     not own a media socket), mark(), crossed(mark, call) -> report line (throws when the
//     call's signalling did not cross as it should), nothingCrossed(mark), diagnostics() }
//
// `call` = { caller: 'a' | 'b', to: address, outcome: the call book's end reason }.

/** Over XMPP/Jingle: each Switchboard the component of its prosody, s2s between them. */
export function overXmpp() {
  let lab = null;
  return {
    name: 'xmpp',
    label: 'XMPP/Jingle',
    crossing: 'the stanzas crossed both prosody servers',
    async stop() { await lab?.stop(); },
    async servers(s, extra = []) {
      lab ??= await startProsodyPair();
      const a = await startSideServer(s, SIDES.a, lab.a, { extra });
      const b = await startSideServer(s, SIDES.b, lab.b, { extra });
      return { a, b };
    },
    others: () => [lab.a.pid, lab.b.pid],
    mark: () => stanzaMark(lab),
    crossed: async (mark) => stanzaSummary(await expectStanzasCrossed(lab, mark)),
    nothingCrossed(mark) {
      const c = stanzasSince(lab, mark);
      assert.equal(c.aToB.acrossS2s + c.bToA.acrossS2s, 0, `nothing crossed to the other server: ${JSON.stringify(c)}`);
    },
    diagnostics: () => (lab ? `\n--- prosody a.test:\n${lab.a.tail(25)}\n--- prosody b.test:\n${lab.b.tail(25)}` : ''),
    /** The stanza counts since `mark` (the benchmark's stanzas per call). */
    stanzas: (mark) => stanzasSince(lab, mark),
  };
}

/**
 * The SIP status that ends a call at the caller, by the call book's end reason (the table
 * of docs/sip.md "Federation"); `null`: the call was answered, then hung up with a BYE.
 */
const SIP_STATUS = { hangup: null, declined: [603], busy: [486, 600], unreachable: [404, 410, 480, 484, 503, 604], cancelled: [487] };

/** The `SIP federation: …` lines of a server's log from line `from` on, their fields read. */
function sipCalls(server, from) {
  const out = [];
  for (const line of server.lines.slice(from)) {
    const m = line.match(/SIP federation: call (in|out|ended)\b(.*)$/);
    if (!m) continue;
    const field = (k) => (m[2].match(new RegExp(`\\b${k}=(\\S+)`)) || [])[1];
    const status = (m[2].match(/\bstatus=Some\((\d+)\)/) || [])[1];
    out.push({ what: m[1], id: field('id'), from: field('from'), to: field('to'), status: status ? Number(status) : null, line });
  }
  return out;
}

/**
 * Over SIP: each Switchboard's SIP gateway on its own address and a fixed free port, with
 * `--sip-federation` naming the other's; no prosody, no `--xmpp-*`. What crossed is read
 * from the servers' logs: the caller's `call out` to the callee's address, the callee's
 * `call in` for that user from the caller's domain, and the caller's `call ended` with the SIP status of the
 * call's end (603, 486, 404, 487; none after a BYE).
 */
export function overSip() {
  let pair = null;
  return {
    name: 'sip',
    label: 'SIP',
    crossing: 'the INVITE went from one Switchboard to the other',
    async stop() {},
    async servers(s, extra = []) {
      const port = { a: await freePortTcpUdp(SIDES.a.ip), b: await freePortTcpUdp(SIDES.b.ip) };
      const start = async (side, other) => {
        const server = await s.server({
          host: side.ip,
          args: ['--call-domain', side.domain, '--sip-listen', `${side.ip}:${port[side.name]}`,
            '--sip-federation', `${other.domain}=${other.ip}:${port[other.name]}`, '--federation-allow', other.domain, ...extra],
        });
        server.side = side;
        assert.ok(server.lines.some((l) => l.includes(`SIP gateway on udp://${side.ip}:${port[side.name]}`)),
          `Switchboard ${side.name.toUpperCase()}: its SIP gateway on ${side.ip}:${port[side.name]}:\n${server.lines.slice(-20).join('\n')}`);
        return server;
      };
      pair = { a: await start(SIDES.a, SIDES.b), b: await start(SIDES.b, SIDES.a) };
      return pair;
    },
    others: () => [],
    mark: () => ({ a: pair.a.lines.length, b: pair.b.lines.length }),
    async crossed(mark, { caller, to, outcome }) {
      const callee = caller === 'a' ? 'b' : 'a';
      const from = `@${SIDES[caller].domain}`;
      const user = to.split('@')[0];
      const want = SIP_STATUS[outcome];
      let seen;
      await waitFor(() => {
        const out = sipCalls(pair[caller], mark[caller]);
        const inn = sipCalls(pair[callee], mark[callee]);
        const placed = out.find((x) => x.what === 'out' && x.to === to);
        const ended = placed && out.find((x) => x.what === 'ended' && x.id === placed.id);
        const took = inn.find((x) => x.what === 'in' && x.from?.endsWith(from) && [to, user].includes(x.to));
        seen = { placed, ended, took };
        return placed && took && ended && (want === null ? ended.status === null : want.includes(ended.status));
      }, { timeout: 5000, interval: 250, what: `the call ${caller.toUpperCase()} -> ${to} over SIP, ended ${want === null ? 'by BYE' : want.join('|')}` })
        .catch((e) => {
          e.message += `: ${JSON.stringify(seen)}`;
          throw e;
        });
      const end = seen.ended.status === null ? 'BYE' : String(seen.ended.status);
      return `${caller.toUpperCase()} placed ${seen.placed.id} to ${to}, ${callee.toUpperCase()} took it as ${seen.took.id}; ended ${end}`;
    },
    nothingCrossed(mark) {
      for (const name of ['a', 'b']) {
        const inn = sipCalls(pair[name], mark[name]).filter((x) => x.what === 'in');
        assert.equal(inn.length, 0, `no SIP call reached ${name.toUpperCase()}: ${inn.map((x) => x.line).join('\n')}`);
      }
    },
    diagnostics: () => '',
  };
}

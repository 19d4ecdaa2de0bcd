// Harness of the Chromium test suite: starts `switchboard serve` on free ports, launches
// Debian's Chromium through playwright-core, opens room pages (one browser context per
// participant) and reads what a user would check from the page: remote tiles, decoded
// video/audio (getStats of the SDK's RTCPeerConnections), the selected ICE candidate pair,
// chat, the error banner. Meant to run inside a loopback-only network namespace (run.sh).
//
// Contract with the web app and SDK: /tmp/contract.md (copied in tests/browser/README.md):
// window.sbApp = { sb, ready }, .tile.remote[data-peer-id], #chat-input/#chat-send/#chat-log,
// #error[data-code], query params name/token/policy/transport.

import { spawn, execFileSync } from 'node:child_process';
import { randomBytes, createHmac } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import dgram from 'node:dgram';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { launch, warmUp, loadPage } from './chromium.mjs';

export { loadPage, HarnessError, isHarnessFailure } from './chromium.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const ARTIFACTS = process.env.SB_ARTIFACTS || path.join(HERE, 'artifacts');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export function serverBin() {
  const bin = process.env.SWITCHBOARD_BIN || path.join(ROOT, 'target/debug/switchboard');
  if (!existsSync(bin)) throw new Error(`switchboard binary not found at ${bin} (run.sh builds it)`);
  return bin;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value; throws `what` with the last value/error on timeout. */
export async function waitFor(fn, { timeout = 15000, interval = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last, lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (${detail})`);
    }
    await sleep(interval);
  }
}

export function randomId(prefix = '') {
  return prefix + randomBytes(4).toString('hex');
}

// ---------------------------------------------------------------------------------------
// Children: every process we start is recorded and killed on exit, whatever happens.

const children = new Set();
function reapAll() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', reapAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { reapAll(); process.exit(130); });
}

/**
 * Ports handed out lately: a port is only probed free, not held, so two calls in a row
 * (the SFU's port, then the server's) could get the same one; never hand one out twice
 * within the last few hundred.
 */
const handedOut = [];

/**
 * A port free for both TCP and UDP on `host` (TURN listens on the same number for both);
 * another loopback address such as 127.0.0.2 for a second server (tests/browser/trapezoid-lab.mjs).
 */
export async function freePortTcpUdp(host = '127.0.0.1') {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, host, () => { const p = s.address().port; s.close(() => resolve(p)); });
    });
    // Relay ports are 49152-65535: stay out of that range so a relay never shadows us.
    if (port >= 49152 || handedOut.includes(port)) continue;
    const ok = await new Promise((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, host, () => u.close(() => resolve(true)));
    });
    if (ok) {
      handedOut.push(port);
      if (handedOut.length > 500) handedOut.shift();
      return port;
    }
  }
  throw new Error('no free TCP+UDP port below 49152');
}

const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * Start `switchboard serve` with a fresh REST secret on free ports.
 * opts.args: extra options (e.g. ['--room-capacity', '2']), or a function ({httpPort}) => options
 *   (the HTTP port is then chosen beforehand).
 * opts.port0: pass `-p 0` (default: pick one port free for UDP and TCP; see README "Known issues").
 * opts.metricsListen: `--metrics-listen` (default `off`), e.g. `127.0.0.1:PORT` for tests that read /metrics.
 * opts.host: the loopback address to listen on (HTTP, STUN/TURN: `-L`), default 127.0.0.1; a second
 *   server of the same test takes another, e.g. 127.0.0.2 (tests/browser/trapezoid-lab.mjs).
 * Resolves to { url, httpPort, turnPort (udp), turnTcpPort, secret, pid, log(), stop() }.
 */
export async function startServer(opts = {}) {
  const secret = opts.secret || randomBytes(12).toString('hex');
  const host = opts.host || '127.0.0.1';
  const port = opts.port0 || process.env.SB_PORT0 === '1' ? 0 : await freePortTcpUdp(host);
  // The HTTP port is chosen here when the extra options need to name it (opts.args as a function).
  const httpPort = typeof opts.args === 'function' ? await freePortTcpUdp(host) : 0;
  const extra = typeof opts.args === 'function' ? opts.args({ httpPort }) : (opts.args || []);
  const args = ['serve', '-p', String(port), ...(opts.host ? ['-L', host] : []), '--http-listen', `${host}:${httpPort}`, '--metrics-listen', opts.metricsListen || 'off',
    '--static-auth-secret', secret, '--drain-timeout', '1', ...extra];
  // Servers run one after another in the same namespace: the SFU (when the binary has one)
  // takes any free UDP port unless the test names one.
  const sfuEnv = args.includes('--sfu-port') ? {} : { SWITCHBOARD_SFU_PORT: '0' };
  const child = spawn(serverBin(), args, {
    env: { ...process.env, NO_COLOR: '1', RUST_BACKTRACE: '1', ...sfuEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const lines = [];
  let exited = null;
  const waiters = new Set();
  const onLine = (line) => {
    line = line.replace(ANSI, '');
    lines.push(line);
    if (process.env.SB_VERBOSE) process.stderr.write(`[server] ${line}\n`);
    for (const w of waiters) w();
  };
  for (const stream of [child.stdout, child.stderr]) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1); }
    });
  }
  const exitPromise = new Promise((resolve) => child.on('exit', (code, sig) => {
    exited = { code, sig };
    children.delete(child);
    for (const w of waiters) w();
    resolve(exited);
  }));
  const find = (re) => { for (const l of lines) { const m = l.match(re); if (m) return m; } return null; };
  await new Promise((resolve, reject) => {
    // Generous: on a new machine the first start reads the debug binary from disk.
    const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`server did not start in 30 s:\n${lines.join('\n')}`)); }, 30000);
    const check = () => {
      if (find(/HTTP API on http:\/\/([^/\s]+)\//)) { clearTimeout(timer); waiters.delete(check); resolve(); }
      else if (exited) { clearTimeout(timer); waiters.delete(check); reject(new Error(`server exited (${JSON.stringify(exited)}) before listening; args ${args.join(' ')}:\n${lines.join('\n')}`)); }
    };
    waiters.add(check);
    check();
  });
  const http = find(/HTTP API on http:\/\/([^/\s]+)\//)[1];
  const udp = find(/STUN\/TURN listening on udp:\/\/(\S+)/);
  const tcp = find(/STUN\/TURN listening on tcp:\/\/(\S+)/);
  const portOf = (a) => Number(a.slice(a.lastIndexOf(':') + 1));
  const server = {
    url: `http://${http}`,
    httpPort: portOf(http),
    turnPort: udp ? portOf(udp[1]) : null,
    turnTcpPort: tcp ? portOf(tcp[1]) : null,
    secret,
    pid: child.pid,
    args,
    lines,
    log: () => lines.join('\n'),
    get exited() { return exited; },
    async stop() {
      if (exited) return exited;
      child.kill('SIGTERM');
      let t = await Promise.race([exitPromise, sleep(1500)]);
      if (!t) { child.kill('SIGTERM'); t = await Promise.race([exitPromise, sleep(1500)]); } // second signal: exit now
      if (!t) { child.kill('SIGKILL'); t = await exitPromise; }
      return t;
    },
  };
  return server;
}

/** Run `switchboard token ...` and return the JWT it prints. */
export function mintToken({ secret, room, identity, ttl, grant }) {
  const args = ['token', '--secret', secret, '--room', room];
  if (identity) args.push('--identity', identity);
  if (ttl !== undefined) args.push('--ttl', String(ttl));
  if (grant) args.push('--grant', grant);
  return execFileSync(serverBin(), args, { encoding: 'utf8' }).trim();
}

/** An HS256 JWT built here (independently of the server's minting), e.g. an expired one. */
export function signJwt(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/**
 * Close, from the server side, every established TCP connection whose local port is `port`
 * (ss -K: SOCK_DESTROY, the peer sees a reset). Returns how many sockets were killed.
 */
export function killTcp(port) {
  const out = execFileSync('ss', ['-K', '-H', '-t', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim()).length;
}

/** Established TCP connections with local port `port`. */
export function countTcp(port) {
  const out = execFileSync('ss', ['-H', '-t', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim()).length;
}

/** The pid owning the UDP/TCP socket bound to local port `port` (ss -p), or null. */
export function socketOwner(port, proto = 'udp') {
  const out = execFileSync('ss', ['-H', '-a', '-n', '-p', proto === 'udp' ? '-u' : '-t', `( sport = :${port} )`], { encoding: 'utf8' });
  const m = out.match(/pid=(\d+)/);
  return m ? Number(m[1]) : null;
}

// ---------------------------------------------------------------------------------------
// Browser

/**
 * A WAV file of a steady tone (16-bit mono), for `--use-file-for-fake-audio-capture`: the
 * default fake microphone only beeps briefly, which no speech detector takes for a voice.
 * Returns its path (in the OS temp folder).
 */
export function toneWav({ hz = 440, seconds = 2, amplitude = 0.3, rate = 48000 } = {}) {
  const n = Math.round(seconds * rate);
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * amplitude * 32767), 44 + i * 2);
  const file = path.join(os.tmpdir(), `switchboard-tone-${hz}-${process.pid}.wav`);
  writeFileSync(file, buf);
  return file;
}

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-features=WebRtcHideLocalIpsWithMdns', // no .local mDNS candidates
  '--allow-loopback-in-peer-connection', // 127.0.0.1 host candidates (the netns has only lo)
];

/**
 * Chromium, started and warmed up under the harness's own limits (chromium.mjs): a
 * slow first start on a new machine is a harness matter, never a test's verdict.
 * `extraArgs`: more Chromium switches (e.g. a fake microphone file).
 */
export async function launchBrowser(extraArgs = []) {
  const browser = await launch(chromium, { executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs] });
  try {
    const ms = await warmUp(browser);
    process.stderr.write(`[harness] Chromium ${browser.version()} warmed up in ${(ms / 1000).toFixed(1)} s\n`);
  } catch (e) {
    await browser.close().catch(() => {});
    throw e;
  }
  return browser;
}

/**
 * One participant: its own browser context and page, with console errors and uncaught
 * page errors recorded (assertNoPageErrors fails the test on the latter).
 */
export class Participant {
  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.pageErrors = [];
    this.consoleErrors = [];
    this.console = [];
    page.on('pageerror', (e) => this.pageErrors.push(`${e.name}: ${e.message}\n${e.stack || ''}`));
    page.on('console', (m) => {
      const line = `[${m.type()}] ${m.text()}`;
      this.console.push(line);
      if (this.console.length > 400) this.console.shift();
      if (m.type() === 'error') this.consoleErrors.push(m.text());
      if (process.env.SB_VERBOSE) process.stderr.write(`[${this.name}] ${line}\n`);
    });
    page.on('crash', () => this.pageErrors.push('page crashed'));
  }

  get url() { return this.page.url(); }

  async close() {
    try { await this.context.close(); } catch { /* browser already gone */ }
  }

  /** Resolves with the SDK's peer id once `window.sbApp.ready` resolved (joined the room). */
  async joined(timeout = 15000) {
    await this.page.waitForFunction(() => !!(window.sbApp && window.sbApp.ready), null, { timeout });
    const id = await this.page.evaluate(async () => { await window.sbApp.ready; return window.sbApp.sb.peerId; });
    if (!id) throw new Error(`${this.name}: sbApp.ready resolved but sb.peerId is ${id}`);
    this.peerId = id;
    return id;
  }

  /** Peer ids of the remote tiles currently shown. */
  async remoteTileIds() {
    return this.page.$$eval('.tile.remote', (els) => els.map((e) => e.getAttribute('data-peer-id')));
  }

  /** Wait until exactly `ids` (or `n` tiles when ids is a number) are shown as remote tiles. */
  async waitRemoteTiles(ids, timeout = 20000) {
    return waitFor(async () => {
      const shown = await this.remoteTileIds();
      if (typeof ids === 'number') return shown.length === ids && shown;
      return shown.length === ids.length && ids.every((id) => shown.includes(id)) && shown;
    }, { timeout, what: `${this.name}: remote tiles ${JSON.stringify(ids)}` });
  }

  /** Media as seen by this page for remote peer `id`: inbound-rtp stats plus the tile's <video>. */
  async media(id) {
    return this.page.evaluate(async (id) => {
      const peer = window.sbApp.sb.peers.get(id);
      const tile = document.querySelector(`.tile.remote[data-peer-id="${CSS.escape(id)}"] video`);
      const out = {
        peer: !!peer, connectionState: peer && peer.pc ? peer.pc.connectionState : null,
        signalingState: peer && peer.pc ? peer.pc.signalingState : null,
        videoWidth: tile ? tile.videoWidth : -1, videos: [], audios: [],
      };
      if (!peer || !peer.pc) return out;
      const stats = await peer.pc.getStats();
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') {
          out.videos.push({ mid: s.mid, trackIdentifier: s.trackIdentifier, framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0, packetsReceived: s.packetsReceived || 0 });
        } else if (s.kind === 'audio') {
          out.audios.push({ mid: s.mid, packetsReceived: s.packetsReceived || 0, totalSamplesReceived: s.totalSamplesReceived || 0, audioLevel: s.audioLevel || 0 });
        }
      });
      out.framesDecoded = Math.max(0, ...out.videos.map((v) => v.framesDecoded));
      out.audioPackets = Math.max(0, ...out.audios.map((a) => a.packetsReceived));
      out.audioSamples = Math.max(0, ...out.audios.map((a) => a.totalSamplesReceived));
      return out;
    }, id);
  }

  /**
   * Assert the video (and with audio:true the audio) from remote peer `id` is flowing:
   * the tile's video has a width, and framesDecoded (audio packetsReceived and
   * totalSamplesReceived) strictly rise across `samples` consecutive samples `interval` ms
   * apart. Sampling goes on until that holds or `timeout` passes (so a momentary stall of an
   * overloaded machine is no failure, a stopped stream is).
   */
  async expectFlowing(id, { audio = false, samples = 3, interval = 600, timeout = 20000 } = {}) {
    const deadline = Date.now() + timeout;
    const seen = [];
    const rising = (xs) => xs.every((x, i) => i === 0 || x > xs[i - 1]);
    for (;;) {
      const m = await this.media(id);
      seen.push(m);
      const win = seen.slice(-samples);
      const series = (k) => win.map((x) => x[k]);
      if (win.length === samples && win[0].framesDecoded > 0 && win.at(-1).videoWidth > 0 && rising(series('framesDecoded')) &&
          (!audio || (rising(series('audioPackets')) && rising(series('audioSamples'))))) {
        return win;
      }
      if (Date.now() > deadline) {
        const last = seen.slice(-8);
        const tail = (k) => last.map((x) => x[k]).join(',');
        throw new Error(`${this.name}: media from ${id} not flowing within ${timeout} ms: framesDecoded ${tail('framesDecoded')}, ` +
          `videoWidth ${tail('videoWidth')}` + (audio ? `, audio packets ${tail('audioPackets')}, samples ${tail('audioSamples')}` : '') +
          `; connectionState ${m.connectionState}`);
      }
      await sleep(interval);
    }
  }

  /** Loudest inbound audioLevel from `id` over `ms` (getStats polled in the page every 100 ms). */
  async loudest(id, ms = 2500) {
    return this.page.evaluate(async ({ id, ms }) => {
      let max = 0;
      for (const end = Date.now() + ms; Date.now() < end;) {
        const peer = window.sbApp.sb.peers.get(id);
        if (peer && peer.pc) {
          (await peer.pc.getStats()).forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'audio') max = Math.max(max, s.audioLevel || 0);
          });
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return max;
    }, { id, ms });
  }

  /** The selected candidate pair towards `id`: { local: {...candidate}, remote: {...}, pair } or null. */
  async selectedPair(id) {
    return this.page.evaluate(async (id) => {
      const peer = window.sbApp.sb.peers.get(id);
      if (!peer || !peer.pc) return null;
      const stats = await peer.pc.getStats();
      let pairId = null;
      stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
      let pair = pairId ? stats.get(pairId) : null;
      if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = pair || s; });
      if (!pair) return null;
      const pick = (c) => c && ({ candidateType: c.candidateType, address: c.address, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol, url: c.url });
      return { local: pick(stats.get(pair.localCandidateId)), remote: pick(stats.get(pair.remoteCandidateId)), state: pair.state, bytesReceived: pair.bytesReceived };
    }, id);
  }

  /** Start recording SDK events (peer-joined, peer-left, state, error, peer-state) in window.__sbEvents. */
  async recordEvents() {
    await this.page.evaluate(() => {
      if (window.__sbEvents) return;
      window.__sbEvents = [];
      const sb = window.sbApp.sb;
      for (const ev of ['peer-joined', 'peer-left', 'state', 'error', 'peer-state', 'joined', 'resumed']) {
        sb.on(ev, (d) => {
          let detail;
          try {
            detail = typeof d === 'string' ? d : JSON.parse(JSON.stringify(d, (k, v) => (k === 'pc' || k === 'streams' || k === 'track' ? undefined : v)));
          } catch { detail = String(d); }
          window.__sbEvents.push({ ev, t: Date.now(), detail });
        });
      }
    });
  }

  async events() {
    return this.page.evaluate(() => window.__sbEvents || []);
  }

  /** Type `text` in the chat box and send it. */
  async chat(text) {
    await this.page.fill('#chat-input', text);
    await this.page.click('#chat-send');
  }

  /** Wait for a chat entry containing `text` (and the sender's name when given). */
  async waitChat(text, from, timeout = 10000) {
    const loc = this.page.locator('#chat-log .chat-msg', { hasText: text });
    await loc.first().waitFor({ state: 'attached', timeout });
    if (from) {
      const t = await loc.first().textContent();
      if (!t.includes(from)) throw new Error(`${this.name}: chat entry "${t}" does not name the sender ${from}`);
    }
  }

  async chatTexts() {
    return this.page.$$eval('#chat-log .chat-msg', (els) => els.map((e) => e.textContent));
  }

  /** Wait for the error banner; returns its data-code. */
  async errorCode(timeout = 15000) {
    const loc = this.page.locator('#error');
    await loc.waitFor({ state: 'visible', timeout });
    await waitFor(() => loc.getAttribute('data-code'), { timeout: 2000, what: `${this.name}: #error data-code` });
    return loc.getAttribute('data-code');
  }

  assertNoPageErrors() {
    if (this.pageErrors.length) {
      throw new Error(`${this.name}: uncaught page error(s):\n${this.pageErrors.join('\n')}`);
    }
  }

  diagnostics() {
    return `--- ${this.name} (${this.url}) peerId=${this.peerId}\n` +
      (this.pageErrors.length ? `page errors:\n${this.pageErrors.join('\n')}\n` : '') +
      `console (last 40):\n${this.console.slice(-40).join('\n')}`;
  }
}

/**
 * Open `/r/<room>` for a new participant in its own context.
 * opts: name, query (extra params), init (functions/strings for addInitScript), route
 * (async (context) => ... to install page.route handlers before navigation), viewport,
 * contextOptions (more options of browser.newContext).
 */
export async function openRoom(browser, server, room, opts = {}) {
  const name = opts.name || randomId('u');
  const context = await browser.newContext({ viewport: opts.viewport || { width: 1280, height: 800 }, ...(opts.contextOptions || {}) });
  const page = await context.newPage();
  const p = new Participant(name, context, page);
  for (const s of opts.init || []) await context.addInitScript(s);
  if (opts.route) await opts.route(context);
  const q = new URLSearchParams({ name, ...(opts.query || {}) });
  if (opts.noName) q.delete('name');
  await loadPage(page, `${server.url}/r/${encodeURIComponent(room)}?${q}`, { ready: () => !!window.sbApp, what: 'the room page' });
  return p;
}

/** Open a plain page of the server (for raw WebSocket/SSE use from the page's origin). */
export async function openPage(browser, server, pathname = '/', opts = {}) {
  const context = await browser.newContext({ viewport: opts.viewport || { width: 1280, height: 800 }, ...(opts.contextOptions || {}) });
  const page = await context.newPage();
  const p = new Participant(opts.name || 'page', context, page);
  await loadPage(page, `${server.url}${pathname}`, { what: `page ${pathname}` });
  return p;
}

/**
 * A test scope: collects participants and servers, closes them at the end, and on failure
 * saves screenshots and appends server logs and page consoles to the error.
 */
export async function scope(label, fn) {
  const t0 = Date.now();
  const s = { participants: [], servers: [] };
  // SB_TIMING=1: print how long each phase of a test took (s.mark('what')).
  s.mark = (what) => { if (process.env.SB_TIMING) process.stderr.write(`[${label}] ${what} at ${Date.now() - t0} ms\n`); };
  s.track = (p) => { s.participants.push(p); return p; };
  s.server = async (opts) => { const sv = await startServer(opts); s.servers.push(sv); return sv; };
  s.open = async (...a) => s.track(await openRoom(...a));
  s.openPage = async (...a) => s.track(await openPage(...a));
  try {
    await fn(s);
    for (const p of s.participants) p.assertNoPageErrors();
  } catch (e) {
    try {
      mkdirSync(ARTIFACTS, { recursive: true });
      const slug = label.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 60);
      for (const p of s.participants) {
        try { await p.page.screenshot({ path: path.join(ARTIFACTS, `${slug}-${p.name}.png`), timeout: 3000 }); } catch { /* closed */ }
      }
      const diag = [
        ...s.participants.map((p) => p.diagnostics()),
        ...s.servers.map((sv) => `--- server ${sv.url} (${sv.args.join(' ')})\n${sv.lines.slice(-60).join('\n')}`),
      ].join('\n');
      writeFileSync(path.join(ARTIFACTS, `${slug}.log`), `${e.stack}\n${diag}\n`);
      e.message += `\n(diagnostics: ${path.join(ARTIFACTS, slug + '.log')})\n${diag.slice(-6000)}`;
    } catch { /* best effort */ }
    throw e;
  } finally {
    s.mark('test body done');
    await Promise.all(s.participants.map((p) => p.close()));
    await Promise.all(s.servers.map((sv) => sv.stop()));
    s.mark('cleaned up');
  }
}

/** Open `names.length` participants in `room`, wait until all joined; returns them in join order. */
export async function openCall(s, browser, server, room, names, opts = {}) {
  const ps = [];
  for (const name of names) {
    const p = await s.open(browser, server, room, { ...opts, name });
    await p.joined();
    ps.push(p);
  }
  return ps;
}

/** Every participant sees every other one as a tile with flowing video (and audio). */
export async function expectMesh(ps, { audio = false } = {}) {
  await Promise.all(ps.map((p) => p.waitRemoteTiles(ps.filter((q) => q !== p).map((q) => q.peerId))));
  const checks = [];
  for (const p of ps) for (const q of ps) if (q !== p) checks.push(p.expectFlowing(q.peerId, { audio }));
  const results = await Promise.allSettled(checks);
  const failed = results.filter((r) => r.status === 'rejected');
  if (failed.length) {
    const err = failed[0].reason;
    if (failed.length > 1) err.message += `\n(and ${failed.length - 1} more: ${failed.slice(1).map((f) => f.reason.message.split('\n')[0]).join('; ')})`;
    throw err;
  }
}

/**
 * A third-party web site on another origin (http://localhost:PORT, a secure context on
 * loopback like the server) that hosts a copy of the SDK under /sdk/ and a blank page at /.
 * Its pages use the SDK with `url: server.url`, i.e. cross-origin. Returns { url, close() }.
 */
export function startThirdPartySite(server) {
  return new Promise((resolve) => {
    const h = http.createServer(async (req, res) => {
      try {
        if (req.url.startsWith('/sdk/')) {
          const r = await fetch(server.url + req.url);
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') || 'text/javascript' });
          res.end(Buffer.from(await r.arrayBuffer()));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><meta charset="utf-8"><title>Third-party app</title><p>an app on another origin</p>');
      } catch (e) {
        res.writeHead(500); res.end(String(e));
      }
    });
    h.listen(0, '127.0.0.1', () => resolve({
      url: `http://localhost:${h.address().port}`,
      close: () => new Promise((r) => { h.closeAllConnections?.(); h.close(() => r()); }),
    }));
  });
}

/**
 * In page p (any page that serves /sdk/switchboard.js), create `window.sb = new Switchboard(opts)`
 * with received data-channel/signal messages collected in window.__got, and join.
 * Resolves to { ok, peerId, transportKind } or { ok: false, code, message }.
 */
export async function sdkJoin(p, opts) {
  const r = await p.page.evaluate(async (opts) => {
    const { Switchboard } = await import('/sdk/switchboard.js');
    const sb = new Switchboard(opts);
    window.sb = sb;
    window.__got = [];
    sb.on('message', (m) => window.__got.push({ from: m.peer && m.peer.id, data: m.data }));
    try {
      await sb.join();
      return { ok: true, peerId: sb.peerId, transportKind: sb.transportKind };
    } catch (e) {
      return { ok: false, code: e.code, message: e.message };
    }
  }, opts);
  if (r.ok) p.peerId = r.peerId;
  return r;
}

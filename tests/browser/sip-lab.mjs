// The SIP side of the browser tests (sip*.test.mjs): Debian's baresip as the phone, set up
// as crates/sip/tests/lab/mod.rs does for the Rust interop tests, and Debian's kamailio
// with that lab's kamailio.cfg (registrar, digest auth). In a temporary folder: baresip's
// config (by default one account `alice` on its own port, auto answer, PCMU), a 440 Hz WAV it
// plays as its microphone (aufile), a folder its sndfile module records the call into,
// ctrl_tcp (commands and events as netstrings of JSON) and the UDP console (a key sent
// there goes out as DTMF in the call). Also: WAV reading and a tone's frequency by zero
// crossings, the gateway's /metrics, a server with the SIP gateway on, and what a room
// page shows and hears of a call (its tile, the tone on its track).
//
// baresip not starting (no binary, no answer to OPTIONS in time) is a harness failure
// (HarnessError, counted apart by run.sh), never a verdict.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync, rmSync, openSync, closeSync } from 'node:fs';
import net from 'node:net';
import dgram from 'node:dgram';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { HarnessError } from './chromium.mjs';
import { sleep, waitFor, freePortTcpUdp } from './harness.mjs';

const require = createRequire(import.meta.url);

/** JsSIP (npm) bundled by esbuild as one script that defines `window.JsSIP`. */
export function jssipBundle() {
  const esbuild = require('esbuild');
  const out = esbuild.buildSync({
    entryPoints: [require.resolve('jssip')],
    bundle: true,
    format: 'iife',
    globalName: 'JsSIP',
    platform: 'browser',
    write: false,
    logLevel: 'warning',
  });
  return out.outputFiles[0].text;
}

/** How long baresip may take to start (control port open, OPTIONS answered). */
const BARESIP_START_LIMIT_MS = Number(process.env.SB_BARESIP_START_TIMEOUT_MS || 20000);

const running = new Set();
process.on('exit', () => {
  for (const c of running) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/** A UDP port whose next one is free too, both also free for TCP (baresip takes port + 1 for TLS). */
export async function freePortPair() {
  for (let i = 0; i < 50; i++) {
    const p = await freePortTcpUdp();
    if (p < 65000 && (await udpFree(p + 1)) && (await tcpFree(p + 1))) return p;
  }
  throw new Error('no free pair of ports');
}

/** @param {number} port */
function udpFree(port) {
  return new Promise((resolve) => {
    const u = dgram.createSocket('udp4');
    u.once('error', () => resolve(false));
    u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
  });
}

/** @param {number} port */
function tcpFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** An 8 kHz mono 16-bit WAV of a sine at `hz`. */
export function writeToneWav(file, hz, seconds) {
  const rate = 8000;
  const n = rate * seconds;
  const b = Buffer.alloc(44 + 2 * n);
  b.write('RIFF', 0); b.writeUInt32LE(36 + 2 * n, 4); b.write('WAVEfmt ', 8);
  b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(rate, 24); b.writeUInt32LE(2 * rate, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(2 * n, 40);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * 12000), 44 + 2 * i);
  writeFileSync(file, b);
}

/** The samples (first channel) and rate of a 16-bit PCM WAV file's data chunk. */
export function readWav(file) {
  const b = readFileSync(file);
  if (b.length < 44 || b.toString('ascii', 0, 4) !== 'RIFF') throw new Error(`${file}: not a WAV file`);
  const channels = b.readUInt16LE(22);
  const rate = b.readUInt32LE(24);
  for (let i = 12; i + 8 <= b.length;) {
    const len = b.readUInt32LE(i + 4);
    if (b.toString('ascii', i, i + 4) === 'data') {
      const end = Math.min(b.length, i + 8 + len);
      const samples = [];
      for (let j = i + 8; j + 2 * channels <= end; j += 2 * channels) samples.push(b.readInt16LE(j));
      return { samples, rate };
    }
    i += 8 + len;
  }
  throw new Error(`${file}: no data chunk`);
}

/** Frequency (zero crossings) and RMS of the loud part of `samples` (from the first |x| >= 500 on). */
export function toneOf(samples, rate) {
  const start = samples.findIndex((x) => Math.abs(x) >= 500);
  const loud = start < 0 ? [] : samples.slice(start);
  let sq = 0;
  let crossings = 0;
  for (let i = 0; i < loud.length; i++) {
    sq += loud[i] * loud[i];
    if (i > 0 && (loud[i - 1] < 0) !== (loud[i] < 0)) crossings++;
  }
  const secs = loud.length / rate;
  return { hz: secs > 0 ? crossings / 2 / secs : 0, rms: Math.sqrt(sq / Math.max(1, loud.length)), seconds: secs };
}

/**
 * The tone of the sounding parts of `samples`: cut into 100 ms frames, those with an RMS of
 * at least `minRms` count as sound; their median frequency (zero crossings) and RMS, and
 * how many seconds sounded. Robust to gaps (a call's recording starts with silence, and a
 * loaded machine drops some packets), unlike `toneOf` over the whole of it.
 */
export function toneOfFrames(samples, rate, minRms = 500) {
  const n = Math.round(rate / 10);
  const freqs = [];
  const levels = [];
  for (let at = 0; at + n <= samples.length; at += n) {
    let sq = 0;
    let crossings = 0;
    for (let i = at; i < at + n; i++) {
      sq += samples[i] * samples[i];
      if (i > at && (samples[i - 1] < 0) !== (samples[i] < 0)) crossings++;
    }
    const rms = Math.sqrt(sq / n);
    if (rms < minRms) continue;
    freqs.push((crossings / 2) * 10);
    levels.push(rms);
  }
  const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : 0);
  return { hz: median(freqs), rms: median(levels), seconds: freqs.length / 10, total: samples.length / rate };
}

/**
 * A SIP OPTIONS to `port` on 127.0.0.1; resolves true when any SIP response came back within 300 ms.
 * @param {number} port
 * @param {number} n sequence number
 * @param {string} user the Request-URI's user part with its `@` ('' for the server itself)
 */
function optionsPing(port, n, user = 'alice@') {
  return new Promise((resolve) => {
    const u = dgram.createSocket('udp4');
    const done = (ok) => { clearTimeout(timer); u.close(); resolve(ok); };
    const timer = setTimeout(() => done(false), 300);
    u.on('error', () => done(false));
    u.on('message', (m) => done(m.toString('latin1').startsWith('SIP/2.0 ')));
    u.bind(0, '127.0.0.1', () => {
      const local = `127.0.0.1:${u.address().port}`;
      const msg = `OPTIONS sip:${user}127.0.0.1:${port} SIP/2.0\r\nVia: SIP/2.0/UDP ${local};branch=z9hG4bKping${n}\r\nMax-Forwards: 70\r\n` +
        `From: <sip:test@127.0.0.1>;tag=p\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: ping${n}-${port}\r\nCSeq: ${n} OPTIONS\r\nContent-Length: 0\r\n\r\n`;
      u.send(msg, port, '127.0.0.1');
    });
  });
}

/** One baresip phone. Use `startBaresip()`. */
export class Baresip {
  constructor({ child, port, consolePort, ctrl, dir, logFile }) {
    this.child = child;
    /** Its SIP port on 127.0.0.1. */
    this.port = port;
    this.uri = `sip:alice@127.0.0.1:${port}`;
    this.consolePort = consolePort;
    this.ctrl = ctrl;
    this.dir = dir;
    this.logFile = logFile;
    /** Every event and response from ctrl_tcp, parsed, in order. */
    this.events = [];
    let buf = Buffer.alloc(0);
    ctrl.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      // Netstrings: "<len>:<json>,"
      for (;;) {
        const colon = buf.indexOf(0x3a);
        if (colon < 0) break;
        const len = Number(buf.toString('ascii', 0, colon));
        if (!Number.isInteger(len) || buf.length < colon + 1 + len + 1) break;
        const text = buf.toString('utf8', colon + 1, colon + 1 + len);
        buf = buf.subarray(colon + 1 + len + 1);
        try {
          this.events.push(JSON.parse(text));
        } catch {
          this.events.push({ unparsed: text });
        }
      }
    });
    ctrl.on('error', () => {});
  }

  /** A command on ctrl_tcp (`dial`, `hangup`, …). */
  command(command, params = '') {
    const json = JSON.stringify({ command, params, token: 't' });
    this.ctrl.write(`${Buffer.byteLength(json)}:${json},`);
  }

  /** Types `key` on baresip's UDP console: in a call, it goes out as DTMF (then released). */
  async pressKey(key) {
    const u = dgram.createSocket('udp4');
    await new Promise((resolve, reject) => u.send(Buffer.from(`${key}\x04`, 'latin1'), this.consolePort, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
    u.close();
  }

  /** Event types seen, in order (e.g. CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED). */
  eventTypes() {
    return this.events.filter((e) => e.event).map((e) => e.type);
  }

  /** Wait for an event of `type`; resolves to it. */
  waitEvent(type, timeout = 15000) {
    return waitFor(() => this.events.find((e) => e.event && e.type === type), { timeout, interval: 100, what: `baresip event ${type} (seen: ${this.eventTypes().join(' ')})` });
  }

  /** The digits baresip received in its call (CALL_DTMF_START events), in order. */
  dtmfReceived() {
    return this.events.filter((e) => e.event && e.type === 'CALL_DTMF_START').map((e) => String(e.param ?? '')).join('');
  }

  /**
   * The tone of what baresip decoded in its (one) call (`toneOfFrames`, and `whole`: `toneOf`
   * over all of it): the `-dec.wav` its sndfile module writes, read once complete (after
   * the call ended: size stable, data present).
   */
  async recordedTone(timeout = 8000) {
    const { samples, rate } = await this.recordedSamples(timeout);
    const all = toneOf(samples, rate);
    return { ...toneOfFrames(samples, rate), whole: { hz: all.hz, rms: all.rms }, rate };
  }

  /** The samples and rate of baresip's complete recording of its (one) call (see `recordedTone`). */
  async recordedSamples(timeout = 8000) {
    const rec = path.join(this.dir, 'rec');
    let last = -1;
    return waitFor(() => {
      const f = readdirSync(rec).find((n) => n.endsWith('-dec.wav'));
      if (!f) return null;
      const size = statSync(path.join(rec, f)).size;
      const stable = size === last && size > 44;
      last = size;
      if (!stable) return null;
      const wav = readWav(path.join(rec, f));
      return wav.samples.length ? wav : null;
    }, { timeout, interval: 300, what: "baresip's complete recording of the call" });
  }

  /** Forget the recordings of past calls (the next `recordedTone` reads the next call's). */
  clearRecordings() {
    const rec = path.join(this.dir, 'rec');
    for (const f of readdirSync(rec)) rmSync(path.join(rec, f), { force: true });
  }

  /** The tail of baresip's own output (for failure messages). */
  logTail(lines = 30) {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async stop() {
    this.ctrl.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      if (!(await Promise.race([gone.then(() => true), sleep(1500)]))) {
        this.child.kill('SIGKILL');
        await gone;
      }
    }
    running.delete(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Start baresip; resolves once it answers OPTIONS. By default: account `alice` on its own
 * port, called and calling directly (no registrar), auto answer, PCMU, playing 440 Hz.
 * `opts.account(port)` gives another account line (e.g. `bob` at a registrar, SRTP);
 * `opts.extra` more config lines (modules such as `dtls_srtp.so`, loaded before the
 * accounts are read).
 * @param {{account?: (port: number) => string, extra?: string[]}} [opts]
 */
export async function startBaresip(opts = {}) {
  const t0 = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-baresip-'));
  const port = await freePortPair();
  const rtp = await freePortPair();
  const ctrlPort = await freePortPair();
  const consolePort = await freePortPair();
  const tone = path.join(dir, 'tone440.wav');
  writeToneWav(tone, 440, 60);
  const rec = path.join(dir, 'rec');
  mkdirSync(rec);
  const config = [
    'poll_method epoll', `sip_listen 127.0.0.1:${port}`, 'audio_player alsa,null', 'audio_alert alsa,null',
    `audio_source aufile,${tone}`, `rtp_ports ${rtp}-${rtp + 1}`, 'rtp_timeout 10', 'net_interface 127.0.0.1',
    'module_path /usr/lib/baresip/modules', 'module g711.so', 'module alsa.so', 'module aufile.so', 'module sndfile.so',
    'module srtp.so', ...(opts.extra ?? []),
    'module_tmp uuid.so', 'module_tmp account.so', 'module_app menu.so',
    'module_app ctrl_tcp.so', `ctrl_tcp_listen 127.0.0.1:${ctrlPort}`, 'module_app cons.so', `cons_listen 127.0.0.1:${consolePort}`,
    `snd_path ${rec}`, '',
  ].join('\n');
  writeFileSync(path.join(dir, 'config'), config);
  const account = opts.account ? opts.account(port) : `<sip:alice@127.0.0.1:${port};transport=udp>;regint=0;answermode=auto;audio_codecs=PCMU/8000/1`;
  writeFileSync(path.join(dir, 'accounts'), `${account}\n`);
  const logFile = path.join(dir, 'baresip.log');
  const out = openSync(logFile, 'a');
  const child = spawn('baresip', ['-f', dir], { stdio: ['ignore', out, out] });
  closeSync(out);
  running.add(child);
  const spawnError = new Promise((resolve) => child.once('error', resolve));
  const fail = async (what, cause) => {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
    running.delete(child);
    let tail = '';
    try { tail = readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n'); } catch { /* none */ }
    rmSync(dir, { recursive: true, force: true });
    throw new HarnessError(what, Date.now() - t0, new Error(`${cause}${tail ? `; its output:\n${tail}` : ''}`));
  };
  // Its control port first (the events of the call are read from the start).
  let ctrl = null;
  while (!ctrl) {
    const err = await Promise.race([spawnError, sleep(0).then(() => null)]);
    if (err) return fail('baresip did not start', `${err.message} (install Debian's baresip-core)`);
    if (child.exitCode !== null) return fail('baresip did not start', `it exited with ${child.exitCode}`);
    ctrl = await new Promise((resolve) => {
      const c = net.connect(ctrlPort, '127.0.0.1');
      c.once('connect', () => resolve(c));
      c.once('error', () => resolve(null));
    });
    if (!ctrl) {
      if (Date.now() - t0 > BARESIP_START_LIMIT_MS) return fail("baresip's ctrl_tcp did not accept", `port ${ctrlPort}`);
      await sleep(100);
    }
  }
  const phone = new Baresip({ child, port, consolePort, ctrl, dir, logFile });
  for (let n = 1; !(await optionsPing(port, n)); n++) {
    if (Date.now() - t0 > BARESIP_START_LIMIT_MS) {
      ctrl.destroy();
      return fail('baresip did not answer OPTIONS', `port ${port}`);
    }
  }
  return phone;
}

/**
 * A server with the SFU (on a free port, announcing 127.0.0.1), the SIP gateway on
 * 127.0.0.1 (a free port, 20 RTP ports of its own) and /metrics. Adds `sipPort` and
 * `metricsUrl` to the server.
 */
export async function sipServer(s, extra = []) {
  const sipPort = await freePortPair();
  const sfuPort = await freePortTcpUdp();
  const metricsPort = await freePortTcpUdp();
  const rtpLow = 30000 + 2 * Math.floor(Math.random() * 5000);
  const server = await s.server({
    metricsListen: `127.0.0.1:${metricsPort}`,
    args: ['--sfu-port', String(sfuPort), '--sfu-candidate', '127.0.0.1', '--sip-listen', `127.0.0.1:${sipPort}`,
      '--sip-rtp-ports', `${rtpLow}-${rtpLow + 19}`, ...extra],
  });
  server.sipPort = sipPort;
  server.sfuPort = sfuPort;
  server.metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  return server;
}

/** The gateway's gauges and counters from /metrics, by series name (with labels), as numbers. */
export async function metrics(server) {
  const text = await (await fetch(server.metricsUrl)).text();
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

// What a page shows and hears of a call (sip.test.mjs, sip-jssip.test.mjs).

/** The call tiles shown: [{id, state, keys}]. */
export function sipTiles(p) {
  return p.page.$$eval('.tile.remote.sip', (els) => els.map((e) => ({
    id: e.getAttribute('data-peer-id'),
    state: e.querySelector('.sip-state')?.textContent || '',
    keys: e.querySelector('.sip-keys')?.textContent || '',
  })));
}

/** Wait for the one call tile to show `re`; returns it. */
export function waitTileState(p, re, timeout = 20000) {
  return waitFor(async () => {
    const ts = await sipTiles(p);
    return ts.length === 1 && re.test(ts[0].state) && ts[0];
  }, { timeout, what: `${p.name}: a call tile whose state matches ${re}` });
}

/** Wait until no call tile is shown. */
export function waitNoTile(p, timeout = 15000) {
  return waitFor(async () => (await sipTiles(p)).length === 0, { timeout, what: `${p.name}: the call tile gone` });
}

/**
 * Installs `window.__toneOf(track)` in `page` (once): the dominant frequency of an audio
 * track (WebAudio analyser, 16384-point FFT at the context's rate, magnitudes summed over
 * 10 snapshots 100 ms apart, below 100 Hz ignored), its level in dBFS, and the bin width.
 * The one analysis every SIP browser test listens with.
 */
export function installToneAnalyser(page) {
  return page.evaluate(() => {
    if (window.__toneOf) return;
    window.__toneOf = async (track) => {
      const ctx = new AudioContext();
      try {
        await ctx.resume();
        const an = ctx.createAnalyser();
        an.fftSize = 16384;
        an.smoothingTimeConstant = 0;
        ctx.createMediaStreamSource(new MediaStream([track])).connect(an);
        await new Promise((r) => setTimeout(r, 500));
        const bins = new Float32Array(an.frequencyBinCount);
        const sum = new Float64Array(an.frequencyBinCount);
        for (let k = 0; k < 10; k++) {
          an.getFloatFrequencyData(bins);
          for (let i = 0; i < bins.length; i++) sum[i] += Number.isFinite(bins[i]) ? 10 ** (bins[i] / 20) : 0;
          await new Promise((r) => setTimeout(r, 100));
        }
        const hzPerBin = ctx.sampleRate / an.fftSize;
        let best = Math.ceil(100 / hzPerBin);
        for (let i = best; i < sum.length; i++) if (sum[i] > sum[best]) best = i;
        return { hz: best * hzPerBin, db: 20 * Math.log10(sum[best] / 10 || 1e-12), hzPerBin };
      } finally {
        await ctx.close();
      }
    };
  });
}

/**
 * The dominant frequency the page hears on member `id`'s audio track
 * (`installToneAnalyser`), and its level in dBFS.
 */
export async function heardTone(p, id) {
  await installToneAnalyser(p.page);
  return p.page.evaluate((id) => {
    const track = window.sbApp.grid.get(id)?.stream.getAudioTracks()[0];
    return track ? window.__toneOf(track) : null;
  }, id);
}

/** Every gauge of the gateway a call holds while it is up (crates/switchboard/tests/common/sip.rs GAUGES). */
export const ALL_GAUGES = ['switchboard_sip_calls', 'switchboard_sip_dialogs', 'switchboard_sip_transactions', 'switchboard_sip_media_tasks', 'switchboard_sip_rtp_ports_in_use'];

/**
 * The gateway's `gauges` are back to 0 within `timeout` (by default calls and RTP ports; the
 * transactions' wait states outlast a call by 64 x T1 unless the server runs a short
 * `--sip-timer-t1`).
 */
export async function expectGaugesZero(server, timeout = 5000, gauges = ['switchboard_sip_calls', 'switchboard_sip_rtp_ports_in_use']) {
  let m = {};
  const left = () => gauges.filter((g) => m[g] !== 0).map((g) => `${g} ${m[g]}`);
  try {
    await waitFor(async () => {
      m = await metrics(server);
      return left().length === 0;
    }, { timeout, what: 'the SIP gauges at 0' });
  } catch (e) {
    e.message += ` (left: ${left().join(', ')})`;
    throw e;
  }
}

/**
 * Power of `hz` in `samples` relative to the whole signal's, in dB: near 0 for the only
 * tone, about -3 dB for one of two equal tones, far below for an absent one.
 *
 * Goertzel over 250 ms blocks, the blocks' tone powers summed: a jitter buffer that drops
 * or repeats a packet shifts the tone's phase, and one Goertzel over the whole recording
 * would let the parts before and after such a jump cancel (a loaded machine's 16 s
 * recording of two clear tones measured -8 and -11 dB that way).
 */
export function toneShareDb(samples, rate, hz) {
  const coeff = 2 * Math.cos((2 * Math.PI * hz) / rate);
  const block = Math.max(1, Math.round(rate / 4));
  let tone = 0;
  let total = 0;
  for (let at = 0; at + block <= samples.length; at += block) {
    let s1 = 0;
    let s2 = 0;
    for (let i = at; i < at + block; i++) {
      const x = samples[i];
      const s0 = x + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
      total += x * x;
    }
    const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A sine of amplitude A gives power (A·N/2)² over N samples; its mean square is A²/2,
    // so the block's tone energy (N · mean square) is 2·power/N.
    tone += (2 * power) / block;
  }
  return 10 * Math.log10(Math.max(1e-12, tone / Math.max(1e-9, total)));
}

/** Debian's kamailio as registrar and authenticating proxy. Use `startKamailio()`. */
export class Kamailio {
  constructor({ child, port, dir, logFile }) {
    this.child = child;
    this.port = port;
    this.dir = dir;
    this.logFile = logFile;
  }

  /** The tail of kamailio's output (for failure messages). */
  logTail(lines = 30) {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async stop() {
    // It forks its workers into its own process group (spawned detached): end the group.
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise((r) => this.child.once('exit', r));
      try { process.kill(-this.child.pid, 'SIGTERM'); } catch { /* gone */ }
      if (!(await Promise.race([gone.then(() => true), sleep(2000)]))) {
        try { process.kill(-this.child.pid, 'SIGKILL'); } catch { /* gone */ }
        await gone;
      }
    }
    running.delete(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * kamailio on 127.0.0.1 (a free port, UDP and TCP) with the Rust interop tests' config
 * (crates/sip/tests/lab/kamailio.cfg: registrar, record-routing proxy, digest auth; users
 * alice/alicepw and bob/bobpw); resolves once it answers OPTIONS. Not starting is a
 * HarnessError. `opts.config`: another config (a file URL), its `@PORT@` the SIP port and
 * each `@NAME@` of `opts.vars` that value.
 * @param {{config?: URL, vars?: Record<string, string | number>}} [opts]
 */
export async function startKamailio(opts = {}) {
  const t0 = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-kamailio-'));
  const port = await freePortTcpUdp();
  const cfg = path.join(dir, 'kamailio.cfg');
  let text = readFileSync(opts.config ?? new URL('../../crates/sip/tests/lab/kamailio.cfg', import.meta.url), 'utf8').replaceAll('@PORT@', String(port));
  for (const [name, value] of Object.entries(opts.vars ?? {})) text = text.replaceAll(`@${name}@`, String(value));
  writeFileSync(cfg, text);
  const run = path.join(dir, 'run');
  mkdirSync(run);
  const logFile = path.join(dir, 'kamailio.log');
  const out = openSync(logFile, 'a');
  const child = spawn('kamailio', ['-f', cfg, '-DD', '-E', '-m', '32', '-M', '4', '-Y', run], { stdio: ['ignore', out, out], detached: true });
  closeSync(out);
  running.add(child);
  const k = new Kamailio({ child, port, dir, logFile });
  let spawnError = null;
  child.once('error', (e) => { spawnError = e; });
  for (let n = 1; !(await optionsPing(port, n, '')); n++) {
    if (spawnError || child.exitCode !== null || Date.now() - t0 > BARESIP_START_LIMIT_MS) {
      const tail = k.logTail(15);
      await k.stop();
      throw new HarnessError('kamailio did not answer OPTIONS', Date.now() - t0,
        new Error(`${spawnError ? `${spawnError.message} (install Debian's kamailio)` : `port ${port}, exit ${child.exitCode}`}${tail ? `; its output:\n${tail}` : ''}`));
    }
  }
  return k;
}

/**
 * kamailio as the SIP service of domain sip.test for WebRTC clients (tests/browser/kamailio-ws.cfg):
 * a registrar over SIP-over-WebSocket at `ws://127.0.0.1:<wsPort>` (digest: carol/carolpw,
 * dave/davepw) and the record-routing proxy to and from Switchboard A (call domain a.test,
 * SIP over UDP at 127.0.0.1:`sbSipPort`, let in without a challenge). Adds `wsPort` and
 * `wsUrl`. Needs Debian's kamailio-websocket-modules: without it, a HarnessError.
 * @param {{sbSipPort: number}} opts
 */
export async function startKamailioWs({ sbSipPort }) {
  const modules = '/usr/lib/x86_64-linux-gnu/kamailio/modules';
  try {
    statSync(path.join(modules, 'websocket.so'));
  } catch (e) {
    throw new HarnessError("kamailio's websocket module", 0, new Error(`${e.message} (install Debian's kamailio-websocket-modules)`));
  }
  const wsPort = await freePortTcpUdp();
  const k = await startKamailio({ config: new URL('./kamailio-ws.cfg', import.meta.url), vars: { WS_PORT: wsPort, SB_PORT: sbSipPort } });
  k.wsPort = wsPort;
  k.wsUrl = `ws://127.0.0.1:${wsPort}`;
  return k;
}

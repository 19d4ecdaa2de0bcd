// Interop of the SFU (issue 11) with an independent WebRTC stack: aiortc (Python; its own
// ICE, DTLS, SRTP, libvpx/opus through PyAV), driven by tests/interop/aio_sfu.py.
// - aiortc publishes into an SFU room over the signaling protocol, a Chromium page decodes
//   its video and hears its tone, and the SDK's `track` event names the aiortc peer; aiortc
//   decodes the page's camera on that same connection (the SFU's offer, answered by aiortc);
// - a Chromium page publishes, aiortc subscribes and decodes the page's video (mapped to
//   the page's peer id by the SFU's `tracks` message);
// - aiortc publishes with WHIP (POST /whip/<room>), a Chromium page in the room decodes it;
// - aiortc plays a room with WHEP (POST /whep/<room>) and decodes a Chromium publisher
//   (its offer made bundle-safe first: aio_sfu.py bundle_safe_extmaps, an aiortc bug).
// - with room tokens: WHIP/WHEP refused without a token (401) or the grant (403), and
//   working with `Authorization: Bearer <room token>` of the right grant.
//
// Prerequisites: Debian's python3-aiortc and python3-websockets (scripts/test-all.sh
// installs them; SB_PYTHON names another interpreter, e.g. a venv with
// tests/interop/requirements.txt). That Python not importing them, or the script not
// starting, is a harness failure (SB_AIORTC_STARTUP_TIMEOUT_MS, default 60 s), not a verdict.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import path from 'node:path';
import { scope, openCall, randomId, waitFor, mintToken, ROOT, HarnessError } from './harness.mjs';
import { launchSfuBrowser, SMALL_CAMERA, COUNT_PCS, sfuServer, expectAllFlowing, expectOnlySfuConnection } from './sfu-helpers.mjs';

const PYTHON = process.env.SB_PYTHON || '/usr/bin/python3';
const SCRIPT = path.join(ROOT, 'tests/interop/aio_sfu.py');
const STARTUP_LIMIT_MS = Number(process.env.SB_AIORTC_STARTUP_TIMEOUT_MS || 60000);

let browser;
before(async () => {
  // The Python side first: a missing prerequisite is the harness's failure, named once.
  const t0 = Date.now();
  await new Promise((resolve, reject) => {
    execFile(PYTHON, ['-c', 'import aiortc, av, numpy, websockets; print(aiortc.__version__)'], { timeout: STARTUP_LIMIT_MS }, (err, stdout, stderr) => {
      if (err) reject(new HarnessError(`${PYTHON} importing aiortc, av, numpy, websockets (apt install python3-aiortc python3-websockets)`, Date.now() - t0, new Error(stderr.trim().split('\n').pop() || err.message)));
      else { process.stderr.write(`[harness] aiortc ${stdout.trim()} (${PYTHON}) imported in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`); resolve(); }
    });
  });
  browser = await launchSfuBrowser();
});
after(async () => { await browser?.close(); });

/**
 * Start aio_sfu.py (always --loopback: the namespace has only `lo`). Returns a handle whose
 * `events` are the JSON lines printed so far; `waitEvent(pred)` waits for one; `result`
 * resolves with the final `result` event (or null) and the exit status.
 */
function aiortc(args) {
  const child = spawn(PYTHON, [SCRIPT, '--loopback', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events = [];
  const stderr = [];
  const waiters = new Set();
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try { events.push(JSON.parse(line)); } catch { stderr.push(`(stdout) ${line}`); }
      if (process.env.SB_VERBOSE) process.stderr.write(`[aiortc ${args[args.indexOf('--mode') + 1]}] ${line}\n`);
      for (const w of waiters) w();
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr.push(d); if (stderr.length > 200) stderr.shift(); });
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, sig) => {
    exited = { code, sig };
    for (const w of waiters) w();
    resolve(exited);
  }));
  const h = {
    events,
    log: () => `--- aiortc ${args.join(' ')}\n${events.slice(-30).map((e) => JSON.stringify(e)).join('\n')}\nstderr: ${stderr.join('').slice(-3000)}`,
    /** The first event matching `pred`; a harness failure when the script never started. */
    waitEvent(pred, { timeout, what }) {
      const t0 = Date.now();
      return new Promise((resolve, reject) => {
        const check = () => {
          const e = events.find(pred);
          if (e) { done(); resolve(e); return; }
          const importError = events.find((x) => x.event === 'import-error');
          if (importError || (exited && exited.code === 2)) {
            done();
            reject(new HarnessError(`aio_sfu.py did not start (${what})`, Date.now() - t0, new Error(importError ? importError.error : h.log())));
          } else if (exited) {
            done();
            reject(new Error(`aiortc exited (${JSON.stringify(exited)}) before ${what}\n${h.log()}`));
          }
        };
        const timer = setTimeout(() => { done(); reject(new Error(`aiortc: no ${what} within ${timeout} ms\n${h.log()}`)); }, timeout);
        const done = () => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
    async result(timeout) {
      const t = await Promise.race([exit, new Promise((r) => setTimeout(r, timeout, null))]);
      if (!t) { child.kill('SIGKILL'); throw new Error(`aiortc did not finish within ${timeout} ms\n${h.log()}`); }
      return { exit: t, result: events.find((e) => e.event === 'result') || null };
    },
    /** SIGTERM: the script ends its session (leave / DELETE) and prints its result. */
    async stop() {
      if (exited) return exited;
      child.kill('SIGTERM');
      const t = await Promise.race([exit, new Promise((r) => setTimeout(r, 5000, null))]);
      if (!t) { child.kill('SIGKILL'); return exit; }
      return t;
    },
  };
  return h;
}

/** Run `body(procs)` with the aiortc processes it starts; their output joins a failure's message. */
async function withAiortc(body) {
  const procs = [];
  const start = (args) => { const h = aiortc(args); procs.push(h); return h; };
  try {
    await body(start);
  } catch (e) {
    if (!/^harness failure:/.test(e.message)) e.message += `\n${procs.map((h) => h.log()).join('\n')}`;
    throw e;
  } finally {
    await Promise.all(procs.map((h) => h.stop()));
  }
}

/** Record the SDK's `track` events of page p: [{peer, kind, source}]. */
function recordTracks(p) {
  return p.page.evaluate(() => {
    window.__tracks = [];
    window.sbApp.sb.on('track', (e) => window.__tracks.push({ peer: e.peer && e.peer.id, service: e.peer && e.peer.service, kind: e.track.kind, source: e.source }));
  });
}

test('aiortc publishes into an SFU room: Chromium decodes its video, hears its tone, the track event names the aiortc peer; aiortc decodes the page on the same connection', { timeout: 150000 }, () => scope('interop-aiortc-pub', (s) => withAiortc(async (start) => {
  const server = await sfuServer(s);
  const room = randomId('aiopub-');
  const [page] = await openCall(s, browser, server, room, ['Ada'], { query: { topology: 'sfu' }, init: [COUNT_PCS, SMALL_CAMERA] });
  await recordTracks(page);
  const pub = start(['--server', server.url, '--room', room, '--mode', 'publish', '--name', 'aiortc', '--watch', page.peerId, '--duration', '120']);
  const joined = await pub.waitEvent((e) => e.event === 'joined', { timeout: STARTUP_LIMIT_MS, what: 'its join' });
  assert.equal(joined.topology, 'sfu');
  await pub.waitEvent((e) => e.event === 'answered', { timeout: 20000, what: "the SFU's answer" });
  await page.waitRemoteTiles([joined.peerId], 30000);
  await expectAllFlowing(page, [joined.peerId], { audio: true, timeout: 60000 });
  const tracks = await page.page.evaluate(() => window.__tracks);
  const fromAio = tracks.filter((t) => t.peer === joined.peerId);
  assert.deepEqual(fromAio.map((t) => `${t.kind}:${t.source}`).sort(), ['audio:microphone', 'video:camera'], JSON.stringify(tracks));
  await expectOnlySfuConnection(page, server);
  // The page's camera reached the aiortc side too (its `tracks` map names the page).
  await pub.waitEvent((e) => e.event === 'tracks' && e.tracks.some((t) => t.peer === page.peerId && t.kind === 'video'), { timeout: 20000, what: 'a tracks map naming the page' });
  // ...and aiortc decodes it on the same connection it publishes on (the SFU's renegotiation).
  await pub.waitEvent((e) => e.event === 'frames' && e.frames >= 15, { timeout: 30000, what: "15 decoded frames of the page's camera" });
  await pub.stop();
  const { result } = await pub.result(5000);
  assert.ok(result && result.frames >= 15 && result.width > 0 && result.errors.length === 0, JSON.stringify(result));
})));

test('a Chromium page publishes, aiortc subscribes through the SFU and decodes its video and audio', { timeout: 150000 }, () => scope('interop-aiortc-sub', (s) => withAiortc(async (start) => {
  const server = await sfuServer(s);
  const room = randomId('aiosub-');
  const [page] = await openCall(s, browser, server, room, ['Ada'], { query: { topology: 'sfu' }, init: [SMALL_CAMERA] });
  const sub = start(['--server', server.url, '--room', room, '--mode', 'subscribe', '--name', 'aiortc', '--watch', page.peerId, '--frames', '45', '--duration', '60']);
  const joined = await sub.waitEvent((e) => e.event === 'joined', { timeout: STARTUP_LIMIT_MS, what: 'its join' });
  assert.equal(joined.topology, 'sfu');
  const { exit, result } = await sub.result(90000);
  assert.ok(result, `no result line (exit ${JSON.stringify(exit)})`);
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.ok(result.frames >= 45 && result.width > 0 && result.height > 0, JSON.stringify(result));
  assert.deepEqual(result.errors, []);
  assert.ok(result.audioFrames > 0, `no audio decoded: ${JSON.stringify(result)}`);
  // The decoded m-line is the page's camera in the SFU's map.
  const tracks = sub.events.filter((e) => e.event === 'tracks').at(-1);
  assert.ok(tracks && tracks.tracks.some((t) => t.peer === page.peerId && t.source === 'camera' && t.kind === 'video'), JSON.stringify(tracks));
  assert.equal(exit.code, 0);
})));

test('aiortc publishes with WHIP: a Chromium page in the room decodes its video and hears its tone; DELETE ends it', { timeout: 150000 }, () => scope('interop-whip', (s) => withAiortc(async (start) => {
  const server = await sfuServer(s);
  const room = randomId('aiowhip-');
  const [page] = await openCall(s, browser, server, room, ['Ada'], { query: { topology: 'sfu' }, init: [SMALL_CAMERA] });
  await recordTracks(page);
  const whip = start(['--server', server.url, '--room', room, '--mode', 'whip', '--duration', '120']);
  const created = await whip.waitEvent((e) => e.event === 'whip' || e.event === 'result', { timeout: STARTUP_LIMIT_MS, what: 'the WHIP POST' });
  assert.equal(created.status, 201, JSON.stringify(created));
  const id = await waitFor(() => page.page.evaluate(() => [...window.sbApp.sb.peers.values()].find((m) => m.service === 'whip')?.id), { timeout: 20000, what: 'a WHIP member in the page' });
  await page.waitRemoteTiles([id], 30000);
  await expectAllFlowing(page, [id], { audio: true, timeout: 60000 });
  const tracks = await page.page.evaluate(() => window.__tracks);
  assert.ok(tracks.some((t) => t.peer === id && t.kind === 'video' && t.service === 'whip'), JSON.stringify(tracks));
  // DELETE of the resource: the WHIP member leaves the room.
  await whip.stop();
  const { result } = await whip.result(5000);
  assert.equal(result && result.deleteStatus, 200, JSON.stringify(result));
  await page.waitRemoteTiles([], 20000);
})));

test('aiortc plays a room with WHEP and decodes a Chromium publisher (video and audio); DELETE ends it', { timeout: 150000 }, () => scope('interop-whep', (s) => withAiortc(async (start) => {
  const server = await sfuServer(s);
  const room = randomId('aiowhep-');
  const [page] = await openCall(s, browser, server, room, ['Ada'], { query: { topology: 'sfu' }, init: [SMALL_CAMERA] });
  // The page's camera is at the SFU before the player comes.
  await waitFor(() => page.page.evaluate(() => window.sbApp.sb.sfu?.pc?.connectionState === 'connected'), { timeout: 30000, what: "the page's SFU connection" });
  const whep = start(['--server', server.url, '--room', room, '--mode', 'whep', '--frames', '45', '--duration', '45']);
  const created = await whep.waitEvent((e) => e.event === 'whep' || e.event === 'result', { timeout: STARTUP_LIMIT_MS, what: 'the WHEP POST' });
  assert.equal(created.status, 201, JSON.stringify(created));
  const { exit, result } = await whep.result(70000);
  assert.ok(result, `no result line (exit ${JSON.stringify(exit)})`);
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.ok(result.frames >= 45 && result.width > 0, JSON.stringify(result));
  assert.ok(result.audioFrames > 0, `no audio decoded: ${JSON.stringify(result)}`);
  assert.equal(result.deleteStatus, 200);
})));

test('WHIP and WHEP from aiortc with room tokens: no token 401, a token without the grant 403, the right grants publish and play', { timeout: 150000 }, () => scope('interop-tokens', (s) => withAiortc(async (start) => {
  const secret = 'interop-token-secret';
  const server = await sfuServer(s, ['--room-token-secret', secret]);
  const room = randomId('aiotok-');
  const token = (grant) => mintToken({ secret, room, ttl: 600, grant });
  const [page] = await openCall(s, browser, server, room, ['Ada'], { query: { topology: 'sfu', token: token('publish,subscribe') }, init: [SMALL_CAMERA] });
  const refused = async (args, status) => {
    const h = start(['--server', server.url, '--room', room, '--duration', '10', ...args]);
    const { exit, result } = await h.result(30000);
    if (exit.code === 2) throw new HarnessError('aio_sfu.py did not start', 0, new Error(h.log()));
    assert.equal(exit.code, 1, h.log());
    assert.match(result && result.error, new RegExp(`^POST \\S+: ${status}\\b`), JSON.stringify(result));
  };
  await refused(['--mode', 'whip'], 401);
  await refused(['--mode', 'whip', '--token', token('subscribe')], 403);
  await refused(['--mode', 'whep', '--token', token('publish')], 403);
  const whip = start(['--server', server.url, '--room', room, '--mode', 'whip', '--token', token('publish'), '--duration', '120']);
  const created = await whip.waitEvent((e) => e.event === 'whip' || e.event === 'result', { timeout: STARTUP_LIMIT_MS, what: 'the WHIP POST' });
  assert.equal(created.status, 201, JSON.stringify(created));
  const id = await waitFor(() => page.page.evaluate(() => [...window.sbApp.sb.peers.values()].find((m) => m.service === 'whip')?.id), { timeout: 20000, what: 'a WHIP member in the page' });
  await expectAllFlowing(page, [id], { timeout: 60000 });
  const whep = start(['--server', server.url, '--room', room, '--mode', 'whep', '--token', token('subscribe'), '--frames', '30', '--duration', '45']);
  const { result } = await whep.result(70000);
  assert.ok(result && result.ok && result.frames >= 30, JSON.stringify(result));
  assert.equal(result.deleteStatus, 200, 'DELETE with the bearer token');
})));

// Starting Chromium for the browser tests and the NAT matrix, with the harness's own
// limits kept apart from the verdicts.
//
// On a machine that never ran Chromium, its first start, first page and first media
// pipeline can take far longer than later ones (profile, font and shader caches, the
// binary read from disk). None of that is what a test asserts. So:
// - start-up (launch, the warm-up, a page loading) has its own generous limits;
// - the browser is warmed up once, before anything is timed: a page in a secure
//   context, fonts, getUserMedia with the fake devices, and a loopback call until the
//   first video frame decodes and a data-channel message arrives;
// - a limit of the harness that runs out throws a HarnessError, whose message starts
//   with "harness failure:" and says what it waited for and how long; the runners
//   count those apart from verdicts (run.sh: "browser: N passed, M failed, H harness
//   failures"), and a harness failure is never retried into a pass.
//
// Env: SB_STARTUP_TIMEOUT_MS (Chromium start, default 180000), SB_WARMUP_TIMEOUT_MS
// (the warm-up, 180000), SB_PAGE_LOAD_TIMEOUT_MS (a page loading to its first script,
// 90000).

import http from 'node:http';

const env = process.env;
export const STARTUP_LIMIT_MS = Number(env.SB_STARTUP_TIMEOUT_MS || 180000);
export const WARMUP_LIMIT_MS = Number(env.SB_WARMUP_TIMEOUT_MS || 180000);
export const PAGE_LOAD_LIMIT_MS = Number(env.SB_PAGE_LOAD_TIMEOUT_MS || 90000);

/** The harness could not get the browser ready: not a verdict on what is tested. */
export class HarnessError extends Error {
  constructor(what, waitedMs, cause) {
    const why = cause ? `: ${String(cause.message || cause).split('\n')[0]}` : '';
    super(`harness failure: ${what} (waited ${(waitedMs / 1000).toFixed(1)} s)${why}`);
    this.name = 'HarnessError';
    if (cause) this.cause = cause;
  }
}

export const isHarnessFailure = (e) => /^harness failure:/.test(String((e && e.message) || ''));

/** Reject with HarnessError(what) if `promise` takes longer than `ms`. */
async function within(promise, ms, what, t0 = Date.now()) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new HarnessError(what, Date.now() - t0, new Error(`limit of ${ms / 1000} s`))), ms);
  });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** chromium.launch under the start-up limit; `label` names where (e.g. the namespace). */
export async function launch(chromium, { executablePath, args, label }) {
  const t0 = Date.now();
  try {
    return await chromium.launch({ executablePath, headless: true, args, timeout: STARTUP_LIMIT_MS });
  } catch (e) {
    throw new HarnessError(`Chromium ${executablePath}${label ? ` (${label})` : ''} did not start`, Date.now() - t0, e);
  }
}

// In the page: fake camera and microphone, two RTCPeerConnections on this machine, a
// data channel; resolves once a video frame decoded and the message arrived.
const LOOPBACK_CALL = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  a.onicecandidate = (e) => { if (e.candidate) b.addIceCandidate(e.candidate).catch(() => {}); };
  b.onicecandidate = (e) => { if (e.candidate) a.addIceCandidate(e.candidate).catch(() => {}); };
  const track = new Promise((resolve) => { b.ontrack = (e) => resolve(e.streams[0]); });
  const message = new Promise((resolve) => {
    b.ondatachannel = (e) => { e.channel.onmessage = (m) => resolve(m.data); };
  });
  const dc = a.createDataChannel('warm-up');
  dc.onopen = () => dc.send('hello');
  for (const t of stream.getTracks()) a.addTrack(t, stream);
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.srcObject = await track;
  document.body.append(video);
  for (;;) {
    let frames = 0;
    (await b.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0; });
    if (frames > 0 && video.videoWidth > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const got = await message;
  for (const t of stream.getTracks()) t.stop();
  a.close();
  b.close();
  return got;
};

/** A blank page on 127.0.0.1 (a secure context, so getUserMedia works) for the warm-up. */
function blankSite() {
  return new Promise((resolve) => {
    const site = http.createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><meta charset="utf-8"><title>warm-up</title><p>Warm-up · Ωμέγα · 你好 · ☎</p>');
    });
    site.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${site.address().port}/`, close: () => site.close() }));
  });
}

/**
 * Pay a new machine's one-time costs before anything is timed: a page (`url`, else a
 * blank one on 127.0.0.1), fonts, the fake devices and a loopback call. Returns how
 * long it took (ms); throws HarnessError past the warm-up limit.
 */
export async function warmUp(browser, { url, contextOptions } = {}) {
  const t0 = Date.now();
  const site = url ? null : await blankSite();
  let context;
  try {
    const run = async () => {
      context = await browser.newContext(contextOptions);
      const page = await context.newPage();
      await page.goto(url || site.url, { timeout: WARMUP_LIMIT_MS });
      const got = await page.evaluate(LOOPBACK_CALL);
      if (got !== 'hello') throw new Error(`the data channel delivered ${JSON.stringify(got)}`);
    };
    await within(run(), WARMUP_LIMIT_MS, 'Chromium warm-up (a page, the fake camera and microphone, a loopback call to its first video frame)', t0);
  } catch (e) {
    if (isHarnessFailure(e)) throw e;
    throw new HarnessError('Chromium warm-up (a page, the fake camera and microphone, a loopback call to its first video frame) failed', Date.now() - t0, e);
  } finally {
    await context?.close().catch(() => {});
    site?.close();
  }
  return Date.now() - t0;
}

/**
 * Load `url` in `page` and wait for `ready` (a page function) under the page-load limit.
 * A page that does not come within the limit is a harness failure; a server that
 * answers with an error status, or an app that throws while starting, is a verdict
 * (a plain Error), since that is the product failing.
 */
export async function loadPage(page, url, { ready, what = 'the page' } = {}) {
  const t0 = Date.now();
  const thrown = [];
  const failed = [];
  const onError = (e) => thrown.push(e.message);
  const onFailed = (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`);
  page.on('pageerror', onError);
  page.on('requestfailed', onFailed);
  try {
    // A network change in the page's namespace (a lab plugging a device in) aborts the
    // page's requests in flight with ERR_NETWORK_CHANGED, and a module whose fetch failed
    // never runs: load the page again then, twice at most. Not the product failing.
    for (let attempt = 0; ; attempt++) {
      failed.length = 0;
      let response;
      try {
        response = await page.goto(url, { timeout: Math.max(1000, PAGE_LOAD_LIMIT_MS - (Date.now() - t0)) });
      } catch (e) {
        if (/ERR_NETWORK_CHANGED/.test(e.message) && attempt < 2) continue;
        if (/Timeout/i.test(e.name + e.message)) throw new HarnessError(`${what} at ${url} did not load`, Date.now() - t0, e);
        throw e;
      }
      if (response && !response.ok()) throw new Error(`${what} at ${url}: the server answered ${response.status()}`);
      if (!ready) return;
      const networkChanged = () => failed.some((f) => /ERR_NETWORK_CHANGED/.test(f));
      // Waited for in slices, so a network change is acted on within seconds.
      let again = false;
      while (!again) {
        const left = PAGE_LOAD_LIMIT_MS - (Date.now() - t0);
        try {
          await page.waitForFunction(ready, null, { timeout: Math.max(500, Math.min(2000, left)), polling: 100 });
          return;
        } catch (e) {
          if (!/Timeout/i.test(e.name + e.message)) throw e;
          if (networkChanged() && attempt < 2 && left > 2000) {
            console.log(`[harness] ${what} at ${url}: requests ended by a network change (${failed.join('; ')}); loading it again`);
            thrown.length = 0;
            again = true;
          } else if (left <= 2000) {
            if (thrown.length) throw new Error(`${what} at ${url} failed to start: ${thrown.join('; ')}`);
            const why = failed.length ? ` (failed requests: ${failed.join('; ')})` : '';
            throw new HarnessError(`${what} at ${url} did not run its script${why}`, Date.now() - t0, e);
          }
        }
      }
    }
  } finally {
    page.off('pageerror', onError);
    page.off('requestfailed', onFailed);
  }
}

// Phone calls in the web app (issue 12) with real Chromium, a real baresip phone (sip-lab.mjs)
// and the server's SIP gateway: the page dials baresip from its Phone dialog, baresip dials
// the room, and calls that cannot work say why. What is checked is what a user would see
// and hear: the call's tile and its state, the phone's 440 Hz in the page (WebAudio FFT of
// the call member's track), the page's 1,000 Hz in baresip's recording, keys both ways,
// and the gateway's gauges back to 0 once the call is over.
// With `?audio=pcmu` the page sends G.711 and the gateway passes it through both ways (docs/sip.md).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { scope, randomId, waitFor, sleep, launchBrowser, toneWav } from './harness.mjs';
import { SMALL_CAMERA } from './sfu-helpers.mjs';
import { startBaresip, sipServer, metrics, freePortPair, sipTiles, waitTileState, waitNoTile, heardTone, expectGaugesZero } from './sip-lab.mjs';

let browser;
// The page's microphone: a steady 1,000 Hz (baresip plays 440 Hz: the two are told apart).
before(async () => { browser = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav({ hz: 1000, seconds: 4 })}`]); });
after(async () => { await browser?.close(); });

/** A page in `room` (SFU from the start, small camera), joined. */
async function openPage(s, server, room, name = 'Ada') {
  const p = await s.open(browser, server, room, { name, query: { topology: 'sfu' }, init: [SMALL_CAMERA] });
  await p.joined();
  // Every `sip` report the SDK emitted, in order.
  await p.page.evaluate(() => {
    window.__sip = [];
    window.sbApp.sb.on('sip', (e) => window.__sip.push(e));
  });
  return p;
}

/** Type `to` in the Phone dialog and press Enter. */
async function dial(p, to) {
  await p.page.click('#sip-call');
  await p.page.waitForSelector('#sip-dialog[open]', { timeout: 5000 });
  await p.page.fill('#sip-target', to);
  await p.page.press('#sip-target', 'Enter');
}

/** Wait until the page hears baresip's 440 Hz (±15 Hz) from member `id`; returns the measurement. */
async function expectHears440(p, id) {
  let last = null;
  await waitFor(async () => {
    last = await heardTone(p, id);
    return last && Math.abs(last.hz - 440) <= 15 && last.db > -60;
  }, { timeout: 20000, interval: 300, what: `${p.name}: baresip's 440 Hz on the call's track (last: ${JSON.stringify(last)})` });
  return last;
}

/**
 * baresip's recording of the call holds the page's 1,000 Hz (±25 Hz): at least 1 s of
 * sound whose median frequency (100 ms frames) is that.
 */
async function expectRecorded1000(phone) {
  const rec = await phone.recordedTone();
  assert.ok(rec.seconds >= 1, `baresip recorded ${rec.seconds.toFixed(1)} s of sound in ${rec.total.toFixed(1)} s: ${JSON.stringify(rec)}`);
  assert.ok(Math.abs(rec.hz - 1000) <= 25, `baresip heard ${rec.hz.toFixed(1)} Hz at RMS ${rec.rms.toFixed(0)}, not the page's 1,000 Hz: ${JSON.stringify(rec)}`);
  return rec;
}

/** The audio codecs the page sends and receives on its SFU connection (`getStats`). */
function audioCodecs(p) {
  return waitFor(() => p.page.evaluate(async () => {
    const stats = await window.sbApp.sb.sfu.pc.getStats();
    const mime = (kind) => [...stats.values()].filter((r) => r.type === kind && r.kind === 'audio' && r.codecId).map((r) => stats.get(r.codecId)?.mimeType);
    const out = mime('outbound-rtp');
    const inn = mime('inbound-rtp');
    return out.length && inn.length ? { out, in: inn } : null;
  }), { timeout: 10000, what: `${p.name} sending and receiving audio` });
}

/** Runs `fn(phone)` with a baresip that is stopped afterwards; its output joins a failure. */
async function withPhone(fn) {
  const phone = await startBaresip();
  try {
    await fn(phone);
  } catch (e) {
    e.message += `\n--- baresip events: ${phone.eventTypes().join(' ')}\n--- baresip output:\n${phone.logTail()}`;
    throw e;
  } finally {
    await phone.stop();
  }
}

test('the page calls baresip: tile Connected, the page hears 440 Hz (tile speaking), baresip hears 1,000 Hz, hang up from the tile', { timeout: 120000 }, () => scope('sip-outbound', async (s) => {
  const server = await sipServer(s);
  const room = randomId('sipout-');
  await withPhone(async (phone) => {
    const ada = await openPage(s, server, room);
    await dial(ada, phone.uri);
    const tile = await waitTileState(ada, /^(Dialing…|Ringing…|Connected)$/);
    await waitTileState(ada, /^Connected$/);
    await phone.waitEvent('CALL_ESTABLISHED', 5000);
    const states = await ada.page.evaluate(() => window.__sip.filter((e) => e.state).map((e) => e.state));
    assert.ok(states.includes('connected'), `sip states reported: ${states}`);
    const m = await metrics(server);
    assert.equal(m.switchboard_sip_calls, 1, 'one SIP call up during the call');
    const heard = await expectHears440(ada, tile.id);
    // The phone's steady tone lights the tile's speaking indicator, as anyone's voice does.
    await waitFor(() => ada.page.$eval(`.tile.sip[data-peer-id="${tile.id}"]`, (e) => e.classList.contains('speaking')), {
      timeout: 5000, what: "the call tile's speaking indicator while baresip plays its tone",
    });
    // Leave the page's tone a moment in baresip's recording before hanging up.
    await sleep(2000);
    await ada.page.click(`.tile.sip[data-peer-id="${tile.id}"] .sip-hangup`);
    await phone.waitEvent('CALL_CLOSED', 10000);
    await waitNoTile(ada);
    const rec = await expectRecorded1000(phone);
    await expectGaugesZero(server);
    process.stderr.write(`[sip-outbound] page heard ${heard.hz.toFixed(1)} Hz at ${heard.db.toFixed(1)} dB; baresip recorded ${rec.hz.toFixed(1)} Hz RMS ${rec.rms.toFixed(0)} (${rec.seconds.toFixed(1)} of ${rec.total.toFixed(1)} s sounding; whole ${rec.whole.hz.toFixed(1)} Hz); states ${states.join(' ')}\n`);
  });
}));

test('baresip dials the room: a call tile, tones both ways, keypad 1 9 # reach baresip, its 5 8 show on the tile, its hangup ends the tile', { timeout: 120000 }, () => scope('sip-inbound', async (s) => {
  const server = await sipServer(s);
  const room = randomId('sipin-');
  await withPhone(async (phone) => {
    const ada = await openPage(s, server, room);
    phone.command('dial', `sip:${room}@127.0.0.1:${server.sipPort}`);
    const tile = await waitTileState(ada, /^Connected$/, 20000);
    await phone.waitEvent('CALL_ESTABLISHED', 10000);
    const heard = await expectHears440(ada, tile.id);
    // A page that states no audio codec keeps Opus (the SFU also takes G.711, after Opus).
    const codecs = await audioCodecs(ada);
    assert.deepEqual(codecs.out, ['audio/opus'], `the page's audio codec: ${JSON.stringify(codecs)}`);

    const sel = `.tile.sip[data-peer-id="${tile.id}"]`;
    await ada.page.click(`${sel} .sip-keypad-toggle`);
    for (const key of ['1', '9', '#']) {
      await ada.page.click(`${sel} .sip-keypad button[data-key="${key}"]`);
      await sleep(300);
    }
    await waitFor(() => phone.dtmfReceived().length >= 3, { timeout: 10000, what: `baresip's CALL_DTMF_START for 1 9 # (got "${phone.dtmfReceived()}")` });
    assert.equal(phone.dtmfReceived(), '19#', 'the keys baresip received, in order');

    await phone.pressKey('5');
    await sleep(500);
    await phone.pressKey('8');
    await waitFor(async () => (await sipTiles(ada))[0]?.keys === 'Keys: 5 8', { timeout: 10000, what: 'the tile showing "Keys: 5 8"' });
    const dtmf = await ada.page.evaluate(() => window.__sip.filter((e) => e.dtmf).map((e) => e.dtmf).join(''));
    assert.equal(dtmf, '58', 'sip dtmf events in the page');

    await sleep(1000);
    phone.command('hangup');
    await waitTileState(ada, /^Hung up/, 10000);
    await waitNoTile(ada);
    const rec = await expectRecorded1000(phone);
    await expectGaugesZero(server);
    process.stderr.write(`[sip-inbound] page heard ${heard.hz.toFixed(1)} Hz at ${heard.db.toFixed(1)} dB; baresip recorded ${rec.hz.toFixed(1)} Hz RMS ${rec.rms.toFixed(0)} (${rec.seconds.toFixed(1)} of ${rec.total.toFixed(1)} s sounding; whole ${rec.whole.hz.toFixed(1)} Hz)\n`);
  });
}));

test('calls that cannot work say why: an unreachable SIP address ends with its reason on the tile; an invalid target shows the 400 reason and no tile', { timeout: 120000 }, () => scope('sip-bad-target', async (s) => {
  // T1 of 100 ms: an unanswered INVITE times out (Timer B, 64 x T1) in 6.4 s, not 32 s.
  const server = await sipServer(s, ['--sip-timer-t1', '100']);
  const room = randomId('sipbad-');
  const ada = await openPage(s, server, room);

  // Nobody listens there: the gateway's INVITE times out (or is refused), and the call says so.
  const closed = await freePortPair();
  await dial(ada, `sip:nobody@127.0.0.1:${closed}`);
  const outcome = await waitFor(async () => {
    const ts = await sipTiles(ada);
    const failedTile = ts.find((t) => /^Hung up: \S/.test(t.state));
    if (failedTile) return { tile: failedTile };
    const toasts = await ada.page.$$eval('.toast-text', (els) => els.map((e) => e.textContent));
    const failedToast = toasts.find((t) => t.includes(`sip:nobody@127.0.0.1:${closed} failed: `));
    return failedToast ? { toast: failedToast } : null;
  }, { timeout: 30000, interval: 250, what: 'the failed call shown with its reason (tile or toast)' });
  if (outcome.tile) {
    assert.match(outcome.tile.state, /^Hung up: \d{3} /, `the tile names the SIP status: ${outcome.tile.state}`);
    await waitNoTile(ada, 15000);
  }
  await expectGaugesZero(server);

  // Not a target at all: the server's 400 reason, no call, no tile.
  const direct = await ada.page.evaluate(async (room) => {
    const r = await fetch('/api/sip/calls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ room, to: 'not a uri ::' }) });
    return { status: r.status, body: await r.json().catch(() => null) };
  }, room);
  assert.equal(direct.status, 400, `POST /api/sip/calls with an invalid target: ${JSON.stringify(direct)}`);
  assert.ok(direct.body && typeof direct.body.error === 'string' && direct.body.error, `a reason: ${JSON.stringify(direct)}`);
  await dial(ada, 'not a uri ::');
  const toast = await waitFor(async () => {
    const toasts = await ada.page.$$eval('.toast-text', (els) => els.map((e) => e.textContent));
    return toasts.find((t) => t.startsWith('Call to not a uri :: failed: '));
  }, { timeout: 10000, what: 'the toast of the refused call' });
  assert.ok(toast.includes(direct.body.error), `the toast "${toast}" shows the server's reason "${direct.body.error}"`);
  await sleep(1000);
  assert.deepEqual(await sipTiles(ada), [], 'no call tile for a refused target');
  process.stderr.write(`[sip-bad-target] unreachable: ${JSON.stringify(outcome)}; invalid: ${toast}\n`);
}));

test('a page sending PCMU (?audio=pcmu) and a PCMU phone: G.711 passes the gateway untranscoded both ways, tones heard both ways', { timeout: 120000 }, () => scope('sip-passthrough', async (s) => {
  const server = await sipServer(s);
  const room = randomId('sippass-');
  const frames = (m) => ['to_phone', 'to_room'].flatMap((d) => ['passthrough', 'transcoded'].map((p) => m[`switchboard_sip_media_frames_total{direction="${d}",path="${p}"}`] ?? 0));
  await withPhone(async (phone) => {
    const ada = await s.open(browser, server, room, { name: 'Ada', query: { topology: 'sfu', audio: 'pcmu' }, init: [SMALL_CAMERA] });
    await ada.joined();
    phone.command('dial', `sip:${room}@127.0.0.1:${server.sipPort}`);
    const tile = await waitTileState(ada, /^Connected$/, 20000);
    await phone.waitEvent('CALL_ESTABLISHED', 10000);
    // The page sends PCMU (its offer had nothing else).
    const codecs = await audioCodecs(ada);
    assert.deepEqual(codecs.out, ['audio/PCMU'], `the page's audio codec: ${JSON.stringify(codecs)}`);
    const heard = await expectHears440(ada, tile.id);
    // Passthrough both ways once each side heard the other; then 100 more frames each way
    // (2 s; longer on a loaded machine) with no more frames coded by the gateway than a late
    // packet's concealment makes (3). The counters reach the metrics once a second.
    let before = [];
    await waitFor(async () => {
      before = frames(await metrics(server));
      return before[0] >= 100 && before[2] >= 100;
    }, { timeout: 15000, interval: 500, what: `passthrough frames both ways (last: ${before})` });
    let after = before;
    await waitFor(async () => {
      after = frames(await metrics(server));
      return after[0] >= before[0] + 100 && after[2] >= before[2] + 100;
    }, { timeout: 20000, interval: 500, what: `passthrough going on (${before} -> ${after})` });
    assert.ok(after[1] - before[1] <= 3 && after[3] - before[3] <= 3, `transcoded frames during 100 frames of passthrough: ${before} -> ${after}`);
    // And now receives the call as PCMU too (it was Opus until the gateway heard the page).
    const late = await audioCodecs(ada);
    assert.deepEqual(late.in, ['audio/PCMU'], `the call's codec at the page: ${JSON.stringify(late)}`);
    phone.command('hangup');
    await waitTileState(ada, /^Hung up/, 10000);
    const rec = await expectRecorded1000(phone);
    await expectGaugesZero(server);
    process.stderr.write(`[sip-passthrough] page sends ${codecs.out}, receives ${codecs.in} then ${late.in}; heard ${heard.hz.toFixed(1)} Hz at ${heard.db.toFixed(1)} dB; baresip recorded ${rec.hz.toFixed(1)} Hz RMS ${rec.rms.toFixed(0)}; frames (to_phone passed, transcoded, to_room passed, transcoded) ${before} -> ${after}\n`);
  });
}));

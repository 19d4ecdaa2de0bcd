// Issue 12's "Show it" with real Chromium pages: kamailio as registrar with digest auth
// (crates/sip/tests/lab/kamailio.cfg, shared with the Rust interop tests), the gateway
// registered as alice (`--sip-account …;room=<room>`), Debian's baresip registered as bob.
// One kamailio and one gateway serve the whole file; each variant starts its own baresip:
//
// - per variant (PCMU, PCMA, PCMU + SDES-SRTP, PCMA + SDES-SRTP, DTLS-SRTP + ICE on
//   baresip's side): baresip calls alice through kamailio, the call lands in the room, a
//   Chromium page (1,000 Hz microphone) hears baresip's 440 Hz (WebAudio FFT of the call's
//   track) and baresip's recording holds the page's 1,000 Hz; then the page calls bob
//   through kamailio (`sb.sip.call`, 407 answered with alice's credentials; for the SRTP
//   variants the target asks for it: `;srtp=sdes` or `;srtp=dtls`), the same both ways,
//   and ends the call with `sb.sip.cancel` (DELETE);
// - three parties: two pages (1,000 Hz and 600 Hz, two Chromiums) and baresip: baresip's
//   recording holds both pages mixed and not its own 440 Hz, each page hears 440 Hz and the
//   other page.
//
// After every call the gateway's gauges (calls, dialogs, transactions, media tasks, RTP
// ports) are back to 0. These replace the str0m-member tests of sip_baresip.rs.
//
// Not here: keys from baresip as SIP INFO. Debian's baresip 1.0.0 sends keys as RFC 4733
// only (it parses an incoming INFO's dtmf-relay but never sends one: no sipsess_info);
// INFO keys both ways are covered by crates/switchboard/tests/e2e_sip/calls.rs with the gateway's own UA as the phone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { scope, waitFor, sleep, launchBrowser, toneWav, startServer, HarnessError } from './harness.mjs';
import { SMALL_CAMERA } from './sfu-helpers.mjs';
import { startBaresip, startKamailio, sipServer, metrics, waitTileState, waitNoTile, heardTone, expectGaugesZero, ALL_GAUGES, toneShareDb } from './sip-lab.mjs';

const ROOM = 'office';
let browser; // microphone: 1,000 Hz
let browser600; // microphone: 600 Hz (the three-party room's second page)
let kamailio;
let server;
const fileStart = Date.now();

before(async () => {
  browser = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav({ hz: 1000, seconds: 4 })}`]);
  browser600 = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav({ hz: 600, seconds: 4 })}`]);
  kamailio = await startKamailio();
  // The server outlives each test's scope: one gateway, registered once, for the file.
  // T1 of 100 ms (as sip_baresip.rs): the transactions' wait states end in 6.4 s, not 32 s.
  server = await sipServer({ server: (o) => startServer(o) }, ['--sip-timer-t1', '100', '--sip-account', `alice:alicepw@127.0.0.1:${kamailio.port};expires=60;room=${ROOM}`]);
  let m = {};
  await waitFor(async () => (m = await metrics(server)).switchboard_sip_registrations === 1, {
    timeout: 10000, what: `the gateway registered at kamailio as alice (switchboard_sip_registrations ${m.switchboard_sip_registrations})\n${kamailio.logTail()}`,
  });
});
after(async () => {
  await server?.stop();
  await kamailio?.stop();
  await browser?.close();
  await browser600?.close();
  process.stderr.write(`[sip-matrix] file took ${((Date.now() - fileStart) / 1000).toFixed(1)} s\n`);
});

/** baresip registered at kamailio as bob, auto answering, with `params` (codec, media encryption) and `extra` config lines. */
async function startBob(params, extra = []) {
  const phone = await startBaresip({
    account: () => `<sip:bob@127.0.0.1:${kamailio.port};transport=udp>;auth_pass=bobpw;answermode=auto;regint=60;${params}`,
    extra,
  });
  // It registered at start, before ctrl_tcp was connected: ask (`reginfo`) until kamailio said OK.
  try {
    await waitFor(async () => {
      const seen = phone.events.length;
      phone.command('reginfo');
      await waitFor(() => phone.events.length > seen, { timeout: 2000, interval: 50, what: 'the answer to reginfo' });
      return /OK\W.*Expires/.test(String(phone.events.at(-1)?.data ?? ''));
    }, { timeout: 10000, interval: 200, what: 'baresip registered at kamailio as bob (reginfo: OK)' });
  } catch (e) {
    e.message += `\n--- baresip output:\n${phone.logTail()}\n--- kamailio:\n${kamailio.logTail(15)}`;
    await phone.stop();
    throw e;
  }
  return phone;
}

/** Runs `fn(phone)` with bob's baresip, stopped afterwards; baresip's, kamailio's and the gateway's output join a failure. */
async function withBob(params, extra, fn) {
  const phone = await startBob(params, extra);
  try {
    await fn(phone);
  } catch (e) {
    e.message += `\n--- baresip events: ${phone.eventTypes().join(' ')}\n--- baresip output:\n${phone.logTail()}` +
      `\n--- kamailio:\n${kamailio.logTail(15)}\n--- gateway:\n${server.lines.slice(-40).join('\n')}`;
    throw e;
  } finally {
    await phone.stop();
  }
}

/** A page in the account's room (SFU from the start, small camera), joined. */
async function openPage(s, b, name) {
  const p = await s.open(b, server, ROOM, { name, query: { topology: 'sfu' }, init: [SMALL_CAMERA] });
  await p.joined();
  return p;
}

/** The `n`th event of `type` from baresip (its events accumulate over its calls). */
function waitEventCount(phone, type, n, timeout = 15000) {
  return waitFor(() => phone.events.filter((e) => e.event && e.type === type).length >= n, {
    timeout, interval: 100, what: `baresip event ${type} #${n} (seen: ${phone.eventTypes().join(' ')})`,
  });
}

/**
 * Page `p` hears `hz` (±15 Hz, its FFT peak above `minDb` dBFS) on member `id`'s track;
 * returns the measurement. The phone's tone arrives at about -23 dB: -40 is at least as
 * strict as sip_baresip.rs's RMS > 500 (-36 dBFS); a page's tone at another page, after
 * Chromium's capture processing, at about -42 dB.
 */
async function expectHears(p, id, hz, what, minDb = -40) {
  let last = null;
  try {
    await waitFor(async () => {
      last = await heardTone(p, id);
      return last && Math.abs(last.hz - hz) <= 15 && last.db > minDb;
    }, { timeout: 20000, interval: 300, what: `${p.name}: ${what} at ${hz} Hz` });
  } catch (e) {
    e.message += ` (heard: ${JSON.stringify(last)})`;
    throw e;
  }
  return last;
}

/** baresip's recording of its last call holds `hz` (±25 Hz): at least 1 s of sound whose median frequency is that. */
async function expectRecorded(phone, hz, what) {
  const rec = await phone.recordedTone();
  assert.ok(rec.seconds >= 1, `${what}: baresip recorded ${rec.seconds.toFixed(1)} s of sound in ${rec.total.toFixed(1)} s: ${JSON.stringify(rec)}`);
  assert.ok(Math.abs(rec.hz - hz) <= 25, `${what}: baresip heard ${rec.hz.toFixed(1)} Hz at RMS ${rec.rms.toFixed(0)}, not the page's ${hz} Hz: ${JSON.stringify(rec)}`);
  return rec;
}

// `long`: covered by the others (each codec, plain RTP, SDES and DTLS-SRTP run in every
// run); all five run with SB_LONG_TESTS=1, outside CI's time budget.
const VARIANTS = [
  { name: 'PCMU', params: 'audio_codecs=PCMU/8000/1', long: true },
  { name: 'PCMA', params: 'audio_codecs=PCMA/8000/1' },
  { name: 'PCMU + SDES-SRTP', params: 'audio_codecs=PCMU/8000/1;mediaenc=srtp-mand', srtp: 'sdes', long: true },
  { name: 'PCMA + SDES-SRTP', params: 'audio_codecs=PCMA/8000/1;mediaenc=srtp-mand', srtp: 'sdes' },
  // baresip's ICE gathers no loopback candidate: it needs another address (withNonLoopbackAddress).
  { name: 'PCMU + DTLS-SRTP + ICE', params: 'audio_codecs=PCMU/8000/1;mediaenc=dtls_srtp;medianat=ice', extra: ['module dtls_srtp.so', 'module ice.so', 'rtcp_mux yes'], ice: true, srtp: 'dtls' },
];

/**
 * Runs `fn` while the test's network namespace has an address besides 127.0.0.1: a veth
 * pair (both ends in this namespace, nothing leaves it) with 192.0.2.200/32 (TEST-NET-1).
 * baresip's ICE module skips loopback addresses and fails the call ("gather error") in a
 * loopback-only namespace. Added after the page joined (its connection keeps its loopback
 * candidates) and removed right after the call.
 */
async function withNonLoopbackAddress(fn) {
  const ip = (...args) => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.error?.message || r.stderr}`);
  };
  try {
    ip('link', 'add', 'sbice0', 'type', 'veth', 'peer', 'name', 'sbice1');
    // No IPv6 link-local addresses: each would be one more network change to the running
    // Chromium a second or two later, mid-call (it aborts requests in flight).
    ip('link', 'set', 'sbice0', 'addrgenmode', 'none');
    ip('link', 'set', 'sbice1', 'addrgenmode', 'none');
    ip('addr', 'add', '192.0.2.200/32', 'dev', 'sbice0');
    ip('link', 'set', 'sbice0', 'up');
    ip('link', 'set', 'sbice1', 'up');
  } catch (e) {
    spawnSync('ip', ['link', 'del', 'sbice0']);
    throw new HarnessError('an address besides loopback for baresip ICE (needs root in the test namespace)', 0, e);
  }
  try {
    return await fn();
  } finally {
    spawnSync('ip', ['link', 'del', 'sbice0']);
  }
}

for (const v of VARIANTS) {
  const title = `${v.name}: baresip (bob) calls alice through kamailio, the page in the room hears 440 Hz and baresip records 1,000 Hz; ` +
    `the page calls bob through kamailio${v.srtp ? ` (;srtp=${v.srtp})` : ''}: the same both ways`;
  const skip = v.long && !process.env.SB_LONG_TESTS && 'covered by the other variants: set SB_LONG_TESTS=1';
  test(title, { timeout: 150000, skip }, () => scope(`sip-matrix-${v.name}`, async (s) => {
    await withBob(v.params, v.extra, async (phone) => {
      const ada = await openPage(s, browser, 'Ada');
      // In: bob -> alice@kamailio -> the gateway's registered contact -> the room.
      const callIn = async () => {
        phone.command('dial', `sip:alice@127.0.0.1:${kamailio.port}`);
        const tile = await waitTileState(ada, /^Connected$/, 20000);
        await waitEventCount(phone, 'CALL_ESTABLISHED', 1, 10000);
        const heard = await expectHears(ada, tile.id, 440, `[${v.name}, in] baresip's tone on the call's track`);
        await sleep(2000); // the page's tone a while in baresip's recording
        phone.command('hangup');
        await waitNoTile(ada);
        return heard;
      };
      const heardIn = v.ice ? await withNonLoopbackAddress(callIn) : await callIn();
      const recIn = await expectRecorded(phone, 1000, `[${v.name}, in]`);
      await expectGaugesZero(server, 10000, ALL_GAUGES);
      // Out: the page -> the gateway -> kamailio (407, alice's credentials) -> bob, with the
      // variant's SRTP asked for on the target (the gateway takes the parameter off).
      phone.clearRecordings();
      const target = `sip:bob@127.0.0.1:${kamailio.port}${v.srtp ? `;srtp=${v.srtp}` : ''}`;
      const callOut = async () => {
        const { call } = await ada.page.evaluate((to) => window.sbApp.sb.sip.call(to), target);
        const outTile = await waitTileState(ada, /^Connected$/, 20000);
        await waitEventCount(phone, 'CALL_ESTABLISHED', 2, 10000);
        const heardOut = await expectHears(ada, outTile.id, 440, `[${v.name}, out] baresip's tone on the call's track`);
        await sleep(2000);
        assert.equal(await ada.page.evaluate((c) => window.sbApp.sb.sip.cancel(c), call), true, `[${v.name}, out] DELETE of call ${call}`);
        await waitEventCount(phone, 'CALL_CLOSED', 2, 10000);
        await waitNoTile(ada);
        return heardOut;
      };
      const heardOut = v.ice ? await withNonLoopbackAddress(callOut) : await callOut();
      const recOut = await expectRecorded(phone, 1000, `[${v.name}, out]`);
      await expectGaugesZero(server, 10000, ALL_GAUGES);
      const out = `; out: page heard ${heardOut.hz.toFixed(1)} Hz at ${heardOut.db.toFixed(1)} dB, baresip recorded ${recOut.hz.toFixed(1)} Hz RMS ${recOut.rms.toFixed(0)}`;
      process.stderr.write(`[sip-matrix ${v.name}] in: page heard ${heardIn.hz.toFixed(1)} Hz at ${heardIn.db.toFixed(1)} dB, baresip recorded ${recIn.hz.toFixed(1)} Hz RMS ${recIn.rms.toFixed(0)}${out}\n`);
    });
  }));
}

test('three parties: two pages (1,000 Hz, 600 Hz) and baresip: baresip hears both pages mixed and not itself, each page hears 440 Hz and the other page', { timeout: 150000 }, () => scope('sip-matrix-three', async (s) => {
  await withBob('audio_codecs=PCMU/8000/1', [], async (phone) => {
    const ada = await openPage(s, browser, 'Ada');
    const bea = await openPage(s, browser600, 'Bea');
    phone.command('dial', `sip:alice@127.0.0.1:${kamailio.port}`);
    const tileA = await waitTileState(ada, /^Connected$/, 20000);
    const tileB = await waitTileState(bea, /^Connected$/, 20000);
    assert.equal(tileA.id, tileB.id, 'both pages show the same call');
    const heard = {};
    for (const [p, other, hz] of [[ada, bea, 600], [bea, ada, 1000]]) {
      heard[`${p.name} <- phone`] = await expectHears(p, tileA.id, 440, "baresip's tone on the call's track");
      heard[`${p.name} <- ${other.name}`] = await expectHears(p, other.peerId, hz, `${other.name}'s tone on ${other.name}'s track`, -60);
    }
    await sleep(2000);
    phone.command('hangup');
    await waitNoTile(ada);
    const { samples, rate } = await phone.recordedSamples();
    // Past the first second: both pages are talking by then.
    const rest = samples.slice(Math.min(rate, samples.length));
    const db = { 1000: toneShareDb(rest, rate, 1000), 600: toneShareDb(rest, rate, 600), 440: toneShareDb(rest, rate, 440) };
    const summary = `1000 Hz ${db[1000].toFixed(1)} dB, 600 Hz ${db[600].toFixed(1)} dB, 440 Hz ${db[440].toFixed(1)} dB of the whole (${(rest.length / rate).toFixed(1)} s)`;
    assert.ok(rest.length >= rate, `baresip recorded ${(samples.length / rate).toFixed(1)} s`);
    assert.ok(db[1000] > -10 && db[600] > -10, `baresip did not hear both pages mixed: ${summary}`);
    assert.ok(db[440] < -25, `baresip heard its own 440 Hz back: the mix must leave the phone out: ${summary}`);
    await expectGaugesZero(server, 10000, ALL_GAUGES);
    const h = Object.entries(heard).map(([k, x]) => `${k} ${x.hz.toFixed(1)} Hz ${x.db.toFixed(1)} dB`).join('; ');
    process.stderr.write(`[sip-matrix three] ${h}; baresip's recording: ${summary}\n`);
  });
}));

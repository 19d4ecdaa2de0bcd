// The trapezoid (issue 13, "Show it"): a page signed in as ada on Switchboard A (a.test,
// 127.0.0.1) calls bob on Switchboard B (b.test, 127.0.0.2), once over each way the two
// servers reach each other (trapezoid-lab.mjs):
// - XMPP/Jingle: each Switchboard is the component sb.<domain> of its own Debian prosody, and
//   the two prosody servers talk s2s; every stanza of a call crossed both prosody servers,
//   both ways (their logs);
// - SIP: no prosody; each Switchboard's SIP gateway listens on its own address and
//   `--sip-federation` names the other's: the INVITE carries the caller's browser offer, the
//   200 OK the callee's answer, their candidates written in by the servers; the caller's
//   server logged the call out, the callee's the call in, and the caller's the SIP status the
//   call ended with.
// Over each: bob's page rings naming ada@a.test, he accepts, both pages decode each other's
// video and hear each other's audio, and the selected candidate pair is host to host
// between the two Chromium pages (no relay, no server socket). The same back: bob calls
// ada@a.test.
// Then each way a call can fail to happen, shown in words on ada's page: declined, busy (by
// bob's choice, and because he is in a call on B), unreachable (nobody@b.test, and
// someone@c.test, a domain A does not federate with) and cancelled before an answer (bob's
// ringing stops).
//
// SB_TEST_PATTERN='over SIP' (or 'over XMPP') runs one way. SB_TRAPEZOID_BENCH=1 also
// times 10 calls ada -> bob through the XMPP trapezoid and 10 on one server (dial ->
// ringing -> answered -> first decoded frame, medians printed; the figures of
// docs/benchmarks.md, not asserted); SB_TRAPEZOID_OUT=FILE writes every call's times there
// (bench/trapezoid.sh).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { launchBrowser, toneWav, scope, waitFor } from './harness.mjs';
import {
  overXmpp, overSip, signIn, dial, ringsAt, outcome, inCall, expectDecoding, expectBrowserToBrowser,
  recordSetups, autoAccept, setups, median,
} from './trapezoid-lab.mjs';

let browser;
before(async () => {
  // A steady tone as the microphone: audio energy rises all the time, not only at beeps.
  browser = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav()}`]);
});
after(async () => {
  await browser?.close();
});

/** A test scope whose failures also carry what the way across logged (prosody's logs). */
function trapezoid(way, label, fn) {
  return scope(`${label}-${way.name}`, async (s) => {
    try {
      await fn(s);
    } catch (e) {
      e.message += way.diagnostics();
      throw e;
    }
  });
}

/** `p` hung up (or was hung up on): its call view closed and its call room left. */
async function callClosed(p) {
  await p.page.locator('#call-view').waitFor({ state: 'hidden', timeout: 15000 });
  await waitFor(() => p.page.evaluate(() => window.sbApp.sb === null), { timeout: 15000, what: `${p.name}: left the call room` });
}

/** Print a figure for the run's log and the test's report. */
function report(t, line) {
  process.stderr.write(`[trapezoid] ${line}\n`);
  t.diagnostic(line);
}

/**
 * `calls` calls from ada to `callee` (address `to`), each answered at once in the page and
 * hung up by ada once her page decoded a frame; returns the setups recorded on ada's page.
 */
async function timedCalls(ada, bob, to, calls) {
  await recordSetups(ada);
  await autoAccept(bob);
  for (let i = 0; i < calls; i++) {
    await dial(ada, to);
    await Promise.all([inCall(ada), inCall(bob)]);
    await waitFor(async () => (await setups(ada))[i]?.media, { timeout: 30000, what: `call ${i + 1}: ada decodes bob's video` });
    await ada.page.getByRole('button', { name: 'Hang up' }).click();
    await Promise.all([callClosed(ada), callClosed(bob)]);
  }
  const all = await setups(ada);
  assert.equal(all.length, calls);
  for (const [i, x] of all.entries()) assert.ok(x.ringing && x.answered && x.media, `call ${i + 1}: ${JSON.stringify(x)}`);
  return all;
}

/** Medians (and the range) of the times from the dial to each step. */
const summary = (xs) => {
  const ms = (k) => {
    const v = xs.map((x) => x[k] - x.dial);
    return `${median(v)} ms (${Math.min(...v)}-${Math.max(...v)})`;
  };
  return `dial -> ringing ${ms('ringing')}, -> answered ${ms('answered')}, -> first frame ${ms('media')}: medians of ${xs.length} (range)`;
};

/** The benchmark of `way` (XMPP): skipped unless SB_TRAPEZOID_BENCH=1. */
function benchmark(way) {
  test('setup times: 10 calls ada -> bob through the trapezoid and 10 on one server (SB_TRAPEZOID_BENCH=1)',
    { skip: !process.env.SB_TRAPEZOID_BENCH && 'a benchmark: set SB_TRAPEZOID_BENCH=1' },
    (t) => trapezoid(way, 'trapezoid-bench', async (s) => {
      const calls = Number(process.env.SB_TRAPEZOID_CALLS || 10);
      // ada dials 2 x `calls` times in a minute: more than a user may by default.
      const { a, b } = await way.servers(s, ['--call-dial-rate', '0', '--federation-rate', '0']);
      const ada = await signIn(s, browser, a, 'ada', 'Ada');
      const bobB = await signIn(s, browser, b, 'bob', 'Bob');
      const mark = way.mark();
      const across = await timedCalls(ada, bobB, 'bob@b.test', calls);
      const counts = way.stanzas(mark);
      report(t, `trapezoid (A -> prosody a.test -> prosody b.test -> B): ${summary(across)}; stanzas per call ` +
        `A→B ${(counts.aToB.acrossS2s / calls).toFixed(1)}, B→A ${(counts.bToA.acrossS2s / calls).toFixed(1)}`);
      await bobB.close();
      const bobA = await signIn(s, browser, a, 'bob', 'Bob');
      const local = await timedCalls(ada, bobA, 'bob', calls);
      report(t, `same server (A): ${summary(local)}`);
      // bench/trapezoid.sh reads every call's times (ms since the dial) from here.
      if (process.env.SB_TRAPEZOID_OUT) {
        const since = (xs) => xs.map((x) => ({ ringing: x.ringing - x.dial, answered: x.answered - x.dial, media: x.media - x.dial }));
        const stanzas = { aToB: counts.aToB.acrossS2s / calls, bToA: counts.bToA.acrossS2s / calls };
        writeFileSync(process.env.SB_TRAPEZOID_OUT, JSON.stringify({ trapezoid: since(across), same: since(local), stanzas }));
      }
    }));
}

for (const way of [overXmpp(), overSip()]) {
  describe(`over ${way.label}`, () => {
    // A way's lab (prosody) starts with its first test: a run of the other way's tests
    // alone (SB_TEST_PATTERN) does not start it.
    after(() => way.stop());

    test(`ada on A calls bob@b.test on B over ${way.label}: bob rings, accepts, both decode each other browser to browser; ${way.crossing}; then bob calls ada`, (t) => trapezoid(way, 'trapezoid-call', async (s) => {
      const { a, b } = await way.servers(s);
      const ada = await signIn(s, browser, a, 'ada', 'Ada');
      const bob = await signIn(s, browser, b, 'bob', 'Bob');
      const browserToBrowser = (x, y) => expectBrowserToBrowser(x, y, { servers: [a, b], others: way.others() });
      const mark = way.mark();

      await dial(ada, 'bob@b.test');
      await ada.page.locator('#calling-dialog').getByText('Ringing…').waitFor({ timeout: 15000 });
      const dlg = await ringsAt(bob, 'ada@a.test');
      await dlg.getByRole('button', { name: 'Accept' }).click();
      await Promise.all([inCall(ada), inCall(bob)]);
      assert.match(await ada.page.locator('#call-title').textContent(), /bob@b\.test/);

      const [adaGets, bobGets] = await Promise.all([expectDecoding(ada), expectDecoding(bob)]);
      report(t, `media: ${browserToBrowser(adaGets, bobGets)}; ada decoded ${adaGets.framesDecoded} frames (${adaGets.frameWidth} px wide), bob ${bobGets.framesDecoded} (${bobGets.frameWidth} px)`);

      await ada.page.getByRole('button', { name: 'Hang up' }).click();
      await outcome(ada, 'hangup', { text: /You hung up/ });
      await outcome(bob, 'hangup', { text: /ada@a\.test hung up/ });
      await Promise.all([callClosed(ada), callClosed(bob)]);
      report(t, `${way.label} of one call (ring, accept, media, hang-up): ${await way.crossed(mark, { caller: 'a', to: 'bob@b.test', outcome: 'hangup' })}`);

      // The other way: bob calls ada@a.test, so each side has played both parts.
      const back = way.mark();
      await dial(bob, 'ada@a.test');
      await (await ringsAt(ada, 'bob@b.test')).getByRole('button', { name: 'Accept' }).click();
      await Promise.all([inCall(ada), inCall(bob)]);
      const [adaHears, bobHears] = await Promise.all([expectDecoding(ada), expectDecoding(bob)]);
      report(t, `bob -> ada: ${browserToBrowser(adaHears, bobHears)}`);
      await bob.page.getByRole('button', { name: 'Hang up' }).click();
      await outcome(ada, 'hangup', { text: /bob@b\.test hung up/ });
      await Promise.all([callClosed(ada), callClosed(bob)]);
      report(t, `${way.label} bob -> ada: ${await way.crossed(back, { caller: 'b', to: 'ada@a.test', outcome: 'hangup' })}`);
    }));

    test(`declined, busy, unreachable (unknown user, unknown server) and cancelled before an answer are each shown on ada's page (${way.label})`, (t) => trapezoid(way, 'trapezoid-refusals', async (s) => {
      const { a, b } = await way.servers(s);
      const ada = await signIn(s, browser, a, 'ada', 'Ada');
      const bob = await signIn(s, browser, b, 'bob', 'Bob');
      const noRing = async (why) => assert.equal(await bob.page.getByRole('alertdialog').isVisible(), false, `bob was rung ${why}`);
      const crossed = (mark, to, why) => way.crossed(mark, { caller: 'a', to, outcome: why });

      // Declined by bob.
      let mark = way.mark();
      await dial(ada, 'bob@b.test');
      await (await ringsAt(bob, 'ada@a.test')).getByRole('button', { name: 'Decline' }).click();
      await outcome(ada, 'declined', { text: /bob@b\.test declined the call/ });
      assert.equal(await ada.page.locator('#calling-dialog').isVisible(), false, 'the calling screen is gone');
      report(t, `declined: ${await crossed(mark, 'bob@b.test', 'declined')}`);

      // Busy by bob's choice: his Busy button.
      mark = way.mark();
      await dial(ada, 'bob@b.test');
      await (await ringsAt(bob, 'ada@a.test')).getByRole('button', { name: 'Busy' }).click();
      await outcome(ada, 'busy', { text: /bob@b\.test is busy/ });
      report(t, `busy: ${await crossed(mark, 'bob@b.test', 'busy')}`);

      // Busy because bob is in a call (with cy, on B): B answers for him, he is not rung.
      const cy = await signIn(s, browser, b, 'cy', 'Cy');
      await dial(cy, 'bob');
      await (await ringsAt(bob, 'cy@b.test')).getByRole('button', { name: 'Accept' }).click();
      await Promise.all([inCall(cy), inCall(bob)]);
      mark = way.mark();
      await dial(ada, 'bob@b.test');
      await outcome(ada, 'busy', { text: /bob@b\.test is busy \(.+\)/ });
      await noRing('while in a call');
      report(t, `busy in a call: ${await crossed(mark, 'bob@b.test', 'busy')}`);
      await cy.page.getByRole('button', { name: 'Hang up' }).click();
      await Promise.all([callClosed(cy), callClosed(bob)]);

      // Unreachable: nobody is signed in as nobody at B (B answers across).
      mark = way.mark();
      await dial(ada, 'nobody@b.test');
      await outcome(ada, 'unreachable', { text: /nobody@b\.test can’t be reached/ });
      await noRing('for nobody@b.test');
      report(t, `unreachable user: ${await crossed(mark, 'nobody@b.test', 'unreachable')}`);

      // Unreachable: c.test, a domain A does not federate with (nothing reaches B).
      mark = way.mark();
      await dial(ada, 'someone@c.test');
      await outcome(ada, 'unreachable', { text: /someone@c\.test can’t be reached/, timeout: 30000 });
      await noRing('for someone@c.test');
      way.nothingCrossed(mark);

      // Cancelled by ada before bob answered: his ringing screen goes, he sees a missed call.
      mark = way.mark();
      await dial(ada, 'bob@b.test');
      await ringsAt(bob, 'ada@a.test');
      await ada.page.locator('#calling-dialog').getByText('Ringing…').waitFor({ timeout: 15000 });
      await ada.page.getByRole('button', { name: 'Cancel' }).click();
      await outcome(ada, 'cancelled', { text: /You cancelled the call/ });
      await bob.page.getByRole('alertdialog').waitFor({ state: 'hidden', timeout: 15000 });
      await outcome(bob, 'cancelled', { text: /Missed call: ada@a\.test cancelled/ });
      report(t, `cancelled: ${await crossed(mark, 'bob@b.test', 'cancelled')}`);
    }));

    if (way.name === 'xmpp') benchmark(way);
  });
}

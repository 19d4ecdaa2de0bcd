// Direct calls as people make them in the app's lobby (issue 13), the steps every calls test
// takes: sign a page in to its line, dial from the "Call someone" field, see the incoming
// screen name the caller, read the call-outcome line, be in the call. calls.test.mjs (one
// server) and trapezoid-lab.mjs (two servers, federation) both use these; their timeouts
// are parameters because a call across two servers takes longer to ring and connect.
import assert from 'node:assert/strict';
import { waitFor, Participant, loadPage } from './harness.mjs';

/**
 * A lobby page of `server` signed in as `user` (`?user=` signs in at once). Options:
 * `token` a room token for the line, `expectFail` return the page without waiting for the
 * sign-in, `label` the Participant's name (default `name`), `initScript` a function run in
 * the page before its scripts (e.g. to count its connections). Sets `p.user`.
 */
export async function signIn(s, browser, server, user, name, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (opts.initScript) await context.addInitScript(opts.initScript);
  const page = await context.newPage();
  const p = s.track(new Participant(opts.label || name, context, page));
  const q = new URLSearchParams({ user, name, ...(opts.token ? { token: opts.token } : {}) });
  await loadPage(page, `${server.url}/?${q}`, { ready: () => !!window.sbApp, what: 'the lobby' });
  if (opts.expectFail) return p;
  await page.waitForFunction(() => window.sbApp.line && window.sbApp.line.callsPeer, null, { timeout: 15000 });
  await page.getByText('Signed in').first().waitFor({ timeout: 5000 });
  p.user = user;
  return p;
}

/** `p` dials `to` from the "Call someone" field. */
export async function dial(p, to) {
  await p.page.getByLabel('Call someone').fill(to);
  await p.page.getByRole('button', { name: 'Call', exact: true }).click();
}

/** The incoming-call screen of `p`, naming `caller` (an address); returns the dialog. */
export async function ringsAt(p, caller, timeout = 10000) {
  const dlg = p.page.getByRole('alertdialog');
  await dlg.waitFor({ state: 'visible', timeout });
  const text = await dlg.textContent();
  assert.ok(text.includes(caller), `${p.name}'s incoming screen does not name ${caller}: ${text}`);
  return dlg;
}

/**
 * Wait for the call-outcome line of `p` to say `reason` (and its text to match `text`, when
 * given: the line still shows the last call's end until the next one ends); returns its text.
 */
export async function outcome(p, reason, { text = null, timeout = 10000 } = {}) {
  const box = p.page.locator('#call-outcome');
  const shown = async () => (await box.getAttribute('data-reason')) === reason && (!text || text.test(await box.textContent()));
  await waitFor(shown, { timeout, what: `${p.name}: call outcome ${reason}${text ? ` ${text}` : ''}` }).catch(async (e) => {
    e.message += ` (shown: ${await box.getAttribute('data-reason')} "${await box.textContent()}")`;
    throw e;
  });
  return box.textContent();
}

/** In a call: the page's call view shows and its call room session is open; returns (and sets) `p.peerId`. */
export async function inCall(p, timeout = 15000) {
  await p.page.getByRole('button', { name: 'Hang up' }).waitFor({ state: 'visible', timeout });
  p.peerId = await waitFor(() => p.page.evaluate(() => window.sbApp.sb && window.sbApp.sb.state === 'open' && window.sbApp.sb.peerId), { timeout, what: `${p.name}: joined the call room` });
  return p.peerId;
}

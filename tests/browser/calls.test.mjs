// Direct calls (issue 13) as people make them in the app's lobby, on one server: pages
// sign in to their lines, ada calls bob by name, bob's page rings and he accepts, both
// decode each other's video and audio; then each way a call can fail to happen (declined,
// busy because bob is in another call, unreachable because nobody is carol, cancelled
// before an answer) is shown in words on ada's page; and a third page is invited into a
// call, which then decodes both others. With room tokens: a token naming another user cannot
// take a line, an unanswered call ends "no answer", and the call rooms admit both parties with
// the tokens the server minted. Lines survive their WebSocket being cut: both resume and the
// call still rings. With configured users the password is asked for.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, scope, waitFor, mintToken, killTcp } from './harness.mjs';
import { dial, outcome, inCall, signIn as signInLine, ringsAt as ringsAtAddress } from './calls-lab.mjs';

const DOMAIN = 'a.test';
let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** A lobby page signed in as `user` (`?user=` signs in at once; `opts.token`: a room token). */
const signIn = (s, server, user, name, opts = {}) => signInLine(s, browser, server, user, name, opts);

/** The incoming-call screen of `p`, naming the caller (a user of this server). */
const ringsAt = (p, caller) => ringsAtAddress(p, `${caller}@${DOMAIN}`);

/** Each page of `ps` shows every other one's tile and decodes its video and audio. */
async function decodeEachOther(ps) {
  await Promise.all(ps.map((p) => p.waitRemoteTiles(ps.filter((q) => q !== p).map((q) => q.peerId))));
  for (const p of ps) for (const q of ps) if (q !== p) await p.expectFlowing(q.peerId, { audio: true });
}

/** ada calls bob, bob accepts: both in the call. */
async function connect(ada, bob) {
  await dial(ada, bob.user);
  await (await ringsAt(bob, ada.user)).getByRole('button', { name: 'Accept' }).click();
  await Promise.all([inCall(ada), inCall(bob)]);
}

const server = (s) => s.server({ args: ['--call-domain', DOMAIN] });

test('ada calls bob: his page rings, he accepts, both decode video and audio; ada hangs up', () => scope('direct-call', async (s) => {
  const sv = await server(s);
  const ada = await signIn(s, sv, 'ada', 'Ada');
  const bob = await signIn(s, sv, 'bob', 'Bob');
  await dial(ada, 'bob');
  const calling = ada.page.locator('#calling-dialog');
  await calling.getByText('Ringing…').waitFor({ timeout: 10000 });
  const dlg = await ringsAt(bob, 'ada');
  assert.ok((await dlg.textContent()).includes('Ada'), 'the caller\'s display name is shown');
  await dlg.getByRole('button', { name: 'Accept' }).click();
  await Promise.all([inCall(ada), inCall(bob)]);
  assert.equal(await calling.isVisible(), false, 'the calling screen is gone once answered');
  assert.match(await ada.page.locator('#call-title').textContent(), /bob@a\.test/);
  await decodeEachOther([ada, bob]);
  await ada.page.getByRole('button', { name: 'Hang up' }).click();
  assert.match(await outcome(ada, 'hangup'), /You hung up/);
  assert.match(await outcome(bob, 'hangup'), /ada@a\.test hung up/);
  for (const p of [ada, bob]) {
    assert.equal(await p.page.locator('#call-view').isVisible(), false, `${p.name}: the call view closed`);
    assert.equal(await p.page.evaluate(() => window.sbApp.sb), null);
  }
}));

test('declined, busy, unreachable and cancelled are each shown in words on the caller\'s page', () => scope('call-refusals', async (s) => {
  const sv = await server(s);
  const ada = await signIn(s, sv, 'ada', 'Ada');
  const bob = await signIn(s, sv, 'bob', 'Bob');
  const cy = await signIn(s, sv, 'cy', 'Cy');

  // Declined.
  await dial(ada, 'bob');
  await (await ringsAt(bob, 'ada')).getByRole('button', { name: 'Decline' }).click();
  assert.match(await outcome(ada, 'declined'), /bob@a\.test declined the call/);
  assert.equal(await ada.page.locator('#calling-dialog').isVisible(), false);

  // Busy by bob's choice on the incoming screen.
  await dial(ada, 'bob');
  await (await ringsAt(bob, 'ada')).getByRole('button', { name: 'Busy' }).click();
  assert.match(await outcome(ada, 'busy'), /bob@a\.test is busy/);

  // Busy because bob is in a call (with cy): the server answers for him, he is not rung.
  await connect(cy, bob);
  await dial(ada, 'bob@a.test');
  assert.match(await outcome(ada, 'busy'), /bob@a\.test is busy \(bob@a\.test is in another call\)/);
  assert.equal(await bob.page.getByRole('alertdialog').isVisible(), false, 'bob was rung while in a call');
  await cy.page.getByRole('button', { name: 'Hang up' }).click();
  await outcome(bob, 'hangup');

  // Unreachable: nobody is signed in as carol.
  await dial(ada, 'carol');
  assert.match(await outcome(ada, 'unreachable'), /carol(@a\.test)? can’t be reached \(carol@a\.test is not signed in\)/);

  // Cancelled before an answer: bob's ringing screen goes away.
  await dial(ada, 'bob');
  await ringsAt(bob, 'ada');
  await ada.page.locator('#calling-dialog').getByText('Ringing…').waitFor({ timeout: 10000 });
  await ada.page.getByRole('button', { name: 'Cancel' }).click();
  assert.match(await outcome(ada, 'cancelled'), /You cancelled the call/);
  await bob.page.getByRole('alertdialog').waitFor({ state: 'hidden', timeout: 10000 });
  assert.match(await outcome(bob, 'cancelled'), /Missed call: ada@a\.test cancelled/);
}));

test('a 1:1 call becomes a three-party call: bob invites cy, who accepts and decodes both', () => scope('call-invite', async (s) => {
  const sv = await server(s);
  const ada = await signIn(s, sv, 'ada', 'Ada');
  const bob = await signIn(s, sv, 'bob', 'Bob');
  const cy = await signIn(s, sv, 'cy', 'Cy');
  await connect(ada, bob);
  await bob.page.getByRole('button', { name: 'Invite', exact: true }).click();
  await bob.page.getByLabel('Invite someone').fill('cy');
  await bob.page.getByRole('button', { name: 'Ring' }).click();
  await (await ringsAt(cy, 'bob')).getByRole('button', { name: 'Accept' }).click();
  await inCall(cy);
  await decodeEachOther([ada, bob, cy]);
  await ada.page.getByText('cy@a.test joined the call').waitFor({ timeout: 10000 });
  // Bob hangs up: ada and cy go on, and are told.
  await bob.page.getByRole('button', { name: 'Hang up' }).click();
  assert.match(await outcome(bob, 'hangup'), /You hung up/);
  for (const p of [ada, cy]) await p.page.getByText('bob@a.test hung up.').waitFor({ timeout: 10000 });
  await ada.waitRemoteTiles([cy.peerId]);
  await ada.expectFlowing(cy.peerId, { audio: true });
}));

test('with room tokens: a token for another user cannot sign in; an unanswered call ends "no answer"; minted call tokens admit both', () => scope('call-tokens', async (s) => {
  const secret = 'a room token secret for the calls test';
  const sv = await s.server({ args: ['--call-domain', DOMAIN, '--room-token-secret', secret, '--call-ring-timeout', '2'] });
  const line = (user, name, sub = user) => signIn(s, sv, user, name, { token: mintToken({ secret, room: `@${user}`, identity: sub, ttl: 600 }) });
  // eve's token names eve: she cannot take ada's line.
  const eve = await signIn(s, sv, 'ada', 'Eve', { token: mintToken({ secret, room: '*', identity: 'eve', ttl: 600 }), expectFail: true });
  const hint = eve.page.locator('#signin-hint');
  await waitFor(async () => (await hint.getAttribute('data-code')) === 'forbidden', { timeout: 10000, what: 'Eve: sign-in refused as forbidden' });
  assert.match(await hint.textContent(), /not yours/);
  assert.equal(await eve.page.locator('#signed-in').isVisible(), false);
  await eve.close();

  const ada = await line('ada', 'Ada');
  const bob = await line('bob', 'Bob');
  await dial(ada, 'bob');
  await ringsAt(bob, 'ada');
  assert.match(await outcome(ada, 'no-answer'), /bob@a\.test did not answer/);
  await bob.page.getByRole('alertdialog').waitFor({ state: 'hidden', timeout: 10000 });
  assert.match(await outcome(bob, 'no-answer'), /Missed call from ada@a\.test/);
  // The call rooms take the tokens the server minted for each party.
  await connect(ada, bob);
  await decodeEachOther([ada, bob]);
}));

test('lines resume after their WebSockets are cut by the server side, and a call still rings and connects', () => scope('call-line-resume', async (s) => {
  const sv = await server(s);
  const ada = await signIn(s, sv, 'ada', 'Ada');
  const bob = await signIn(s, sv, 'bob', 'Bob');
  const before = {};
  for (const p of [ada, bob]) {
    before[p.name] = await p.page.evaluate(() => {
      window.__lineStates = [];
      window.sbApp.line.on('state', (st) => window.__lineStates.push(st));
      return window.sbApp.line.peerId;
    });
  }
  const killed = killTcp(sv.httpPort);
  assert.ok(killed >= 2, `ss -K killed ${killed} connections`);
  for (const p of [ada, bob]) {
    await p.page.waitForFunction(() => window.__lineStates.includes('reconnecting') && window.sbApp.line.state === 'open', null, { timeout: 20000 });
    assert.equal(await p.page.evaluate(() => window.sbApp.line.peerId), before[p.name], `${p.name}: resumed, not joined afresh`);
    await p.page.getByText('Signed in', { exact: true }).waitFor({ timeout: 5000 });
  }
  await connect(ada, bob);
  await decodeEachOther([ada, bob]);
}));

test('with configured users: a wrong password is refused in words, the right one signs in and can call', () => scope('call-users', async (s) => {
  const sv = await s.server({ args: ['--call-domain', DOMAIN, '--call-user', 'ada:ada-secret,bob:bob-secret'] });
  const ada = await signIn(s, sv, 'ada', 'Ada', { expectFail: true }); // no password
  const hint = ada.page.locator('#signin-hint');
  await waitFor(async () => (await hint.getAttribute('data-code')) === 'unauthorized', { timeout: 10000, what: 'Ada: sign-in refused as unauthorized' });
  assert.match(await hint.textContent(), /Wrong password/);
  await ada.page.getByLabel('Password').fill('ada-secret');
  await ada.page.getByRole('button', { name: 'Sign in' }).click();
  await ada.page.waitForFunction(() => window.sbApp.line && window.sbApp.line.callsPeer, null, { timeout: 15000 });
  await dial(ada, 'nobody');
  assert.match(await outcome(ada, 'unreachable'), /no user nobody/);
}));

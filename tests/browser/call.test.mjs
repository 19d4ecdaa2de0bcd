// Calls as a user makes them: two people in a room see and hear each other and chat; the
// same forced through Switchboard's own TURN relay; four people in a full mesh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, scope, openCall, expectMesh, randomId, socketOwner, waitFor, sleep } from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('two pages decode each other\'s video and audio, and chat both ways', () => scope('two-party', async (s) => {
  const server = await s.server();
  const room = randomId('call-');
  const [ada, bob] = await openCall(s, browser, server, room, ['Ada', 'Bob']);
  assert.notEqual(ada.peerId, bob.peerId);
  await expectMesh([ada, bob], { audio: true });

  await ada.chat('hello from Ada');
  await bob.waitChat('hello from Ada', 'Ada');
  await bob.chat('hi Ada, Bob here');
  await ada.waitChat('hi Ada, Bob here', 'Bob');
  // The sender sees its own message too, and each message arrives once.
  await ada.waitChat('hello from Ada');
  const bobLog = await bob.chatTexts();
  assert.equal(bobLog.filter((t) => t.includes('hello from Ada')).length, 1, `Bob's chat log: ${JSON.stringify(bobLog)}`);

  // Chat is text, never markup.
  const evil = '<img src=x onerror="window.__xss=1"><b>bold?</b>';
  await ada.chat(evil);
  await bob.waitChat('bold?', 'Ada');
  await sleep(200);
  assert.ok(await bob.page.evaluate((evil) => [...document.querySelectorAll('#chat-log .chat-msg')].some((e) => e.textContent.includes(evil)), evil),
    'the chat entry does not show the text as typed');
  assert.equal(await bob.page.evaluate(() => document.querySelectorAll('#chat-log img, #chat-log b').length + (window.__xss ? 100 : 0)), 0,
    'chat text was rendered as HTML');
}));

test('?policy=relay: the call goes relay<->relay through switchboard\'s own TURN and decodes', () => scope('relay', async (s) => {
  const server = await s.server();
  const room = randomId('relay-');
  const [ada, bob] = await openCall(s, browser, server, room, ['Ada', 'Bob'], { query: { policy: 'relay' } });
  await expectMesh([ada, bob], { audio: true });
  for (const [p, q] of [[ada, bob], [bob, ada]]) {
    const pair = await waitFor(() => p.selectedPair(q.peerId), { what: `${p.name}: selected pair` });
    assert.equal(pair.local.candidateType, 'relay', `${p.name} local candidate: ${JSON.stringify(pair)}`);
    assert.equal(pair.remote.candidateType, 'relay', `${p.name} remote candidate: ${JSON.stringify(pair)}`);
    // The relayed candidate was allocated from our server's TURN URL ...
    assert.match(pair.local.url || '', new RegExp(`^turns?:127\\.0\\.0\\.1:(${server.turnPort}|${server.turnTcpPort})\\b`), `relay URL: ${JSON.stringify(pair.local)}`);
    assert.ok(['udp', 'tcp', 'tls'].includes(pair.local.relayProtocol), JSON.stringify(pair.local));
    // ... and its relayed transport address is a socket of the switchboard process.
    assert.equal(pair.local.address, '127.0.0.1');
    assert.ok(pair.local.port >= 49152 && pair.local.port <= 65535, `relay port ${pair.local.port} outside the relay range`);
    assert.equal(socketOwner(pair.local.port, 'udp'), server.pid, `relay port ${pair.local.port} is not owned by switchboard (pid ${server.pid})`);
  }
  await ada.chat('relayed hello');
  await bob.waitChat('relayed hello', 'Ada');
}));

test('four-party mesh: every page decodes three remote videos', () => scope('mesh-4', async (s) => {
  const server = await s.server();
  const room = randomId('mesh-');
  const ps = await openCall(s, browser, server, room, ['Ada', 'Bob', 'Cleo', 'Dan']);
  await expectMesh(ps);
  for (const p of ps) {
    const ids = await p.remoteTileIds();
    assert.equal(ids.length, 3, `${p.name} tiles ${ids}`);
  }
}));

test('leaving: the Leave button and closing the tab both remove the tile at once for the others', () => scope('leave', async (s) => {
  const server = await s.server(); // default --signal-grace 30: a prompt removal means a real `leave`
  const [ada, bob, cleo] = await openCall(s, browser, server, randomId('leave-'), ['Ada', 'Bob', 'Cleo']);
  await expectMesh([ada, bob, cleo]);
  await bob.page.click('#leave');
  for (const p of [ada, cleo]) await p.waitRemoteTiles([ada, cleo].filter((q) => q !== p).map((q) => q.peerId), 10000);
  await cleo.page.close({ runBeforeUnload: true });
  await ada.waitRemoteTiles([], 10000);
  assert.equal(await ada.page.evaluate(() => window.sbApp.sb.state), 'open');
}));

test('reloading the page: the call comes back with the reloaded participant', (t) => scope('reload', async (s) => {
  const server = await s.server();
  const [ada, bob] = await openCall(s, browser, server, randomId('reload-'), ['Ada', 'Bob']);
  await expectMesh([ada, bob]);
  const oldId = bob.peerId;
  await bob.page.reload();
  await bob.joined();
  await ada.waitRemoteTiles([bob.peerId]); // exactly one tile: no stale one of the old Bob
  t.diagnostic(`Bob's peer id before/after the reload: ${oldId} / ${bob.peerId}`);
  await expectMesh([ada, bob], { audio: true });
  await bob.chat('back again');
  await ada.waitChat('back again', 'Bob');
}));

test('controls: mute silences, camera off stops and camera on resumes the video, screen share replaces what is sent while the other side keeps decoding', () => scope('controls', async (s) => {
  const server = await s.server();
  const [ada, bob] = await openCall(s, browser, server, randomId('ctl-'), ['Ada', 'Bob']);
  await expectMesh([ada, bob], { audio: true });
  // The fake microphone beeps about every second: the loudest level over 2.5 s tells sound from silence.
  const level = (ok, what) => waitFor(async () => { const l = await bob.loudest(ada.peerId); return ok(l) && { l }; },
    { timeout: 15000, interval: 0, what });
  await level((l) => l > 0.1, 'Bob hears Ada');
  await ada.page.click('#mute');
  await level((l) => l < 0.02, 'Ada muted: Bob hears silence');
  await ada.page.click('#mute');
  await level((l) => l > 0.1, 'Ada unmuted: Bob hears her again');
  s.mark('mute checked');

  await ada.page.click('#camera');
  await waitFor(async () => {
    const a = (await bob.media(ada.peerId)).framesDecoded;
    await sleep(1500);
    return a === (await bob.media(ada.peerId)).framesDecoded;
  }, { timeout: 15000, interval: 0, what: 'camera off: Ada\'s video stops at Bob' });
  await ada.page.click('#camera');
  await bob.expectFlowing(ada.peerId);
  s.mark('camera checked');

  // Screen share: what Ada sends to Bob becomes her screen capture (headless Chromium's fake
  // screen draws the same kind of test pattern as the fake camera, so the picture cannot tell
  // them apart: look at the sender's track), and Bob keeps decoding throughout.
  const sending = () => ada.page.evaluate((id) => window.sbApp.sb.peers.get(id).pc.getSenders()
    .filter((x) => x.track && x.track.kind === 'video').map((x) => x.track.label + (x.track.readyState === 'live' ? '' : ' (ended)')), bob.peerId);
  const camLabel = await sending();
  assert.equal(camLabel.length, 1, `Ada's video senders: ${camLabel}`);
  assert.doesNotMatch(camLabel[0], /^screen/);
  await ada.page.click('#screen');
  await waitFor(async () => { const l = await sending(); return l.length === 1 && /^screen/.test(l[0]) && l; }, { timeout: 15000, what: 'Ada sends her screen' });
  await bob.expectFlowing(ada.peerId);
  await ada.page.click('#screen');
  await waitFor(async () => { const l = await sending(); return l.length === 1 && l[0] === camLabel[0] && l; }, { timeout: 15000, what: 'Ada sends her camera again' });
  await bob.expectFlowing(ada.peerId);
  s.mark('screen checked');
}));

// Rooms and admission: capacity, room tokens, isolation between rooms, hostile messages,
// and the lobby's create-and-invite flow.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, scope, openCall, expectMesh, randomId, mintToken, signJwt, sleep, waitFor, Participant, startThirdPartySite, sdkJoin, loadPage,
} from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('room-full: a third page is refused with #error[data-code=room-full]; the two others keep their call', () => scope('room-full', async (s) => {
  const server = await s.server({ args: ['--room-capacity', '2'] });
  const room = randomId('full-');
  const [ada, bob] = await openCall(s, browser, server, room, ['Ada', 'Bob']);
  await expectMesh([ada, bob]);
  const cleo = await s.open(browser, server, room, { name: 'Cleo' });
  assert.equal(await cleo.errorCode(), 'room-full');
  assert.deepEqual(await cleo.remoteTileIds(), []);
  await sleep(1000); // give a (wrong) membership change time to show
  for (const [p, q] of [[ada, bob], [bob, ada]]) {
    assert.deepEqual(await p.remoteTileIds(), [q.peerId], `${p.name} tiles`);
    await p.expectFlowing(q.peerId);
  }
}));

test('room tokens: garbage, missing, other-room and expired tokens are refused; minted ones join', () => scope('tokens', async (s) => {
  const secret = randomId('roomsecret-');
  const server = await s.server({ args: ['--room-token-secret', secret] });
  const room = randomId('tok-');
  const cases = [
    ['garbage', { token: 'garbage' }, 'unauthorized'],
    ['missing', {}, 'unauthorized'],
    ['other-room', { token: mintToken({ secret, room: 'some-other-room', ttl: 600 }) }, 'unauthorized'],
    ['wrong-secret', { token: signJwt({ room, exp: Math.floor(Date.now() / 1000) + 600 }, 'not-the-secret') }, 'unauthorized'],
    ['expired', { token: signJwt({ room, exp: Math.floor(Date.now() / 1000) - 3600 }, secret) }, 'token-expired'],
  ];
  s.mark('server up');
  await Promise.all(cases.map(async ([label, query, code]) => {
    const p = await s.open(browser, server, room, { name: `T-${label}`, query });
    assert.equal(await p.errorCode(), code, `token case ${label}`);
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.peerId), null, `token case ${label}: joined all the same`);
    await p.close();
  }));
  s.mark('refusals checked');
  const ps = [];
  for (const name of ['Ada', 'Bob']) {
    const token = mintToken({ secret, room, identity: name.toLowerCase(), ttl: 600 });
    assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'switchboard token prints a JWT');
    const p = await s.open(browser, server, room, { name, query: { token } });
    await p.joined();
    ps.push(p);
  }
  await expectMesh(ps);
  // A wildcard-room token works as well.
  const cleo = await s.open(browser, server, room, { name: 'Cleo', query: { token: mintToken({ secret, room: '*', ttl: 600 }) } });
  await cleo.joined();
  await expectMesh([...ps, cleo]);
  s.mark('three-party call up');

  // Kicking needs the admin grant: Ada (publish,subscribe) is refused, an admin removes Cleo.
  const raw = await s.openPage(browser, server, '/', { name: 'admin' });
  const kick = (token, peer) => raw.page.evaluate(async ({ room, token, peer }) => {
    const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws');
    const msgs = [];
    ws.onmessage = (e) => msgs.push(JSON.parse(e.data));
    await new Promise((res) => { ws.onopen = res; });
    const next = async (pred) => {
      for (let i = 0; i < 250; i++) {
        const k = msgs.findIndex(pred);
        if (k >= 0) return msgs.splice(k, 1)[0];
        await new Promise((r) => setTimeout(r, 20));
      }
      return { missing: true, got: msgs };
    };
    ws.send(JSON.stringify({ type: 'join', room, name: 'moderator', token }));
    const joined = await next((m) => m.type === 'joined' || m.type === 'error');
    ws.send(JSON.stringify({ type: 'kick', peer, ref: 'k' }));
    const answer = await next((m) => (m.type === 'error' && m.ref === 'k') || (m.type === 'peer-left' && m.peerId === peer));
    ws.send(JSON.stringify({ type: 'leave' }));
    await next((m) => m.type === 'left');
    ws.close();
    return { joined, answer };
  }, { room, token, peer });
  const plain = await kick(mintToken({ secret, room, ttl: 600 }), cleo.peerId);
  assert.equal(plain.joined.type, 'joined', JSON.stringify(plain));
  assert.equal(plain.answer.code, 'forbidden', `kick without admin: ${JSON.stringify(plain.answer)}`);
  const admin = await kick(mintToken({ secret, room, ttl: 600, grant: 'publish,subscribe,admin' }), cleo.peerId);
  assert.deepEqual(admin.joined.grants && [...admin.joined.grants].sort(), ['admin', 'publish', 'subscribe'], JSON.stringify(admin.joined));
  assert.equal(admin.answer.type, 'peer-left', `kick with admin: ${JSON.stringify(admin.answer)}`);
  assert.equal(admin.answer.reason, 'kicked');
  s.mark('kicks done');
  assert.equal(await cleo.errorCode(), 'kicked');
  for (const p of ps) await p.waitRemoteTiles(ps.filter((q) => q !== p).map((q) => q.peerId), 10000);
  for (const [p, q] of [[ps[0], ps[1]], [ps[1], ps[0]]]) await p.expectFlowing(q.peerId);
}));

test('rooms are isolated: two calls in parallel see only their own partner and chat', () => scope('isolation', async (s) => {
  const server = await s.server();
  const [roomA, roomB] = [randomId('iso-a-'), randomId('iso-b-')];
  const [a1, a2] = await openCall(s, browser, server, roomA, ['Ann', 'Abe']);
  const [b1, b2] = await openCall(s, browser, server, roomB, ['Bea', 'Ben']);
  await expectMesh([a1, a2]);
  await expectMesh([b1, b2]);
  for (const [p, q] of [[a1, a2], [a2, a1], [b1, b2], [b2, b1]]) {
    assert.deepEqual(await p.remoteTileIds(), [q.peerId], `${p.name} tiles`);
    assert.deepEqual(await p.page.evaluate(() => [...window.sbApp.sb.peers.keys()]), [q.peerId], `${p.name} sb.peers`);
  }
  await a1.chat('only for room A');
  await b1.chat('only for room B');
  await a2.waitChat('only for room A', 'Ann');
  await b2.waitChat('only for room B', 'Bea');
  await sleep(500);
  for (const p of [a1, a2]) assert.ok(!(await p.chatTexts()).some((t) => t.includes('room B')), `${p.name} got room B's chat`);
  for (const p of [b1, b2]) assert.ok(!(await p.chatTexts()).some((t) => t.includes('room A')), `${p.name} got room A's chat`);

  // A client of room B addressing room A's peers directly gets unknown-peer, and nothing arrives.
  await a1.page.evaluate(() => {
    window.__got = [];
    window.sbApp.sb.on('message', (m) => window.__got.push(JSON.stringify(m.data)));
  });
  const raw = await s.openPage(browser, server, '/', { name: 'raw-b' });
  const r = await raw.page.evaluate(async ({ room, to }) => {
    const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws');
    const msgs = [];
    ws.onmessage = (e) => msgs.push(JSON.parse(e.data));
    await new Promise((res) => { ws.onopen = res; });
    const next = async (pred) => {
      for (let i = 0; i < 250; i++) {
        const k = msgs.findIndex(pred);
        if (k >= 0) return msgs.splice(k, 1)[0];
        await new Promise((r) => setTimeout(r, 20));
      }
      return { missing: true, got: msgs };
    };
    ws.send(JSON.stringify({ type: 'join', room, name: 'raw-b' }));
    const joined = await next((m) => m.type === 'joined');
    const out = { joined };
    for (const [ref, msg] of [
      ['m', { type: 'message', to, data: 'leak across rooms' }],
      ['o', { type: 'offer', to, sdp: 'v=0\r\n' }],
      ['c', { type: 'candidate', to, candidate: null }],
    ]) {
      ws.send(JSON.stringify({ ...msg, ref }));
      out[ref] = await next((m) => m.type === 'error' && m.ref === ref);
    }
    ws.close();
    return out;
  }, { room: roomB, to: a1.peerId });
  assert.ok(!r.joined.missing && r.joined.peers.every((p) => [b1.peerId, b2.peerId].includes(p.id)), `room B's joined lists ${JSON.stringify(r.joined.peers)}`);
  for (const k of ['m', 'o', 'c']) assert.equal(r[k].code, 'unknown-peer', `${k}: ${JSON.stringify(r[k])}`);
  await sleep(300);
  assert.deepEqual(await a1.page.evaluate(() => window.__got), [], 'a message from room B reached room A');
}));

test('malformed and oversized signaling messages get errors, the connection stays usable, the call is undisturbed', () => scope('malformed', async (s) => {
  const server = await s.server();
  const room = randomId('bad-');
  const [ada, bob] = await openCall(s, browser, server, room, ['Ada', 'Bob']);
  await expectMesh([ada, bob]);
  const raw = await s.openPage(browser, server, '/', { name: 'raw' });
  const r = await raw.page.evaluate(async ({ room, to }) => {
    const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws');
    const msgs = [];
    ws.onmessage = (e) => { try { msgs.push(JSON.parse(e.data)); } catch { msgs.push({ unparsable: e.data }); } };
    let closed = null;
    ws.onclose = (e) => { closed = { code: e.code, reason: e.reason }; };
    await new Promise((res, rej) => { ws.onopen = res; setTimeout(() => rej(new Error('ws did not open')), 5000); });
    const next = async (pred, what) => {
      const t0 = Date.now();
      for (;;) {
        const i = msgs.findIndex(pred);
        if (i >= 0) return msgs.splice(i, 1)[0];
        if (closed) throw new Error(`socket closed (${JSON.stringify(closed)}) waiting for ${what}; got ${JSON.stringify(msgs)}`);
        if (Date.now() - t0 > 5000) throw new Error(`no ${what}; got ${JSON.stringify(msgs)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const out = {};
    ws.send(JSON.stringify({ type: 'join', room, name: 'raw' }));
    out.joined = await next((m) => m.type === 'joined', 'joined');
    const isErr = (ref) => (m) => m.type === 'error' && m.ref === ref;
    ws.send('this is not json {');
    out.notJson = await next((m) => m.type === 'error', 'error for non-JSON');
    ws.send(JSON.stringify({ type: 'no-such-type', ref: 'u1' }));
    out.unknownType = await next(isErr('u1'), 'error for an unknown type');
    ws.send(JSON.stringify([1, 2, 3]));
    out.notObject = await next((m) => m.type === 'error', 'error for a JSON array');
    ws.send(JSON.stringify({ type: 'offer', ref: 'u2' }));
    out.missingFields = await next(isErr('u2'), 'error for an offer without to/sdp');
    ws.send(JSON.stringify({ type: 'message', to, ref: 'u3', data: 'x'.repeat(100 * 1024) }));
    out.tooLarge = await next((m) => m.type === 'error' && m.code === 'too-large', 'too-large error');
    ws.send(JSON.stringify({ type: 'ping', id: 'still-usable' }));
    out.pong = await next((m) => m.type === 'pong', 'pong');
    ws.send(JSON.stringify({ type: 'message', to, ref: 'u4', data: { hello: 'from raw' } }));
    await new Promise((r) => setTimeout(r, 300));
    out.afterValid = msgs.filter((m) => m.type === 'error');
    out.readyState = ws.readyState;
    out.closed = closed;
    ws.close();
    return out;
  }, { room, to: ada.peerId });

  for (const k of ['notJson', 'unknownType', 'notObject', 'missingFields']) {
    assert.equal(r[k].code, 'bad-message', `${k}: ${JSON.stringify(r[k])}`);
    assert.notEqual(r[k].fatal, true, `${k} must not be fatal`);
  }
  assert.equal(r.unknownType.ref, 'u1');
  assert.equal(r.tooLarge.code, 'too-large', JSON.stringify(r.tooLarge));
  assert.notEqual(r.tooLarge.fatal, true, 'a 100 KB message is not fatal (below the 1 MiB frame limit)');
  assert.equal(r.pong.id, 'still-usable');
  assert.deepEqual(r.afterValid, [], 'a valid message after the bad ones was refused');
  assert.equal(r.readyState, 1 /* OPEN */, `socket closed: ${JSON.stringify(r.closed)}`);

  // The call between Ada and Bob is undisturbed.
  for (const [p, q] of [[ada, bob], [bob, ada]]) await p.expectFlowing(q.peerId);
  await ada.chat('still fine');
  await bob.waitChat('still fine', 'Ada');
}));

test('lobby: create a room, follow the invite link, and two people meet there', () => scope('lobby', async (s) => {
  const server = await s.server();
  const lobby = await s.openPage(browser, server, '/', { name: 'lobby' });
  const room = randomId('lobby-');
  await lobby.page.fill('#room-input', room);
  await lobby.page.click('#create-room');
  const link = lobby.page.locator('#invite-link');
  await link.waitFor({ state: 'visible' });
  const href = await link.getAttribute('href');
  assert.equal(new URL(href).href, `${server.url}/r/${room}`, `invite link ${href}`);
  await lobby.page.fill('#lobby-name', 'Ada');
  await lobby.page.click('#join-room');
  await lobby.page.waitForURL((u) => u.pathname === `/r/${room}`);
  lobby.name = 'Ada';
  const ada = lobby;
  await ada.joined();
  // Bob opens the invite link without a name: the app asks for one.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const bob = s.track(new Participant('Bob', ctx, await ctx.newPage()));
  await loadPage(bob.page, href, { ready: () => !!window.sbApp, what: 'the invite link' });
  await bob.page.locator('#name-dialog').waitFor({ state: 'visible' });
  await bob.page.fill('#name-input', 'Bob');
  await bob.page.click('#name-ok');
  await bob.joined();
  await expectMesh([ada, bob]);
  const names = await ada.page.$$eval('.tile.remote .peer-name', (els) => els.map((e) => e.textContent));
  assert.ok(names.some((n) => n.includes('Bob')), `Ada sees names ${JSON.stringify(names)}`);
  await waitFor(async () => (await bob.page.$$eval('.tile.remote .peer-name', (els) => els.map((e) => e.textContent))).some((n) => n.includes('Ada')),
    { what: 'Bob sees Ada\'s name' });
}));

/** Open the third-party site's page in a new context. */
async function thirdPartyPage(s, site, name) {
  const ctx = await browser.newContext();
  const p = s.track(new Participant(name, ctx, await ctx.newPage()));
  await loadPage(p.page, `${site.url}/`, { what: 'the third-party site' });
  return p;
}

/** Two SDK users on `site` in one room exchange data-channel messages both ways. */
async function sdkCall(s, site, server, sdkOpts) {
  const room = randomId('xo-');
  const [a, b] = [await thirdPartyPage(s, site, 'A'), await thirdPartyPage(s, site, 'B')];
  for (const p of [a, b]) {
    const r = await sdkJoin(p, { url: server.url, room, name: p.name, ...sdkOpts });
    assert.ok(r.ok, `${p.name}: join from ${site.url} failed: ${JSON.stringify(r)}`);
  }
  for (const [p, q] of [[a, b], [b, a]]) {
    await waitFor(() => p.page.evaluate((id) => {
      const peer = window.sb.peers.get(id);
      return peer && peer.pc.connectionState === 'connected';
    }, q.peerId), { timeout: 20000, what: `${p.name}: connected to ${q.name}` });
  }
  // sb.send goes over the data channel, which may open a moment after the connection: resend until one arrives.
  for (const [p, q] of [[a, b], [b, a]]) {
    await waitFor(async () => {
      await p.page.evaluate((id) => { try { window.sb.send({ hello: 'from third party' }, id); } catch { /* channel not open yet */ } }, q.peerId);
      return q.page.evaluate((from) => window.__got.some((m) => m.from === from && m.data && m.data.hello === 'from third party'), p.peerId);
    }, { interval: 300, what: `${q.name}: data-channel message from ${p.name}` });
  }
  return [a, b];
}

test('the SDK on another origin: refused (origin-not-allowed) unless --allowed-origin; then a WebSocket call works', () => scope('origin', async (s) => {
  {
    const server = await s.server();
    const site = await startThirdPartySite(server);
    try {
      const p = await thirdPartyPage(s, site, 'refused');
      const r = await sdkJoin(p, { url: server.url, room: randomId('xo-'), name: 'x', transport: 'ws' });
      assert.equal(r.code, 'origin-not-allowed', JSON.stringify(r));
      await p.close();
    } finally { await site.close(); }
  }
  const server = await s.server({ args: ({ httpPort }) => ['--allowed-origin', `http://localhost:${httpPort}`] });
  // The allowed origin is the server's host under another name (same port): a different origin.
  const same = await s.openPage(browser, server, '/', { name: 'localhost-origin' });
  await loadPage(same.page, server.url.replace('127.0.0.1', 'localhost') + '/', { what: 'the lobby as localhost' });
  const r = await sdkJoin(same, { url: server.url, room: randomId('xo-'), name: 'x', transport: 'ws', iceServers: [] });
  assert.ok(r.ok, `join from the allowed origin http://localhost:${server.httpPort} failed: ${JSON.stringify(r)}`);
  const star = await s.server({ args: ['--allowed-origin', '*'] });
  const site = await startThirdPartySite(star);
  try {
    await sdkCall(s, site, star, { transport: 'ws', iceServers: [] });
  } finally { await site.close(); }
}));

test('the SDK on an allowed other origin: SSE transport and /api/ice-servers work (CORS)', () => scope('origin-cors', async (s) => {
  const server = await s.server({ args: ['--allowed-origin', '*'] });
  const site = await startThirdPartySite(server);
  try {
    const p = await thirdPartyPage(s, site, 'probe');
    const ice = await p.page.evaluate(async (u) => {
      try { const r = await fetch(`${u}/api/ice-servers`); return { status: r.status, body: await r.json() }; } catch (e) { return { error: String(e) }; }
    }, server.url);
    assert.equal(ice.status, 200, `cross-origin GET /api/ice-servers: ${JSON.stringify(ice)}`);
    await p.close();
    await sdkCall(s, site, server, { transport: 'sse' });
    await sdkCall(s, site, server, { transport: 'ws', iceTransportPolicy: 'relay' });
  } finally { await site.close(); }
}));

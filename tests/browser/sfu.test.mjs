// SFU rooms (issue 11) as a user meets them: six people in one room each decode the five
// others through the server's SFU (one connection per page, to the SFU's port, none between
// pages) and chat reaches everyone; a relay-only page reaches the SFU through our own TURN.
// Simulcast: sfu-simulcast.test.mjs; the live mesh->SFU switch: sfu-switch.test.mjs; a
// shaped link: sfu-link.test.mjs. (One file each: run.sh's time limit is per file.)
//
// CPU: six Chromium pages on two cores, so the fake camera is small (320x180, 15 fps).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { scope, openCall, randomId, mintToken } from './harness.mjs';
import { launchSfuBrowser, COUNT_PCS, SMALL_CAMERA, sfuServer, expectAllFlowing, expectOnlySfuConnection } from './sfu-helpers.mjs';

let browser;
before(async () => { browser = await launchSfuBrowser(); });
after(async () => { await browser?.close(); });

test('six pages in an SFU room: each decodes five videos and hears five, chat reaches all, every page connects only to the SFU', { timeout: 300000 }, (t) => scope('sfu-6', async (s) => {
  const server = await sfuServer(s);
  const room = randomId('sfu6-');
  const names = ['Ada', 'Bob', 'Cleo', 'Dan', 'Eve', 'Finn'];
  const ps = await openCall(s, browser, server, room, names, { query: { topology: 'sfu' }, init: [COUNT_PCS, SMALL_CAMERA] });
  s.mark('six joined');
  await Promise.all(ps.map((p) => p.waitRemoteTiles(ps.filter((q) => q !== p).map((q) => q.peerId), 60000)));
  for (const p of ps) {
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.topology), 'sfu', `${p.name}: topology`);
    assert.equal(await p.page.textContent('#topology'), 'SFU', `${p.name}: header`);
  }
  // One page at a time: sampling six pages at once would only add to the load.
  for (const p of ps) await expectAllFlowing(p, ps.filter((q) => q !== p).map((q) => q.peerId), { audio: true, timeout: 90000 });
  s.mark('all media flowing');
  for (const p of ps) {
    const c = await expectOnlySfuConnection(p, server);
    assert.equal(c.remote.address, '127.0.0.1');
    const all = await p.page.evaluate(() => window.__pcs.length);
    assert.equal(all, 1, `${p.name} created ${all} RTCPeerConnections (only the SFU one expected)`);
  }
  await ps[0].chat('hello from Ada through the SFU');
  await ps[5].chat('Finn here');
  for (const p of ps.slice(1)) await p.waitChat('hello from Ada through the SFU', 'Ada');
  for (const p of ps.slice(0, 5)) await p.waitChat('Finn here', 'Finn');
  // Each message once, and over the SFU's data channel (not the signaling relay).
  for (const p of ps.slice(1, 5)) {
    const log = await p.chatTexts();
    assert.equal(log.filter((x) => x.includes('hello from Ada')).length, 1, `${p.name}: ${JSON.stringify(log)}`);
  }
  t.diagnostic(`SFU port ${server.sfuPort}; six pages, 30 remote videos decoding`);
}));

test('a relay-only page (TURN only, our own TURN) in an SFU room decodes and is decoded', { timeout: 240000 }, () => scope('sfu-relay', async (s) => {
  // TURN relays to loopback only when told (docs/config.md): the SFU's candidate is 127.0.0.1.
  const server = await sfuServer(s, ['--allowed-peer-ip', '127.0.0.1']);
  const room = randomId('sfurelay-');
  const [ada, bob] = await openCall(s, browser, server, room, ['Ada', 'Bob'], { query: { topology: 'sfu' }, init: [SMALL_CAMERA] });
  const [rel] = await openCall(s, browser, server, room, ['Relay'], { query: { policy: 'relay' }, init: [COUNT_PCS, SMALL_CAMERA] });
  await expectAllFlowing(rel, [ada.peerId, bob.peerId], { audio: true, timeout: 60000 });
  await expectAllFlowing(ada, [bob.peerId, rel.peerId], { timeout: 60000 });
  const c = await expectOnlySfuConnection(rel, server);
  assert.equal(c.local.candidateType, 'relay', `relay page's local candidate: ${JSON.stringify(c)}`);
  assert.match(c.local.url || '', new RegExp(`^turns?:127\\.0\\.0\\.1:(${server.turnPort}|${server.turnTcpPort})\\b`), JSON.stringify(c.local));
  assert.equal(c.remote.address, '127.0.0.1');
  await rel.chat('hello over TURN');
  await ada.waitChat('hello over TURN', 'Relay');
}));

test('with UDP to the SFU blocked, pages reach it over ICE-TCP on the same port and decode each other', { timeout: 180000 }, () => scope('sfu-tcp', async (s) => {
  const server = await sfuServer(s);
  // Every UDP datagram to the SFU's port is dropped (TURN could relay only to that same
  // UDP port, and loopback peers are not allowed without --allowed-peer-ip): the SFU's
  // passive TCP candidate is the only way in.
  const rule = ['INPUT', '-p', 'udp', '--dport', String(server.sfuPort), '-j', 'DROP'];
  execFileSync('iptables', ['-I', ...rule]);
  try {
    const room = randomId('sfutcp-');
    const [ada, bob] = await openCall(s, browser, server, room, ['Ada', 'Bob'], { query: { topology: 'sfu' }, init: [COUNT_PCS, SMALL_CAMERA] });
    await expectAllFlowing(ada, [bob.peerId], { audio: true, timeout: 60000 });
    await expectAllFlowing(bob, [ada.peerId], { audio: true, timeout: 60000 });
    for (const p of [ada, bob]) {
      const c = await expectOnlySfuConnection(p, server);
      assert.equal(c.remote.protocol, 'tcp', `${p.name}: selected pair ${JSON.stringify(c)}`);
      assert.equal(c.local.protocol, 'tcp', `${p.name}: selected pair ${JSON.stringify(c)}`);
      assert.equal(c.remote.candidateType, 'host');
    }
    await ada.chat('hello over ICE-TCP');
    await bob.waitChat('hello over ICE-TCP', 'Ada');
  } finally {
    execFileSync('iptables', ['-D', ...rule]);
  }
}));

test('a viewer token (subscribe only) in an SFU room receives everyone and sends nothing', {
  timeout: 120000,
}, () => scope('sfu-viewer', async (s) => {
  const secret = 'sfu-viewer-secret';
  const server = await sfuServer(s, ['--room-token-secret', secret]);
  const room = randomId('viewer-');
  const token = (grant) => mintToken({ secret, room, ttl: 600, grant });
  const [ada] = await openCall(s, browser, server, room, ['Ada'], { query: { topology: 'sfu', token: token('publish,subscribe') }, init: [SMALL_CAMERA] });
  const [viewer] = await openCall(s, browser, server, room, ['Viewer'], { query: { token: token('subscribe') }, init: [COUNT_PCS, SMALL_CAMERA] });
  await expectAllFlowing(viewer, [ada.peerId], { timeout: 30000 });
  await expectOnlySfuConnection(viewer, server);
}));

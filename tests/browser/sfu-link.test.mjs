// One subscriber of an SFU room behind a bad link: 300 kbit/s (tc tbf) and 2 % random loss
// (iptables statistic; this kernel has no netem). It keeps decoding the publisher on a low
// simulcast layer without freezing, and climbs back when the shaping is removed.
//
// The subscriber needs a link of its own, so its Chromium runs in a second network
// namespace joined to the test's by a veth pair (10.77.0.1 here, 10.77.0.2 there): the
// SFU binds and announces 10.77.0.1, the subscriber reaches HTTP and signaling through a
// small TCP proxy on 10.77.0.1, and the shaping sits on the veth. Needs root (run.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { launchBrowser, scope, openCall, openRoom, randomId, waitFor, sleep, freePortTcpUdp, toneWav, CHROMIUM, CHROMIUM_ARGS } from './harness.mjs';
import { launch } from './chromium.mjs';
import { SMALL_CAMERA, fakeCamera } from './sfu-helpers.mjs';

const HOST_IP = '10.77.0.1';
const SUB_IP = '10.77.0.2';
const NSX = `sbsub-${process.pid}`;
const VETH = `sbv${process.pid % 100000}`;

const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const inSub = (cmd, args) => sh('ip', ['netns', 'exec', NSX, cmd, ...args]);

let browser; // in the test's namespace
let subBrowser; // in NSX
let wrapperDir;
/** The subscriber's way to the server (its origin must be known when Chromium starts). */
let px;
let pxTarget = 0;

function setUpLink() {
  sh('ip', ['netns', 'add', NSX]);
  mkdirSync(`/etc/netns/${NSX}`, { recursive: true });
  writeFileSync(`/etc/netns/${NSX}/resolv.conf`, 'nameserver 127.0.0.1\n');
  sh('ip', ['link', 'add', VETH, 'type', 'veth', 'peer', 'name', 'sbsub0', 'netns', NSX]);
  // No IPv6 link-local addresses: one appearing after DAD, a second or two after `up`, is
  // a network change to the Chromium already running on either side, which aborts its
  // requests in flight (net::ERR_NETWORK_CHANGED; the subscriber's page once never ran
  // its script that way in CI).
  sh('ip', ['link', 'set', VETH, 'addrgenmode', 'none']);
  sh('ip', ['-n', NSX, 'link', 'set', 'sbsub0', 'addrgenmode', 'none']);
  sh('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', VETH]);
  sh('ip', ['link', 'set', VETH, 'up']);
  sh('ip', ['-n', NSX, 'addr', 'add', `${SUB_IP}/24`, 'dev', 'sbsub0']);
  sh('ip', ['-n', NSX, 'link', 'set', 'sbsub0', 'up']);
  sh('ip', ['-n', NSX, 'link', 'set', 'lo', 'up']);
}

function tearDownLink() {
  try { sh('ip', ['netns', 'del', NSX]); } catch { /* not there */ } // takes the veth pair with it
  rmSync(`/etc/netns/${NSX}`, { recursive: true, force: true });
}

/** Downlink to the subscriber: rate on the host side of the veth, loss at its input. */
function shape(on) {
  if (on) {
    sh('tc', ['qdisc', 'add', 'dev', VETH, 'root', 'tbf', 'rate', '300kbit', 'burst', '16kbit', 'latency', '300ms']);
    inSub('iptables', ['-A', 'INPUT', '-p', 'udp', '-m', 'statistic', '--mode', 'random', '--probability', '0.02', '-j', 'DROP']);
  } else {
    sh('tc', ['qdisc', 'del', 'dev', VETH, 'root']);
    inSub('iptables', ['-D', 'INPUT', '-p', 'udp', '-m', 'statistic', '--mode', 'random', '--probability', '0.02', '-j', 'DROP']);
  }
}

/** A TCP proxy HOST_IP:port -> 127.0.0.1:`target()` (HTTP, WebSocket, SSE alike). */
function proxy(target) {
  const srv = net.createServer((c) => {
    const u = net.connect(target(), '127.0.0.1');
    c.pipe(u).pipe(c);
    const end = () => { c.destroy(); u.destroy(); };
    c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end);
  });
  return new Promise((resolve) => srv.listen(0, HOST_IP, () => resolve({
    port: srv.address().port,
    close: () => new Promise((r) => { srv.close(() => r()); }),
  })));
}

before(async () => {
  tearDownLink();
  setUpLink();
  px = await proxy(() => pxTarget);
  const tone = toneWav();
  browser = await launchBrowser([`--use-file-for-fake-audio-capture=${tone}`]);
  // Chromium in the subscriber's namespace: Playwright starts it through this wrapper.
  wrapperDir = path.join(os.tmpdir(), `sb-sub-${process.pid}`);
  mkdirSync(wrapperDir, { recursive: true });
  const wrapper = path.join(wrapperDir, 'chromium');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${NSX} ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  subBrowser = await launch(chromium, { executablePath: wrapper, args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${tone}`, `--unsafely-treat-insecure-origin-as-secure=http://${HOST_IP}:${px.port}`], label: 'the subscriber\'s Chromium' });
});
after(async () => {
  await subBrowser?.close().catch(() => {});
  await browser?.close().catch(() => {});
  await px?.close();
  tearDownLink();
  if (wrapperDir) rmSync(wrapperDir, { recursive: true, force: true });
});

/** The publisher's video as the subscriber's tile shows it. */
function received(p, id) {
  return p.page.evaluate(async (id) => {
    const { sb, grid } = window.sbApp;
    const v = grid.get(id)?.stream.getVideoTracks()[0];
    let out = { framesDecoded: 0, frameHeight: 0 };
    if (v && sb.sfu) (await sb.sfu.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.trackIdentifier === v.id) out = { framesDecoded: s.framesDecoded || 0, frameHeight: s.frameHeight || 0 }; });
    return out;
  }, id);
}

/**
 * Sample for `ms`: the longest time without a new decoded frame, the stalls over 1 s
 * (start in ms from the beginning, length), and the heights seen.
 */
async function watch(p, id, ms) {
  const heights = [];
  const stalls = [];
  const t0 = Date.now();
  let last = await received(p, id);
  let at = t0;
  let freeze = 0;
  const end = t0 + ms;
  while (Date.now() < end) {
    await sleep(250);
    const r = await received(p, id);
    if (r.framesDecoded > last.framesDecoded) {
      const gap = Date.now() - at;
      if (gap > 1000) stalls.push([at - t0, gap]);
      freeze = Math.max(freeze, gap);
      at = Date.now();
    }
    last = r;
    heights.push(r.frameHeight);
  }
  return { freeze: Math.max(freeze, Date.now() - at), stalls, heights };
}

test('a subscriber shaped to 300 kbit/s with 2 % loss keeps decoding on a low layer and climbs back when the shaping goes', { timeout: 300000 }, (t) => scope('sfu-shaped', async (s) => {
  const sfuPort = await freePortTcpUdp();
  const server = await s.server({ args: ['--sfu-port', String(sfuPort), '--sfu-bind', HOST_IP, '--sfu-candidate', HOST_IP] });
  pxTarget = server.httpPort;
  {
    const room = randomId('shaped-');
    const [pub] = await openCall(s, browser, server, room, ['Publisher'], {
      query: { topology: 'sfu' },
      init: [fakeCamera(960, 540, 20)],
    });
    const sub = s.track(await openRoom(subBrowser, { url: `http://${HOST_IP}:${px.port}` }, room, { name: 'Shaped', init: [SMALL_CAMERA] }));
    await sub.joined(30000);
    // A large tile: unshaped, the subscriber gets a high layer.
    await sub.page.addStyleTag({ content: `.tile.remote[data-peer-id="${pub.peerId}"] { width: 960px !important; }` });
    const before = await waitFor(async () => { const r = await received(sub, pub.peerId); return r.frameHeight >= 270 && r; },
      { timeout: 45000, what: 'the unshaped subscriber receives the h or f layer' });
    s.mark(`unshaped: ${before.frameHeight}p`);

    shape(true);
    let shaped;
    let settling;
    try {
      // The estimate drops and the SFU goes down to the q layer ...
      await waitFor(async () => { const r = await received(sub, pub.peerId); return r.frameHeight > 0 && r.frameHeight < 270 && r; },
        { timeout: 30000, what: 'the shaped subscriber goes down to the q layer' });
      // ... where, once settled, it keeps decoding without a freeze over 2 s.
      settling = await watch(sub, pub.peerId, 5000);
      shaped = await watch(sub, pub.peerId, 15000);
    } finally {
      shape(false);
    }
    t.diagnostic(`shaped, first 5 s on the low layer: stalls over 1 s [start ms, length ms] ${JSON.stringify(settling.stalls)}`);
    t.diagnostic(`shaped, next 15 s: longest freeze ${shaped.freeze} ms, stalls ${JSON.stringify(shaped.stalls)}, frame heights ${[...new Set(shaped.heights)].join('/')}`);
    assert.ok(shaped.freeze <= 2000, `the shaped subscriber froze for ${shaped.freeze} ms`);
    assert.ok(Math.max(...shaped.heights) < 270, `heights while shaped: ${shaped.heights}`);

    const back = await waitFor(async () => { const r = await received(sub, pub.peerId); return r.frameHeight >= 270 && r; },
      { timeout: 45000, interval: 1000, what: 'the subscriber climbs back to a higher layer without the shaping' });
    t.diagnostic(`unshaped ${before.frameHeight}p -> shaped <270p -> back to ${back.frameHeight}p`);
  }
}));

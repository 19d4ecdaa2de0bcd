// A cluster (issue 14) as users meet it: a real redis-server and three switchboard nodes
// (cluster-lab.mjs: each node in its own network namespace when tests/cluster/lab.sh is
// there), pages of one room each connected to a different node, with the SDK's `urls`.
// - a mesh call of three pages on three nodes: every page decodes every other's video;
// - an SFU call of three pages on three nodes: the same through the room node's SFU;
// - a page in another room on the same nodes sees no one, and nobody sees it;
// - the SDK's `region`: a page on node 1 gets the ICE servers of the node of that region;
// - an SFU room spanning two nodes: each page on its own node's SFU, the tracks crossing
//   the node link once, simulcast layers chosen per page behind the link, the speaker.
// A node's death: cluster-failover.test.mjs. A full node: cluster-overflow.test.mjs. (One file each: run.sh's time limit is per file.)
//
// CPU: three Chromium pages on two cores, so the fake camera is small (320x180, 15 fps).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { scope, randomId, sleep, waitFor } from './harness.mjs';
import { expectAllFlowing, fakeCamera } from './sfu-helpers.mjs';
import { startCluster, launchClusterBrowser, withNodeLogs, others, openClusterPage, eventsOf, fromNode, nodeMetric as metricOf, sfuRemoteIp } from './cluster-lab.mjs';

const nodeMetric = (i, name, labels) => metricOf(cluster, i, name, labels);

let browser;
let cluster;
before(async () => {
  cluster = await startCluster();
  browser = await launchClusterBrowser(cluster);
});
after(async () => {
  await browser?.close();
  await cluster?.stop();
});

/** One page per node (page i on node i, the others after it in its `urls`), joined in that order. */
async function callOnThreeNodes(s, room, topology) {
  const ps = [];
  for (const [i, name] of ['Ada', 'Bob', 'Cleo'].entries()) ps.push(await openClusterPage(s, browser, fromNode(cluster.urls, i), room, name, { topology }));
  for (const [i, p] of ps.entries()) {
    assert.equal(p.node, cluster.urls[i], `${p.name} joined on ${p.node}, not on its own node`);
    assert.equal(p.joinedAs.transportKind, 'ws', `${p.name}: transport`);
  }
  return ps;
}

test('mesh call of three pages on three nodes: every page decodes every other page\'s video', { timeout: 240000 }, () => scope('cluster-mesh', (s) => withNodeLogs(cluster, async () => {
  const ps = await callOnThreeNodes(s, randomId('cmesh-'), 'mesh');
  for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: false, timeout: 60000 });
  for (const p of ps) {
    assert.equal(await p.page.evaluate(() => window.sbApp.sb.topology), 'mesh', `${p.name}: topology`);
    const left = (await eventsOf(p)).filter((e) => e.ev === 'peer-left' || e.ev === 'error');
    assert.deepEqual(left, [], `${p.name}: events`);
  }
})));

test('SFU call of three pages on three nodes: every page decodes every other page\'s video through the SFU', { timeout: 240000 }, () => scope('cluster-sfu', (s) => withNodeLogs(cluster, async () => {
  const ps = await callOnThreeNodes(s, randomId('csfu-'), 'sfu');
  for (const p of ps) await expectAllFlowing(p, others(ps, p), { audio: true, viaSfu: true, timeout: 90000 });
  for (const p of ps) {
    const c = await p.page.evaluate(() => ({ topology: window.sbApp.sb.topology, pcs: [...window.sbApp.sb.peers.values()].map((m) => m.pc === window.sbApp.sb.sfu?.pc) }));
    assert.deepEqual(c, { topology: 'sfu', pcs: [true, true] }, `${p.name}: every member through the one SFU connection`);
  }
})));

test('a page in another room on the same nodes sees no one, and no one sees it', { timeout: 240000 }, () => scope('cluster-isolation', (s) => withNodeLogs(cluster, async () => {
  const ps = await callOnThreeNodes(s, randomId('cbusy-'), 'mesh');
  await expectAllFlowing(ps[0], others(ps, ps[0]), { viaSfu: false, timeout: 60000 });
  // Alone in its room, on Bob's node (and with every node in its list).
  const eve = await openClusterPage(s, browser, fromNode(cluster.urls, 1), randomId('calone-'), 'Eve');
  assert.equal(eve.node, cluster.urls[1]);
  await sleep(4000);
  const seen = await eve.page.evaluate(() => ({ peers: [...window.sbApp.sb.peers.keys()], grid: [...window.sbApp.grid.keys()] }));
  assert.deepEqual(seen, { peers: [], grid: [] }, 'Eve sees members of another room');
  assert.deepEqual((await eventsOf(eve)).filter((e) => e.ev === 'peer-joined'), [], 'Eve: peer-joined events');
  for (const p of ps) {
    const evs = (await eventsOf(p)).filter((e) => e.ev === 'peer-joined' && e.detail.id === eve.peerId);
    assert.deepEqual(evs, [], `${p.name} saw Eve join`);
    const ids = await p.page.evaluate(() => [...window.sbApp.sb.peers.keys()].sort());
    assert.deepEqual(ids, others(ps, p).sort(), `${p.name}: members`);
  }
})));

test('the SDK\'s region option: a page signaling on n1 gets the STUN and TURN of n2, the node of region r2', { timeout: 120000 }, () => scope('cluster-region', (s) => withNodeLogs(cluster, async () => {
  // n1 learns n2's region from n2's heartbeat (every second).
  const answer = async (u) => JSON.stringify((await (await fetch(u)).json()).iceServers.flatMap((x) => x.urls).sort());
  await waitFor(async () => (await answer(`${cluster.urls[0]}/api/ice-servers?region=r2`)) === (await answer(`${cluster.urls[1]}/api/ice-servers`)),
    { timeout: 15000, interval: 500, what: 'n1 answering region r2 with n2\'s servers' });
  const ria = await openClusterPage(s, browser, [cluster.urls[0]], randomId('cregion-'), 'Ria', { region: 'r2' });
  assert.equal(ria.node, cluster.urls[0]);
  const urlsOf = (servers) => servers.flatMap((x) => x.urls).sort();
  const seen = await ria.page.evaluate(async (n2) => ({
    sdk: window.sbApp.sb.iceServers,
    n1: (await (await fetch('/api/ice-servers')).json()).iceServers,
    n2: (await (await fetch(`${n2}/api/ice-servers`)).json()).iceServers,
  }), cluster.urls[1]);
  assert.ok(urlsOf(seen.n2).length > 0, `n2 announces nothing: ${JSON.stringify(seen.n2)}`);
  assert.notDeepEqual(urlsOf(seen.n1), urlsOf(seen.n2), 'n1 and n2 announce the same servers');
  assert.deepEqual(urlsOf(seen.sdk), urlsOf(seen.n2), 'the SDK with region r2 uses n2\'s servers');
})));

/** Packets page `p` received so far on the tracks of peer `id` (audio and video). */
const packetsFrom = (p, id) => p.page.evaluate(async (peer) => {
  const { sb, grid } = window.sbApp;
  const ids = new Set(grid.get(peer)?.stream.getTracks().map((t) => t.id));
  let n = 0;
  (await sb.sfu.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && ids.has(r.trackIdentifier)) n += r.packetsReceived; });
  return n;
}, id);

/** Packets page `p` sent to its SFU so far (every RTP stream: each simulcast layer, audio). */
const packetsSent = (p) => p.page.evaluate(async () => {
  let n = 0;
  (await window.sbApp.sb.sfu.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp') n += r.packetsSent; });
  return n;
});

/** The frame height page `p` decodes of peer `id`'s video. */
const heightOf = (p, id) => p.page.evaluate(async (peer) => {
  const { sb, grid } = window.sbApp;
  const v = grid.get(peer)?.stream.getVideoTracks()[0];
  let h = 0;
  if (v) (await sb.sfu.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.trackIdentifier === v.id) h = r.frameHeight || 0; });
  return h;
}, id);

test('an SFU room spanning two nodes: the page on n1 and the two on n2 each use their node\'s SFU, every page decodes the others, each packet crosses the link once, each page on n2 gets the layer its tile wants, the speaker on n1 is the speaker on n2', { timeout: 240000 }, () => scope('cluster-span', (s) => withNodeLogs(cluster, async () => {
  const room = randomId('cspan-');
  const opts = { topology: 'sfu', autoIce: true };
  // Ada's camera large enough for two simulcast layers or more (the others' stay small).
  const ada = await openClusterPage(s, browser, fromNode(cluster.urls, 0), room, 'Ada', { ...opts, init: [fakeCamera(640, 360, 15)] });
  const bob = await openClusterPage(s, browser, fromNode(cluster.urls, 1), room, 'Bob', opts);
  const bud = await openClusterPage(s, browser, fromNode(cluster.urls, 1), room, 'Bud', opts);
  const ps = [ada, bob, bud];
  for (const p of ps) await expectAllFlowing(p, others(ps, p), { audio: true, viaSfu: true, timeout: 90000 });
  // Each page's media goes to the SFU of its own node: n2's pages to n2's edge.
  const ip = (i) => new URL(cluster.urls[i]).hostname;
  assert.deepEqual(await Promise.all(ps.map(sfuRemoteIp)), [ip(0), ip(1), ip(1)], 'the SFU address of each page (n1, n2, n2)');
  // n2's link relays Ada's two tracks in and Bob's and Bud's four out, however many
  // subscribers are behind it (two on n2 for Ada's).
  assert.equal(await nodeMetric(1, 'switchboard_sfu_link_tracks', 'dir="in"'), 2, 'tracks into n2');
  assert.equal(await nodeMetric(1, 'switchboard_sfu_link_tracks', 'dir="out"'), 4, 'tracks out of n2');
  // (The rooms of earlier tests may keep their edges until their members' grace ends.)
  assert.ok(await nodeMetric(1, 'switchboard_sfu_edges') >= 1, 'n2 runs an edge');

  // Layers: Bob shows Ada small, Bud large; n2's SFU chooses for each from the layers
  // that all crossed.
  await bob.page.evaluate((id) => window.sbApp.sb.setView(id, { width: 160, height: 90 }), ada.peerId);
  await bud.page.evaluate((id) => window.sbApp.sb.setView(id, { width: 640, height: 360 }), ada.peerId);
  let heights = [];
  await waitFor(async () => {
    heights = [await heightOf(bob, ada.peerId), await heightOf(bud, ada.peerId)];
    return heights[0] > 0 && heights[0] < heights[1];
  }, { timeout: 60000, interval: 1000, what: 'Bob (small tile) decoding a lower layer of Ada than Bud (large tile)' })
    .catch((e) => { throw new Error(`${e.message}; last heights (Bob, Bud) ${heights}`); });
  process.stderr.write(`[cluster-span] Ada's video decoded at ${heights[0]}p by Bob (small tile), ${heights[1]}p by Bud (large tile), both on n2\n`);

  // Packets: what crossed into n2 over 5 s against what Ada sent in the same time, all
  // her layers and her audio (a copy per subscriber would be up to twice as much).
  const [in0, sent0, bob0, bud0] = [await nodeMetric(1, 'switchboard_sfu_link_packets_total', 'dir="in"'), await packetsSent(ada), await packetsFrom(bob, ada.peerId), await packetsFrom(bud, ada.peerId)];
  await sleep(5000);
  const [in1, sent1, bob1, bud1] = [await nodeMetric(1, 'switchboard_sfu_link_packets_total', 'dir="in"'), await packetsSent(ada), await packetsFrom(bob, ada.peerId), await packetsFrom(bud, ada.peerId)];
  const [crossed, sent] = [in1 - in0, sent1 - sent0];
  process.stderr.write(`[cluster-span] in 5 s: Ada sent ${sent} packets, ${crossed} crossed into n2; Bob received ${bob1 - bob0} of Ada's, Bud ${bud1 - bud0}\n`);
  assert.ok(bob1 - bob0 > 50 && bud1 - bud0 > 50, `Bob and Bud received ${bob1 - bob0} and ${bud1 - bud0} packets of Ada's in 5 s`);
  assert.ok(crossed > 0.8 * sent && crossed < 1.2 * sent, `link packets into n2 (${crossed}) against what Ada sent (${sent}): once, not per subscriber`);

  // Speaker: Bob and Bud mute their microphones; Ada's tone makes her the dominant
  // speaker, found by n1's SFU and by n2's from the levels that crossed.
  for (const p of [bob, bud]) {
    await p.page.evaluate(() => window.sbApp.sb.sfu.pc.getSenders().forEach((x) => { if (x.track?.kind === 'audio') x.track.enabled = false; }));
  }
  for (const p of [bob, bud]) {
    await waitFor(() => p.page.evaluate((id) => window.sbApp.sb.speaker === id, ada.peerId),
      { timeout: 20000, what: `${p.name} (on n2) names Ada (on n1) the speaker` });
  }
})));

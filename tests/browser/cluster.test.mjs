// A cluster (issue 14) as users meet it: a real redis-server and three switchboard nodes
// (cluster-lab.mjs: each node in its own network namespace when tests/cluster/lab.sh is
// there), pages of one room each connected to a different node, with the SDK's `urls`.
// - a mesh call of three pages on three nodes: every page decodes every other's video;
// - an SFU call of three pages on three nodes: the same through the room node's SFU;
// - a page in another room on the same nodes sees no one, and nobody sees it;
// - the SDK's `region`: a page on node 1 gets the ICE servers of the node of that region.
// A node's death: cluster-failover.test.mjs. (One file each: run.sh's time limit is per file.)
//
// CPU: three Chromium pages on two cores, so the fake camera is small (320x180, 15 fps).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { scope, randomId, sleep, waitFor } from './harness.mjs';
import { expectAllFlowing } from './sfu-helpers.mjs';
import { startCluster, launchClusterBrowser, withNodeLogs, others, openClusterPage, eventsOf, fromNode } from './cluster-lab.mjs';

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

/** The remote address of the selected ICE pair of page `p`'s SFU connection. */
const sfuRemoteIp = (p) => p.page.evaluate(async () => {
  const stats = await window.sbApp.sb.sfu.pc.getStats();
  let pair = null;
  stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
  return pair ? stats.get(pair.remoteCandidateId)?.address : null;
});

/** A node's metric (the sum of its samples whose labels contain `labels`). */
async function nodeMetric(i, name, labels = '') {
  const host = new URL(cluster.urls[i]).hostname;
  const text = await (await fetch(`http://${host}:9641/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name) && l.includes(labels) && !l.startsWith('#'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/** Packets page `p` received so far on the tracks of peer `id` (audio and video). */
const packetsFrom = (p, id) => p.page.evaluate(async (peer) => {
  const { sb, grid } = window.sbApp;
  const ids = new Set(grid.get(peer)?.stream.getTracks().map((t) => t.id));
  let n = 0;
  (await sb.sfu.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && ids.has(r.trackIdentifier)) n += r.packetsReceived; });
  return n;
}, id);

test('an SFU room spanning two nodes: the page on n1 and the two on n2 each use their node\'s SFU, every page decodes the others, each track crosses the link once', { timeout: 240000 }, () => scope('cluster-span', (s) => withNodeLogs(cluster, async () => {
  const room = randomId('cspan-');
  const opts = { topology: 'sfu', autoIce: true };
  const ada = await openClusterPage(s, browser, fromNode(cluster.urls, 0), room, 'Ada', opts);
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
  // Packets: what crossed into n2 over 5 s against what one subscriber there received of
  // Ada's in the same time (twice as much would be a copy per subscriber).
  const [in0, bob0, bud0] = [await nodeMetric(1, 'switchboard_sfu_link_packets_total', 'dir="in"'), await packetsFrom(bob, ada.peerId), await packetsFrom(bud, ada.peerId)];
  await sleep(5000);
  const [in1, bob1, bud1] = [await nodeMetric(1, 'switchboard_sfu_link_packets_total', 'dir="in"'), await packetsFrom(bob, ada.peerId), await packetsFrom(bud, ada.peerId)];
  const crossed = in1 - in0;
  const got = Math.min(bob1 - bob0, bud1 - bud0);
  process.stderr.write(`[cluster-span] link packets into n2 in 5 s: ${crossed}; Bob received ${bob1 - bob0} of Ada's, Bud ${bud1 - bud0}\n`);
  assert.ok(got > 50, `Bob and Bud received ${bob1 - bob0} and ${bud1 - bud0} packets of Ada's in 5 s`);
  assert.ok(crossed < 1.5 * got && crossed > 0.5 * got, `link packets into n2 (${crossed}) against one subscriber's (${got}): once, not per subscriber`);
})));

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

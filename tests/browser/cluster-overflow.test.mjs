// A full node (issue 14, docs/cluster.md "SFU rooms"): three nodes with
// --cluster-capacity 2. Two pages join an SFU room through n1, which holds the room and
// is then full; a third page also signals through n1, but n1's /api/ice-servers names
// another node, the least loaded one, and the page's media goes to that node's SFU edge,
// linked to the room's SFU on n1. Everyone decodes everyone; the edge's link carries the
// two n1 pages' tracks in once.
//
// CPU: three Chromium pages on two cores, so the fake camera is small (320x180, 15 fps).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { scope, randomId, waitFor } from './harness.mjs';
import { expectAllFlowing } from './sfu-helpers.mjs';
import { startCluster, launchClusterBrowser, withNodeLogs, others, openClusterPage, nodeMetric, sfuRemoteIp } from './cluster-lab.mjs';

const CAPACITY = 2;

let browser;
let cluster;
before(async () => {
  cluster = await startCluster({ nodeArgs: ['--cluster-capacity', String(CAPACITY)] });
  browser = await launchClusterBrowser(cluster);
});
after(async () => {
  await browser?.close();
  await cluster?.stop();
});

/** The `node` a node's /api/ice-servers names (null: none). */
const namedBy = async (url) => (await (await fetch(`${url}/api/ice-servers`)).json()).node ?? null;

test('a full node sends a new page\'s media to another node\'s SFU edge: the page decodes and is decoded, the edge links to the room\'s node', { timeout: 240000 }, () => scope('cluster-overflow', (s) => withNodeLogs(cluster, async () => {
  const [n1, n2, n3] = cluster.urls;
  const host = (u) => new URL(u).hostname;
  const room = randomId('cover-');
  const opts = { topology: 'sfu', autoIce: true };
  assert.equal(await namedBy(n1), 'n1', 'n1 names itself while it has room');
  const ada = await openClusterPage(s, browser, [n1, n2, n3], room, 'Ada', opts);
  const bob = await openClusterPage(s, browser, [n1, n2, n3], room, 'Bob', opts);
  // n1 serves two participants now: full from its next heartbeat on.
  const named = await waitFor(async () => { const n = await namedBy(n1); return n !== 'n1' && n; },
    { timeout: 15000, interval: 500, what: `n1's /api/ice-servers naming another node once it serves ${CAPACITY} participants` });
  assert.ok(['n2', 'n3'].includes(named), `n1 names ${named}`);
  const cid = await openClusterPage(s, browser, [n1, n2, n3], room, 'Cid', opts);
  assert.deepEqual([ada.node, bob.node, cid.node], [n1, n1, n1], 'every page signals through n1');
  const ps = [ada, bob, cid];
  for (const p of ps) await expectAllFlowing(p, others(ps, p), { audio: true, viaSfu: true, timeout: 90000 });
  // Ada's and Bob's media on n1's SFU (the room's); Cid's on the edge of the node n1
  // named (the least loaded then: n2 or n3, whichever it was when Cid asked).
  const cidSfu = await waitFor(async () => { const ip = await sfuRemoteIp(cid); return ip && ip !== host(n1) && ip; },
    { timeout: 30000, what: 'Cid\'s media on another node\'s SFU than n1\'s' });
  const i = cluster.urls.findIndex((u) => host(u) === cidSfu);
  assert.ok(i === 1 || i === 2, `Cid's SFU address ${cidSfu} is n2's or n3's`);
  assert.deepEqual([await sfuRemoteIp(ada), await sfuRemoteIp(bob)], [host(n1), host(n1)], 'Ada\'s and Bob\'s SFU address');
  for (const p of ps) await expectAllFlowing(p, others(ps, p), { audio: true, viaSfu: true, timeout: 30000 });
  const links = async (j) => [await nodeMetric(cluster, j, 'switchboard_sfu_link_tracks', 'dir="in"'), await nodeMetric(cluster, j, 'switchboard_sfu_link_tracks', 'dir="out"')];
  const [tin, tout] = await links(i);
  process.stderr.write(`[cluster-overflow] n1 full at ${CAPACITY}: it named ${named}; Cid's media on n${i + 1}'s edge, whose link carries ${tin} tracks in, ${tout} out\n`);
  assert.deepEqual([tin, tout], [4, 2], `n${i + 1}'s link: Ada's and Bob's 4 tracks in, Cid's 2 out`);
  // Nobody used the third node: it has no link.
  assert.deepEqual(await links(3 - i), [0, 0], `n${4 - i}: no link`);
})));

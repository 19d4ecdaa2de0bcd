// A node's death in a cluster (issue 14), as users meet it: a real redis-server and three
// switchboard nodes (cluster-lab.mjs), pages using the SDK's `urls`. Kill -9 the node two
// pages of a call use (the room's node, and in an SFU call its SFU, too): both resume on
// another node, nobody sees a leave, every page decodes every other again (mesh: an ICE
// restart across nodes completes; SFU: through the SFU of the room's new node). An SFU
// room spanning nodes, too: its room node dies while the two other pages are on the SFU
// edges of their own nodes; the edge of the node that does not take the room over links
// to the one that does. The time
// from the kill to the resume and to video flowing again is printed, not asserted; the
// killed node is started again for the next test. Last, a Redis restart and a partition of
// one node, mid-call (the lab's faults). Calls across nodes: cluster.test.mjs.
//
// CPU: three Chromium pages on two cores, so the fake camera is small (320x180, 15 fps).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { scope, randomId, waitFor, sleep } from './harness.mjs';
import { expectAllFlowing } from './sfu-helpers.mjs';
import { startCluster, launchClusterBrowser, withNodeLogs, others, openClusterPage, eventsOf, nodeMetric as metricOf, sfuRemoteIp } from './cluster-lab.mjs';

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

/**
 * In page p, every 100 ms, a figure per remote member that changes whenever a new frame of
 * its video is decoded: mesh, the frames decoded over its connection's inbound videos;
 * SFU, those of the video track its tile shows (window.__frames: [{t, frames: {id: n}}],
 * two minutes kept). It can fall (a new stream after renegotiation): any change is a frame.
 */
function startFrameLog(p) {
  return p.page.evaluate(() => {
    window.__frames = [];
    setInterval(async () => {
      const { sb, grid } = window.sbApp;
      const byTrack = new Map();
      const byPc = new Map();
      for (const pc of new Set([...sb.peers.values()].map((m) => m.pc).filter(Boolean))) {
        let sum = 0;
        try {
          (await pc.getStats()).forEach((x) => {
            if (x.type !== 'inbound-rtp' || x.kind !== 'video') return;
            byTrack.set(x.trackIdentifier, x.framesDecoded || 0);
            sum += x.framesDecoded || 0;
          });
        } catch { /* closed meanwhile */ }
        byPc.set(pc, sum);
      }
      const frames = {};
      for (const [id, m] of sb.peers) {
        const shown = grid.get(id)?.stream.getVideoTracks()[0];
        frames[id] = sb.sfu && m.pc === sb.sfu.pc ? (shown && byTrack.get(shown.id)) || 0 : byPc.get(m.pc) || 0;
      }
      window.__frames.push({ t: Date.now(), frames });
      if (window.__frames.length > 1200) window.__frames.shift();
    }, 100);
  });
}

/**
 * From page p's frame log and events, after a kill at `t0` (ms after t0): when it resumed
 * (null: its connection lived), the longest time any remote video went without a new frame
 * since the kill, and, when that was a real stall (over 0.5 s), when the last stalled video
 * decoded again.
 */
async function failoverTimes(p, t0, ids) {
  const { frames, events } = await p.page.evaluate(() => ({ frames: window.__frames, events: window.__events }));
  const resumed = events.find((e) => e.ev === 'resumed' && e.t >= t0);
  const log = frames.filter((f) => f.t >= t0 - 1000);
  let longest = { ms: 0, end: null };
  for (const id of ids) {
    let last = null;
    for (const f of [...log, null]) {
      const moved = f && (!last || f.frames[id] !== last.frames[id]);
      if (!moved && f) continue;
      // A new frame at f (or the log's end): the time since the last one, counted from t0.
      const end = f ? f.t : log.at(-1).t;
      const ms = last ? end - Math.max(last.t, t0) : 0;
      if (ms > longest.ms) longest = { ms, end: f ? f.t : null };
      last = f;
    }
  }
  return {
    resumedMs: resumed ? resumed.t - t0 : null, gap: resumed ? !!resumed.detail.gap : null, node: resumed?.url,
    longestGapMs: longest.ms, videoAgainMs: longest.ms > 500 ? (longest.end === null ? Infinity : longest.end - t0) : null,
  };
}

/** The failover line of page p (after `what`), printed and returned. */
async function reportFailover(t, p, t0, ids, what = 'failover') {
  const f = await failoverTimes(p, t0, ids);
  const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
  const line = `${what} ${p.name}: ${f.resumedMs === null ? 'no resume (its connection lived)' : `resumed after ${s(f.resumedMs)} on ${f.node} (gap ${f.gap})`}; ` +
    (f.videoAgainMs === null ? `video never stopped (longest gap ${s(f.longestGapMs)})` : `video flowing again after ${s(f.videoAgainMs)} (longest gap ${s(f.longestGapMs)})`);
  t.diagnostic(line);
  process.stderr.write(`[cluster] ${line}\n`);
  return f;
}

async function iceUfrags(p, id) {
  return p.page.evaluate((id) => {
    const pc = window.sbApp.sb.peers.get(id).pc;
    const ufrag = (d) => (d && d.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];
    return { local: ufrag(pc.currentLocalDescription), remote: ufrag(pc.currentRemoteDescription), signalingState: pc.signalingState };
  }, id);
}

/**
 * Kill -9 node n1, which two pages of a `topology` call use and where the room lives (with
 * `span`, one page; the two others are each served by their own node's SFU edge); the
 * checks of a user: both resume on another node with the same peer id, nobody sees a
 * leave or a re-join, everyone decodes everyone again. Prints the failover times; n1 is
 * started again at the end.
 */
async function failover(t, s, topology, { span = false } = {}) {
  const room = randomId(`cfail-${topology}${span ? '-span' : ''}-`);
  const sfu = topology === 'sfu';
  // span: each page uses its own node's SFU (the SDK's iceServers 'auto' names the node).
  const opts = { topology, autoIce: span };
  // Ada joins first on n1, so the room (and, SFU, its SFU) lives on n1
  // (--cluster-placement local): the kill takes the room's node and Ada's and Bob's.
  // span: Bob signals through n3 and Cleo through n2, each served by its node's edge,
  // linked to the room's SFU on n1. The room moves to n2 or n3 (whichever claims it
  // first once n1's lease runs out); the other node's edge must then link to it.
  const [n1, n2, n3] = cluster.urls;
  const ada = await openClusterPage(s, browser, [n1, n2, n3], room, 'Ada', opts);
  const bob = await openClusterPage(s, browser, span ? [n3, n2, n1] : [n1, n2, n3], room, 'Bob', opts);
  const cleo = await openClusterPage(s, browser, [n2, n3, n1], room, 'Cleo', opts);
  const ps = [ada, bob, cleo];
  assert.deepEqual(ps.map((p) => p.node), [n1, span ? n3 : n1, n2], 'the nodes the pages joined on');
  for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: sfu, timeout: 60000 });
  if (span) {
    assert.equal(await sfuRemoteIp(bob), new URL(n3).hostname, 'Bob uses n3\'s edge before the kill');
    assert.equal(await sfuRemoteIp(cleo), new URL(n2).hostname, 'Cleo uses n2\'s edge before the kill');
  }
  for (const p of ps) await startFrameLog(p);
  await sleep(1500);

  const t0 = Date.now();
  await cluster.kill(0);
  t.diagnostic(`n1 (${cluster.urls[0]}) killed with SIGKILL`);
  try {
    for (const p of [ada, bob]) {
      await waitFor(async () => {
        const st = (await eventsOf(p)).filter((e) => e.ev === 'state' && e.t >= t0).map((e) => e.detail);
        return st.includes('reconnecting') && st.at(-1) === 'open' && st;
      }, { timeout: 60000, what: `${p.name}: signaling reconnecting -> open after the kill` });
      const now = await p.page.evaluate(() => ({ peerId: window.sbApp.sb.peerId, url: window.sbApp.sb.url }));
      assert.equal(now.peerId, p.peerId, `${p.name}: peer id changed (joined afresh instead of resuming)`);
      assert.notEqual(now.url, cluster.urls[0], `${p.name}: still on the killed node`);
      assert.ok(cluster.urls.includes(now.url), `${p.name}: on ${now.url}`);
    }
    await waitFor(async () => (await eventsOf(cleo)).filter((e) => e.ev === 'state').at(-1)?.detail === 'open', { timeout: 60000, what: 'Cleo: signaling open' });
    for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: sfu, audio: sfu, timeout: 60000 });
    // The figures of the failover itself, before the checks below add their own stalls.
    for (const p of ps) await reportFailover(t, p, t0, others(ps, p));

    for (const p of ps) {
      const evs = await eventsOf(p);
      const bad = evs.filter((e) => e.ev === 'peer-left' || (e.ev === 'joined' && e.detail.rejoined) || (e.ev === 'error' && e.detail.fatal));
      assert.deepEqual(bad, [], `${p.name} saw a leave, a re-join or a fatal error`);
      assert.equal(evs.filter((e) => e.ev === 'joined').length, 1, `${p.name}: joined events`);
      const ids = await p.page.evaluate(() => [...window.sbApp.sb.peers.keys()].sort());
      assert.deepEqual(ids, others(ps, p).sort(), `${p.name}: members after the failover`);
    }

    if (sfu) {
      // The media now goes through the SFU of the room's new node, not n1's address;
      // span: each page's through its own node's SFU (the room's own or that node's edge,
      // linked to the room's new node).
      const killedIp = new URL(cluster.urls[0]).hostname;
      for (const p of ps) {
        const remote = await waitFor(() => sfuRemoteIp(p), { timeout: 10000, what: `${p.name}: a selected pair on the SFU connection` });
        assert.notEqual(remote, killedIp, `${p.name}: media still addressed to the killed node`);
        if (span) {
          const node = await p.page.evaluate(() => window.sbApp.sb.url);
          await waitFor(async () => (await sfuRemoteIp(p)) === new URL(node).hostname,
            { timeout: 30000, what: `${p.name}: media through the SFU of its node ${node}` });
        }
      }
      if (span) {
        for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: true, audio: true, timeout: 30000 });
        // The pages are on two nodes now: one edge linked to the room's new node.
        const linked = async () => [await nodeMetric(1, 'switchboard_sfu_link_tracks', 'dir="in"'), await nodeMetric(2, 'switchboard_sfu_link_tracks', 'dir="in"')];
        const tracks = await waitFor(async () => { const l = await linked(); return l[0] + l[1] > 0 && l; },
          { timeout: 10000, what: 'an edge (n2 or n3) linked to the room\'s new node' });
        const where = await Promise.all(ps.map(async (p) => `${p.name} on ${await p.page.evaluate(() => window.sbApp.sb.url)} via SFU ${await sfuRemoteIp(p)}`));
        t.diagnostic(`after the failover: ${where.join('; ')}; link tracks in: n2 ${tracks[0]}, n3 ${tracks[1]}`);
      }
    } else {
      // Signaling goes on through the room's new node: an ICE restart Ada -> Cleo needs its
      // offer and answer relayed.
      const was = await iceUfrags(ada, cleo.peerId);
      await ada.page.evaluate((id) => window.sbApp.sb.peers.get(id).pc.restartIce(), cleo.peerId);
      await waitFor(async () => {
        const n = await iceUfrags(ada, cleo.peerId);
        return n.signalingState === 'stable' && n.local !== was.local && n.remote !== was.remote && n;
      }, { timeout: 30000, what: `Ada -> Cleo: ICE restart completed after the failover (before ${JSON.stringify(was)})` });
      await expectAllFlowing(ada, [cleo.peerId], { viaSfu: false, timeout: 30000 });
    }
  } finally {
    await cluster.revive(0);
  }
}

test('mesh: kill -9 the node two pages of a call use: both resume on another node, nobody sees a leave, video flows again', { timeout: 300000 },
  (t) => scope('cluster-failover-mesh', (s) => withNodeLogs(cluster, () => failover(t, s, 'mesh'))));

test('SFU: kill -9 the node two pages of a call and the room\'s SFU use: both resume on another node, nobody sees a leave, video flows again', { timeout: 300000 },
  (t) => scope('cluster-failover-sfu', (s) => withNodeLogs(cluster, () => failover(t, s, 'sfu'))));

test('SFU room spanning nodes: kill -9 the room\'s node, which one page uses, while the two others use the edges of their own nodes: all resume, nobody sees a leave, each page ends on its own node\'s SFU, an edge links to the room\'s new node, video flows again', { timeout: 300000 },
  (t) => scope('cluster-failover-span', (s) => withNodeLogs(cluster, () => failover(t, s, 'sfu', { span: true }))));

/** Page p's SDK events of kinds a user would call trouble since `t0`: a leave, a re-join, a fatal error. */
async function trouble(p, t0 = 0) {
  return (await eventsOf(p)).filter((e) => e.t >= t0 && (e.ev === 'peer-left' || (e.ev === 'joined' && e.detail.rejoined) || (e.ev === 'error' && e.detail.fatal)));
}

/** An ICE restart from page `from` to page `to` completes: its offer and answer crossed signaling. */
async function iceRestartCompletes(from, to, what) {
  const was = await iceUfrags(from, to.peerId);
  await from.page.evaluate((id) => window.sbApp.sb.restartIce(id), to.peerId);
  await waitFor(async () => {
    const n = await iceUfrags(from, to.peerId);
    return n.signalingState === 'stable' && n.local !== was.local && n.remote !== was.remote && n;
  }, { timeout: 30000, what: `${from.name} -> ${to.name}: ICE restart completed ${what}` });
}

test('Redis restarted, then a node cut off and healed, mid-call: media goes on, signaling works again after each, nobody sees a leave', { timeout: 300000 },
  (t) => scope('cluster-faults', (s) => withNodeLogs(cluster, async () => {
    if (!cluster.redisRestart) return t.skip('needs the cluster lab (tests/cluster/lab.sh) for its faults');
    // A mesh call over three nodes: the room lives on n1 (Ada's), Bob and Cleo are bridged
    // by n2 and n3, so every offer between them crosses Redis twice.
    const room = randomId('cfaults-');
    const [n1, n2, n3] = cluster.urls;
    const ada = await openClusterPage(s, browser, [n1, n2, n3], room, 'Ada');
    const bob = await openClusterPage(s, browser, [n2, n3, n1], room, 'Bob');
    const cleo = await openClusterPage(s, browser, [n3, n1, n2], room, 'Cleo');
    const ps = [ada, bob, cleo];
    assert.deepEqual(ps.map((p) => p.node), [n1, n2, n3], 'the nodes the pages joined on');
    for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: false, timeout: 60000 });
    for (const p of ps) await startFrameLog(p);
    await sleep(1500);

    // Redis goes away and comes back empty (`shutdown nosave`): the nodes write their
    // rooms again; messages between nodes wait and are delivered.
    const t0 = Date.now();
    await cluster.redisRestart();
    t.diagnostic(`Redis restarted without its data in ${Date.now() - t0} ms`);
    await iceRestartCompletes(bob, cleo, 'after the Redis restart (n2 -> n1 -> n3)');
    for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: false, timeout: 30000 });
    for (const p of ps) await reportFailover(t, p, t0, others(ps, p), 'Redis restart');
    for (const p of ps) assert.deepEqual(await trouble(p), [], `${p.name} saw a leave, a re-join or a fatal error after the Redis restart`);
    for (const p of ps) assert.equal(await p.page.evaluate(() => window.sbApp.sb.peerId), p.peerId, `${p.name}: peer id`);

    // n3, Cleo's node, cut off from Redis and the other nodes for longer than a node's
    // lease (5 s): n1 suspends Cleo's session; after the heal n3 finds itself declared
    // dead and closes Cleo's connection (1012), and she resumes with the same peer id.
    const t1 = Date.now();
    await cluster.partition(2);
    try {
      await sleep(8000);
    } finally {
      await cluster.heal(2);
    }
    const healed = Date.now();
    t.diagnostic(`n3 cut off for ${((healed - t1) / 1000).toFixed(1)} s, then healed`);
    const resumed = await waitFor(async () => (await eventsOf(cleo)).find((e) => e.ev === 'resumed' && e.t >= t1),
      { timeout: 60000, what: 'Cleo resumes after n3 was cut off' });
    assert.equal(await cleo.page.evaluate(() => window.sbApp.sb.peerId), cleo.peerId, 'Cleo: peer id changed (joined afresh)');
    await waitFor(async () => (await eventsOf(cleo)).filter((e) => e.ev === 'state').at(-1)?.detail === 'open', { timeout: 30000, what: 'Cleo: signaling open' });
    t.diagnostic(`Cleo resumed on ${resumed.url} ${((resumed.t - healed) / 1000).toFixed(2)} s after the heal (gap ${!!resumed.detail.gap})`);
    await iceRestartCompletes(cleo, ada, 'after the heal');
    await iceRestartCompletes(bob, cleo, 'after the heal');
    for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: false, timeout: 30000 });
    for (const p of ps) await reportFailover(t, p, t1, others(ps, p), 'n3 cut off');
    for (const p of ps) {
      assert.deepEqual(await trouble(p), [], `${p.name} saw a leave, a re-join or a fatal error`);
      const ids = await p.page.evaluate(() => [...window.sbApp.sb.peers.keys()].sort());
      assert.deepEqual(ids, others(ps, p).sort(), `${p.name}: members at the end`);
    }
  })));

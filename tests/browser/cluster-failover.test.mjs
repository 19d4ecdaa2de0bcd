// A node's death in a cluster (issue 14), as users meet it: a real redis-server and three
// switchboard nodes (cluster-lab.mjs), pages using the SDK's `urls`. Kill -9 the node two
// pages of a call use (the room's node, and in an SFU call its SFU, too): both resume on
// another node, nobody sees a leave, every page decodes every other again (mesh: an ICE
// restart across nodes completes; SFU: through the SFU of the room's new node). The time
// from the kill to the resume and to video flowing again is printed, not asserted; the
// killed node is started again for the next test. Calls across nodes: cluster.test.mjs.
//
// CPU: three Chromium pages on two cores, so the fake camera is small (320x180, 15 fps).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { scope, randomId, waitFor, sleep } from './harness.mjs';
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

/** The failover line of page p, printed and returned. */
async function reportFailover(t, p, t0, ids) {
  const f = await failoverTimes(p, t0, ids);
  const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
  const line = `failover ${p.name}: ${f.resumedMs === null ? 'no resume (its connection lived)' : `resumed after ${s(f.resumedMs)} on ${f.node} (gap ${f.gap})`}; ` +
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
 * Kill -9 node n1, which two pages of a `topology` call use and where the room lives; the
 * checks of a user: both resume on another node with the same peer id, nobody sees a
 * leave or a re-join, everyone decodes everyone again. Prints the failover times; n1 is
 * started again at the end.
 */
async function failover(t, s, topology) {
  const room = randomId(`cfail-${topology}-`);
  const sfu = topology === 'sfu';
  // Ada joins first on n1, so the room (and, SFU, its SFU) lives on n1
  // (--cluster-placement local): the kill takes the room's node and Ada's and Bob's.
  const ada = await openClusterPage(s, browser, fromNode(cluster.urls, 0), room, 'Ada', { topology });
  const bob = await openClusterPage(s, browser, fromNode(cluster.urls, 0), room, 'Bob', { topology });
  const cleo = await openClusterPage(s, browser, fromNode(cluster.urls, 1), room, 'Cleo', { topology });
  const ps = [ada, bob, cleo];
  assert.deepEqual(ps.map((p) => p.node), [cluster.urls[0], cluster.urls[0], cluster.urls[1]], 'the nodes the pages joined on');
  for (const p of ps) await expectAllFlowing(p, others(ps, p), { viaSfu: sfu, timeout: 60000 });
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
      // The media now goes through the SFU of the room's new node: not n1's address.
      const killedIp = new URL(cluster.urls[0]).hostname;
      for (const p of ps) {
        const remote = await waitFor(() => p.page.evaluate(async () => {
          const stats = await window.sbApp.sb.sfu.pc.getStats();
          let pair = null;
          stats.forEach((x) => { if (x.type === 'transport' && x.selectedCandidatePairId) pair = stats.get(x.selectedCandidatePairId); });
          return pair && stats.get(pair.remoteCandidateId)?.address;
        }), { timeout: 10000, what: `${p.name}: a selected pair on the SFU connection` });
        assert.notEqual(remote, killedIp, `${p.name}: media still addressed to the killed node`);
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

// The cluster of cluster.test.mjs (issue 14): a real redis-server and three clustered
// `switchboard serve` nodes, and pages that use the SDK with the nodes' URLs.
//
// Preferably tests/cluster/lab.sh's lab (SB_CLUSTER_LAB names another copy of the script):
// Redis and each node in its own network namespace on one bridge (198.51.100.10, .11-.13),
// and this test's own namespace (run.sh's) attached to it, so Chromium reaches the nodes
// as separate hosts and a killed node is a host whose port refuses. Without the script the
// nodes run in this namespace on 127.0.0.11-13 with Redis on 127.0.0.1 (a free port).
//
// Start-up (the lab, Redis, three nodes ready) has its own limit,
// SB_CLUSTER_STARTUP_TIMEOUT_MS (default 120 s): past it, or when a part does not start,
// it is a HarnessError ("harness failure: ..."), not a verdict.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { ROOT, HarnessError, startServer, freePortTcpUdp, serverBin, sleep, loadPage, Participant, launchBrowser, toneWav } from './harness.mjs';

const run = promisify(execFile);
const STARTUP_LIMIT_MS = Number(process.env.SB_CLUSTER_STARTUP_TIMEOUT_MS || 120000);
const LAB = process.env.SB_CLUSTER_LAB || path.join(ROOT, 'tests/cluster/lab.sh');

/** Reject with a HarnessError when `promise` is not done within the start-up limit. */
async function withinStartup(promise, what, t0) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new HarnessError(what, Date.now() - t0, new Error(`limit of ${STARTUP_LIMIT_MS / 1000} s`))), STARTUP_LIMIT_MS);
  });
  try {
    return await Promise.race([promise, limit]);
  } catch (e) {
    if (e instanceof HarnessError) throw e;
    throw new HarnessError(what, Date.now() - t0, e);
  } finally {
    clearTimeout(timer);
  }
}

/** Options every node gets: rooms live where their first joiner is; pages of any node's origin may connect; then a test's own. */
function commonArgs(urls, extra) {
  return ['--cluster-placement', 'local', ...urls.flatMap((u) => ['--allowed-origin', u]), ...extra];
}

/** The lab of tests/cluster/lab.sh, this namespace attached to it. */
async function startLab(t0, extra) {
  const myNs = execFileSync('ip', ['netns', 'identify', String(process.pid)], { encoding: 'utf8' }).trim();
  if (!myNs) throw new Error('this test runs in no named network namespace (run it with tests/browser/run.sh)');
  const env = { ...process.env, SWITCHBOARD_BIN: serverBin() };
  const lab = async (...args) => (await run('bash', [LAB, ...args], { env, maxBuffer: 1 << 20 })).stdout;
  const vars = Object.fromEntries((await lab('up')).split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  env.CLUSTERLAB_ID = vars.CLUSTERLAB_ID;
  // Whatever happens to this process, the lab goes with it.
  const down = () => { try { execFileSync('bash', [LAB, 'down', vars.CLUSTERLAB_ID], { env, stdio: 'ignore' }); } catch { /* already gone */ } };
  process.on('exit', down);
  const ips = [1, 2, 3].map((n) => vars[`CLUSTERLAB_N${n}_IP`]);
  const urls = ips.map((ip) => `http://${ip}:8080`);
  const cluster = {
    kind: `lab ${vars.CLUSTERLAB_ID} (a namespace per node)`,
    urls,
    redis: vars.CLUSTERLAB_REDIS,
    async kill(i) { await lab('kill-node', String(i + 1)); },
    async revive(i) { await startNode(i); },
    // The lab's faults (none on the local fallback): Redis restarted without its data;
    // node i cut off from Redis and the other nodes (its clients still reach it), healed.
    async redisRestart() { await lab('redis-restart'); },
    async partition(i) { await lab('partition', String(i + 1)); },
    async heal(i) { await lab('heal', String(i + 1)); },
    log(i) {
      try { return readFileSync(path.join(vars.CLUSTERLAB_STATE, `n${i + 1}.log`), 'utf8').split('\n').slice(-60).join('\n'); } catch { return '(no log)'; }
    },
    async stop() { process.off('exit', down); await lab('down', vars.CLUSTERLAB_ID).catch(() => {}); },
  };
  const startNode = (i) => lab('start-node', String(i + 1), ...commonArgs(urls, extra), '--sfu-candidate', ips[i], '--region', `r${i + 1}`);
  try {
    cluster.clientIp = (await lab('attach', myNs)).trim();
    for (const i of ips.keys()) await startNode(i);
  } catch (e) {
    await cluster.stop();
    throw new Error(`${e.message}${e.stderr ? `\n${e.stderr}` : ''}`);
  }
  return cluster;
}

/** Redis and the nodes in this namespace, on 127.0.0.11-13. */
async function startLocal(extra) {
  const port = await freePortTcpUdp();
  const redis = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const killRedis = () => { try { redis.kill('SIGKILL'); } catch { /* gone */ } };
  process.on('exit', killRedis);
  for (let i = 0; ; i++) {
    const pong = await run('redis-cli', ['-p', String(port), 'ping']).then((r) => r.stdout.trim(), () => '');
    if (pong === 'PONG') break;
    if (i > 100 || redis.exitCode !== null) throw new Error(`redis-server on 127.0.0.1:${port} did not answer`);
    await sleep(100);
  }
  const redisUrl = `redis://127.0.0.1:${port}`;
  const startNode = async (i) => {
    const host = `127.0.0.1${i + 1}`;
    const sfuPort = await freePortTcpUdp(host);
    // The HTTP ports are known only once started: any origin may connect.
    return startServer({ host, args: ['--cluster', redisUrl, '--node-name', `n${i + 1}`, ...commonArgs(['*'], extra), '--sfu-port', String(sfuPort), '--sfu-candidate', host, '--region', `r${i + 1}`] });
  };
  const servers = [];
  for (const i of [0, 1, 2]) servers.push(await startNode(i));
  const urls = servers.map((sv) => sv.url);
  return {
    kind: 'local (127.0.0.11-13 in this namespace)',
    urls,
    redis: redisUrl,
    async kill(i) { process.kill(servers[i].pid, 'SIGKILL'); while (!servers[i].exited) await sleep(20); },
    // On another HTTP port: `urls` changes.
    async revive(i) { servers[i] = await startNode(i); urls[i] = servers[i].url; },
    log(i) { return servers[i].lines.slice(-60).join('\n'); },
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
      killRedis();
      process.off('exit', killRedis);
    },
  };
}

/**
 * Redis and three nodes, ready. Resolves to { kind, urls, redis, kill(i), revive(i), log(i),
 * stop() } (`i`: 0..2; revive starts a killed node again), and in the lab also
 * redisRestart(), partition(i), heal(i); `nodeArgs`: more options for every node. Throws a
 * HarnessError when they do not come up within the start-up limit.
 */
export async function startCluster({ nodeArgs = [] } = {}) {
  const t0 = Date.now();
  const useLab = existsSync(LAB);
  const what = useLab ? `cluster lab (${LAB}): Redis and three nodes` : 'Redis and three nodes on 127.0.0.11-13';
  const starting = useLab ? startLab(t0, nodeArgs) : startLocal(nodeArgs);
  // Past the limit the start goes on: whatever it brings up is taken down again.
  const cluster = await withinStartup(starting, `${what} did not come up`, t0).catch((e) => {
    starting.then((c) => c.stop(), () => {});
    throw e;
  });
  process.stderr.write(`[harness] cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${cluster.kind}, nodes ${cluster.urls.join(' ')}\n`);
  return cluster;
}

/** A blank page of the node's origin, so that `import('/sdk/switchboard.js')` loads that node's SDK. */
const BLANK = '<!doctype html><meta charset="utf-8"><title>cluster test</title><body></body>';

/**
 * The in-page client: the SDK with `urls`, the fake camera and microphone published, and
 * what sfu-helpers.mjs reads: `window.sbApp = { sb, grid }` (grid: peer id -> { stream,
 * video } of the tracks shown for it) and `window.__events` (SDK events with their time).
 */
async function pageJoin({ urls, room, name, topology, region, autoIce }) {
  // The page's own set-up, not the call: a network change in this namespace (a lab
  // plugged in or out) aborts requests in flight, and a failed module import is not
  // fetched again under the same URL.
  let Switchboard;
  for (let i = 0; !Switchboard; i++) {
    try {
      ({ Switchboard } = await import(`/sdk/switchboard.js${i ? `?retry=${i}` : ''}`));
    } catch (e) {
      if (i >= 2) throw e;
      console.warn(`[harness] SDK import failed (${e.message}); trying again`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  // The ICE servers from /api/ice-servers only when a test asks for them (a region's, or
  // the node's, which also names the node: its SFU edge is the one to use).
  const ice = region ? { iceServers: 'auto', region } : autoIce ? { iceServers: 'auto' } : { iceServers: [] };
  const sb = new Switchboard({ urls, room, name, topology, ...ice, debug: (...a) => console.debug('[sb]', ...a.map(String)) });
  const grid = new Map();
  window.sbApp = { sb, grid };
  window.__events = [];
  const tile = (id) => {
    let t = grid.get(id);
    if (!t) {
      const video = document.createElement('video');
      // Not muted: Chromium counts received audio energy only for audio played out.
      Object.assign(video, { autoplay: true, playsInline: true, width: 160, height: 90 });
      document.body.append(video);
      t = { stream: new MediaStream(), video };
      video.srcObject = t.stream;
      grid.set(id, t);
    }
    return t;
  };
  sb.on('track', ({ peer, track }) => {
    const t = tile(peer.id);
    for (const old of t.stream.getTracks()) if (old.kind === track.kind && old !== track) t.stream.removeTrack(old);
    if (!t.stream.getTracks().includes(track)) t.stream.addTrack(track);
    t.video.play().catch(() => {});
  });
  sb.on('track-removed', ({ peer, track }) => grid.get(peer.id)?.stream.removeTrack(track));
  for (const ev of ['peer-joined', 'peer-left', 'state', 'error', 'joined', 'resumed']) {
    sb.on(ev, (d) => {
      const detail = ev === 'state' ? d : ev === 'error' ? { code: d.code, fatal: d.fatal } : ev === 'resumed' ? d
        : ev === 'joined' ? { peerId: d.peerId, rejoined: d.rejoined } : { id: (d.peer || d).id, reason: d.reason };
      window.__events.push({ ev, t: Date.now(), url: sb.url, detail });
    });
  }
  sb.on('peer-left', ({ peer }) => { grid.get(peer.id)?.video.remove(); grid.delete(peer.id); });
  sb.publish(await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 180, frameRate: 15 } }));
  await sb.join();
  return { peerId: sb.peerId, url: sb.url, topology: sb.topology, transportKind: sb.transportKind };
}

/**
 * A participant whose page comes from node `urls[0]`'s origin and whose SDK gets `urls`
 * (that node first). Resolves once joined; `p.node` is the URL its signaling is on.
 */
export async function openClusterPage(s, browser, urls, room, name, { topology = 'mesh', init = [], region, autoIce = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const page = await context.newPage();
  const p = s.track(new Participant(name, context, page));
  for (const script of init) await context.addInitScript(script);
  const at = `${urls[0]}/cluster-test`;
  await context.route(at, (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: BLANK }));
  await loadPage(page, at, { what: `${name}'s page` });
  const joined = await page.evaluate(pageJoin, { urls, room, name, topology, region, autoIce });
  p.peerId = joined.peerId;
  p.node = joined.url;
  p.joinedAs = joined;
  return p;
}

/** The SDK events page `p` recorded. */
export const eventsOf = (p) => p.page.evaluate(() => window.__events);

/** `urls` rotated so that node `i` comes first (then the others in order). */
export const fromNode = (urls, i) => [...urls.slice(i), ...urls.slice(0, i)];

/**
 * Chromium for the cluster's pages: a steady-tone microphone; the nodes' origins are plain
 * http on non-loopback addresses in the lab, so they are made secure contexts (the camera
 * needs one). The pages are fulfilled by the test (openClusterPage), so Chromium does not
 * know their address and would take them for public ones that may not reach loopback
 * nodes (Local Network Access); the switch repeats harness.mjs's --disable-features, which
 * the last one replaces.
 */
export function launchClusterBrowser(cluster) {
  return launchBrowser([
    `--use-file-for-fake-audio-capture=${toneWav()}`,
    `--unsafely-treat-insecure-origin-as-secure=${cluster.urls.join(',')}`,
    '--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks',
  ]);
}

/** Run `fn`; on failure the end of each node's log goes with the error (the scope adds the pages'). */
export async function withNodeLogs(cluster, fn) {
  try {
    await fn();
  } catch (e) {
    const tail = (i) => cluster.log(i).replace(/\x1b\[[0-9;]*m/g, '').split('\n').slice(-25).join('\n');
    e.message += `\n${cluster.urls.map((u, i) => `--- node n${i + 1} ${u} (end of its log)\n${tail(i)}`).join('\n')}`;
    throw e;
  }
}

/** The peer ids of the pages of `ps` other than `p`. */
export const others = (ps, p) => ps.filter((q) => q !== p).map((q) => q.peerId);

/** Node `i`'s metric (the sum of its samples whose labels contain `labels`). */
export async function nodeMetric(cluster, i, name, labels = '') {
  const host = new URL(cluster.urls[i]).hostname;
  const text = await (await fetch(`http://${host}:9641/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name) && l.includes(labels) && !l.startsWith('#'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/** The remote address of the selected ICE pair of page `p`'s SFU connection (null: none yet). */
export const sfuRemoteIp = (p) => p.page.evaluate(async () => {
  const stats = await window.sbApp.sb.sfu.pc.getStats();
  let pair = null;
  stats.forEach((x) => { if (x.type === 'transport' && x.selectedCandidatePairId) pair = stats.get(x.selectedCandidatePairId); });
  return pair ? stats.get(pair.remoteCandidateId)?.address || null : null;
});

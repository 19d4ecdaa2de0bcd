// Network test (/network): the NAT's mapping (one RTCPeerConnection asks this server's
// STUN addresses; one server-reflexive address per distinct mapping), its filtering (the
// server sends ICE checks from another port and another address to our public address,
// see crates/http/src/nettest.rs), the relay's reachability per transport, and the verdict
// `switchboard nat-probe` gives for the same results (crates/natprobe/src/report.rs).
// Test hook: window.sbNetTest = { done: Promise<result> }.

import { renderIcons } from './icons.js';
import { $ } from './ui.js';

const GATHER_TIMEOUT_MS = 8000;

/**
 * @typedef {{type: string, protocol: string, address: string, port: number,
 *   relatedAddress: string|null, relatedPort: number|null, url: string|null, relayProtocol: string|null}} Cand
 */

/**
 * Gather candidates with `config`; resolves when gathering completes (or times out) with
 * the candidates and the pc (still open, so its sockets and NAT mappings stay).
 * @param {RTCConfiguration} config
 * @returns {Promise<{pc: RTCPeerConnection, cands: Cand[]}>}
 */
async function gather(config) {
  const pc = new RTCPeerConnection(config);
  pc.createDataChannel('net-test');
  /** @type {Cand[]} */
  const cands = [];
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (!c || !c.candidate) {
        clearTimeout(timer);
        resolve(undefined);
        return;
      }
      cands.push({
        type: String(c.type), protocol: String(c.protocol), address: String(c.address), port: Number(c.port),
        relatedAddress: c.relatedAddress || null, relatedPort: c.relatedPort ?? null,
        url: /** @type {any} */ (ev).url || null, relayProtocol: /** @type {any} */ (c).relayProtocol || null,
      });
    };
  });
  await pc.setLocalDescription(await pc.createOffer());
  await done;
  return { pc, cands };
}

/** @param {string} sdp @param {string} key */
const sdpValue = (sdp, key) => (sdp.match(new RegExp(`^a=${key}:(\\S+)`, 'm')) || [])[1] || '';
/** @param {string} a @param {number} p */
const hostPort = (a, p) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);

/**
 * Mapping behaviour from the server-reflexive addresses of one socket towards the STUN
 * URLs [primary, same IP other port, other IP]: Chromium reports each distinct address
 * once, naming the first server that returned it.
 * @param {Cand[]} cands @param {string[]} urls
 * @returns {'endpoint-independent'|'address-dependent'|'address-and-port-dependent'|null}
 */
function mappingFrom(cands, urls) {
  const srflx = cands.filter((c) => c.type === 'srflx' && c.protocol === 'udp');
  if (!srflx.length || urls.length < 3) return null;
  // One socket: the base the most srflx addresses came from.
  /** @type {Map<string, Cand[]>} */
  const byBase = new Map();
  for (const c of srflx) {
    const k = `${c.relatedAddress}:${c.relatedPort}`;
    byBase.set(k, [...(byBase.get(k) || []), c]);
  }
  const set = [...byBase.values()].sort((a, b) => b.length - a.length)[0];
  const distinct = new Set(set.map((c) => hostPort(c.address, c.port))).size;
  if (distinct === 1) return 'endpoint-independent';
  if (distinct >= 3) return 'address-and-port-dependent';
  // Two addresses: did the second come from the other port of the same IP, or the other IP?
  const sameIpOtherPort = urls[1].replace(/^stun:/, '');
  return set.some((c) => c.url && c.url.replace(/^stun:/, '') === sameIpOtherPort) ? 'address-and-port-dependent' : 'address-dependent';
}

/**
 * @param {{udpBlocked: boolean, behindNat: boolean|null, mapping: string|null, filtering: string|null}} r
 * The same decision and words as `switchboard nat-probe` (Report::verdict).
 */
export function verdict(r) {
  /** @type {string} */
  let key;
  if (r.udpBlocked) key = 'udp-blocked';
  else if (r.behindNat === false) key = r.filtering === 'address-and-port-dependent' ? 'most-peers-except-symmetric' : 'most-peers';
  else if (r.mapping === 'endpoint-independent') {
    key = r.filtering === 'endpoint-independent' || r.filtering === 'address-dependent' ? 'most-peers' : 'most-peers-except-symmetric';
  } else if (r.mapping) key = 'relay-needed-with-restrictive-peers';
  else key = 'unknown';
  /** @type {Record<string, [string, string]>} */
  const words = {
    'most-peers': ['Direct calls will work', 'direct calls will work with most peers, including ones behind symmetric NATs'],
    'most-peers-except-symmetric': ['Direct calls will work with most peers', 'direct calls will work with most peers; calls with peers behind symmetric NATs will need the relay (TURN)'],
    'relay-needed-with-restrictive-peers': ['Calls will often need the relay', 'calls will need the relay (TURN) with peers behind symmetric or port-restricted NATs; direct calls work only with peers on open, full-cone or restricted-cone networks'],
    'udp-blocked': ['Calls will need the relay over TCP or TLS', 'no UDP answer from the server: if it is running, UDP is blocked on this network and calls from here will need TURN over TCP or TLS (a TURN server on TCP port 443 passes most firewalls)'],
    unknown: ['NAT behaviour unknown', 'the NAT\'s mapping could not be determined (this server needs two addresses for the test, or it did not answer)'],
  };
  return { key, title: words[key][0], text: words[key][1] };
}

/** @param {string|null} m @param {string|null} f @param {boolean|null} nat */
function natType(m, f, nat) {
  if (nat === false) return f === 'endpoint-independent' ? 'open internet (no NAT)' : 'no NAT, behind a stateful firewall';
  if (m === 'endpoint-independent') {
    return { 'endpoint-independent': 'full cone', 'address-dependent': 'restricted cone', 'address-and-port-dependent': 'port-restricted cone' }[f || ''] || 'cone (filtering unknown)';
  }
  return m ? 'symmetric' : 'unknown';
}

/**
 * Which TURN URLs give a relay candidate (one pc per URL, relay policy).
 * @param {RTCIceServer[]} servers
 */
async function relayReach(servers) {
  const out = [];
  for (const s of servers) {
    if (!s.username) continue;
    for (const url of Array.isArray(s.urls) ? s.urls : [s.urls]) {
      out.push(gather({ iceServers: [{ urls: url, username: s.username, credential: s.credential }], iceTransportPolicy: 'relay' })
        .then(({ pc, cands }) => { pc.close(); return { url, ok: cands.some((c) => c.type === 'relay') }; }));
    }
  }
  return Promise.all(out);
}

async function run() {
  const info = await (await fetch('/api/network-test')).json();
  // A server with room tokens gives relay credentials only to their holders: the page
  // takes one as ?token=, like the room page.
  const token = new URLSearchParams(location.search).get('token');
  const iceRes = await fetch('/api/ice-servers', { cache: 'no-store', headers: token ? { authorization: `Bearer ${token}` } : undefined });
  const ice = await iceRes.json().catch(() => ({}));
  const relayNote = iceRes.status === 401
    ? 'not tested: this server gives relay credentials to room-token holders only (open this page with ?token=…)'
    : iceRes.status === 429 ? 'not tested: too many requests from this address, try again in a minute' : null;
  const urls = /** @type {string[]} */ (info.stunUrls || []);
  const relay = relayReach(ice.iceServers || []);

  // Mapping: one socket, every STUN address.
  const mapped = await gather({ iceServers: urls.length ? [{ urls }] : [] });
  mapped.pc.close();
  // Filtering: a fresh socket that only talked to the primary address; the server probes it.
  const probe = await gather({ iceServers: urls.length ? [{ urls: urls[0] }] : [] });
  const sdp = probe.pc.localDescription ? probe.pc.localDescription.sdp : '';
  const udp = (/** @type {Cand} */ c) => c.protocol === 'udp';
  const ordered = [...probe.cands.filter((c) => udp(c) && c.type === 'srflx'), ...probe.cands.filter((c) => udp(c) && c.type === 'host')];
  let filteringAnswer = null;
  if (info.filteringTest) {
    const res = await fetch('/api/network-test/filtering', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ufrag: sdpValue(sdp, 'ice-ufrag'), pwd: sdpValue(sdp, 'ice-pwd'), candidates: ordered.map((c) => hostPort(c.address, c.port)) }),
    });
    if (res.ok) filteringAnswer = await res.json();
  }
  probe.pc.close();

  const srflx = mapped.cands.find((c) => c.type === 'srflx' && udp(c));
  const clientIp = filteringAnswer ? filteringAnswer.clientIp : null;
  // Chromium drops a server-reflexive address equal to the host one: no NAT. A host
  // candidate on the IP the server sees says the same.
  const hostIsPublic = !!clientIp && mapped.cands.some((c) => c.type === 'host' && c.address === clientIp);
  const behindNat = srflx ? true : hostIsPublic ? false : null;
  const udpBlocked = !srflx && !hostIsPublic;
  const mapping = behindNat === false ? null : mappingFrom(mapped.cands, urls);
  /** @type {string|null} */
  let filtering = null;
  if (filteringAnswer && filteringAnswer.target) {
    if (filteringAnswer.fromOtherAddress) filtering = 'endpoint-independent';
    else if (filteringAnswer.fromOtherPort) filtering = filteringAnswer.fromOtherAddress === null ? null : 'address-dependent';
    else if (filteringAnswer.fromOtherPort === false) filtering = 'address-and-port-dependent';
  }
  const v = verdict({ udpBlocked, behindNat, mapping, filtering });
  const relays = await relay;
  return {
    publicAddress: srflx ? hostPort(srflx.address, srflx.port) : hostIsPublic ? clientIp : null,
    behindNat, udpBlocked, mapping, filtering, natType: udpBlocked ? null : natType(mapping, filtering, behindNat),
    verdict: v, relays, relayNote, candidates: [...mapped.cands, ...probe.cands.filter((c) => c.type !== 'host')],
  };
}

/** @param {any} r */
function show(r) {
  const set = (/** @type {string} */ id, /** @type {string} */ text) => { $(`#${id}`).textContent = text; };
  const box = $('#net-verdict');
  box.dataset.state = 'done';
  box.dataset.verdict = r.verdict.key;
  set('net-verdict-title', r.verdict.title);
  set('net-verdict-text', r.verdict.text.charAt(0).toUpperCase() + r.verdict.text.slice(1) + '.');
  set('net-public', r.publicAddress || (r.udpBlocked ? 'none (no UDP answer)' : 'unknown'));
  set('net-nat', r.behindNat === null ? 'unknown' : r.behindNat ? 'yes' : 'no');
  set('net-mapping', r.mapping ? `${r.mapping} mapping` : r.behindNat === false ? 'none (no NAT)' : 'unknown');
  set('net-filtering', r.filtering ? `${r.filtering} filtering` : 'unknown');
  set('net-type', r.natType || (r.udpBlocked ? 'UDP blocked' : 'unknown'));
  $('#net-mapping').dataset.value = r.mapping || '';
  $('#net-filtering').dataset.value = r.filtering || '';
  const reach = r.relays.map((/** @type {{url: string, ok: boolean}} */ x) => `${x.url.replace(/\?.*$/, '')}${/transport=tcp/.test(x.url) && x.url.startsWith('turn:') ? ' (TCP)' : ''}: ${x.ok ? 'reachable' : 'not reachable'}`);
  set('net-relay', reach.length ? reach.join('; ') : r.relayNote || 'not offered by this server');
  const body = $('#net-candidates');
  body.replaceChildren(...r.candidates.map((/** @type {Cand} */ c) => {
    const tr = document.createElement('tr');
    tr.dataset.type = c.type;
    const via = c.type === 'relay' ? `${c.url || ''} (${c.relayProtocol || ''})` : c.url || '';
    for (const text of [c.type, c.protocol, hostPort(c.address, c.port), via]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
}

renderIcons();
const done = run().then((r) => { show(r); return r; }, (err) => {
  const box = $('#net-verdict');
  box.dataset.state = 'error';
  $('#net-verdict-title').textContent = 'The test could not run';
  $('#net-verdict-text').textContent = String(err && err.message ? err.message : err);
  throw err;
});
/** @type {any} */ (window).sbNetTest = { done };

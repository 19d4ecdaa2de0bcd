// scratch (not committed): two SFU pages, dump SDK debug logs and stats
import { launchBrowser, startServer, openRoom, sleep, freePortTcpUdp, randomId } from './harness.mjs';
const browser = await launchBrowser();
const sfuPort = await freePortTcpUdp();
const server = await startServer({ args: ['--sfu-port', String(sfuPort), '--sfu-candidate', '127.0.0.1', '--log', process.env.SBLOG || 'info'].filter(Boolean) }).catch(async (e) => { console.log(String(e).slice(0, 3000)); process.exit(1); });
const room = randomId('dbg-');
const n = Number(process.env.N || 2);
const ps = [];
for (let i = 0; i < n; i++) ps.push(await openRoom(browser, server, room, { name: 'P' + i, query: { topology: 'sfu', debug: '1' } }));
for (const p of ps) await p.page.evaluate(async () => { await window.sbApp.ready; window.__spk = []; window.sbApp.sb.on('speaker', (e) => window.__spk.push([Date.now() % 100000, e.peer && e.peer.id])); });
await sleep(4000);
for (const p of ps) await p.page.evaluate(() => { window.__ctl = []; const l = window.sbApp.sb.sfu; const o = l.onControl.bind(l); l.onControl = (d) => { window.__ctl.push(d); o(d); }; window.__te = []; window.sbApp.sb.on('track', (e) => window.__te.push([e.peer.id, e.source, e.track.kind])); window.sbApp.sb.on('track-removed', (e) => window.__te.push(['removed', e.peer.id, e.source, e.track.kind])); });
if (process.env.SCREEN) await ps[0].page.click('#screen');
if (process.env.MUTE) for (const p of ps.slice(1)) await p.page.click('#mute');
await sleep(Number(process.env.WAIT || 12000));
for (const p of ps) console.log(p.name, await p.page.evaluate(() => JSON.stringify({ ctl: window.__ctl, te: window.__te,  me: window.sbApp.sb.peerId, spk: window.__spk, lv: [...window.sbApp.sb.peers.values()].map((m) => m.pc.getReceivers().filter((r) => r.track.kind === 'audio').map((r) => JSON.stringify(r.getSynchronizationSources()))) })));
for (const p of ps) {
  const st = await p.page.evaluate(async () => {
    const sb = window.sbApp.sb;
    const pc = sb.sfu && sb.sfu.pc;
    const out = { topology: sb.topology, sfu: !!pc, peers: [...sb.peers.keys()], pcState: pc && pc.connectionState, sig: pc && pc.signalingState, ice: pc && pc.iceConnectionState };
    if (pc) {
      out.trs = pc.getTransceivers().map((t) => `${t.mid} ${t.direction}/${t.currentDirection} ${t.receiver.track.kind}`);
      out.stats = [];
      (await pc.getStats()).forEach((s) => { if (['inbound-rtp', 'outbound-rtp'].includes(s.type)) out.stats.push(`${s.type} ${s.kind} mid=${s.mid} rid=${s.rid || ''} pk=${s.packetsReceived ?? s.packetsSent} fd=${s.framesDecoded ?? s.framesEncoded} h=${s.frameHeight}`); if (s.type === 'candidate-pair' && s.nominated) out.stats.push(`pair ${s.state} ${s.bytesSent}/${s.bytesReceived}`); });
      out.remoteSdp = pc.remoteDescription && pc.remoteDescription.sdp.split('\r\n').filter((l) => /^(m=|a=mid|a=send|a=recv|a=inactive|a=candidate|a=rid|a=simulcast|a=msid|a=ssrc)/.test(l)).join('\n');
    }
    return out;
  });
  console.log('=====', p.name, JSON.stringify({ ...st, remoteSdp: undefined }, null, 1));
  if (process.env.SDP) console.log(st.remoteSdp);
  console.log(p.console.filter((l) => !/stats/.test(l)).slice(-(Number(process.env.LOGN || 30))).join('\n'));
}
if (process.env.SLOG) console.log(server.lines.filter((l) => !/DEBUG (tokio|hyper)/.test(l)).slice(-Number(process.env.SLOG)).join('\n'));
await browser.close();
await server.stop();
process.exit(0);

//! `relay`: N TURN allocations relaying paced traffic to an echo peer and back.
//!
//! Setup and teardown use the blocking [`UdpClient`]; during the run this thread
//! sends (token bucket, `sendmmsg` batches of up to 32 on one allocation at a time),
//! the receiver thread (`relay_rx`) counts echoes and keeps the allocations alive,
//! and the built-in echo peer bounces everything back. With `--raw` there is no TURN:
//! each client socket just sends ChannelData (channel 0x4000) to the server address,
//! which is then `switchboard-load forward`.

use crate::cli::{check_duration, check_range, resolve_target, RelayArgs, RelayMode};
use crate::echo_peer::EchoPeer;
use crate::keepalive::Keepalive;
use crate::net::round3;
use crate::net::{
    connected_udp_from, loopback_source, merge_json, now_ns, sleep_until, tighten_timer_slack,
    Batch, ServerCpu,
};
use crate::relay_rx::{write_payload_header, Receiver, RxControl, PAYLOAD_HEADER};
use crate::stun_mode::BATCH;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_client::{ClientAuth, ClientError, Credentials, Request, Transact, UdpClient};
use switchboard_stun::{
    attr_type, ChannelData, Class, MessageWriter, Method, TransactionId, CHANNEL_MIN,
};

/// Largest application payload accepted by `--size`.
pub const MAX_SIZE: usize = 65_000;
/// Most allocations one run opens.
pub const MAX_ALLOCATIONS: usize = 200_000;
/// The channel of `--raw` mode (what the forwarder writes on its way back).
pub const RAW_CHANNEL: u16 = 0x4000;
/// `--partial`: give up after this many failed allocations in a row.
const MAX_FAILS_IN_A_ROW: u32 = 20;

/// One allocation's prebuilt datagram: only the payload header changes per packet.
pub struct Template {
    pub bytes: Vec<u8>,
    pub payload_off: usize,
}

/// ChannelData header + `size` payload bytes (no padding over UDP).
pub fn channel_template(channel: u16, size: usize) -> Template {
    let mut bytes = vec![0u8; 4 + size];
    let mut h = [0u8; 4];
    ChannelData::write_header(channel, size as u16, &mut h);
    bytes[..4].copy_from_slice(&h);
    Template {
        bytes,
        payload_off: 4,
    }
}

/// Send indication carrying XOR-PEER-ADDRESS and a DATA attribute of `size` bytes.
pub fn send_template(peer: SocketAddr, size: usize, tid: TransactionId) -> Result<Template> {
    let mut buf = vec![0u8; size + 64];
    let mut w = MessageWriter::new(&mut buf, Method::SEND, Class::Indication, tid)?;
    w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
    let payload_off = w.message_len() + 4;
    w.attr(attr_type::DATA, &vec![0u8; size])?;
    let n = w.finish();
    buf.truncate(n);
    Ok(Template {
        bytes: buf,
        payload_off,
    })
}

pub fn channel_for(i: usize) -> u16 {
    CHANNEL_MIN + (i % 0x1000) as u16
}

struct Setup {
    clients: Vec<UdpClient>,
    keep: Vec<Keepalive>,
    channels: Vec<Option<u16>>,
    relayed: Vec<SocketAddr>,
}

struct SetupOpts<'a> {
    server: SocketAddr,
    /// None with `--raw`.
    auth: Option<&'a ClientAuth>,
    peer: SocketAddr,
    mode: RelayMode,
    sources: usize,
    partial: bool,
}

/// Open `n` allocations (client sockets with `--raw`). On failure release those
/// already opened, unless `--partial`: then skip it and go on with what opened.
/// Returns the failures by label.
fn setup(n: usize, o: &SetupOpts) -> Result<(Setup, BTreeMap<String, u64>)> {
    let mut s = Setup {
        clients: Vec::with_capacity(n),
        keep: Vec::with_capacity(n),
        channels: Vec::with_capacity(n),
        relayed: Vec::with_capacity(n),
    };
    let mut fails = BTreeMap::new();
    let mut in_a_row = 0;
    // Last realm/nonce per source address: servers may bind nonces to the client IP.
    let mut auths: HashMap<Option<IpAddr>, ClientAuth> = HashMap::new();
    for i in 0..n {
        let src = loopback_source(i, o.sources);
        let sock = connected_udp_from(o.server, src)?;
        let r = match o.auth {
            Some(auth) => {
                let auth = auths.get(&src).unwrap_or(auth).clone();
                let r = open_one(i, sock, o, auth, &mut s);
                if let (Ok(()), Some(c)) = (&r, s.clients.last()) {
                    auths.insert(src, c.auth.clone());
                }
                r
            }
            None => {
                let auth = ClientAuth::new(Credentials::new("raw", ""));
                s.clients.push(UdpClient::with_socket(sock, None, auth));
                s.channels.push(Some(RAW_CHANNEL));
                Ok(())
            }
        };
        let Err(e) = r else {
            in_a_row = 0;
            continue;
        };
        if !o.partial {
            release_all(&mut s.clients);
            return Err(e);
        }
        let label = e
            .downcast_ref::<ClientError>()
            .map_or("other".into(), |t| t.label());
        *fails.entry(label).or_insert(0u64) += 1;
        in_a_row += 1;
        eprintln!("setup: {e:#}");
        if in_a_row >= MAX_FAILS_IN_A_ROW {
            eprintln!(
                "setup: {in_a_row} failures in a row, going on with {} allocations",
                s.clients.len()
            );
            break;
        }
    }
    if s.clients.is_empty() {
        bail!("no allocation opened: {fails:?}");
    }
    Ok((s, fails))
}

/// Allocate, CreatePermission and (channel mode) ChannelBind on `sock`; pushes the
/// allocation into `s` only when all succeeded (releasing it otherwise).
fn open_one(
    i: usize,
    sock: UdpSocket,
    o: &SetupOpts,
    auth: ClientAuth,
    s: &mut Setup,
) -> Result<()> {
    let mut c = UdpClient::with_socket(sock, None, auth);
    let info = c
        .transact(&Request::Allocate { lifetime: None })
        .with_context(|| format!("allocation {i}: Allocate failed"))?;
    let relayed = info
        .relayed
        .ok_or_else(|| anyhow!("allocation {i}: Allocate success without XOR-RELAYED-ADDRESS"))?;
    let lifetime = info.lifetime.filter(|&l| l > 0).unwrap_or(600);
    let peer = o.peer;
    let channel = (o.mode == RelayMode::Channel).then(|| channel_for(i));
    let bound = c
        .transact(&Request::CreatePermission { peer })
        .with_context(|| format!("allocation {i}: CreatePermission for {peer} failed"))
        .and_then(|_| match channel {
            Some(channel) => c
                .transact(&Request::ChannelBind { channel, peer })
                .map(|_| ())
                .with_context(|| format!("allocation {i}: ChannelBind {channel:#06x} failed")),
            None => Ok(()),
        });
    if let Err(e) = bound {
        let _ = c.transact(&Request::Refresh { lifetime: 0 });
        return Err(e);
    }
    s.relayed.push(relayed);
    s.channels.push(channel);
    s.keep.push(Keepalive::new(
        c.auth.clone(),
        peer,
        channel,
        lifetime,
        now_ns(),
    ));
    s.clients.push(c);
    Ok(())
}

/// Refresh LIFETIME=0 on every client; returns (released, failures by label).
fn release_all(clients: &mut [UdpClient]) -> (u64, BTreeMap<String, u64>) {
    let mut ok = 0;
    let mut fails = BTreeMap::new();
    for c in clients {
        match c.transact(&Request::Refresh { lifetime: 0 }) {
            Ok(_) => ok += 1,
            Err(e) => *fails.entry(e.label()).or_insert(0u64) += 1,
        }
    }
    (ok, fails)
}

pub fn run(a: RelayArgs) -> Result<Value> {
    let allow = a.target.allow_any_target;
    let server = resolve_target("server", &a.target.server, allow)?;
    let duration = check_duration("duration", a.duration)?;
    let n = check_range("allocations", a.allocations, 1, MAX_ALLOCATIONS)?;
    let nsrc = check_range("loopback-sources", a.loopback_sources, 0, 60_000)?;
    if nsrc > 0 && !(server.is_ipv4() && server.ip().is_loopback()) {
        bail!("--loopback-sources: only usable with an IPv4 loopback --server, not {server}");
    }
    let size = check_range("size", a.size, PAYLOAD_HEADER, MAX_SIZE)?;
    if a.drain_ms > 60_000 {
        bail!("--drain-ms: must be at most 60000, got {}", a.drain_ms);
    }
    let auth = match a.raw {
        true => None,
        false => Some(ClientAuth::new(a.auth.credentials()?)),
    };
    let echo = match &a.peer {
        Some(_) => None,
        None => {
            let bind: SocketAddr = a
                .echo_bind
                .parse()
                .with_context(|| format!("--echo-bind: expected IP:PORT, got {:?}", a.echo_bind))?;
            if !allow && !crate::cli::is_lab_address(bind.ip()) {
                bail!(
                    "--echo-bind: {} is not a lab address (see --allow-any-target)",
                    bind.ip()
                );
            }
            Some(EchoPeer::start(bind, size + 64).context("--echo-bind: starting echo peer")?)
        }
    };
    let peer = match (&a.peer, &echo) {
        (Some(p), _) => resolve_target("peer", p, allow)?,
        (None, Some(e)) => e.addr,
        (None, None) => unreachable!("echo peer started when --peer is absent"),
    };
    let mode_name = match (a.raw, a.mode) {
        (true, _) => "raw",
        (false, RelayMode::Channel) => "channel",
        (false, RelayMode::Send) => "send",
    };
    let rate_txt = if a.rate == 0 {
        "max".to_string()
    } else {
        format!("{}/s", a.rate)
    };
    println!(
        "relay ({mode_name}): {n} allocations via {server} -> peer {peer}, {size} B payload, rate {rate_txt}, {duration} s"
    );

    let t0 = now_ns();
    let opts = SetupOpts {
        server,
        auth: auth.as_ref(),
        peer,
        mode: a.mode,
        sources: nsrc,
        partial: a.partial,
    };
    let (mut s, setup_fail) = setup(n, &opts)?;
    let opened = s.clients.len();
    let setup_ms = (now_ns() - t0) as f64 / 1e6;
    let (auth_rt, rtx): (u64, u64) = s.clients.iter().fold((0, 0), |(x, y), c| {
        (x + c.stats.auth_retries, y + c.stats.retransmits)
    });
    let first = s.relayed.first().map_or("none".into(), |r| r.to_string());
    println!(
        "setup: {opened} allocations in {setup_ms:.1} ms (auth round trips {auth_rt}, retransmits {rtx}, failures {setup_fail:?}); first relayed address {first}"
    );

    let templates: Vec<Template> = (0..opened)
        .map(|i| match s.channels[i] {
            Some(ch) => Ok(channel_template(ch, size)),
            None => send_template(peer, size, switchboard_client::random_tid()),
        })
        .collect::<Result<_>>()?;
    let tag: u32 = rand::random();
    let slot = templates.iter().map(|t| t.bytes.len()).max().unwrap_or(0);
    let rx = Receiver {
        socks: s.clients.iter().map(|c| c.socket()).collect(),
        keep: std::mem::take(&mut s.keep),
        channels: s.channels.clone(),
        tag,
        slot: slot.max(2048) + 64,
    };
    let ctl = RxControl {
        stop_at: AtomicU64::new(0),
        total_sent: AtomicU64::new(u64::MAX),
    };
    let fds: Vec<i32> = s.clients.iter().map(|c| c.socket().as_raw_fd()).collect();
    let cpu = ServerCpu::start(a.target.server_pid);
    let (start, send_end, sent, send_errors, rx_result) = std::thread::scope(|sc| {
        let receiver = std::thread::Builder::new()
            .name("relay-recv".into())
            .spawn_scoped(sc, || rx.run(&ctl))
            .context("spawning receiver")?;
        let (start, end, sent, errors) = send_loop(&fds, &templates, tag, a.rate, duration);
        ctl.total_sent.store(sent, Ordering::Release);
        ctl.stop_at
            .store(end + a.drain_ms * 1_000_000, Ordering::Release);
        let r = receiver
            .join()
            .map_err(|_| anyhow!("receiver thread panicked"))?;
        anyhow::Ok((start, end, sent, errors, r))
    })?;
    let (r, keep) = rx_result?;
    let (echoed, echo_drop) = match echo {
        Some(e) => {
            let (x, d) = e.stop();
            (Some(x), d)
        }
        None => (None, 0),
    };
    // Relayed by the server, both directions: what reached the peer (echoed + failed
    // echoes) and what came back to the clients.
    let relayed_both = echoed.map(|e| e + echo_drop + r.received);
    let cpu = cpu.finish("relayed_per_cpu_s", relayed_both.unwrap_or(2 * r.received));
    // Release with the nonces the keepalive may have moved on to.
    for (c, k) in s.clients.iter_mut().zip(keep) {
        c.auth = k.auth;
    }
    let (released, release_fail) = match a.raw {
        true => (0, BTreeMap::new()),
        false => release_all(&mut s.clients),
    };

    let secs = (send_end - start) as f64 / 1e9;
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * sent.saturating_sub(r.received) as f64 / sent as f64
    };
    println!(
        "sent {sent} ({:.1}/s), received {} ({:.1}/s), loss {loss:.3} %, invalid {}, misrouted {}, send errors {send_errors}, recv errors {}",
        sent as f64 / secs,
        r.received,
        r.received as f64 / secs,
        r.invalid,
        r.misrouted,
        r.recv_errors
    );
    println!("RTT {}", r.hist.summary());
    if let Some(e) = echoed {
        println!(
            "peer echoed {e} (failed {echo_drop}); server relayed {} packets ({:.1}/s)",
            2 * e,
            2.0 * e as f64 / secs
        );
    }
    println!(
        "keepalive ok {} failed {} {:?} (nonce retries {}); released {released}/{opened} {:?}",
        r.keepalive.ok,
        r.keepalive.failed,
        r.keepalive.failures,
        r.keepalive.auth_retries,
        release_fail
    );
    let mut out = json!({
        "mode": "relay",
        "relay_mode": mode_name,
        "server": server.to_string(),
        "peer": peer.to_string(),
        "allocations": n,
        "allocations_opened": opened,
        "setup_failures": setup_fail,
        "loopback_sources": nsrc,
        "size": size,
        "target_rate": a.rate,
        "duration_s": round3(secs),
        "setup_ms": round3(setup_ms),
        "auth_round_trips": auth_rt,
        "sent": sent,
        "sent_per_s": round3(sent as f64 / secs),
        "received": r.received,
        "received_per_s": round3(r.received as f64 / secs),
        "loss_pct": round3(loss),
        "invalid": r.invalid,
        "misrouted": r.misrouted,
        "send_errors": send_errors,
        "recv_errors": r.recv_errors,
        "channel_data": r.channel_data,
        "data_indications": r.data_indications,
        "peer_echoed": echoed,
        "server_relayed": echoed.map(|e| 2 * e),
        "server_relayed_per_s": echoed.map(|e| round3(2.0 * e as f64 / secs)),
        "relayed_both": relayed_both,
        "relayed_both_per_s": relayed_both.map(|x| round3(x as f64 / secs)),
        "rtt_us": r.hist.to_json(),
        "keepalive_ok": r.keepalive.ok,
        "keepalive_failures": r.keepalive.failures,
        "keepalive_nonce_retries": r.keepalive.auth_retries,
        "released": released,
        "release_failures": release_fail,
    });
    merge_json(&mut out, cpu);
    Ok(out)
}

/// Paced send phase. Returns (start, end, sent, send errors).
fn send_loop(
    fds: &[i32],
    templates: &[Template],
    tag: u32,
    rate: u64,
    duration: f64,
) -> (u64, u64, u64, u64) {
    tighten_timer_slack();
    let slot = templates.iter().map(|t| t.bytes.len()).max().unwrap_or(0);
    let mut batch = Batch::new(BATCH, slot, false);
    let mut owner = [usize::MAX; BATCH];
    let start = now_ns();
    let end = start + (duration * 1e9) as u64;
    let (mut attempted, mut sent, mut errors, mut seq, mut last_ts) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut k = 0usize;
    loop {
        let now = now_ns();
        if now >= end {
            break;
        }
        let due = if rate == 0 {
            BATCH as u64
        } else {
            let target = ((now - start) as u128 * rate as u128 / 1_000_000_000) as u64 + 1;
            target.saturating_sub(attempted)
        };
        if due == 0 {
            let next = start + (attempted as u128 * 1_000_000_000 / rate as u128) as u64;
            sleep_until(next.min(end));
            continue;
        }
        let n = due.min(BATCH as u64) as usize;
        let t = &templates[k];
        for (i, o) in owner.iter_mut().enumerate().take(n) {
            let s = batch.slot_mut(i);
            if *o != k {
                s[..t.bytes.len()].copy_from_slice(&t.bytes);
                *o = k;
            }
            let ts = now.max(last_ts + 1);
            last_ts = ts;
            write_payload_header(&mut s[t.payload_off..], tag, k as u32, seq, ts);
            seq += 1;
            batch.set_len(i, t.bytes.len());
        }
        match batch.send(fds[k], n) {
            Ok(m) => {
                sent += m as u64;
                errors += (n - m) as u64;
            }
            Err(_) => errors += n as u64,
        }
        attempted += n as u64;
        k = (k + 1) % fds.len();
    }
    (start, now_ns(), sent, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_rx::read_payload_header;
    use switchboard_stun::Message;

    #[test]
    fn channel_template_parses() {
        let mut t = channel_template(0x4005, 100);
        write_payload_header(&mut t.bytes[t.payload_off..], 1, 2, 3, 4);
        let cd = ChannelData::parse(&t.bytes).unwrap();
        assert_eq!((cd.channel, cd.payload.len()), (0x4005, 100));
        assert_eq!(read_payload_header(cd.payload, 1), Some((2, 3, 4)));
        assert_eq!(channel_for(0x1000), CHANNEL_MIN);
    }

    #[test]
    fn send_template_parses() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for size in [24, 25, 26, 27, 160] {
            let mut t = send_template(peer, size, TransactionId([9; 12])).unwrap();
            write_payload_header(&mut t.bytes[t.payload_off..], 7, 1, 2, 3);
            let m = Message::parse(&t.bytes).unwrap();
            assert_eq!((m.method, m.class), (Method::SEND, Class::Indication));
            assert_eq!(m.xor_address(attr_type::XOR_PEER_ADDRESS), Some(peer));
            let d = m.get(attr_type::DATA).unwrap();
            assert_eq!(d.len(), size);
            assert_eq!(read_payload_header(d, 7), Some((1, 2, 3)));
        }
    }
}

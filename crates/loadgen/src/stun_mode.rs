//! `stun`: paced STUN Binding request flood with stateless RTT measurement.
//!
//! The transaction id carries the send time (8 bytes, CLOCK_MONOTONIC ns) and a
//! 32-bit keyed check of it, so a response is validated and timed without keeping
//! any per-request state.

use crate::cli::{check_duration, check_range, resolve_target, StunArgs};
use crate::histogram::Histogram;
use crate::net::{
    connected_udp, merge_json, now_ns, round3, sleep_until, tighten_timer_slack, Batch, Epoll,
    ServerCpu,
};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchboard_stun::{attr_type, Class, Message, Method, MAGIC_COOKIE};

/// Datagrams per sendmmsg/recvmmsg call.
pub const BATCH: usize = 32;
const REQ_LEN: usize = 20;

/// splitmix64 finaliser: a cheap keyed check for the timestamps we send.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Transaction id = send timestamp (ns, big endian) ++ keyed check.
#[inline]
pub fn encode_tid(ts: u64, key: u64, out: &mut [u8]) {
    out[..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&((mix64(ts ^ key) >> 32) as u32).to_be_bytes());
}

/// The send timestamp of a transaction id we made, or None if it is not ours.
#[inline]
pub fn decode_tid(tid: &[u8; 12], key: u64) -> Option<u64> {
    let ts = u64::from_be_bytes(tid[..8].try_into().ok()?);
    let chk = u32::from_be_bytes(tid[8..12].try_into().ok()?);
    (chk == (mix64(ts ^ key) >> 32) as u32).then_some(ts)
}

/// Write a 20-byte Binding request header (transaction id filled in later).
pub fn binding_request_header(out: &mut [u8]) {
    out[0..2].copy_from_slice(&0x0001u16.to_be_bytes());
    out[2..4].copy_from_slice(&[0, 0]);
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
}

/// Validate a Binding success response to one of our requests (with `raw`: our
/// request echoed back unchanged); returns its RTT in ns.
pub fn check_response(buf: &[u8], key: u64, now: u64, raw: bool) -> Option<u64> {
    let m = Message::parse(buf).ok()?;
    let want = if raw { Class::Request } else { Class::Success };
    if m.method != Method::BINDING || m.class != want {
        return None;
    }
    let ts = decode_tid(&m.tid.0, key)?;
    let mapped = m.has(attr_type::XOR_MAPPED_ADDRESS) || m.has(attr_type::MAPPED_ADDRESS);
    if ts > now || !(raw || mapped) {
        return None;
    }
    Some(now - ts)
}

struct RecvStats {
    answered: u64,
    invalid: u64,
    recv_errors: u64,
    hist: Histogram,
}

pub fn run(a: StunArgs) -> Result<Value> {
    let server = resolve_target("server", &a.target.server, a.target.allow_any_target)?;
    let duration = check_duration("duration", a.duration)?;
    let nsock = check_range("sockets", a.sockets, 1, 10_000)?;
    if a.drain_ms > 60_000 {
        bail!("--drain-ms: must be at most 60000, got {}", a.drain_ms);
    }
    let socks: Vec<UdpSocket> = (0..nsock)
        .map(|_| connected_udp(server))
        .collect::<Result<_>>()?;
    let key: u64 = rand::random();
    let raw = a.raw;
    let rate_txt = if a.rate == 0 {
        "max".to_string()
    } else {
        format!("{}/s", a.rate)
    };
    let what = if raw { " (raw: echoes count)" } else { "" };
    println!("stun{what}: {server}, {nsock} sockets, rate {rate_txt}, {duration} s");

    // Receiver: shares the sockets (dup'd fds) and stops at `stop_at` (0 = not yet).
    let stop_at = Arc::new(AtomicU64::new(0));
    let total_sent = Arc::new(AtomicU64::new(u64::MAX));
    let rsocks: Vec<UdpSocket> = socks
        .iter()
        .map(|s| s.try_clone().context("dup socket"))
        .collect::<Result<_>>()?;
    let (stop_r, sent_r) = (stop_at.clone(), total_sent.clone());
    let receiver = std::thread::Builder::new()
        .name("stun-recv".into())
        .spawn(move || receive(rsocks, key, raw, &stop_r, &sent_r))
        .context("spawning receiver")?;

    // Sender (this thread).
    tighten_timer_slack();
    let mut batch = Batch::new(BATCH, REQ_LEN, false);
    for i in 0..BATCH {
        binding_request_header(batch.slot_mut(i));
        batch.set_len(i, REQ_LEN);
    }
    let fds: Vec<i32> = socks.iter().map(|s| s.as_raw_fd()).collect();
    let cpu = ServerCpu::start(a.target.server_pid);
    let start = now_ns();
    let end = start + (duration * 1e9) as u64;
    let (mut attempted, mut sent, mut send_errors, mut last_ts) = (0u64, 0u64, 0u64, 0u64);
    let mut rr = 0;
    loop {
        let now = now_ns();
        if now >= end {
            break;
        }
        let due = if a.rate == 0 {
            BATCH as u64
        } else {
            let target = ((now - start) as u128 * a.rate as u128 / 1_000_000_000) as u64 + 1;
            target.saturating_sub(attempted)
        };
        if due == 0 {
            let next = start + (attempted as u128 * 1_000_000_000 / a.rate as u128) as u64;
            sleep_until(next.min(end));
            continue;
        }
        let n = due.min(BATCH as u64) as usize;
        for i in 0..n {
            let ts = now.max(last_ts + 1);
            last_ts = ts;
            encode_tid(ts, key, &mut batch.slot_mut(i)[8..20]);
        }
        match batch.send(fds[rr], n) {
            Ok(k) => {
                sent += k as u64;
                send_errors += (n - k) as u64;
            }
            Err(_) => send_errors += n as u64,
        }
        attempted += n as u64;
        rr = (rr + 1) % fds.len();
    }
    let send_end = now_ns();
    total_sent.store(sent, Ordering::Release);
    stop_at.store(send_end + a.drain_ms * 1_000_000, Ordering::Release);
    let r = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    let cpu = cpu.finish("answered_per_cpu_s", r.answered);

    let secs = (send_end - start) as f64 / 1e9;
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * sent.saturating_sub(r.answered) as f64 / sent as f64
    };
    println!(
        "sent {sent} ({:.1}/s), answered {} ({:.1}/s), loss {loss:.3} %, invalid {}, send errors {send_errors}, recv errors {}",
        sent as f64 / secs,
        r.answered,
        r.answered as f64 / secs,
        r.invalid,
        r.recv_errors
    );
    println!("RTT {}", r.hist.summary());
    let mut out = json!({
        "mode": "stun",
        "raw": raw,
        "server": server.to_string(),
        "sockets": nsock,
        "target_rate": a.rate,
        "duration_s": round3(secs),
        "sent": sent,
        "sent_per_s": round3(sent as f64 / secs),
        "answered": r.answered,
        "answered_per_s": round3(r.answered as f64 / secs),
        "loss_pct": round3(loss),
        "invalid": r.invalid,
        "send_errors": send_errors,
        "recv_errors": r.recv_errors,
        "rtt_us": r.hist.to_json(),
    });
    merge_json(&mut out, cpu);
    Ok(out)
}

fn receive(
    socks: Vec<UdpSocket>,
    key: u64,
    raw: bool,
    stop_at: &AtomicU64,
    total_sent: &AtomicU64,
) -> Result<RecvStats> {
    let mut ep = Epoll::new(socks.len().min(256))?;
    for (i, s) in socks.iter().enumerate() {
        ep.add(s, i as u64)?;
    }
    let mut ready = Vec::with_capacity(256);
    let mut batch = Batch::new(BATCH, 2048, false);
    let mut st = RecvStats {
        answered: 0,
        invalid: 0,
        recv_errors: 0,
        hist: Histogram::new(),
    };
    loop {
        let stop = stop_at.load(Ordering::Acquire);
        if stop != 0
            && (now_ns() >= stop || st.answered + st.invalid >= total_sent.load(Ordering::Acquire))
        {
            break;
        }
        ready.clear();
        ready.extend(ep.wait(5));
        for &tok in &ready {
            let fd = socks[tok as usize].as_raw_fd();
            loop {
                let n = match batch.recv(fd, libc::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(_) => {
                        // ICMP errors (e.g. port unreachable) surface on connected sockets.
                        st.recv_errors += 1;
                        break;
                    }
                };
                let now = now_ns();
                for i in 0..n {
                    match check_response(batch.get(i), key, now, raw) {
                        Some(rtt) => {
                            st.answered += 1;
                            st.hist.record(rtt / 1000);
                        }
                        None => st.invalid += 1,
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_stun::{MessageWriter, TransactionId};

    #[test]
    fn tid_roundtrip_and_forgery() {
        let key = 0x1234_5678_9abc_def0;
        let mut t = [0u8; 12];
        encode_tid(987_654_321, key, &mut t);
        assert_eq!(decode_tid(&t, key), Some(987_654_321));
        assert_eq!(decode_tid(&t, key ^ 1), None);
        t[3] ^= 1;
        assert_eq!(decode_tid(&t, key), None);
    }

    #[test]
    fn request_parses_and_response_checks() {
        let key = 42;
        let mut req = [0u8; REQ_LEN];
        binding_request_header(&mut req);
        encode_tid(1_000, key, &mut req[8..20]);
        let m = Message::parse(&req).unwrap();
        assert_eq!((m.method, m.class), (Method::BINDING, Class::Request));

        let mut resp = [0u8; 64];
        let mut w = MessageWriter::new(&mut resp, Method::BINDING, Class::Success, m.tid).unwrap();
        w.xor_address(
            attr_type::XOR_MAPPED_ADDRESS,
            &"127.0.0.1:5555".parse().unwrap(),
        )
        .unwrap();
        let n = w.finish();
        assert_eq!(&resp[..2], &[0x01, 0x01]);
        assert_eq!(check_response(&resp[..n], key, 3_000, false), Some(2_000));
        assert_eq!(check_response(&resp[..n], key + 1, 3_000, false), None);
        assert_eq!(
            check_response(&resp[..n], key, 500, false),
            None,
            "from the future"
        );
        assert_eq!(
            check_response(&req, key, 3_000, false),
            None,
            "a request is not an answer"
        );
        assert_eq!(
            check_response(&req, key, 3_000, true),
            Some(2_000),
            "raw echo"
        );
        assert_eq!(check_response(&resp[..n], key, 3_000, true), None);

        let mut bad = [0u8; 64];
        let w = MessageWriter::new(
            &mut bad,
            Method::BINDING,
            Class::Success,
            TransactionId([7; 12]),
        )
        .unwrap();
        let n = w.finish();
        assert_eq!(check_response(&bad[..n], key, 3_000, false), None);
    }
}

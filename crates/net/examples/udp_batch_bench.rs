//! switchboard-net's batched UDP I/O against quinn-udp 0.6 on loopback, for the
//! relay's two send patterns and for receiving. Run (release, a quiet machine):
//!
//! ```text
//! cargo run --release -p switchboard-net --example udp_batch_bench -- [seconds per run]
//! ```
//!
//! - `fan-out`: 128 datagrams of 1200 bytes per round, to 64 destinations in turn
//!   (a relay worker's batch: many allocations, many peers). Ours: one sendmmsg per
//!   round; quinn-udp: one sendmsg per datagram (a `Transmit` has one destination).
//! - `burst`: 128 datagrams of 1200 bytes per round to one destination (a video
//!   burst). Ours: UDP GSO groups of 64 in one sendmmsg; quinn-udp: one GSO sendmsg
//!   per 64 segments, from a contiguous buffer given to it for free (a relay would
//!   have to copy its slots into one).
//! - `recv`: drain 2000 queued datagrams of 1200 bytes; ours recvmmsg x32 into
//!   slots, quinn-udp recvmmsg x32 (GRO enabled, nothing to coalesce here).
//!
//! Our sends take their bytes from outside the batch's arena, so each datagram is
//! also copied into the spill buffer: the figures include that copy.

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use switchboard_net::Batch;

const SIZE: usize = 1200;
const ROUND: usize = 128;

fn receivers(n: usize) -> (Vec<UdpSocket>, Vec<SocketAddr>) {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind receiver"))
        .collect();
    let addrs = socks
        .iter()
        .map(|s| s.local_addr().expect("addr"))
        .collect();
    (socks, addrs)
}

/// CPU time of this thread: the machine is shared, so rates are per CPU second
/// (loopback delivery runs in the sender's context, so it is counted too).
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Datagrams per CPU second sent by `round` (which sends ROUND datagrams) for `secs`.
fn rate(secs: f64, mut round: impl FnMut()) -> f64 {
    let start = Instant::now();
    let cpu = cpu_now();
    let mut rounds = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            round();
        }
        rounds += 64;
    }
    (rounds * ROUND as u64) as f64 / (cpu_now() - cpu).as_secs_f64()
}

/// `in_place`: the bytes are in receive slots (the relay's zero-copy path), else
/// outside the batch (copied into its spill buffer).
fn ours_send(secs: f64, dests: &[SocketAddr], in_place: bool) -> f64 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let fd = sock.as_raw_fd();
    let payload = vec![0x5Au8; SIZE];
    let mut b = Batch::new(48, 4);
    let r = rate(secs, || {
        for i in 0..ROUND {
            let to = dests[i % dests.len()];
            if in_place {
                let (d, mut tx) = b.slot(i);
                tx.send(fd, to, &d.buf[48..48 + SIZE]);
            } else {
                b.tx().send(fd, to, &payload);
            }
        }
        b.flush();
    });
    assert_eq!(b.send_errors, 0, "sends refused");
    r
}

fn quinn_send(secs: f64, dests: &[SocketAddr]) -> f64 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let state = UdpSocketState::new(UdpSockRef::from(&sock)).expect("quinn-udp state");
    // 64 segments of 1200 bytes exceed a UDP datagram's 65535: cap as ours does.
    let gso = state.max_gso_segments().clamp(1, 65000 / SIZE);
    let burst = vec![0x5Au8; SIZE * gso.min(ROUND)];
    let mut errors = 0u64;
    let r = rate(secs, || {
        if dests.len() == 1 {
            let mut left = ROUND;
            while left > 0 {
                let k = left.min(gso);
                let t = Transmit {
                    destination: dests[0],
                    ecn: None,
                    contents: &burst[..k * SIZE],
                    segment_size: (k > 1).then_some(SIZE),
                    src_ip: None,
                };
                if state.try_send(UdpSockRef::from(&sock), &t).is_err() {
                    errors += 1;
                }
                left -= k;
            }
        } else {
            for i in 0..ROUND {
                let t = Transmit {
                    destination: dests[i % dests.len()],
                    ecn: None,
                    contents: &burst[..SIZE],
                    segment_size: None,
                    src_ip: None,
                };
                if state.try_send(UdpSockRef::from(&sock), &t).is_err() {
                    errors += 1;
                }
            }
        }
    });
    assert_eq!(errors, 0, "quinn-udp sends refused");
    r
}

/// A receiver holding `count` datagrams.
fn filled(count: usize) -> UdpSocket {
    let r =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    let _ = r.set_recv_buffer_size(16 << 20);
    r.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
        .expect("bind");
    r.set_nonblocking(true).expect("nonblocking");
    let r: UdpSocket = r.into();
    let to = r.local_addr().expect("addr");
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let payload = vec![1u8; SIZE];
    let mut b = Batch::new(48, 4);
    b.set_gso(false);
    for chunk in 0..count.div_ceil(ROUND) {
        let mut tx = b.tx();
        for _ in 0..ROUND.min(count - chunk * ROUND) {
            tx.send(s.as_raw_fd(), to, &payload);
        }
        b.flush();
    }
    r
}

const QUEUED: usize = 2000;

/// Datagrams per second drained by `drain` (returns how many it took), over `secs`.
fn recv_rate(secs: f64, mut drain: impl FnMut(&UdpSocket) -> usize) -> f64 {
    let (mut took, mut busy) = (0usize, Duration::ZERO);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let r = filled(QUEUED);
        let t = cpu_now();
        took += drain(&r);
        busy += cpu_now() - t;
    }
    took as f64 / busy.as_secs_f64()
}

fn ours_recv(r: &UdpSocket) -> usize {
    let mut b = Batch::new(48, 4);
    let mut n = 0;
    while let Ok(slots) = b.recv(r.as_raw_fd()) {
        if slots.is_empty() {
            break;
        }
        n += slots.len();
        b.flush();
    }
    n
}

fn quinn_recv(r: &UdpSocket) -> usize {
    let state = UdpSocketState::new(UdpSockRef::from(r)).expect("state");
    let mut storage = vec![[0u8; 2048]; quinn_udp::BATCH_SIZE];
    let mut meta = vec![RecvMeta::default(); quinn_udp::BATCH_SIZE];
    let mut n = 0;
    loop {
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        match state.recv(UdpSockRef::from(r), &mut bufs, &mut meta) {
            Ok(k) if k > 0 => {
                n += meta[..k]
                    .iter()
                    .map(|m| m.len / m.stride.max(1))
                    .sum::<usize>()
            }
            _ => return n,
        }
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let (_keep, dests) = receivers(64);
    let one = &dests[..1];
    println!("pattern  impl            M datagrams per CPU second (3 alternating runs)");
    let show = |name: &str, which: &str, runs: &[f64]| {
        let f: Vec<String> = runs.iter().map(|r| format!("{:.3}", r / 1e6)).collect();
        println!("{name:<8} {which:<15} {}", f.join("  "));
    };
    for (name, to) in [("fan-out", &dests[..]), ("burst", one)] {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            a.push(ours_send(secs, to, true));
            b.push(ours_send(secs, to, false));
            c.push(quinn_send(secs, to));
        }
        show(name, "ours in place", &a);
        show(name, "ours copied", &b);
        show(name, "quinn-udp", &c);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(recv_rate(secs, ours_recv));
        b.push(recv_rate(secs, quinn_recv));
    }
    show("recv", "ours", &a);
    show("recv", "quinn-udp", &b);
}

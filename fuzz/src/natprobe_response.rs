//! The NAT probe (`switchboard_natprobe::Probe`, behind `switchboard nat-probe`) fed
//! whatever comes back from the network: answers from the server, from elsewhere,
//! forged and malformed ones, hairpinned requests, silence.
//!
//! Records (see [`crate::records`]), `op % 4`:
//! - 0 answer the oldest request still unanswered: `body` is a STUN message whose
//!   transaction id is set to that request's (so captured server answers are useful
//!   seeds as they are); it arrives on the socket that sent the request, from the
//!   address `who % 6` picks (the one it was sent to, the server's other port, other
//!   IP or both, the client's own public address, a stranger);
//! - 1 `body` as a datagram as is, on socket `who % 3`, from address `(who >> 2) % 6`;
//! - 2 time passes until the probe's next deadline, and its timers run;
//! - 3 the oldest request is lost (never answered).
//!
//! Checks: no panic; the probe always ends, within the time its retransmissions allow
//! (no request is retried forever, whatever was answered); its report and verdict can
//! be written for any outcome; the public address and OTHER-ADDRESS it reports are ones
//! that were really in an answer to it.

use crate::records::Records;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_natprobe::{Probe, ProbeConfig, Sock, Transmit};
use switchboard_stun::{attr_type, Message};

const SERVER: &str = "203.0.113.1:3478";
const FROM: [&str; 6] = [
    SERVER,
    "203.0.113.1:3479",
    "203.0.113.2:3478",
    "203.0.113.2:3479",
    "198.51.100.7:40001",
    "192.0.2.99:1234",
];
const SOCKS: [Sock; 3] = [Sock::Mapping, Sock::Filtering, Sock::Hairpin];

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

pub fn run(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    let cfg = ProbeConfig::new([0x42; 12]);
    let mut probe = Probe::new(sa(SERVER), Some(sa("10.0.0.2:5000")), cfg, now);
    let mut pending: VecDeque<Transmit> = VecDeque::new();
    // Addresses that appeared in any datagram handed to the probe.
    let mut offered: HashSet<SocketAddr> = HashSet::new();
    let drain = |probe: &mut Probe, pending: &mut VecDeque<Transmit>| {
        while let Some(t) = probe.poll_transmit() {
            assert!(
                Message::parse(&t.data).is_ok(),
                "the probe sends malformed STUN"
            );
            pending.push_back(t);
        }
    };
    let learn = |d: &[u8], offered: &mut HashSet<SocketAddr>| {
        if let Ok(m) = Message::parse(d) {
            for t in [
                attr_type::XOR_MAPPED_ADDRESS,
                attr_type::MAPPED_ADDRESS,
                attr_type::OTHER_ADDRESS,
            ] {
                offered.extend(m.xor_address(t));
                offered.extend(m.address(t));
            }
        }
    };
    drain(&mut probe, &mut pending);
    for r in Records::new(data).take(128) {
        match r.op % 4 {
            0 => {
                let Some(t) = pending.pop_front() else {
                    continue;
                };
                let mut d = r.body.to_vec();
                if let Some(tid) = d.get_mut(8..20) {
                    tid.copy_from_slice(&t.data[8..20]);
                }
                let from = match r.who % 6 {
                    0 => t.to,
                    i => sa(FROM[usize::from(i)]),
                };
                learn(&d, &mut offered);
                probe.handle_input(t.sock, from, &d, now);
            }
            1 => {
                let sock = SOCKS[usize::from(r.who % 3)];
                let from = sa(FROM[usize::from(r.who >> 2) % 6]);
                learn(r.body, &mut offered);
                probe.handle_input(sock, from, r.body, now);
            }
            2 => {
                if let Some(t) = probe.poll_timeout() {
                    now = now.max(t);
                    probe.handle_timeout(now);
                }
            }
            _ => {
                pending.pop_front();
            }
        }
        drain(&mut probe, &mut pending);
    }
    // Silence from now on: the probe must finish by itself, in bounded time.
    let quiet_from = now;
    let bound = cfg.give_up_after() * 6 + Duration::from_secs(1);
    while let Some(t) = probe.poll_timeout() {
        now = now.max(t);
        assert!(
            now - quiet_from <= bound,
            "the probe is still waiting {:?} after the last answer",
            now - quiet_from
        );
        probe.handle_timeout(now);
        drain(&mut probe, &mut pending);
    }
    assert!(probe.is_done() || probe.poll_transmit().is_some());
    let report = probe.report();
    let (_, words) = report.verdict();
    assert!(!words.is_empty());
    let _ = (report.nat_type(), report.behind_nat(), report.rfc5780());
    if let Some(p) = report.public {
        assert!(
            offered.contains(&p),
            "reports public address {p}, which no answer gave"
        );
    }
    if let Some(o) = report.other {
        assert!(
            offered.contains(&o),
            "reports OTHER-ADDRESS {o}, which no answer gave"
        );
    }
}

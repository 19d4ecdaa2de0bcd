//! The probe against a simulated NAT of every RFC 4787 kind and simulated servers
//! (RFC 5780, plain STUN, one that ignores CHANGE-REQUEST, none), without sockets.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use switchboard_natprobe::{
    Behaviour, Direct, Probe, ProbeConfig, Sock, Udp, CHANGE_IP, CHANGE_PORT,
};
use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method};
use Behaviour::*;

fn a(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

const S1: &str = "203.0.113.1";
const S2: &str = "203.0.113.2";
const WAN: &str = "198.51.100.7";

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Rfc5780,
    Plain,
    IgnoresChange,
    Silent,
}

struct Nat {
    /// None: no NAT at all (the client's addresses are public).
    kind: Option<(Behaviour, Behaviour)>,
    hairpin: bool,
    /// mapping key -> external port
    maps: HashMap<(SocketAddr, Option<IpAddr>, Option<u16>), u16>,
    /// external port -> (internal, remote endpoints sent to)
    by_port: HashMap<u16, (SocketAddr, HashSet<SocketAddr>)>,
    next_port: u16,
}

impl Nat {
    fn new(kind: Option<(Behaviour, Behaviour)>, hairpin: bool) -> Nat {
        Nat {
            kind,
            hairpin,
            maps: HashMap::new(),
            by_port: HashMap::new(),
            next_port: 40000,
        }
    }

    fn internal(sock: Sock) -> SocketAddr {
        match sock {
            Sock::Mapping => a("10.0.0.2:5000"),
            Sock::Filtering => a("10.0.0.2:5001"),
            Sock::Hairpin => a("10.0.0.2:5002"),
        }
    }

    fn local(&self, sock: Sock) -> SocketAddr {
        match self.kind {
            None => SocketAddr::new(WAN.parse().expect("ip"), Self::internal(sock).port()),
            Some(_) => Self::internal(sock),
        }
    }

    /// Outbound: the source address the far end sees.
    fn out(&mut self, sock: Sock, to: SocketAddr) -> SocketAddr {
        let Some((mapping, _)) = self.kind else {
            return self.local(sock);
        };
        let int = Self::internal(sock);
        let key = match mapping {
            EndpointIndependent => (int, None, None),
            AddressDependent => (int, Some(to.ip()), None),
            AddressAndPortDependent => (int, Some(to.ip()), Some(to.port())),
        };
        let next = &mut self.next_port;
        let port = *self.maps.entry(key).or_insert_with(|| {
            *next += 1;
            *next
        });
        self.by_port
            .entry(port)
            .or_insert_with(|| (int, HashSet::new()))
            .1
            .insert(to);
        SocketAddr::new(WAN.parse().expect("ip"), port)
    }

    /// Inbound to `ext` from `from`: which socket gets it, if the filter lets it in.
    fn inbound(&self, from: SocketAddr, ext: SocketAddr) -> Option<Sock> {
        let sock_of = |int: SocketAddr| {
            [Sock::Mapping, Sock::Filtering, Sock::Hairpin]
                .into_iter()
                .find(|s| Self::internal(*s) == int || self.local(*s) == int)
        };
        let Some((_, filtering)) = self.kind else {
            return sock_of(ext);
        };
        let (int, seen) = self.by_port.get(&ext.port())?;
        let ok = match filtering {
            EndpointIndependent => true,
            AddressDependent => seen.iter().any(|s| s.ip() == from.ip()),
            AddressAndPortDependent => seen.contains(&from),
        };
        ok.then(|| sock_of(*int)).flatten()
    }
}

/// The server's answer to a request that reached `local` from `client`: (from, bytes).
fn serve(
    server: Server,
    local: SocketAddr,
    client: SocketAddr,
    req: &[u8],
) -> Option<(SocketAddr, Vec<u8>)> {
    let msg = Message::parse(req).ok()?;
    let flip_ip = |ip: IpAddr| -> IpAddr {
        let to = if ip.to_string() == S1 { S2 } else { S1 };
        to.parse().expect("ip")
    };
    let flip_port = |p: u16| if p == 3478 { 3479 } else { 3478 };
    let other = |ip: bool, port: bool| {
        SocketAddr::new(
            if ip { flip_ip(local.ip()) } else { local.ip() },
            if port {
                flip_port(local.port())
            } else {
                local.port()
            },
        )
    };
    let change = msg.u32(attr_type::CHANGE_REQUEST);
    let mut out = vec![0u8; 256];
    let from = match (server, change) {
        (Server::Silent, _) => return None,
        (Server::Plain, Some(_)) => {
            let mut w =
                MessageWriter::new(&mut out, Method::BINDING, Class::Error, msg.tid).ok()?;
            w.error_code(420, "Unknown Attribute").ok()?;
            let n = w.finish();
            out.truncate(n);
            return Some((local, out));
        }
        (Server::Rfc5780, Some(flags)) => other(flags & CHANGE_IP != 0, flags & CHANGE_PORT != 0),
        _ => local,
    };
    let mut w = MessageWriter::new(&mut out, Method::BINDING, Class::Success, msg.tid).ok()?;
    w.xor_address(attr_type::XOR_MAPPED_ADDRESS, &client).ok()?;
    if server != Server::Plain {
        w.address(attr_type::OTHER_ADDRESS, &other(true, true))
            .ok()?;
        w.address(attr_type::RESPONSE_ORIGIN, &from).ok()?;
    }
    let n = w.finish();
    out.truncate(n);
    Some((from, out))
}

struct Run {
    report: switchboard_natprobe::Report,
    elapsed: Duration,
    sends: Vec<(Duration, Sock, SocketAddr)>,
}

fn run(server: Server, mut nat: Nat) -> Run {
    let t0 = Instant::now();
    let mut now = t0;
    let primary = a(&format!("{S1}:3478"));
    let mut p = Probe::new(
        primary,
        Some(nat.local(Sock::Mapping)),
        ProbeConfig::new([7; 12]),
        now,
    );
    let mut sends = Vec::new();
    let mut capture = switchboard_fuzz_capture::Capture::open("natprobe");
    for _ in 0..1000 {
        while let Some(tx) = p.poll_transmit() {
            sends.push((now - t0, tx.sock, tx.to));
            let src = nat.out(tx.sock, tx.to);
            if tx.to.ip().to_string() == WAN {
                // To our own public address: back in through the NAT if it hairpins
                // (straight to ourselves without a NAT).
                let arrives = match nat.kind {
                    None => nat.inbound(src, tx.to),
                    Some(_) if nat.hairpin => {
                        let int = nat.by_port.get(&tx.to.port()).map(|e| e.0);
                        [Sock::Mapping, Sock::Filtering]
                            .into_iter()
                            .find(|s| Some(Nat::internal(*s)) == int)
                    }
                    Some(_) => None,
                };
                if let Some(sock) = arrives {
                    capture.line(format_args!("in {sock:?} {src}"), &tx.data);
                    p.handle_input(sock, src, &tx.data, now);
                }
                continue;
            }
            if let Some((from, resp)) = serve(server, tx.to, src, &tx.data) {
                if let Some(sock) = nat.inbound(from, src) {
                    capture.line(format_args!("in {sock:?} {from}"), &resp);
                    p.handle_input(sock, from, &resp, now);
                }
            }
        }
        match p.poll_timeout() {
            Some(t) => {
                now = t;
                capture.line(format_args!("timeout"), &[]);
                p.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(p.is_done());
    Run {
        report: p.report(),
        elapsed: now - t0,
        sends,
    }
}

#[test]
fn every_mapping_and_filtering_combination_is_named() {
    for mapping in [
        EndpointIndependent,
        AddressDependent,
        AddressAndPortDependent,
    ] {
        for filtering in [
            EndpointIndependent,
            AddressDependent,
            AddressAndPortDependent,
        ] {
            let r = run(Server::Rfc5780, Nat::new(Some((mapping, filtering)), false));
            let rep = &r.report;
            assert_eq!(rep.udp, Udp::Answered);
            assert!(rep.rfc5780());
            assert_eq!(rep.other, Some(a("203.0.113.2:3479")));
            assert_eq!(rep.behind_nat(), Some(true));
            assert_eq!(
                rep.mapping,
                Some(mapping),
                "{mapping:?}/{filtering:?}: {rep:?}"
            );
            assert_eq!(
                rep.filtering,
                Some(filtering),
                "{mapping:?}/{filtering:?}: {rep:?}"
            );
            assert_eq!(rep.hairpinning, Some(false));
            assert!(rep.notes.is_empty(), "{:?}", rep.notes);
            assert!(r.elapsed <= Duration::from_millis(3500), "{:?}", r.elapsed);
        }
    }
}

#[test]
fn full_cone_finishes_without_waiting_and_hairpins() {
    let r = run(
        Server::Rfc5780,
        Nat::new(Some((EndpointIndependent, EndpointIndependent)), true),
    );
    assert_eq!(
        r.elapsed,
        Duration::ZERO,
        "every test answered at once: {:?}",
        r.sends
    );
    assert_eq!(r.report.hairpinning, Some(true));
    assert_eq!(r.report.nat_type(), Some("full cone"));
    assert_eq!(r.report.verdict().0, Direct::MostPeers);
    assert_eq!(r.report.public, Some(a("198.51.100.7:40001")));
    // test I, then II, III is moot (same mapping), filtering II, III moot, hairpin
    let to: Vec<_> = r.sends.iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(
        to,
        vec![
            (Sock::Mapping, a("203.0.113.1:3478")),
            (Sock::Hairpin, a("198.51.100.7:40001")),
            (Sock::Mapping, a("203.0.113.2:3478")),
            (Sock::Mapping, a("203.0.113.2:3479")),
            (Sock::Filtering, a("203.0.113.1:3478")),
            (Sock::Filtering, a("203.0.113.1:3478")),
        ]
    );
}

#[test]
fn symmetric_nat_says_relay_needed() {
    let r = run(
        Server::Rfc5780,
        Nat::new(
            Some((AddressAndPortDependent, AddressAndPortDependent)),
            false,
        ),
    );
    assert_eq!(r.report.nat_type(), Some("symmetric"));
    let (d, text) = r.report.verdict();
    assert_eq!(d, Direct::RelayOften);
    assert!(text.contains("need the relay"), "{text}");
}

#[test]
fn no_nat_is_open_internet() {
    let r = run(Server::Rfc5780, Nat::new(None, false));
    assert_eq!(r.report.behind_nat(), Some(false));
    assert_eq!(r.report.mapping, Some(EndpointIndependent));
    assert_eq!(r.report.filtering, Some(EndpointIndependent));
    assert_eq!(r.report.nat_type(), Some("open internet (no NAT)"));
    assert_eq!(r.report.hairpinning, Some(true));
}

#[test]
fn unanswered_request_is_retransmitted_500ms_doubling_then_given_up() {
    let r = run(Server::Silent, Nat::new(None, false));
    assert_eq!(r.report.udp, Udp::NoAnswer);
    assert_eq!(r.report.verdict().0, Direct::UdpBlocked);
    let times: Vec<u128> = r.sends.iter().map(|s| s.0.as_millis()).collect();
    assert_eq!(times, vec![0, 500, 1500]);
    assert_eq!(r.elapsed, Duration::from_millis(3500));
    assert_eq!(
        ProbeConfig::new([0; 12]).give_up_after(),
        Duration::from_millis(3500)
    );
}

#[test]
fn plain_stun_server_gives_only_the_public_address() {
    let r = run(
        Server::Plain,
        Nat::new(
            Some((AddressAndPortDependent, AddressAndPortDependent)),
            false,
        ),
    );
    let rep = &r.report;
    assert_eq!(rep.udp, Udp::Answered);
    assert!(!rep.rfc5780());
    assert_eq!(rep.public, Some(a("198.51.100.7:40001")));
    assert_eq!((rep.mapping, rep.filtering), (None, None));
    assert_eq!(
        rep.hairpinning,
        Some(false),
        "hairpinning needs no RFC 5780"
    );
    assert_eq!(rep.verdict().0, Direct::Unknown);
    // no CHANGE-REQUEST was sent to a server that did not offer RFC 5780
    assert!(r.sends.iter().all(|s| s.1 != Sock::Filtering));
}

#[test]
fn server_ignoring_change_request_leaves_filtering_unknown() {
    let r = run(
        Server::IgnoresChange,
        Nat::new(Some((EndpointIndependent, EndpointIndependent)), false),
    );
    assert_eq!(r.report.mapping, Some(EndpointIndependent));
    assert_eq!(r.report.filtering, None);
    assert!(
        r.report.notes.iter().any(|n| n.contains("instead of")),
        "{:?}",
        r.report.notes
    );
}

#[test]
fn garbage_and_strangers_are_ignored() {
    let t0 = Instant::now();
    let server = a("203.0.113.1:3478");
    let mut p = Probe::new(server, None, ProbeConfig::new([1; 12]), t0);
    let req = p.poll_transmit().expect("test I");
    p.handle_input(
        Sock::Mapping,
        server,
        b"not stun at all, not even close",
        t0,
    );
    p.handle_input(Sock::Mapping, server, &[0u8; 3], t0);
    // a well-formed answer to someone else's transaction
    let mut buf = [0u8; 64];
    let mut w = MessageWriter::new(
        &mut buf,
        Method::BINDING,
        Class::Success,
        switchboard_stun::TransactionId([9; 12]),
    )
    .expect("writer");
    w.xor_address(attr_type::XOR_MAPPED_ADDRESS, &a("1.2.3.4:5"))
        .expect("attr");
    let n = w.finish();
    p.handle_input(Sock::Mapping, server, &buf[..n], t0);
    // our own request echoed back is not an answer
    p.handle_input(Sock::Mapping, server, &req.data, t0);
    assert!(!p.is_done());
    assert_eq!(p.report().udp, Udp::NoAnswer);
}

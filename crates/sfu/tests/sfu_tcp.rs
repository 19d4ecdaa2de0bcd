//! ICE-TCP (RFC 6544 passive candidate, RFC 4571 frames): a client whose only candidate is
//! an active TCP one reaches the SFU through `handle_tcp_frame`, media flows both ways
//! with a UDP client in the same room, and the SFU answers it only over TCP.

mod common;

use std::time::{Duration, Instant};

use common::{config, sfu_addr, Net, ROOM};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use switchboard_sfu::{Grants, Sfu, SfuConfig, SfuOutput, SignalIn, SignalKind, Transport};

const AV: &[(MediaKind, bool)] = &[(MediaKind::Audio, false), (MediaKind::Video, false)];

/// The driver's setup: the UDP and TCP candidates are the same IP and port number.
fn tcp_config() -> SfuConfig {
    SfuConfig {
        tcp_candidates: vec![sfu_addr()],
        ..config()
    }
}

#[test]
fn sfu_tcp_only_client_exchanges_media_with_a_udp_client() {
    let mut net = Net::with_config(tcp_config());
    net.tcp_clients = true;
    let t = net.join("tcp-alice", Grants::default());
    net.tcp_clients = false;
    net.offer(t, AV);
    let u = net.join("udp-bob", Grants::default());
    net.offer(u, AV);
    net.run_until(
        Duration::from_secs(5),
        "both connected, both see the other",
        |n| {
            n.clients
                .iter()
                .all(|c| c.connected && c.pending.is_none() && c.tracks().len() == 2)
        },
    );
    assert_eq!(net.clients[t].transport, Transport::Tcp);
    assert_eq!(net.clients[u].transport, Transport::Udp);

    net.stream(&[t, u], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    for (me, other) in [("tcp-alice", "udp-bob"), ("udp-bob", "tcp-alice")] {
        let c = net.client(me);
        let (video, audio) = (
            c.received_from(other, "video"),
            c.received_from(other, "audio"),
        );
        assert!(
            video >= 48 && audio >= 48,
            "{me} got video {video}, audio {audio} of 50 each"
        );
    }
    assert_eq!(net.sfu.stats().unknown_datagrams, 0);
}

#[test]
fn sfu_without_tcp_candidates_a_tcp_only_client_never_connects() {
    let mut net = Net::new();
    net.tcp_clients = true;
    let t = net.join("tcp-alice", Grants::default());
    net.offer(t, AV);
    net.run_for(Duration::from_secs(3));
    assert!(!net.clients[t].connected);
}

/// The SFU's answer announces the passive TCP candidate next to the UDP one, at a lower
/// priority, and a TCP connection that closes routes nothing until STUN comes again.
#[test]
fn sfu_answer_announces_a_passive_tcp_candidate() {
    let now = Instant::now();
    let mut sfu = Sfu::new(tcp_config(), now).unwrap();
    sfu.add_participant(ROOM, "alice", Grants::default(), now)
        .unwrap();
    let mut client = Rtc::builder().build(now);
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, _pending) = api.apply().unwrap();
    let payload = serde_json::to_string(&offer.to_sdp_string()).unwrap();
    sfu.handle_signal(ROOM, "alice", SignalIn::Offer(&payload), now)
        .unwrap();
    let mut answer = None;
    while let Some(o) = sfu.poll_output() {
        if let SfuOutput::Signal {
            kind: SignalKind::Answer,
            payload,
            ..
        } = o
        {
            answer = Some(serde_json::from_str::<String>(&payload).unwrap());
        }
    }
    let answer = answer.expect("an answer");
    let cands: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    let prio = |l: &str| -> u64 { l.split(' ').nth(3).unwrap().parse().unwrap() };
    let udp = cands.iter().find(|l| l.contains(" udp ")).expect("udp");
    let tcp = cands.iter().find(|l| l.contains(" tcp ")).expect("tcp");
    assert!(
        tcp.contains("10.0.0.1 3480 typ host tcptype passive"),
        "{tcp}"
    );
    assert!(prio(tcp) < prio(udp), "{udp} / {tcp}");

    // A frame of an unknown connection is nobody's; so is one after the close.
    let from = "10.0.1.9:40000".parse().unwrap();
    assert!(!sfu.handle_tcp_frame(now, from, sfu_addr(), &[22, 254, 253, 0]));
    sfu.tcp_closed(from);
    assert!(!sfu.handle_tcp_frame(now, from, sfu_addr(), &[22, 254, 253, 0]));
    assert_eq!(sfu.stats().unknown_datagrams, 2);
}

/// After its connection closes the TCP client's frames are dropped (counted) until its
/// next consent check (STUN, integrity checked) teaches the address again.
#[test]
fn sfu_tcp_closed_forgets_the_connection_until_stun_again() {
    let mut net = Net::with_config(tcp_config());
    net.tcp_clients = true;
    net.connect_all(&[("alice", AV), ("bob", AV)]);
    let a = net.idx("alice");
    let addr = net.clients[a].addr;
    net.sfu.tcp_closed(addr);
    let before = net.sfu.stats().unknown_datagrams;
    assert!(!net
        .sfu
        .handle_tcp_frame(net.now, addr, sfu_addr(), &[22, 254, 253, 0]));
    assert_eq!(net.sfu.stats().unknown_datagrams, before + 1);
    // The client's consent checks come again within a few seconds: media flows.
    net.run_for(Duration::from_secs(4));
    let b = net.idx("bob");
    let got = net.client("bob").received_from("alice", "video");
    net.stream(&[a, b], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    let now_got = net.client("bob").received_from("alice", "video");
    assert!(now_got >= got + 48, "bob got {} new", now_got - got);
}

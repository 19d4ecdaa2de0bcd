//! The SFU end to end: the real binary, two str0m participants (full ICE on real UDP
//! sockets on loopback) that join a room with `topology:"sfu"` over the signaling
//! WebSocket, find the SFU's peer (`service:"sfu"`), publish a VP8 track each (a
//! `publish` message, an offer, the SFU's answer), and A's RTP packets reach B through
//! the SFU's one UDP port, chat crosses the SFU's data channel; the SFU's metrics count
//! them. Also: the threshold turn, `off`, stray datagrams, a relay-only participant.

use crate::common;

use common::Server;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use switchboard_client::sfu::{MediaPeer, SfuClient};
use switchboard_client::signal::WsClient;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Pump both clients in turns until `done` holds; panics with `what` after `timeout`.
fn pump_both(
    a: &mut SfuClient,
    b: &mut SfuClient,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&SfuClient, &SfuClient) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(a, b) {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        a.pump(Duration::from_millis(5)).expect("pump a");
        b.pump(Duration::from_millis(5)).expect("pump b");
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics:\n{text}"))
}

#[test]
fn two_participants_publish_and_a_reaches_b_through_the_sfu() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--sfu-threads", "2"]);
    let sfu: SocketAddr = server.ready["listeners"]["sfu-udp"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("sfu-udp in the ready file");
    assert_ne!(sfu.port(), 0);
    assert!(
        server
            .startup
            .iter()
            .any(|l| l.contains(&format!("SFU listening on udp://{sfu}"))),
        "{:?}",
        server.startup
    );
    let http = server.http.expect("http listener");

    let mut a = SfuClient::join(http, "sfu-room", "A", Some("sfu"), LOOPBACK).expect("A joins");
    assert_eq!(a.joined["topology"], "sfu", "{}", a.joined);
    let mut b = SfuClient::join(http, "sfu-room", "B", None, LOOPBACK).expect("B joins");
    assert_eq!(b.joined["topology"], "sfu", "{}", b.joined);
    pump_both(
        &mut a,
        &mut b,
        Duration::from_secs(5),
        "the SFU peer",
        |a, b| a.sfu_peer.is_some() && b.sfu_peer.is_some(),
    );
    assert_eq!(a.sfu_peer, b.sfu_peer, "one SFU participant per room");

    a.publish_video().expect("A publishes");
    b.publish_video().expect("B publishes");
    pump_both(
        &mut a,
        &mut b,
        Duration::from_secs(10),
        "both connected and answered",
        |a, b| {
            a.media.connected
                && b.media.connected
                && !a.media.sending.is_empty()
                && !b.media.sending.is_empty()
        },
    );

    // A streams (a keyframe every 30 packets) until B has received a good share of it
    // on the m-line the SFU's `tracks` map gives to A's camera.
    let a_id = a.peer_id.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0u64;
    while b.received_from(&a_id, "video") < 50 {
        assert!(
            Instant::now() < deadline,
            "B got {} of {sent} packets of A; tracks {:?}, rtp {:?}",
            b.received_from(&a_id, "video"),
            b.tracks(),
            b.media.rtp
        );
        sent += a.send_video_packet(sent % 30 == 0) as u64;
        a.pump(Duration::from_millis(5)).expect("pump a");
        b.pump(Duration::from_millis(5)).expect("pump b");
    }
    let tracks = b.tracks();
    assert!(
        tracks
            .iter()
            .any(|t| t.1 == a_id && t.2 == "camera" && t.3 == "video"),
        "{tracks:?}"
    );
    assert!(b.offers >= 1, "the SFU offered A's track to B");

    // Chat over the SFU's data channel: to everyone, then to B by name.
    pump_both(
        &mut a,
        &mut b,
        Duration::from_secs(5),
        "data channels open",
        |a, b| a.media.channel_open && b.media.channel_open,
    );
    assert!(a.media.send_data(r#"{"data":{"chat":"hello"}}"#));
    let to_b = format!(r#"{{"to":"{}","data":"just you"}}"#, b.peer_id);
    assert!(a.media.send_data(&to_b));
    pump_both(
        &mut a,
        &mut b,
        Duration::from_secs(5),
        "chat relayed",
        |_, b| b.media.data.len() >= 2,
    );
    assert_eq!(
        b.media.data,
        [
            format!(r#"{{"from":"{a_id}","data":{{"chat":"hello"}}}}"#),
            format!(r#"{{"from":"{a_id}","data":"just you"}}"#),
        ]
    );
    assert!(a.media.data.is_empty(), "{:?}", a.media.data);

    // The server counts what it forwarded (figures are published once a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = server.metrics();
        if metric(&m, "switchboard_sfu_forwarded_packets_total") >= 50 {
            assert_eq!(metric(&m, "switchboard_sfu_participants"), 2, "{m}");
            assert!(metric(&m, "switchboard_sfu_tracks") >= 2, "{m}");
            assert_eq!(metric(&m, "switchboard_sfu_signaling_rooms"), 1, "{m}");
            // Which worker's socket the kernel gave each client is chance: say it.
            eprintln!(
                "datagrams handed between workers: {}",
                metric(&m, "switchboard_sfu_handoffs_total")
            );
            break;
        }
        assert!(Instant::now() < deadline, "metrics never counted: {m}");
        a.pump(Duration::from_millis(50)).expect("pump a");
        b.pump(Duration::from_millis(50)).expect("pump b");
    }
}

/// Join `room` over a plain signaling WebSocket; returns the client and its `joined`.
fn ws_join(http: SocketAddr, room: &str, name: &str) -> (WsClient, serde_json::Value) {
    let mut ws = WsClient::connect(http).expect("connect");
    ws.send_text(&switchboard_client::signal::join(room, name))
        .expect("join");
    let j = ws
        .recv(Duration::from_secs(5))
        .expect("recv")
        .expect("joined");
    assert_eq!(j["type"], "joined", "{j}");
    (ws, j)
}

/// The next message of `ws` that is a `peer-joined` of a service participant.
fn service_joined(ws: &mut WsClient) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(m) = ws.recv(Duration::from_millis(100)).expect("recv") {
            if m["type"] == "peer-joined" && m["peer"]["service"].is_string() {
                return m;
            }
        }
    }
    panic!("no service participant joined");
}

#[test]
fn the_fifth_member_turns_a_mesh_room_and_the_sfu_joins_it() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--sfu-threads", "1"]);
    let http = server.http.expect("http listener");
    let mut members = Vec::new();
    for i in 0..4 {
        let (ws, j) = ws_join(http, "grows", &format!("p{i}"));
        assert_eq!(j["topology"], "mesh", "{j}");
        members.push(ws);
    }
    let (ws, j) = ws_join(http, "grows", "p4");
    assert_eq!(j["topology"], "sfu", "{j}");
    members.push(ws);
    let mut sfu_ids = Vec::new();
    for ws in &mut members {
        let m = service_joined(ws);
        assert_eq!(m["peer"]["service"], "sfu", "{m}");
        assert_eq!(m["peer"]["name"], "SFU", "{m}");
        sfu_ids.push(m["peer"]["id"].as_str().unwrap().to_string());
    }
    sfu_ids.dedup();
    assert_eq!(sfu_ids.len(), 1, "one SFU participant: {sfu_ids:?}");
    // A sixth sees it among the peers, and the SFU takes no client's place.
    let (_ws, j) = ws_join(http, "grows", "p5");
    let peers = j["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 6, "{j}");
    assert!(peers.iter().any(|p| p["service"] == "sfu"), "{j}");
    assert_eq!(server.metric("switchboard_sfu_rooms_joined_total"), 1);
    // A datagram nobody owns on the SFU port is dropped and counted.
    let sfu: SocketAddr = server.ready["listeners"]["sfu-udp"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("sfu-udp");
    let stray = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stray.send_to(&[22, 254, 253, 0, 0, 0], sfu).unwrap();
    let unknown = "switchboard_sfu_demux_dropped_total{reason=\"unknown\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&server.metrics(), unknown) == 0 {
        assert!(
            Instant::now() < deadline,
            "the stray datagram was not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn threshold_off_runs_no_sfu_and_rooms_stay_mesh() {
    let server = Server::start(&["--sfu-threshold", "off"]);
    assert!(
        server.ready["listeners"].get("sfu-udp").is_none(),
        "{}",
        server.ready
    );
    let http = server.http.expect("http listener");
    let mut ws = WsClient::connect(http).expect("connect");
    ws.send(&serde_json::json!({"type": "join", "room": "r", "topology": "sfu"}))
        .expect("join");
    let j = ws
        .recv(Duration::from_secs(5))
        .expect("recv")
        .expect("joined");
    assert_eq!(j["topology"], "mesh", "{j}");
}

/// A relay-only participant (its only candidate is a relayed address of this server's
/// own TURN) reaches the SFU once TURN may relay to the SFU's address.
#[test]
fn a_relay_only_participant_reaches_the_sfu_through_our_turn() {
    let server = Server::start(&[
        "--sfu-bind",
        "127.0.0.1",
        "--user",
        "relay:secret",
        "--allowed-peer-ip",
        "127.0.0.1",
    ]);
    let sfu: SocketAddr = server.ready["listeners"]["sfu-udp"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("sfu-udp");
    let turn = server.udp.expect("turn-udp");
    let http = server.http.expect("http listener");
    let relayed = MediaPeer::via_turn(turn, "relay", "secret", sfu).expect("TURN allocation");
    assert_eq!(relayed.local_addr().ip(), LOOPBACK);
    let mut a = SfuClient::join_with(http, "relayed", "A", Some("sfu"), relayed).expect("A");
    let mut b = SfuClient::join(http, "relayed", "B", None, LOOPBACK).expect("B");
    pump_both(
        &mut a,
        &mut b,
        Duration::from_secs(5),
        "the SFU peer",
        |a, b| a.sfu_peer.is_some() && b.sfu_peer.is_some(),
    );
    a.publish_video().expect("A publishes");
    b.publish_video().expect("B publishes");
    pump_both(
        &mut a,
        &mut b,
        Duration::from_secs(10),
        "both connected",
        |a, b| a.media.connected && b.media.connected && !a.media.sending.is_empty(),
    );
    let a_id = a.peer_id.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0u64;
    while b.received_from(&a_id, "video") < 50 {
        assert!(
            Instant::now() < deadline,
            "B got {} of {sent} relayed packets of A",
            b.received_from(&a_id, "video")
        );
        sent += a.send_video_packet(sent % 30 == 0) as u64;
        a.pump(Duration::from_millis(5)).expect("pump a");
        b.pump(Duration::from_millis(5)).expect("pump b");
    }
    // The media went through TURN: it relayed at least what B received (the relay's
    // stats reach the metrics in snapshots up to 250 ms old, so B can be ahead of them).
    let relayed_out = server.metric_reaching(
        "switchboard_turn_relayed_packets_total{direction=\"client_to_peer\"}",
        50,
    );
    assert!(
        relayed_out >= 50,
        "TURN relayed {relayed_out} packets to the SFU"
    );
}

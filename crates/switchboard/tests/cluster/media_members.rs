//! Servers' media members of a room another node holds: a phone call (SIP, calls out
//! through node 2's gateway) and a WHIP publisher (node 2's `/whip`), for a room that
//! lives on node 1. Each joins the room on node 1 and sends its media to node 2's SFU
//! edge of it, linked to node 1's SFU (docs/cluster.md "SFU rooms"). What a user checks:
//! the room's member on node 1 hears the phone and the phone hears the member; the
//! WHIP publisher's video reaches the member, and a WHIP session ends when node 1 dies;
//! when node 1 dies the call goes on: the room comes back on another node with the
//! phone in it, and a member joining through node 3 then hears the phone and is heard,
//! with no BYE on the phone's side.

use crate::lab::Lab;
use crate::sip_far_end::{dial_at, talk, talking, FarEnd};
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_client::sfu::{IngestClient, SfuClient};
use switchboard_sip::ua::UaEvent;

/// node 2's SIP gateway: its address and RTP ports (any node could run one).
const SIP_ARGS: [&str; 4] = [
    "--sip-listen",
    "198.51.100.12:5060",
    "--sip-rtp-ports",
    "31000-31099",
];

/// A member of `room` through node `n`, publishing audio (the far end's tests' member).
fn member(lab: &Lab, n: usize, room: &'static str, name: &'static str) -> SfuClient {
    let (signal, ip) = (Lab::node_addr(n), lab.client_ip);
    let b = lab
        .in_client_ns(move || SfuClient::join(signal, room, name, Some("sfu"), ip))
        .unwrap_or_else(|e| panic!("{name} joins {room} through n{n}: {e}"));
    talking(b)
}

/// A far end in the client namespace.
fn far_end(lab: &Lab) -> FarEnd {
    let ip = lab.client_ip;
    let (listener, media) = lab.in_client_ns(move || {
        (
            TcpListener::bind((ip, 0)).expect("listen"),
            UdpSocket::bind((ip, 0)).expect("rtp socket"),
        )
    });
    FarEnd::on(listener, media, None)
}

/// `POST /api/sip/calls` on node `n`: a call out of `room` to the far end.
fn dial(lab: &Lab, n: usize, room: &'static str, far: &FarEnd) -> (u16, String) {
    let to = format!(
        "sip:bob@{};transport=tcp",
        far.listener.local_addr().expect("addr")
    );
    let http = Lab::node_addr(n);
    lab.in_client_ns(move || dial_at(http, room, &to))
}

fn no_bye(far: &FarEnd) {
    let ended: Vec<&UaEvent> = far
        .events
        .iter()
        .filter(|e| matches!(e, UaEvent::Ended { .. }))
        .collect();
    assert!(ended.is_empty(), "the phone's call ended: {ended:?}");
    assert!(
        far.call.is_some() && !far.closed,
        "the phone's call is gone"
    );
}

#[test]
#[ignore = "needs root and network namespaces: sudo cargo test -p switchboard --test cluster -- --ignored"]
fn a_phone_call_into_a_room_of_another_node_survives_that_nodes_death() {
    let lab = Lab::up();
    lab.start_node(1, &[]);
    lab.start_node(2, &SIP_ARGS);
    lab.start_node(3, &[]);
    let mut ada = member(&lab, 1, "r", "Ada");
    assert_eq!(lab.status().owner("r"), Some("n1"));

    // Node 2 calls the phone from room r: the call's leg joins r on node 1 and its media
    // goes to node 2's edge.
    let mut far = far_end(&lab);
    let (status, reply) = dial(&lab, 2, "r", &far);
    assert_eq!(status, 201, "{reply}");
    let first = talk(&mut ada, &mut far);
    assert_eq!(lab.status().owner("r"), Some("n1"), "the room stayed put");
    assert_eq!(lab.metric(2, "switchboard_sfu_edges"), Some(1));
    assert_eq!(lab.metric(1, "switchboard_sfu_edges"), Some(0));
    // The phone's voice and Ada's cross the link: one track each way.
    let (into2, out_of2) = (
        lab.metric(2, "switchboard_sfu_link_tracks{dir=\"in\"}"),
        lab.metric(2, "switchboard_sfu_link_tracks{dir=\"out\"}"),
    );
    eprintln!("n2's link: tracks in {into2:?}, out {out_of2:?}");
    assert_eq!((into2, out_of2), (Some(1), Some(1)));

    // Node 1 dies with Ada. The call stays up; the room comes back elsewhere with the
    // phone in it (its leg joins again once the cluster sees node 1 dead).
    let killed = Instant::now();
    lab.kill_node(1);
    let deadline = killed + crate::FAILOVER;
    let owner = loop {
        far.pump();
        no_bye(&far);
        if let Some(o) = lab.status().owner("r").filter(|o| *o != "n1") {
            if lab.log(2).contains("SIP call in the room again") {
                break o.to_string();
            }
        }
        assert!(Instant::now() < deadline, "room r did not come back");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "room r is on {owner} {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    // Cleo joins through node 3: she hears the phone and the phone hears her.
    let mut cleo = member(&lab, 3, "r", "Cleo");
    let again = talk(&mut cleo, &mut far);
    assert_ne!(first, again, "the leg joined again as a new peer");
    no_bye(&far);
    eprintln!(
        "media both ways again {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
}

#[test]
#[ignore = "needs root and network namespaces: sudo cargo test -p switchboard --test cluster -- --ignored"]
fn a_whip_publisher_reaches_a_room_of_another_node() {
    let lab = Lab::up();
    lab.start_node(1, &[]);
    lab.start_node(2, &[]);
    let mut ada = member(&lab, 1, "live", "Ada");
    let (http, ip) = (Lab::node_addr(2), lab.client_ip);
    let mut whip = lab
        .in_client_ns(move || IngestClient::whip(http, "live", None, ip))
        .expect("WHIP POST to node 2");
    assert_eq!(
        lab.status().owner("live"),
        Some("n1"),
        "the room stayed put"
    );
    let whip_id = {
        let found = ada
            .pump_until(Duration::from_secs(10), |a| {
                a.joined_peers.iter().any(|p| p["service"] == "whip")
            })
            .expect("pump");
        assert!(found, "the WHIP publisher is no peer of the room");
        ada.joined_peers
            .iter()
            .find(|p| p["service"] == "whip")
            .and_then(|p| p["id"].as_str())
            .map(str::to_string)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0u64;
    while ada.received_from(&whip_id, "video") < 30 {
        assert!(
            Instant::now() < deadline,
            "Ada got {} of {sent} WHIP packets (WHIP connected: {}, tracks {:?})",
            ada.received_from(&whip_id, "video"),
            whip.media.connected,
            ada.tracks()
        );
        if whip.media.connected {
            sent += whip.media.send_video_packet(sent % 30 == 0) as u64;
        }
        whip.media.pump_once().expect("pump WHIP");
        ada.pump(Duration::from_millis(5)).expect("pump Ada");
    }
    assert_eq!(lab.metric(2, "switchboard_sfu_edges"), Some(1));
    // The publisher's session ends with DELETE on node 2: its track leaves Ada's room.
    let end = lab.in_client_ns(move || whip.end().map(|s| (s, whip)));
    let (status, _whip) = end.expect("DELETE");
    assert_eq!(status, 200);
    let gone = ada
        .pump_until(Duration::from_secs(10), |a| a.left_peers.contains(&whip_id))
        .expect("pump");
    assert!(gone, "the WHIP publisher did not leave the room");

    // A session whose room's node dies ends with it (docs/cluster.md): once node 2 has
    // seen node 1 dead, a DELETE there finds nothing.
    let again = lab.in_client_ns(move || IngestClient::whip(http, "live", None, ip));
    let whip = again.expect("a second WHIP POST to node 2");
    let found = ada
        .pump_until(Duration::from_secs(10), |a| {
            a.joined_peers
                .iter()
                .filter(|p| p["service"] == "whip")
                .count()
                == 2
        })
        .expect("pump");
    assert!(found, "the second WHIP publisher is no peer of the room");
    lab.kill_node(1);
    let deadline = Instant::now() + crate::FAILOVER;
    while lab.metric(2, "switchboard_cluster_nodes") != Some(1) {
        assert!(Instant::now() < deadline, "n2 never saw n1 dead");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = lab.in_client_ns(move || whip.end()).expect("DELETE");
    assert_eq!(status, 404, "the WHIP session outlived its room's node");
}

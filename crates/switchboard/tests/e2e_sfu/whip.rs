//! WHIP (RFC 9725) and WHEP end to end: a str0m publisher POSTs its offer to
//! `/whip/<room>` of the real binary, gets `201 Created` with the SFU's answer and a
//! `Location`, connects to the SFU's UDP port, and its RTP reaches a participant of the
//! room (a str0m client over the signaling WebSocket) and a WHEP player (`/whep/<room>`);
//! `DELETE` of the Location ends it, and so does vanishing. Refusals: wrong content
//! type, missing or weak room token, a mesh-only room.

use crate::common;

use common::Server;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use switchboard_client::sfu::{http_request, IngestClient, SfuClient};
use switchboard_client::signal::WsClient;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SECRET: &str = "whip-test-secret-0123456789";

#[test]
fn a_whip_publisher_reaches_a_participant_and_delete_ends_it() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--sfu-threads", "2"]);
    let http = server.http.expect("http listener");
    // WHIP first: it creates the room, which turns SFU for it.
    let mut whip = IngestClient::whip(http, "live", None, LOOPBACK).expect("WHIP POST");
    assert!(
        whip.location.starts_with("/whip/live/"),
        "{}",
        whip.location
    );
    let mut b = SfuClient::join(http, "live", "B", None, LOOPBACK).expect("B joins");
    assert_eq!(b.joined["topology"], "sfu", "{}", b.joined);
    let peers = b.joined["peers"].as_array().unwrap();
    let whip_id = peers
        .iter()
        .find(|p| p["service"] == "whip")
        .and_then(|p| p["id"].as_str())
        .expect("the WHIP publisher is a peer of the room")
        .to_string();
    assert!(peers.iter().any(|p| p["service"] == "sfu"), "{peers:?}");
    b.publish_video().expect("B publishes");

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0u64;
    while b.media.rtp_total() < 30 {
        assert!(
            Instant::now() < deadline,
            "B got {} of {sent} WHIP packets (whip connected: {}, tracks {:?})",
            b.media.rtp_total(),
            whip.media.connected,
            b.tracks()
        );
        if whip.media.connected {
            sent += whip.media.send_video_packet(sent % 30 == 0) as u64;
        }
        whip.media.pump_once().expect("pump whip");
        b.pump(Duration::from_millis(5)).expect("pump b");
    }
    assert!(
        b.tracks().iter().any(|t| t.3 == "video"),
        "{:?}",
        b.tracks()
    );

    // DELETE ends it: its track leaves B's map; a second DELETE finds nothing.
    assert_eq!(whip.end().expect("DELETE"), 200);
    assert_eq!(whip.end().expect("DELETE again"), 404);
    let gone = b
        .pump_until(Duration::from_secs(5), |b| {
            b.tracks().iter().all(|t| t.1 != whip_id)
        })
        .expect("pump b");
    assert!(gone, "the WHIP track stayed: {:?}", b.tracks());
}

#[test]
fn whip_refuses_bad_requests_tokens_and_mesh_rooms() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--room-token-secret", SECRET]);
    let http = server.http.expect("http listener");
    let post = |room: &str, headers: &[(&str, &str)], body: &str| {
        http_request(http, "POST", &format!("/whip/{room}"), headers, body).expect("POST")
    };
    let sdp = [("Content-Type", "application/sdp")];
    // No token: 401 with a Bearer challenge.
    let (status, headers, _) = post("r", &sdp, "v=0\r\n");
    assert_eq!(status, 401);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v == "Bearer"),
        "{headers:?}"
    );
    let mint = |room: &str, grants: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "token", "--secret", SECRET, "--room", room, "--grant", grants,
            ])
            .output()
            .expect("token");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let viewer = format!("Bearer {}", mint("r", "subscribe"));
    let (status, _, body) = post(
        "r",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &viewer),
        ],
        "v=0\r\n",
    );
    assert_eq!(status, 403, "{body}");
    let other_room = format!("Bearer {}", mint("elsewhere", "publish"));
    let (status, _, _) = post(
        "r",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &other_room),
        ],
        "v=0\r\n",
    );
    assert_eq!(status, 401);
    let publisher = mint("m", "publish,subscribe");
    let auth = format!("Bearer {publisher}");
    let (status, _, _) = post("m", &[("Authorization", &auth)], "v=0\r\n");
    assert_eq!(status, 415, "not application/sdp");
    let (status, _, _) = post(
        "m",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &auth),
        ],
        "hello",
    );
    assert_eq!(status, 400, "not SDP");
    // SDP the SFU cannot take: 400 with its reason (not 504 after the answer wait).
    let (status, _, body) = post(
        "w",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &format!("Bearer {}", mint("w", "publish"))),
        ],
        "v=0\r\nthis is not an offer\r\n",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad-sdp"), "{body}");
    // A room whose creator chose mesh takes no WHIP publisher.
    let mut ws = WsClient::connect(http).expect("connect");
    ws.send(
        &serde_json::json!({"type": "join", "room": "m", "topology": "mesh", "token": publisher}),
    )
    .expect("join");
    let j = ws.recv(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(j["topology"], "mesh", "{j}");
    let err = IngestClient::whip(http, "m", Some(&publisher), LOOPBACK)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("409"), "{err}");
    // With the token, a WHIP publisher gets in elsewhere.
    let ok = mint("w", "publish");
    let whip = IngestClient::whip(http, "w", Some(&ok), LOOPBACK).expect("WHIP with a token");
    assert_eq!(whip.end().expect("DELETE"), 200);
}

#[test]
fn a_whip_publisher_that_vanishes_without_delete_is_ended() {
    let server = Server::start(&[
        "--sfu-bind",
        "127.0.0.1",
        "--sfu-threads",
        "1",
        "--sfu-idle-timeout",
        "5",
    ]);
    let http = server.http.expect("http listener");
    // A browser in the room watches.
    let mut ws = WsClient::connect(http).expect("connect");
    ws.send_text(&switchboard_client::signal::join("gone", "watcher"))
        .expect("join");
    let j = ws.recv(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(j["type"], "joined", "{j}");
    // The publisher posts its offer, then never sends a packet (nor a DELETE).
    let whip = IngestClient::whip(http, "gone", None, LOOPBACK).expect("WHIP POST");
    let mut whip_id = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "the WHIP publisher never left");
        let Some(m) = ws.recv(Duration::from_millis(200)).expect("recv") else {
            continue;
        };
        if m["type"] == "peer-joined" && m["peer"]["service"] == "whip" {
            whip_id = m["peer"]["id"].as_str().map(str::to_string);
        }
        if m["type"] == "peer-left"
            && whip_id.is_some()
            && m["peerId"].as_str() == whip_id.as_deref()
        {
            break;
        }
    }
    assert_eq!(
        whip.end().expect("DELETE"),
        404,
        "the session already ended"
    );
}

#[test]
fn a_whep_player_watches_a_browser_publisher() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--sfu-threads", "2"]);
    let http = server.http.expect("http listener");
    let mut a = SfuClient::join(http, "show", "A", Some("sfu"), LOOPBACK).expect("A joins");
    a.pump_until(Duration::from_secs(5), |a| a.sfu_peer.is_some())
        .expect("pump");
    a.publish_video().expect("A publishes");
    a.pump_until(Duration::from_secs(10), |a| {
        a.media.connected && !a.media.sending.is_empty()
    })
    .expect("pump");
    assert!(a.media.connected, "A connected");
    // The player comes after the publisher: A's camera is on its video m-line at once.
    let mut player = IngestClient::whep(http, "show", None, LOOPBACK).expect("WHEP POST");
    assert!(
        player.location.starts_with("/whep/show/"),
        "{}",
        player.location
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0u64;
    while player.media.rtp_total() < 30 {
        assert!(
            Instant::now() < deadline,
            "the player got {} of {sent} packets (connected: {})",
            player.media.rtp_total(),
            player.media.connected
        );
        sent += a.send_video_packet(sent % 30 == 0) as u64;
        a.pump(Duration::from_millis(5)).expect("pump a");
        player.media.pump_once().expect("pump player");
    }
    assert!(player.media.sending.is_empty());
    // A player sends nothing and is never offered to: its session stays one exchange.
    assert_eq!(player.end().expect("DELETE"), 200);
    assert_eq!(player.end().expect("DELETE again"), 404);
}

#[test]
fn whep_needs_the_subscribe_grant() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--room-token-secret", SECRET]);
    let http = server.http.expect("http listener");
    let mint = |grants: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "token", "--secret", SECRET, "--room", "r", "--grant", grants,
            ])
            .output()
            .expect("token");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let publisher = mint("publish");
    let err = IngestClient::whep(http, "r", Some(&publisher), LOOPBACK)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("403"), "{err}");
    let err = IngestClient::whep(http, "r", None, LOOPBACK)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("401"), "{err}");
    let viewer = mint("subscribe");
    let player = IngestClient::whep(http, "r", Some(&viewer), LOOPBACK).expect("a viewer plays");
    assert_eq!(player.end().expect("DELETE"), 200);
}

#[test]
fn a_whip_publisher_reaches_a_whep_player_without_any_browser() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1"]);
    let http = server.http.expect("http listener");
    let mut whip = IngestClient::whip(http, "cast", None, LOOPBACK).expect("WHIP POST");
    let mut player = IngestClient::whep(http, "cast", None, LOOPBACK).expect("WHEP POST");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0u64;
    while player.media.rtp_total() < 30 {
        assert!(
            Instant::now() < deadline,
            "the player got {} of {sent} packets (whip connected: {}, player: {})",
            player.media.rtp_total(),
            whip.media.connected,
            player.media.connected
        );
        if whip.media.connected {
            sent += whip.media.send_video_packet(sent % 30 == 0) as u64;
        }
        whip.media.pump_once().expect("pump whip");
        player.media.pump_once().expect("pump player");
    }
    assert_eq!(whip.end().expect("DELETE"), 200);
    assert_eq!(player.end().expect("DELETE"), 200);
}

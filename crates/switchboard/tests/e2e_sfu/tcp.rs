//! ICE-TCP to the SFU end to end (`--sfu-tcp`, on by default): the real binary, a
//! participant whose only candidate is an active TCP one (a browser whose UDP is
//! blocked) connects to the SFU's TCP listener on the SFU's port number (RFC 6544
//! passive candidate, RFC 4571 frames) and exchanges media both ways with a UDP
//! participant through the SFU, without TURN. Also: a connection whose first frame
//! names nobody is closed, a closed connection is cleaned up, `--sfu-tcp false`.

use crate::common;

use common::Server;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_client::sfu::{MediaPeer, SfuClient};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn listener(server: &Server, kind: &str) -> Option<SocketAddr> {
    server.ready["listeners"][kind][0]
        .as_str()
        .and_then(|a| a.parse().ok())
}

fn pump_both(a: &mut SfuClient, b: &mut SfuClient) {
    a.pump(Duration::from_millis(5)).expect("pump a");
    b.pump(Duration::from_millis(5)).expect("pump b");
}

fn until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
    }
}

#[test]
fn a_tcp_only_participant_exchanges_media_through_the_sfu() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--sfu-threads", "2"]);
    let udp = listener(&server, "sfu-udp").expect("sfu-udp in the ready file");
    let tcp = listener(&server, "sfu-tcp").expect("sfu-tcp in the ready file");
    assert_eq!(tcp, udp, "ICE-TCP listens on the SFU's port number");
    let http = server.http.expect("http listener");

    let media = MediaPeer::via_tcp(tcp).expect("TCP connection to the SFU");
    let mut a = SfuClient::join_with(http, "tcp-room", "A", Some("sfu"), media).expect("A");
    let mut b = SfuClient::join(http, "tcp-room", "B", None, LOOPBACK).expect("B");
    until(Duration::from_secs(5), "the SFU peer", || {
        pump_both(&mut a, &mut b);
        a.sfu_peer.is_some() && b.sfu_peer.is_some()
    });
    a.publish_video().expect("A publishes");
    b.publish_video().expect("B publishes");
    until(Duration::from_secs(10), "both connected", || {
        pump_both(&mut a, &mut b);
        a.media.connected
            && b.media.connected
            && !a.media.sending.is_empty()
            && !b.media.sending.is_empty()
    });

    // Both stream until each has a good share of the other's video: A's leaves and B's
    // arrives only over A's TCP connection.
    let (a_id, b_id) = (a.peer_id.clone(), b.peer_id.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0u64;
    while b.received_from(&a_id, "video") < 50 || a.received_from(&b_id, "video") < 50 {
        assert!(
            Instant::now() < deadline,
            "B got {} of A, A got {} of B ({n} sent each); A's tracks {:?}",
            b.received_from(&a_id, "video"),
            a.received_from(&b_id, "video"),
            a.tracks()
        );
        a.send_video_packet(n % 30 == 0);
        b.send_video_packet(n % 30 == 0);
        n += 1;
        pump_both(&mut a, &mut b);
    }

    let m = server.metrics();
    assert_eq!(server.metric("switchboard_sfu_tcp_connections"), 1, "{m}");
    let frames_in = server.metric("switchboard_sfu_tcp_frames_total{direction=\"in\"}");
    let frames_out = server.metric("switchboard_sfu_tcp_frames_total{direction=\"out\"}");
    assert!(frames_in >= 50 && frames_out >= 50, "{m}");
    assert_eq!(
        server.metric("switchboard_sfu_tcp_dropped_total{reason=\"write_full\"}"),
        0
    );

    // A stranger whose first frame is no STUN request for an SFU participant is closed.
    let mut stranger = TcpStream::connect(tcp).expect("connect");
    stranger.write_all(&[0, 4, 22, 254, 253, 0]).expect("write");
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(stranger.read(&mut byte), Ok(0) | Err(_)),
        "closed by the server"
    );
    assert_eq!(
        server.metric("switchboard_sfu_tcp_connections_total{result=\"unroutable\"}"),
        1
    );

    // A goes away: its connection is cleaned up.
    drop(a);
    until(Duration::from_secs(5), "the connection forgotten", || {
        b.pump(Duration::from_millis(20)).expect("pump b");
        server.metric("switchboard_sfu_tcp_connections") == 0
    });
}

#[test]
fn sfu_tcp_false_listens_on_udp_only() {
    let server = Server::start(&["--sfu-bind", "127.0.0.1", "--sfu-tcp", "false"]);
    assert!(listener(&server, "sfu-udp").is_some());
    assert!(listener(&server, "sfu-tcp").is_none(), "{}", server.ready);
}

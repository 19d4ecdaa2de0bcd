//! RFC 6062 end to end over real sockets: a TCP allocation Connects to a TCP echo
//! server and bytes round-trip over a bound data connection; a peer connecting to
//! the relayed address raises ConnectionAttempt; refusals (403, 447, 400) and the
//! closing of both halves of a pipe together. Four workers, so ConnectionBinds often
//! land on another worker than the allocation's and must be handed over.

use crate::common;

use common::client::{TurnClient, TurnRequests};
use common::tcp_client::{connection_id, TcpTurn};
use common::Server;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use switchboard_stun::{attr_type, Message, Method};

const ARGS: &[&str] = &[
    "--user",
    "alice:pw",
    "--allowed-peer-ip",
    "127.0.0.1",
    "--threads",
    "4",
    "--no-udp",
];

/// A threaded TCP echo server on 127.0.0.1; reports each connection's source address
/// when accepted and again when it ends.
fn echo_server() -> (SocketAddr, mpsc::Receiver<(SocketAddr, bool)>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let Ok(from) = s.peer_addr() else { continue };
            let tx = tx.clone();
            let _ = tx.send((from, true));
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = tx.send((from, false));
            });
        }
    });
    (addr, rx)
}

use common::client::relayed;

/// Bind a new data connection to `conn_id`; returns the raw pipe and the peer's
/// bytes that came right behind the ConnectionBind response.
fn bind_data(s: &Server, control: &TcpTurn, conn_id: u32) -> (TcpStream, Vec<u8>) {
    let mut d = TcpTurn::with_auth(s.tcp.expect("tcp"), control.auth.clone());
    let r = d.connection_bind(conn_id);
    assert!(r.ok(), "ConnectionBind failed: {:?}", r.code);
    d.into_pipe()
}

fn round_trip(pipe: &mut TcpStream, payload: &[u8]) {
    let mut writer = pipe.try_clone().expect("clone");
    let data = payload.to_vec();
    let t = std::thread::spawn(move || writer.write_all(&data).expect("write to pipe"));
    let mut got = vec![0u8; payload.len()];
    pipe.read_exact(&mut got).expect("echo comes back");
    t.join().expect("writer");
    assert!(got == payload, "echoed bytes differ");
}

#[test]
fn tcp_allocation_connects_to_peer_and_bytes_round_trip() {
    let s = Server::start(ARGS);
    let mut c = TcpTurn::connect(s.tcp.expect("tcp"), "alice", "pw");
    let a = c.allocate_tcp();
    assert!(a.ok(), "TCP allocate failed: {:?}", a.code);
    let relay = relayed(&a);
    // Several connections: with four workers some ConnectionBinds are handed over.
    // A peer each: the relayed address is fixed, so reconnecting to the same peer at
    // once would collide with the previous connection's TIME_WAIT.
    let mut total = 0;
    for i in 0..6 {
        let (echo, events) = echo_server();
        let r = c.connect_peer(echo);
        assert!(r.ok(), "Connect failed: {:?}", r.code);
        let conn_id = connection_id(&r);
        let (from, opened) = events
            .recv_timeout(Duration::from_secs(5))
            .expect("peer accepted");
        assert!(opened);
        assert_eq!(
            from, relay,
            "the peer connection comes from the relayed address"
        );
        let (mut pipe, _) = bind_data(&s, &c, conn_id);
        round_trip(&mut pipe, format!("hello over tcp #{i}").as_bytes());
        total += 2 * format!("hello over tcp #{i}").len();
        if i == 0 {
            // 4 MiB both ways: exercises the pipe's backpressure.
            let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
            round_trip(&mut pipe, &big);
            total += 2 * big.len();
        }
        // Closing the data connection closes the peer connection.
        drop(pipe);
        let (gone, opened) = events
            .recv_timeout(Duration::from_secs(5))
            .expect("peer connection closed");
        assert_eq!((gone, opened), (from, false));
    }
    let half = (total / 2) as u64;
    let bytes = s.metric_reaching("switchboard_turn_relayed_bytes_total", half);
    assert!(bytes >= half, "relayed bytes counted: {bytes}");
}

#[test]
fn peer_connecting_to_relayed_address_raises_connection_attempt() {
    let s = Server::start(ARGS);
    let mut c = TcpTurn::connect(s.tcp.expect("tcp"), "alice", "pw");
    let a = c.allocate_tcp();
    assert!(a.ok(), "TCP allocate failed: {:?}", a.code);
    let relay = relayed(&a);

    // Without a permission the connection is closed and nothing is announced.
    let mut stranger = TcpStream::connect(relay).expect("TCP handshake with the relay");
    stranger
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(
        matches!(stranger.read(&mut b), Ok(0) | Err(_)),
        "unpermitted peer must be closed"
    );
    assert!(c
        .indication(Method::CONNECTION_ATTEMPT, Duration::from_millis(300))
        .is_none());

    assert!(c
        .create_permission("127.0.0.1:1".parse().expect("addr"))
        .ok());
    for _ in 0..4 {
        let mut peer = TcpStream::connect(relay).expect("peer connects to the relay");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let ind = c
            .indication(Method::CONNECTION_ATTEMPT, Duration::from_secs(5))
            .expect("ConnectionAttempt");
        let m = Message::parse(&ind).expect("STUN");
        let peer_addr = peer.local_addr().expect("addr");
        assert_eq!(m.xor_address(attr_type::XOR_PEER_ADDRESS), Some(peer_addr));
        let conn_id = m.u32(attr_type::CONNECTION_ID).expect("CONNECTION-ID");
        // The peer may talk before the client binds: its bytes wait.
        peer.write_all(b"early words").expect("peer writes");
        let (mut pipe, mut got) = bind_data(&s, &c, conn_id);
        pipe.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut rest = vec![0u8; 11 - got.len()];
        pipe.read_exact(&mut rest).expect("client reads the peer");
        got.extend_from_slice(&rest);
        assert_eq!(got, b"early words");
        pipe.write_all(b"to the peer").expect("client writes");
        let mut got = [0u8; 11];
        peer.read_exact(&mut got).expect("peer reads the client");
        assert_eq!(&got, b"to the peer");
        // The peer closing closes the data connection.
        drop(peer);
        assert!(matches!(pipe.read(&mut got), Ok(0) | Err(_)));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while s.metric("switchboard_turn_tcp_peer_connections") != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "peer connections left open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refusals_over_real_sockets() {
    let s = Server::start(&["--user", "alice:pw", "--threads", "2"]);
    // Over UDP a TCP allocation is a bad request.
    let mut u = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    let r = u.request(Method::ALLOCATE, &|w| {
        w.u32(attr_type::REQUESTED_TRANSPORT, 6 << 24)?;
        Ok(())
    });
    assert_eq!(r.code, Some(400));

    let mut c = TcpTurn::connect(s.tcp.expect("tcp"), "alice", "pw");
    assert!(c.allocate_tcp().ok());
    // Loopback is denied by default (403); a closed port fails (447).
    let r = c.connect_peer("127.0.0.1:9".parse().expect("addr"));
    assert_eq!(r.code, Some(403));
    let mut d = TcpTurn::with_auth(s.tcp.expect("tcp"), c.auth.clone());
    assert_eq!(d.connection_bind(0x0BAD_F00D).code, Some(400));
}

#[test]
fn connect_to_closed_port_is_447_and_allocation_end_closes_pipes() {
    let s = Server::start(ARGS);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut c = TcpTurn::connect(s.tcp.expect("tcp"), "alice", "pw");
    assert!(c.allocate_tcp().ok());
    let r = c.connect_peer(closed);
    assert_eq!(r.code, Some(447));

    let (echo, events) = echo_server();
    let r = c.connect_peer(echo);
    assert!(r.ok());
    let _ = events.recv_timeout(Duration::from_secs(5));
    let (mut pipe, _) = bind_data(&s, &c, connection_id(&r));
    round_trip(&mut pipe, b"before the end");
    // Deleting the allocation (Refresh 0) closes the peer and data connections.
    let r = c.request(Method::REFRESH, &|w| {
        w.u32(attr_type::LIFETIME, 0)?;
        Ok(())
    });
    assert!(r.ok());
    let (_, opened) = events
        .recv_timeout(Duration::from_secs(5))
        .expect("peer connection closed");
    assert!(!opened);
    pipe.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(matches!(pipe.read(&mut b), Ok(0) | Err(_)));
}

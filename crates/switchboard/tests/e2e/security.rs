//! End to end over real sockets: relaying really reaches an allowed peer and back,
//! denied peers are refused, quotas, wrong and expired credentials, resilience to
//! a failing peer, and the size of answers to unauthenticated requests.

use crate::common;

use common::client::{TurnClient, TurnRequests};
use common::Server;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use switchboard_stun::{
    attr_type, ChannelData, Class, Message, MessageWriter, Method, TransactionId,
};

fn peer_socket() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let a = s.local_addr().expect("addr");
    (s, a)
}

#[test]
fn allowed_peer_receives_relayed_data_and_its_reply_comes_back() {
    let s = Server::start(&["--user", "alice:pw", "--allowed-peer-ip", "127.0.0.1"]);
    let (peer, peer_addr) = peer_socket();
    let mut c = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    let alloc = c.allocate();
    assert!(alloc.ok(), "allocate failed: {:?}", alloc.code);
    let relayed = c.relayed(&alloc);
    assert!(c.channel_bind(0x4001, peer_addr).ok());
    c.send_channel(0x4001, b"hello peer");
    let mut buf = [0u8; 2048];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("peer receives relayed data");
    assert_eq!(&buf[..n], b"hello peer");
    assert_eq!(from, relayed, "data must come from the relayed address");
    peer.send_to(b"hello client", from).expect("peer replies");
    let got = c.recv().expect("client receives the reply");
    let cd = ChannelData::parse(&got).expect("reply arrives as ChannelData");
    assert_eq!(cd.channel, 0x4001);
    assert_eq!(cd.payload, b"hello client");
}

#[test]
fn reply_without_channel_arrives_as_data_indication() {
    let s = Server::start(&["--user", "alice:pw", "--allowed-peer-ip", "127.0.0.1"]);
    let (peer, peer_addr) = peer_socket();
    let mut c = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    let relayed = {
        let a = c.allocate();
        c.relayed(&a)
    };
    assert!(c.create_permission(peer_addr).ok());
    peer.send_to(b"unsolicited but permitted", relayed)
        .expect("send");
    let got = c.recv().expect("Data indication");
    let m = Message::parse(&got).expect("STUN");
    assert_eq!((m.method, m.class), (Method::DATA, Class::Indication));
    assert_eq!(m.xor_address(attr_type::XOR_PEER_ADDRESS), Some(peer_addr));
    assert_eq!(
        m.get(attr_type::DATA),
        Some(&b"unsolicited but permitted"[..])
    );
}

#[test]
fn default_filter_refuses_internal_peers_on_create_permission_and_channel_bind() {
    let s = Server::start(&["--user", "alice:pw"]);
    let mut c = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    assert!(c.allocate().ok());
    let denied = [
        "127.0.0.1:5000",
        "0.0.0.0:5000",
        "10.0.0.1:5000",
        "100.64.0.1:5000",
        "169.254.169.254:80",
        "172.16.0.1:5000",
        "192.0.0.1:5000",
        "192.0.2.1:5000",
        "192.88.99.1:5000",
        "192.168.1.1:5000",
        "198.18.0.1:5000",
        "198.51.100.1:5000",
        "203.0.113.1:5000",
        "224.0.0.1:5000",
        "240.0.0.1:5000",
        "255.255.255.255:5000",
    ];
    for (i, p) in denied.iter().enumerate() {
        let peer: SocketAddr = p.parse().expect("addr");
        let r = c.create_permission(peer);
        assert_eq!(r.code, Some(403), "CreatePermission to {p} must be refused");
        let r = c.channel_bind(0x4000 + i as u16, peer);
        assert_eq!(r.code, Some(403), "ChannelBind to {p} must be refused");
    }
    let n = 2 * denied.len() as u64;
    assert_eq!(
        s.metric_reaching("switchboard_turn_peer_denied_total", n),
        n
    );
    // A global address is fine.
    assert!(c
        .create_permission("8.8.8.8:53".parse().expect("addr"))
        .ok());
}

#[test]
fn own_relay_address_is_always_a_valid_peer() {
    // No --allowed-peer-ip: loopback is denied, yet two clients of this server reach
    // each other through their relayed addresses.
    let s = Server::start(&["--user", "alice:pw", "--user", "bob:pw"]);
    let mut a = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    let mut b = TurnClient::new(s.udp.expect("udp"), "bob", "pw");
    let ra = a.allocate();
    let ra = a.relayed(&ra);
    let rb = b.allocate();
    let rb = b.relayed(&rb);
    assert!(a.channel_bind(0x4000, rb).ok());
    assert!(b.channel_bind(0x4000, ra).ok());
    a.send_channel(0x4000, b"a to b");
    let got = b.recv().expect("b receives");
    assert_eq!(
        ChannelData::parse(&got).expect("ChannelData").payload,
        b"a to b"
    );
    // Loopback outside the relay port range stays denied.
    assert_eq!(
        a.create_permission("127.0.0.1:80".parse().expect("addr"))
            .code,
        Some(403)
    );
}

#[test]
fn user_quota_gives_486_and_frees_on_release() {
    let s = Server::start(&[
        "--user",
        "alice:pw",
        "--user",
        "bob:pw",
        "--user-quota",
        "1",
    ]);
    let mut c1 = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    let mut c2 = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    let mut c3 = TurnClient::new(s.udp.expect("udp"), "bob", "pw");
    assert!(c1.allocate().ok());
    assert_eq!(c2.allocate().code, Some(486));
    assert!(c3.allocate().ok(), "another user is not affected");
    assert!(c1.refresh(0).ok());
    assert!(c2.allocate().ok(), "released allocation frees the quota");
    assert_eq!(
        s.metric_reaching("switchboard_turn_quota_rejections_total", 1),
        1
    );
}

#[test]
fn total_quota_gives_486() {
    let s = Server::start(&["--user", "alice:pw", "--total-quota", "2"]);
    let mut cs: Vec<_> = (0..3)
        .map(|_| TurnClient::new(s.udp.expect("udp"), "alice", "pw"))
        .collect();
    assert!(cs[0].allocate().ok());
    assert!(cs[1].allocate().ok());
    assert_eq!(cs[2].allocate().code, Some(486));
}

#[test]
fn wrong_password_and_expired_rest_credentials_get_401() {
    let s = Server::start(&["--user", "alice:pw", "--static-auth-secret", "s3cret"]);
    let mut wrong = TurnClient::new(s.udp.expect("udp"), "alice", "not-the-password");
    assert_eq!(wrong.allocate().code, Some(401));
    let rest = |expiry: u64| {
        let c = switchboard_turn::rest::mint(b"s3cret", expiry, "carol");
        (c.username, c.password)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (u, p) = rest(now - 10);
    let mut expired = TurnClient::new(s.udp.expect("udp"), &u, &p);
    assert_eq!(
        expired.allocate().code,
        Some(401),
        "expired REST credential"
    );
    let (u, p) = rest(now + 3600);
    let mut valid = TurnClient::new(s.udp.expect("udp"), &u, &p);
    assert!(valid.allocate().ok(), "valid REST credential");
    assert!(s.metric_reaching("switchboard_turn_auth_failures_total", 2) >= 2);
}

#[test]
fn a_failing_peer_does_not_tear_down_the_allocation() {
    // Sending to the broadcast address without SO_BROADCAST fails in the kernel (EACCES);
    // coturn closes the whole allocation on such errors, we must not.
    let s = Server::start(&[
        "--user",
        "alice:pw",
        "--allowed-peer-ip",
        "127.0.0.1",
        "--allowed-peer-ip",
        "255.255.255.255",
    ]);
    let (peer, peer_addr) = peer_socket();
    let mut c = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    assert!(c.allocate().ok());
    assert!(c
        .channel_bind(0x4001, "255.255.255.255:9".parse().expect("addr"))
        .ok());
    assert!(c.channel_bind(0x4002, peer_addr).ok());
    for _ in 0..20 {
        c.send_channel(0x4001, b"doomed");
    }
    c.send_channel(0x4002, b"still alive");
    let mut buf = [0u8; 64];
    let (n, _) = peer.recv_from(&mut buf).expect("good peer still receives");
    assert_eq!(&buf[..n], b"still alive");
    assert!(c.refresh(600).ok(), "allocation still exists");
    let name = "switchboard_turn_dropped_packets_total{reason=\"send_error\"}";
    assert!(s.metric_reaching(name, 20) >= 20);
}

/// Bytes of the answer to an unauthenticated request of the given attributes.
fn answer_size(server: SocketAddr, method: Method, fingerprint: bool) -> (usize, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut b = [0u8; 128];
    let mut w =
        MessageWriter::new(&mut b, method, Class::Request, TransactionId([9; 12])).expect("w");
    if method == Method::ALLOCATE {
        w.u32(attr_type::REQUESTED_TRANSPORT, 17 << 24)
            .expect("attr");
    }
    if fingerprint {
        w.fingerprint().expect("fp");
    }
    let n = w.finish();
    sock.send_to(&b[..n], server).expect("send");
    let mut rx = [0u8; 1500];
    let (m, _) = sock.recv_from(&mut rx).expect("answer");
    (n, m)
}

#[test]
fn unauthenticated_answers_stay_small() {
    let s = Server::start(&["--user", "alice:pw", "--realm", "sb"]);
    let udp = s.udp.expect("udp");
    // Binding: 20-byte request, 32-byte answer; with FINGERPRINT 28 -> 40.
    let (req, resp) = answer_size(udp, Method::BINDING, false);
    assert!(resp as f64 <= 1.6 * req as f64, "binding {req} -> {resp}");
    let (req, resp) = answer_size(udp, Method::BINDING, true);
    assert!(
        resp as f64 <= 1.5 * req as f64,
        "binding+fp {req} -> {resp}"
    );
    // 401 to an Allocate carries only ERROR-CODE (no reason), REALM and NONCE.
    let (req, resp) = answer_size(udp, Method::ALLOCATE, true);
    eprintln!("unauthenticated Allocate {req} bytes -> 401 of {resp} bytes");
    assert!(resp <= 20 + 8 + 8 + 20 + 8, "401 is {resp} bytes");
}

#[test]
fn unauthenticated_answers_are_rate_limited_per_source() {
    let s = Server::start(&["--user", "alice:pw", "--unauth-rate", "5"]);
    let udp = s.udp.expect("udp");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut answered = 0;
    for i in 0..50u8 {
        let mut b = [0u8; 64];
        let mut w = MessageWriter::new(
            &mut b,
            Method::ALLOCATE,
            Class::Request,
            TransactionId([i; 12]),
        )
        .expect("w");
        w.u32(attr_type::REQUESTED_TRANSPORT, 17 << 24)
            .expect("attr");
        let n = w.finish();
        sock.send_to(&b[..n], udp).expect("send");
    }
    let mut rx = [0u8; 256];
    while sock.recv_from(&mut rx).is_ok() {
        answered += 1;
    }
    assert!(
        answered <= 12,
        "{answered} of 50 unauthenticated requests answered (burst is 10)"
    );
    assert!(
        answered >= 5,
        "the first requests are answered ({answered})"
    );
    assert!(s.metric_reaching("switchboard_turn_unauth_rate_limited_total", 38) >= 38);
}

//! Operations end to end: SIGHUP reload keeps allocations, SIGTERM drains, RFC 5780
//! behaviour discovery with two listening IPs, IPv6 and dual-stack relaying.

use crate::common;

use common::client::{TurnClient, TurnRequests};
use common::{require, Server};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_stun::{
    attr_type, ChannelData, Class, Message, MessageWriter, Method, TransactionId,
};

fn echo_on(addr: &str) -> SocketAddr {
    let sock = UdpSocket::bind(addr).expect("bind echo");
    let a = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    a
}

#[test]
fn sighup_reloads_users_and_filters_without_dropping_allocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("switchboard.toml");
    std::fs::write(
        &cfg,
        "user = [\"alice:pw\"]\nallowed-peer-ip = [\"127.0.0.1\"]\n",
    )
    .expect("write");
    let s = Server::start(&["--config", cfg.to_str().expect("path")]);
    let peer = echo_on("127.0.0.1:0");
    let mut alice = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    assert!(alice.allocate().ok());
    assert!(alice.channel_bind(0x4000, peer).ok());
    let mut bob = TurnClient::new(s.udp.expect("udp"), "bob", "pw2");
    assert_eq!(bob.allocate().code, Some(401), "bob unknown before reload");

    std::fs::write(
        &cfg,
        "user = [\"alice:pw\", \"bob:pw2\"]\nallowed-peer-ip = [\"127.0.0.1\"]\n",
    )
    .expect("write");
    s.signal(libc::SIGHUP);
    assert!(s
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .is_some());
    std::thread::sleep(Duration::from_millis(400)); // workers pick it up within 250 ms
    let mut bob = TurnClient::new(s.udp.expect("udp"), "bob", "pw2");
    assert!(bob.allocate().ok(), "bob known after reload");
    alice.send_channel(0x4000, b"still relayed");
    let got = alice
        .recv()
        .expect("alice's allocation survived the reload");
    assert_eq!(
        ChannelData::parse(&got).expect("cd").payload,
        b"still relayed"
    );
    assert!(alice.refresh(600).ok());

    // A broken file is refused and the running configuration stays.
    std::fs::write(&cfg, "user = [\"no-colon\"]\n").expect("write");
    s.signal(libc::SIGHUP);
    assert!(s
        .wait_log("reload refused", Duration::from_secs(5))
        .is_some());
    let mut bob2 = TurnClient::new(s.udp.expect("udp"), "bob", "pw2");
    assert!(bob2.allocate().ok(), "old configuration still in force");
}

#[test]
fn sigterm_drains_then_exits() {
    let mut s = Server::start(&["--user", "alice:pw", "--drain-timeout", "20"]);
    let mut alice = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    assert!(alice.allocate().ok());
    s.signal(libc::SIGTERM);
    assert!(s.wait_log("draining", Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_millis(400));
    let mut late = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    assert_eq!(
        late.allocate().code,
        Some(508),
        "no new allocations while draining"
    );
    assert!(alice.refresh(600).ok(), "existing allocation still served");
    let t0 = Instant::now();
    assert!(alice.refresh(0).ok());
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "did not exit after the last allocation ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}

#[test]
fn sigterm_gives_up_after_drain_timeout() {
    let mut s = Server::start(&["--user", "alice:pw", "--drain-timeout", "1"]);
    let mut alice = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    assert!(alice.allocate().ok());
    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(6));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(t0.elapsed() >= Duration::from_millis(900));
}

fn binding(sock: &UdpSocket, to: SocketAddr, change: Option<u32>) -> Option<(Vec<u8>, SocketAddr)> {
    let mut b = [0u8; 64];
    let mut w = MessageWriter::new(
        &mut b,
        Method::BINDING,
        Class::Request,
        TransactionId(rand::random()),
    )
    .ok()?;
    if let Some(flags) = change {
        w.u32(attr_type::CHANGE_REQUEST, flags).ok()?;
    }
    let n = w.finish();
    sock.send_to(&b[..n], to).ok()?;
    let mut rx = [0u8; 512];
    let (n, from) = sock.recv_from(&mut rx).ok()?;
    Some((rx[..n].to_vec(), from))
}

/// A server with RFC 5780 on (two loopback IPs, a fixed port pair).
fn rfc5780_server() -> (Server, u16) {
    let port = common::free_port_pair();
    let p = port.to_string();
    let s = Server::start_raw(&[
        "serve",
        "-p",
        &p,
        "-L",
        "127.0.0.1",
        "-L",
        "127.0.0.2",
        "--user",
        "a:b",
        "--metrics-listen",
        "off",
    ]);
    (s, port)
}

#[test]
fn rfc5780_behaviour_discovery_with_two_listening_ips() {
    let (_s, port) = rfc5780_server();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let primary: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (resp, from) = binding(&sock, primary, None).expect("plain binding answered");
    let m = Message::parse(&resp).expect("stun");
    let other: SocketAddr = format!("127.0.0.2:{}", port + 1).parse().expect("addr");
    assert_eq!(m.address(attr_type::OTHER_ADDRESS), Some(other));
    assert_eq!(m.address(attr_type::RESPONSE_ORIGIN), Some(primary));
    assert_eq!(from, primary);
    let (resp, from) = binding(&sock, primary, Some(0x6)).expect("change ip+port answered");
    assert_eq!(from, other, "answer comes from the other IP and port");
    assert_eq!(
        Message::parse(&resp)
            .expect("stun")
            .address(attr_type::RESPONSE_ORIGIN),
        Some(other)
    );
    let (_, from) = binding(&sock, primary, Some(0x2)).expect("change port answered");
    assert_eq!(
        from,
        format!("127.0.0.1:{}", port + 1)
            .parse::<SocketAddr>()
            .expect("addr")
    );
}

/// coturn's own RFC 5780 client agrees: loopback maps and filters endpoint-independently.
#[test]
#[ignore = "interop: needs coturn's turnutils_natdiscovery (apt-get install coturn); scripts/test-all.sh runs it"]
fn rfc5780_coturn_natdiscovery_agrees() {
    require("turnutils_natdiscovery");
    let (_s, port) = rfc5780_server();
    let p = port.to_string();
    let out = Command::new("turnutils_natdiscovery")
        .args(["-m", "-f", "-p", &p, "127.0.0.1"])
        .output()
        .expect("run turnutils_natdiscovery");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Endpoint Independent Mapping"),
        "natdiscovery said:\n{text}"
    );
    assert!(
        text.contains("Endpoint Independent Filtering"),
        "natdiscovery said:\n{text}"
    );
}

#[test]
fn rfc5780_is_off_with_one_ip_and_change_request_gets_420() {
    let s = Server::start(&["--user", "a:b"]);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let (resp, _) = binding(&sock, s.udp.expect("udp"), Some(0x6)).expect("answered");
    let m = Message::parse(&resp).expect("stun");
    assert_eq!(
        switchboard_client::error_code(&m),
        Some(switchboard_stun::ErrorCode::UNKNOWN_ATTRIBUTE)
    );
    let (resp, _) = binding(&sock, s.udp.expect("udp"), None).expect("answered");
    let m = Message::parse(&resp).expect("stun");
    assert!(m.address(attr_type::OTHER_ADDRESS).is_none());
}

#[test]
fn ipv6_listener_and_dual_stack_allocation_relay_both_families() {
    let s = Server::start(&[
        "-L",
        "::1",
        "--relay-ip",
        "::1",
        "--relay-ip",
        "127.0.0.1",
        "--user",
        "alice:pw",
        "--allowed-peer-ip",
        "::1",
        "--allowed-peer-ip",
        "127.0.0.1",
    ]);
    let udp = s.udp.expect("udp");
    assert!(udp.is_ipv6());
    let peer4 = echo_on("127.0.0.1:0");
    let peer6 = echo_on("[::1]:0");
    let mut c = TurnClient::new(udp, "alice", "pw");
    let r = c.request(Method::ALLOCATE, &|w| {
        w.u32(attr_type::REQUESTED_TRANSPORT, 17 << 24)?;
        w.u32(attr_type::ADDITIONAL_ADDRESS_FAMILY, 0x0200_0000)?;
        Ok(())
    });
    assert!(r.ok(), "dual allocation: {:?}", r.code);
    let relays = r.relayed();
    assert_eq!(relays.len(), 2, "{relays:?}");
    assert!(relays.iter().any(|a| a.is_ipv4()) && relays.iter().any(|a| a.is_ipv6()));
    assert!(c.channel_bind(0x4000, peer4).ok());
    assert!(c.channel_bind(0x4001, peer6).ok());
    for (ch, msg) in [(0x4000u16, &b"over v4"[..]), (0x4001, &b"over v6"[..])] {
        c.send_channel(ch, msg);
        let got = c.recv().expect("echo through relay");
        let cd = ChannelData::parse(&got).expect("cd");
        assert_eq!((cd.channel, cd.payload), (ch, msg));
    }
    // IPv4-mapped form of a denied IPv4 address is refused on the IPv6 relay.
    let mapped: SocketAddr = "[::ffff:10.0.0.1]:9".parse().expect("addr");
    assert_eq!(c.create_permission(mapped).code, Some(403));
    let mapped_loop: SocketAddr = "[::ffff:127.0.0.2]:9".parse().expect("addr");
    assert_eq!(c.create_permission(mapped_loop).code, Some(403));
}

#[test]
fn a_second_sigterm_exits_at_once_while_draining() {
    let mut s = Server::start(&["--user", "alice:pw", "--drain-timeout", "60"]);
    let mut alice = TurnClient::new(s.udp.expect("udp"), "alice", "pw");
    assert!(alice.allocate().ok());
    s.signal(libc::SIGTERM);
    assert!(s.wait_log("draining", Duration::from_secs(5)).is_some());
    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "second signal must end the drain, not wait for the allocation or the 60 s timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}

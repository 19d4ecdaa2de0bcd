//! Peer address filtering (CVE-2020-26262 and the IPv4-mapped/compatible bypass), the
//! operator's allow/deny lists, own relay addresses and configuration reload.

mod common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use switchboard_turn::{IpRange, PeerFilter, ServerConfig};

const DENIED_V4: &[&str] = &[
    "127.0.0.1",
    "0.0.0.0",
    "10.0.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "172.16.0.1",
    "192.0.0.1",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.0.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
];

const DENIED_V6: &[&str] = &[
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "2001::1",
    "2002::1",
    "64:ff9b:1::1",
    "100::1",
];

/// Port outside the relay range, so 127.0.0.1 is not mistaken for an own relay address.
const PEER_PORT: u16 = 8080;

fn security_config() -> ServerConfig {
    let mut cfg = config();
    cfg.relay_ips = vec![ip("127.0.0.1")];
    cfg.min_port = 49152;
    cfg.max_port = 65535;
    cfg
}

/// A server with loopback relays and one client holding a dual allocation.
fn setup(cfg: ServerConfig) -> (H, Client) {
    let mut h = H::with_relays(cfg, FakeRelays::loopback());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_dual(&mut c);
    (h, c)
}

fn peer(ip_str: &str) -> SocketAddr {
    SocketAddr::new(ip(ip_str), PEER_PORT)
}

fn mapped(v4: &str) -> String {
    format!("::ffff:{v4}")
}

fn compatible(v4: &str) -> String {
    format!("::{v4}")
}

/// Both CreatePermission and ChannelBind must be refused with 403 and leave no state.
fn assert_refused(h: &mut H, c: &mut Client, p: SocketAddr) {
    let out = h.permit(c, &[p]);
    assert_eq!(out.code(), Some(403), "CreatePermission to {p} must be 403");
    out.err_signed(403, c);
    let out = h.bind(c, 0x4000, p);
    assert_eq!(out.code(), Some(403), "ChannelBind to {p} must be 403");
    let a = h.server.allocation(h.alloc_id(c)).unwrap();
    assert!(a.permissions.is_empty(), "no permission for {p}");
    assert!(a.channels.is_empty(), "no channel for {p}");
}

#[test]
fn default_denied_ipv4_ranges_are_refused() {
    let (mut h, mut c) = setup(security_config());
    for ip_str in DENIED_V4 {
        assert_refused(&mut h, &mut c, peer(ip_str));
    }
    assert_eq!(h.server.stats.peer_denied, 2 * DENIED_V4.len() as u64);
}

#[test]
fn default_denied_ipv6_ranges_are_refused() {
    let (mut h, mut c) = setup(security_config());
    for ip_str in DENIED_V6 {
        assert_refused(&mut h, &mut c, peer(ip_str));
    }
}

#[test]
fn ipv4_mapped_forms_of_denied_addresses_are_refused() {
    let (mut h, mut c) = setup(security_config());
    for ip_str in DENIED_V4 {
        let m = mapped(ip_str);
        assert!(matches!(ip(&m), IpAddr::V6(_)));
        assert_refused(&mut h, &mut c, peer(&m));
    }
}

#[test]
fn ipv4_compatible_forms_of_denied_addresses_are_refused() {
    let (mut h, mut c) = setup(security_config());
    for ip_str in DENIED_V4 {
        let m = compatible(ip_str);
        assert!(matches!(ip(&m), IpAddr::V6(_)));
        assert_refused(&mut h, &mut c, peer(&m));
    }
}

#[test]
fn global_addresses_are_allowed() {
    let (mut h, mut c) = setup(security_config());
    for p in [
        "8.8.8.8:53",
        "1.1.1.1:443",
        "[2606:4700::1111]:443",
        "[::ffff:8.8.8.8]:53",
        "[64:ff9b::808:808]:53",
    ] {
        h.permit(&mut c, &[sa(p)]).ok(&c);
    }
    h.bind_ok(&mut c, 0x4000, sa("8.8.4.4:3478"));
    h.bind_ok(&mut c, 0x4001, sa("[2001:4860:4860::8888]:3478"));
    assert_eq!(h.server.stats.peer_denied, 0);
}

#[test]
fn nat64_form_of_denied_address_is_refused() {
    let (mut h, mut c) = setup(security_config());
    // 64:ff9b::7f00:1 embeds 127.0.0.1; 64:ff9b::a9fe:a9fe embeds 169.254.169.254.
    assert_refused(&mut h, &mut c, peer("64:ff9b::7f00:1"));
    assert_refused(&mut h, &mut c, peer("64:ff9b::a9fe:a9fe"));
}

#[test]
fn allowed_peer_ip_opens_a_denied_range() {
    let mut cfg = security_config();
    cfg.peer_filter = PeerFilter::new(vec!["10.1.0.0/16".parse().unwrap()], Vec::new());
    let (mut h, mut c) = setup(cfg);
    h.permit(&mut c, &[peer("10.1.2.3")]).ok(&c);
    h.bind_ok(&mut c, 0x4000, peer("10.1.200.200"));
    // Also in IPv4-mapped form, judged by the embedded address.
    h.permit(&mut c, &[peer("::ffff:10.1.2.3")]).ok(&c);
    // Outside the allowed block the default still applies.
    h.permit(&mut c, &[peer("10.2.0.1")]).err_signed(403, &c);
    h.permit(&mut c, &[peer("192.168.0.1")]).err_signed(403, &c);
}

#[test]
fn denied_peer_ip_closes_a_global_range() {
    let mut cfg = security_config();
    let denied: IpRange = "8.8.8.0/24".parse().unwrap();
    cfg.peer_filter = PeerFilter::new(Vec::new(), vec![denied]);
    let (mut h, mut c) = setup(cfg);
    assert_refused(&mut h, &mut c, peer("8.8.8.8"));
    assert_refused(&mut h, &mut c, peer("::ffff:8.8.8.8"));
    h.permit(&mut c, &[peer("8.8.4.4")]).ok(&c);
}

#[test]
fn own_relay_address_is_allowed_despite_loopback_denial() {
    let (mut h, mut a) = setup(security_config());
    let relay_a = h
        .server
        .allocation(h.alloc_id(&a))
        .unwrap()
        .relay_v4
        .unwrap();
    assert_eq!(relay_a.ip(), ip("127.0.0.1"));
    assert!((49152..=65535).contains(&relay_a.port()));

    let mut b = Client::udp("203.0.113.8:40001");
    let relay_b = h.allocate_ok(&mut b)[0];
    h.permit(&mut b, &[relay_a]).ok(&b);
    h.bind_ok(&mut b, 0x4000, relay_a);
    let out = h.chan_data(&b, 0x4000, b"to a");
    assert_eq!(out.peer(), (relay_b, relay_a, &b"to a"[..]));

    // The other way round, and the data from b's relay arrives at a.
    h.permit(&mut a, &[relay_b]).ok(&a);
    let id_a = h.alloc_id(&a);
    let out = h.peer_sends(id_a, relay_b, b"from b");
    assert_eq!(out.to(), a.tuple);
}

#[test]
fn loopback_outside_relay_port_range_is_refused() {
    let (mut h, mut c) = setup(security_config());
    for port in [PEER_PORT, 22, 49151, 3478] {
        assert_refused(&mut h, &mut c, SocketAddr::new(ip("127.0.0.1"), port));
    }
    // Another loopback address with a relay port is not one of ours.
    assert_refused(&mut h, &mut c, sa("127.0.0.2:50000"));
}

#[test]
fn set_config_removes_permissions_and_channels_to_newly_denied_peers() {
    let cfg = security_config();
    let (mut h, mut c) = setup(cfg.clone());
    h.permit_ok(&mut c, &[sa("8.8.8.8:53"), sa("1.1.1.1:53")]);
    h.bind_ok(&mut c, 0x4000, sa("8.8.8.8:53"));
    h.bind_ok(&mut c, 0x4001, sa("1.1.1.1:53"));
    let id = h.alloc_id(&c);

    let mut new_cfg = cfg;
    new_cfg.peer_filter = PeerFilter::new(Vec::new(), vec!["8.8.8.0/24".parse().unwrap()]);
    h.server.set_config(Arc::new(new_cfg));

    let a = h.server.allocation(id).unwrap();
    assert!(!a.has_permission(ip("8.8.8.8"), h.now));
    assert!(a.has_permission(ip("1.1.1.1"), h.now));
    assert_eq!(a.channel_peer(0x4000, h.now), None);
    assert_eq!(a.channel_peer(0x4001, h.now), Some(sa("1.1.1.1:53")));

    assert!(h.chan_data(&c, 0x4000, b"x").is_none());
    assert!(h.send_ind(&c, sa("8.8.8.8:53"), b"x").is_none());
    assert!(h.peer_sends(id, sa("8.8.8.8:53"), b"x").is_none());
    assert!(!h.chan_data(&c, 0x4001, b"x").is_none());
    // New requests see the new filter.
    h.permit(&mut c, &[sa("8.8.8.8:53")]).err_signed(403, &c);
}

#[test]
fn denied_peer_is_not_reachable_by_send_indication() {
    let (mut h, c) = setup(security_config());
    // No permission can exist for a denied peer, so Send indications to it are dropped.
    for ip_str in ["127.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "::1"] {
        assert!(h.send_ind(&c, peer(ip_str), b"x").is_none());
    }
}

#[test]
fn own_relay_permission_does_not_open_other_ports_of_that_ip() {
    // Permissions are per IP (RFC 8656 §9), so a permission installed for the server's own
    // relay 127.0.0.1:<relay port> must not let Send indications reach 127.0.0.1:<any port>.
    let (mut h, mut a) = setup(security_config());
    let relay_a = h
        .server
        .allocation(h.alloc_id(&a))
        .unwrap()
        .relay_v4
        .unwrap();
    let mut b = Client::udp("203.0.113.8:40001");
    h.allocate_ok(&mut b);
    h.permit(&mut b, &[relay_a]).ok(&b);
    assert_eq!(h.send_ind(&b, relay_a, b"ok").peer().1, relay_a);
    let dropped = h.server.stats.dropped_no_permission;
    for port in [22, 53, 6379, 8080, 49151] {
        let target = SocketAddr::new(ip("127.0.0.1"), port);
        assert!(
            h.send_ind(&b, target, b"x").is_none(),
            "Send indication to {target} must be dropped"
        );
    }
    assert_eq!(h.server.stats.dropped_no_permission, dropped + 5);
    // The same through the IPv4-mapped form on the IPv6 relay.
    h.permit(&mut a, &[sa("[::ffff:127.0.0.1]:50002")]).ok(&a);
    assert!(h.send_ind(&a, sa("[::ffff:127.0.0.1]:22"), b"x").is_none());
}

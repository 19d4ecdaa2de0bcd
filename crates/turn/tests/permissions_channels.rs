//! CreatePermission (RFC 8656 §9) and ChannelBind (RFC 8656 §12).

mod common;

use common::*;
use switchboard_stun::Method;

const P1: &str = "8.8.8.8:3478";
const P2: &str = "1.1.1.1:5000";
const P3: &str = "9.9.9.9:6000";

fn setup() -> (H, Client) {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 3600);
    (h, c)
}

#[test]
fn create_permission_installs_several_peers_at_once() {
    let (mut h, mut c) = setup();
    let out = h.permit(&mut c, &[sa(P1), sa(P2), sa(P3)]);
    let m = out.ok(&c);
    assert_eq!(m.method, Method::CREATE_PERMISSION);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    for p in [P1, P2, P3] {
        assert!(a.has_permission(sa(p).ip(), h.now), "permission for {p}");
    }
    assert_eq!(a.permissions.len(), 3);
    for p in [P1, P2, P3] {
        assert!(!h.send_ind(&c, sa(p), b"hi").is_none(), "relay to {p}");
    }
}

#[test]
fn permission_is_per_ip_address_not_port() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa("8.8.8.8:1000")]);
    let out = h.send_ind(&c, sa("8.8.8.8:2000"), b"any port");
    assert_eq!(out.peer().1, sa("8.8.8.8:2000"));
    let id = h.alloc_id(&c);
    assert!(!h.peer_sends(id, sa("8.8.8.8:3000"), b"x").is_none());
}

#[test]
fn create_permission_without_peer_is_400() {
    let (mut h, mut c) = setup();
    h.permit(&mut c, &[]).err_signed(400, &c);
}

#[test]
fn create_permission_family_mismatch_is_443() {
    let (mut h, mut c) = setup();
    let out = h.permit(&mut c, &[sa("[2606:4700::1111]:443")]);
    let m = out.err_signed(443, &c);
    assert_eq!(error_reason(&m), "Peer Address Family Mismatch");
}

#[test]
fn create_permission_with_one_denied_peer_is_403_and_installs_nothing() {
    let (mut h, mut c) = setup();
    let out = h.permit(&mut c, &[sa(P1), sa("10.0.0.1:80"), sa(P2)]);
    out.err_signed(403, &c);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert!(
        a.permissions.is_empty(),
        "all or nothing: {:?}",
        a.permissions
    );
    assert!(h.send_ind(&c, sa(P1), b"x").is_none());
    assert_eq!(h.server.stats.peer_denied, 1);
}

#[test]
fn create_permission_without_allocation_is_437() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.permit(&mut c, &[sa(P1)]).err_signed(437, &c);
}

#[test]
fn create_permission_with_other_username_is_441() {
    let (mut h, c) = setup();
    let mut bob = c.clone().user("bob", "builder");
    bob.nonce.clear();
    h.permit(&mut bob, &[sa(P1)]).err_signed(441, &bob);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert!(a.permissions.is_empty());
}

#[test]
fn channel_bind_succeeds_and_relays() {
    let (mut h, mut c) = setup();
    let out = h.bind(&mut c, 0x4000, sa(P1));
    let m = out.ok(&c);
    assert_eq!(m.method, Method::CHANNEL_BIND);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!(a.channel_peer(0x4000, h.now), Some(sa(P1)));
    assert_eq!(a.channel_for_peer(&sa(P1), h.now), Some(0x4000));
    let out = h.chan_data(&c, 0x4000, b"payload");
    assert_eq!(
        out.peer(),
        (sa("198.51.100.1:50000"), sa(P1), &b"payload"[..])
    );
    // The top of RFC 8656's range and of RFC 5766's (accepted for old clients) work too.
    h.bind_ok(&mut c, 0x4FFF, sa(P2));
    h.bind_ok(&mut c, 0x7FFF, sa(P3));
    assert_eq!(h.chan_data(&c, 0x7FFF, b"old").peer().1, sa(P3));
}

#[test]
fn channel_bind_number_out_of_range_is_400() {
    let (mut h, mut c) = setup();
    // CHANNEL_MAX is 0x7FFF (RFC 5766's range, kept for old clients; see
    // switchboard_stun::CHANNEL_MAX), so 0x5000 is accepted and 0x8000 is the first refused.
    assert_eq!(switchboard_stun::CHANNEL_MAX, 0x7FFF);
    for number in [0x3FFF, 0x8000, 0x0000, 0xFFFF] {
        h.bind(&mut c, number, sa(P1)).err_signed(400, &c);
    }
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert!(a.channels.is_empty());
    assert!(a.permissions.is_empty());
}

#[test]
fn channel_bind_without_peer_is_400() {
    let (mut h, mut c) = setup();
    let req = Req::new(Method::CHANNEL_BIND).channel(0x4000);
    h.signed(&mut c, req).err_signed(400, &c);
}

#[test]
fn channel_bind_without_channel_number_is_400() {
    let (mut h, mut c) = setup();
    let req = Req::new(Method::CHANNEL_BIND).peer(sa(P1));
    h.signed(&mut c, req).err_signed(400, &c);
}

#[test]
fn channel_bind_same_channel_to_another_peer_is_400() {
    let (mut h, mut c) = setup();
    h.bind_ok(&mut c, 0x4000, sa(P1));
    h.bind(&mut c, 0x4000, sa(P2)).err_signed(400, &c);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!(a.channel_peer(0x4000, h.now), Some(sa(P1)));
}

#[test]
fn channel_bind_same_peer_to_another_channel_is_400() {
    let (mut h, mut c) = setup();
    h.bind_ok(&mut c, 0x4000, sa(P1));
    h.bind(&mut c, 0x4001, sa(P1)).err_signed(400, &c);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!(a.channel_for_peer(&sa(P1), h.now), Some(0x4000));
    assert_eq!(a.channel_peer(0x4001, h.now), None);
    // Same IP, different port is a different peer transport address.
    h.bind_ok(&mut c, 0x4001, sa("8.8.8.8:3479"));
}

#[test]
fn channel_bind_rebinding_same_pair_refreshes() {
    let (mut h, mut c) = setup();
    h.bind_ok(&mut c, 0x4000, sa(P1));
    h.advance_secs(500);
    h.bind_ok(&mut c, 0x4000, sa(P1));
    h.advance_secs(250); // 750 s after the first bind, 250 s after the second
    h.tick();
    let out = h.chan_data(&c, 0x4000, b"still bound");
    assert_eq!(out.peer().1, sa(P1));
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!(a.channels.len(), 1);
}

#[test]
fn channel_bind_installs_permission() {
    let (mut h, mut c) = setup();
    h.bind_ok(&mut c, 0x4000, sa(P1));
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert!(a.has_permission(sa(P1).ip(), h.now));
    // A Send indication to the peer works without CreatePermission.
    let out = h.send_ind(&c, sa("8.8.8.8:9"), b"via send");
    assert_eq!(out.peer().2, b"via send");
}

#[test]
fn channel_bind_to_denied_peer_is_403() {
    let (mut h, mut c) = setup();
    h.bind(&mut c, 0x4000, sa("192.168.1.1:80"))
        .err_signed(403, &c);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert!(a.channels.is_empty() && a.permissions.is_empty());
}

#[test]
fn channel_bind_family_mismatch_is_443() {
    let (mut h, mut c) = setup();
    h.bind(&mut c, 0x4000, sa("[2606:4700::1111]:443"))
        .err_signed(443, &c);
}

#[test]
fn channel_bind_without_allocation_is_437() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.bind(&mut c, 0x4000, sa(P1)).err_signed(437, &c);
}

#[test]
fn create_permission_refreshes_existing_permission() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa(P1)]);
    h.advance_secs(200);
    h.permit_ok(&mut c, &[sa(P1)]);
    h.advance_secs(200); // 400 s after the first, 200 s after the refresh
    assert!(!h.send_ind(&c, sa(P1), b"x").is_none());
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!(a.permissions.len(), 1);
}

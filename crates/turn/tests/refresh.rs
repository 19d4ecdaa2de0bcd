//! Refresh (RFC 8656 §7.3) and allocation deletion.

mod common;

use common::*;
use switchboard_stun::{attr_type, Method};

#[test]
fn refresh_extends_allocation_past_original_expiry() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    h.advance_secs(500);
    let out = h.refresh(&mut c, Some(600));
    assert_eq!(out.ok(&c).u32(attr_type::LIFETIME), Some(600));
    // Past the original expiry (600 s) but within the refreshed one (1100 s).
    h.advance_secs(400);
    h.tick();
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.relays.closed.len(), 0);
    h.advance_secs(200);
    h.tick();
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.relays.closed.len(), 1);
}

#[test]
fn refresh_without_lifetime_uses_default() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    let out = h.refresh(&mut c, None);
    assert_eq!(out.ok(&c).u32(attr_type::LIFETIME), Some(600));
}

#[test]
fn refresh_lifetime_is_clamped_to_max() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    let out = h.refresh(&mut c, Some(99999));
    assert_eq!(out.ok(&c).u32(attr_type::LIFETIME), Some(3600));
}

#[test]
fn refresh_lifetime_below_default_gets_default() {
    // RFC 8656 §7.3: the desired lifetime is max(min(requested, maximum), default).
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    let out = h.refresh(&mut c, Some(30));
    assert_eq!(out.ok(&c).u32(attr_type::LIFETIME), Some(600));
    h.advance_secs(60);
    h.tick();
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn refresh_lifetime_zero_deletes_allocation() {
    let mut cfg = config();
    cfg.user_quota = 1;
    let mut h = H::new(cfg);
    let mut c = Client::udp("203.0.113.7:40001");
    let relay = h.allocate_ok(&mut c)[0];
    let peer = sa("8.8.8.8:3478");
    h.bind_ok(&mut c, 0x4001, peer);
    assert!(!h.chan_data(&c, 0x4001, b"before").is_none());

    let out = h.refresh(&mut c, Some(0));
    assert_eq!(out.ok(&c).u32(attr_type::LIFETIME), Some(0));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.allocation_for(&c.tuple), None);
    assert!(!h.relays.is_open(relay), "relay closed");
    assert_eq!(h.quotas.total(), 0, "quota released");
    assert_eq!(h.server.stats.allocations, 0);

    let dropped = h.server.stats.dropped_no_permission;
    assert!(h.chan_data(&c, 0x4001, b"after").is_none());
    assert_eq!(h.server.stats.dropped_no_permission, dropped + 1);

    // A second deletion finds nothing (RFC 8656 §7.3: 437).
    h.refresh(&mut c, Some(0)).err_signed(437, &c);
    // The quota is free again.
    let mut c2 = Client::udp("203.0.113.7:40002");
    h.allocate_ok(&mut c2);
}

#[test]
fn refresh_without_allocation_is_437() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let out = h.refresh(&mut c, Some(600));
    let m = out.err_signed(437, &c);
    assert_eq!(error_reason(&m), "Allocation Mismatch");
}

#[test]
fn refresh_with_other_username_on_same_five_tuple_is_441() {
    let mut h = H::new(config());
    let mut alice = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut alice);
    let mut bob = Client::udp("203.0.113.7:40001").user("bob", "builder");
    h.refresh(&mut bob, Some(600)).err_signed(441, &bob);
    h.refresh(&mut bob, Some(0)).err_signed(441, &bob);
    assert_eq!(
        h.server.allocation_count(),
        1,
        "bob cannot delete alice's allocation"
    );
}

#[test]
fn refresh_requested_address_family_mismatch_is_443() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    let req = Req::new(Method::REFRESH)
        .lifetime(600)
        .attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    h.signed(&mut c, req).err_signed(443, &c);
    let req = Req::new(Method::REFRESH)
        .lifetime(600)
        .attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[1, 0, 0, 0]);
    h.signed(&mut c, req).ok(&c);
}

#[test]
fn refresh_zero_with_family_deletes_one_half_of_dual_allocation() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let (v4, v6) = h.allocate_dual(&mut c);
    let req = Req::new(Method::REFRESH)
        .lifetime(0)
        .attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    h.signed(&mut c, req).ok(&c);
    assert!(!h.relays.is_open(v6));
    assert!(h.relays.is_open(v4));
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!((a.relay_v4, a.relay_v6), (Some(v4), None));
    // IPv6 peers are now a family mismatch.
    h.permit(&mut c, &[sa("[2606:4700::1111]:443")])
        .err_signed(443, &c);
}

#[test]
fn refresh_over_tcp_from_other_connection_is_437() {
    let mut h = H::new(config());
    let mut c = Client::tcp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    let mut other = Client::tcp("203.0.113.7:40002");
    h.refresh(&mut other, Some(600)).err_signed(437, &other);
}

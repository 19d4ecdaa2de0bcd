//! Allocate (RFC 8656 §7.2, RFC 6156 / RFC 8656 dual allocation) and quotas.

mod common;

use std::net::SocketAddr;

use common::*;
use std::sync::Arc;
use switchboard_stun::{attr_type, Class, Method};
use switchboard_turn::{Quotas, Server};

fn allocate_req() -> Req {
    Req::new(Method::ALLOCATE).udp_transport()
}

fn lifetime_of(h: &mut H, requested: Option<u32>) -> u32 {
    let mut c = Client::udp("203.0.113.7:40001");
    let mut req = allocate_req();
    if let Some(l) = requested {
        req = req.lifetime(l);
    }
    let out = h.signed(&mut c, req);
    out.ok(&c).u32(attr_type::LIFETIME).expect("LIFETIME")
}

#[test]
fn allocate_success_carries_relay_lifetime_mapped_software_integrity_fingerprint() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let out = h.signed(&mut c, allocate_req().fingerprint());
    assert_eq!(out.to(), c.tuple);
    let m = out.ok(&c);
    assert_eq!(m.method, Method::ALLOCATE);
    assert_eq!(relayed_addresses(&m), vec![sa("198.51.100.1:50000")]);
    assert_eq!(m.u32(attr_type::LIFETIME), Some(600));
    assert_eq!(
        m.xor_address(attr_type::XOR_MAPPED_ADDRESS),
        Some(c.tuple.client)
    );
    let software = m.get(attr_type::SOFTWARE).expect("SOFTWARE");
    assert!(software.starts_with(b"Switchboard"));
    assert!(m.verify_fingerprint());
    assert_eq!(h.relays.opened.len(), 1);
    assert!(!h.relays.opened[0].v6);
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.server.stats.allocations, 1);
    assert_eq!(h.server.stats.allocations_created, 1);
    assert_eq!(h.quotas.total(), 1);
}

#[test]
fn allocate_default_lifetime_is_600() {
    let mut h = H::new(config());
    assert_eq!(lifetime_of(&mut h, None), 600);
}

#[test]
fn allocate_requested_lifetime_1200_is_granted() {
    let mut h = H::new(config());
    assert_eq!(lifetime_of(&mut h, Some(1200)), 1200);
}

#[test]
fn allocate_requested_lifetime_above_max_is_clamped_to_3600() {
    let mut h = H::new(config());
    assert_eq!(lifetime_of(&mut h, Some(99999)), 3600);
}

#[test]
fn allocate_requested_lifetime_below_default_gets_default() {
    let mut h = H::new(config());
    assert_eq!(lifetime_of(&mut h, Some(10)), 600);
}

#[test]
fn allocate_retransmission_gets_same_success_without_second_relay() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.get_nonce(&mut c);
    let req = c.sign(allocate_req());
    let first = h.request(c.tuple, &req);
    first.ok(&c);
    let again = h.request(c.tuple, &req);
    assert_eq!(again, first, "retransmission must get the same response");
    assert_eq!(h.relays.opened.len(), 1);
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.quotas.total(), 1);
}

#[test]
fn different_allocate_on_same_five_tuple_is_437() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    h.allocate(&mut c).err_signed(437, &c);
    assert_eq!(h.relays.opened.len(), 1);
}

#[test]
fn allocate_without_requested_transport_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.signed(&mut c, Req::new(Method::ALLOCATE))
        .err_signed(400, &c);
    assert!(h.relays.opened.is_empty());
}

#[test]
fn allocate_unsupported_transport_is_442() {
    // SCTP (132); TCP (6) is RFC 6062, see tests/tcp_relay.rs.
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let req = Req::new(Method::ALLOCATE).attr(attr_type::REQUESTED_TRANSPORT, &[132, 0, 0, 0]);
    let out = h.signed(&mut c, req);
    let m = out.err_signed(442, &c);
    assert_eq!(error_reason(&m), "Unsupported Transport Protocol");
    assert!(h.relays.opened.is_empty());
}

#[test]
fn requested_address_family_ipv6_opens_v6_relay() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req().attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    let out = h.signed(&mut c, req);
    let m = out.ok(&c);
    assert_eq!(relayed_addresses(&m), vec![sa("[2001:db8::100]:50000")]);
    assert_eq!(h.relays.opened.len(), 1);
    assert!(h.relays.opened[0].v6);
}

#[test]
fn requested_address_family_ipv4_opens_v4_relay() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req().attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[1, 0, 0, 0]);
    let m_out = h.signed(&mut c, req);
    assert_eq!(
        relayed_addresses(&m_out.ok(&c)),
        vec![sa("198.51.100.1:50000")]
    );
}

#[test]
fn requested_and_additional_address_family_together_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req()
        .attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[1, 0, 0, 0])
        .attr(attr_type::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    h.signed(&mut c, req).err_signed(400, &c);
    assert!(h.relays.opened.is_empty());
}

#[test]
fn additional_address_family_ipv6_gives_dual_allocation() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let (v4, v6) = h.allocate_dual(&mut c);
    assert_eq!(v4, sa("198.51.100.1:50000"));
    assert_eq!(v6, sa("[2001:db8::100]:50001"));
    assert_eq!(h.relays.opened.len(), 2);
    assert!(!h.relays.opened[0].v6 && h.relays.opened[1].v6);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!((a.relay_v4, a.relay_v6), (Some(v4), Some(v6)));
}

#[test]
fn dual_allocation_without_ipv6_gives_one_relay_and_address_error_code_440() {
    let mut h = H::new(config());
    h.relays.fail_v6 = Some(Fail::NoFamily);
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req().attr(attr_type::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    let out = h.signed(&mut c, req);
    let m = out.ok(&c);
    assert_eq!(relayed_addresses(&m), vec![sa("198.51.100.1:50000")]);
    let aec = m
        .get(attr_type::ADDRESS_ERROR_CODE)
        .expect("ADDRESS-ERROR-CODE");
    assert_eq!(aec[0], 2, "family IPv6");
    assert_eq!((aec[2] & 7) as u16 * 100 + aec[3] as u16, 440);
}

#[test]
fn relay_without_requested_family_is_440() {
    let mut h = H::new(config());
    h.relays.fail_v6 = Some(Fail::NoFamily);
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req().attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    h.signed(&mut c, req).err_signed(440, &c);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.quotas.total(), 0, "quota released after a failed open");
}

#[test]
fn relay_ports_exhausted_is_508() {
    let mut cfg = config();
    cfg.user_quota = 1;
    let mut h = H::new(cfg);
    h.relays.fail_v4 = Some(Fail::Exhausted);
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate(&mut c).err_signed(508, &c);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.quotas.total(), 0);
    // The failed attempt did not use up the user's quota.
    h.relays.fail_v4 = None;
    h.allocate_ok(&mut c);
}

#[test]
fn reservation_token_is_508() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req().attr(attr_type::RESERVATION_TOKEN, &[1, 2, 3, 4, 5, 6, 7, 8]);
    h.signed(&mut c, req).err_signed(508, &c);
    assert!(h.relays.opened.is_empty());
}

#[test]
fn reservation_token_with_even_port_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req()
        .attr(attr_type::EVEN_PORT, &[0x80])
        .attr(attr_type::RESERVATION_TOKEN, &[1, 2, 3, 4, 5, 6, 7, 8]);
    h.signed(&mut c, req).err_signed(400, &c);
    assert!(h.relays.opened.is_empty());
}

#[test]
fn even_port_with_r_bit_reserves_the_next_port_for_a_token() {
    let mut h = H::new(config());
    h.relays.next_port = 50001;
    let mut rtp = Client::udp("203.0.113.7:40001");
    let out = h.signed(&mut rtp, allocate_req().attr(attr_type::EVEN_PORT, &[0x80]));
    let msg = out.ok(&rtp);
    let relay = relayed_addresses(&msg)[0];
    assert_eq!(relay.port() % 2, 0, "RTP relay port is even");
    let token = msg
        .get(attr_type::RESERVATION_TOKEN)
        .expect("RESERVATION-TOKEN in the response")
        .to_vec();
    assert_eq!(token.len(), 8);
    // The RTCP allocation from another 5-tuple claims the reserved port with the token.
    let mut rtcp = Client::udp("203.0.113.7:40002");
    let out = h.signed(
        &mut rtcp,
        allocate_req().attr(attr_type::RESERVATION_TOKEN, &token),
    );
    let rtcp_relay = relayed_addresses(&out.ok(&rtcp))[0];
    assert_eq!(rtcp_relay, SocketAddr::new(relay.ip(), relay.port() + 1));
    // A token works once.
    let mut again = Client::udp("203.0.113.7:40003");
    let req = allocate_req().attr(attr_type::RESERVATION_TOKEN, &token);
    h.signed(&mut again, req).err_signed(508, &again);
}

#[test]
fn reservation_lapses_after_30_seconds() {
    let mut h = H::new(config());
    let mut rtp = Client::udp("203.0.113.7:40001");
    let out = h.signed(&mut rtp, allocate_req().attr(attr_type::EVEN_PORT, &[0x80]));
    let token = out
        .ok(&rtp)
        .get(attr_type::RESERVATION_TOKEN)
        .expect("token")
        .to_vec();
    h.advance_secs(31);
    let mut rtcp = Client::udp("203.0.113.7:40002");
    let req = allocate_req().attr(attr_type::RESERVATION_TOKEN, &token);
    h.signed(&mut rtcp, req).err_signed(508, &rtcp);
}

#[test]
fn reservation_token_with_requested_family_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let req = allocate_req()
        .attr(attr_type::REQUESTED_ADDRESS_FAMILY, &[1, 0, 0, 0])
        .attr(attr_type::RESERVATION_TOKEN, &[1, 2, 3, 4, 5, 6, 7, 8]);
    h.signed(&mut c, req).err_signed(400, &c);
}

#[test]
fn even_port_is_passed_to_the_relay() {
    let mut h = H::new(config());
    h.relays.next_port = 50001;
    let mut c = Client::udp("203.0.113.7:40001");
    let out = h.signed(&mut c, allocate_req().attr(attr_type::EVEN_PORT, &[0]));
    let relays = relayed_addresses(&out.ok(&c));
    assert!(h.relays.opened[0].even_port);
    assert_eq!(relays[0].port() % 2, 0);
}

#[test]
fn draining_server_refuses_new_allocations_with_508() {
    let mut h = H::new(config());
    let mut old = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut old);
    h.server.set_draining(true);
    let mut c = Client::udp("203.0.113.7:40002");
    h.allocate(&mut c).err_signed(508, &c);
    assert_eq!(h.server.allocation_count(), 1);
    // Existing allocations keep working.
    h.refresh(&mut old, Some(600)).ok(&old);
    h.server.set_draining(false);
    h.allocate_ok(&mut c);
}

#[test]
fn user_quota_rejects_third_allocation_with_486() {
    let mut cfg = config();
    cfg.user_quota = 2;
    let mut h = H::new(cfg);
    let mut a1 = Client::udp("203.0.113.7:40001");
    let mut a2 = Client::udp("203.0.113.7:40002");
    let mut a3 = Client::udp("203.0.113.7:40003");
    h.allocate_ok(&mut a1);
    h.allocate_ok(&mut a2);
    let out = h.allocate(&mut a3);
    let m = out.err_signed(486, &a3);
    assert_eq!(error_reason(&m), "Allocation Quota Reached");
    assert_eq!(h.server.stats.quota_rejections, 1);
    assert_eq!(h.relays.opened.len(), 2);

    let mut bob = Client::udp("203.0.113.7:40004").user("bob", "builder");
    h.allocate_ok(&mut bob);

    // Freeing one of alice's allocations lets her allocate again.
    h.refresh(&mut a1, Some(0)).ok(&a1);
    h.allocate_ok(&mut a3);
}

#[test]
fn total_quota_rejects_allocation_beyond_total_with_486() {
    let mut cfg = config();
    cfg.total_quota = 2;
    let mut h = H::new(cfg);
    let mut a = Client::udp("203.0.113.7:40001");
    let mut b = Client::udp("203.0.113.7:40002").user("bob", "builder");
    let mut c = Client::udp("203.0.113.7:40003").user("bob", "builder");
    h.allocate_ok(&mut a);
    h.allocate_ok(&mut b);
    h.allocate(&mut c).err_signed(486, &c);
    assert_eq!(h.server.stats.quota_rejections, 1);
    h.refresh(&mut a, Some(0)).ok(&a);
    h.allocate_ok(&mut c);
    assert_eq!(h.quotas.total(), 2);
}

#[test]
fn quotas_are_shared_between_servers() {
    let mut cfg = config();
    cfg.user_quota = 1;
    let cfg = Arc::new(cfg);
    let quotas = Arc::new(Quotas::default());
    let mut h1 = H::new((*cfg).clone());
    let mut h2 = H::new((*cfg).clone());
    h1.server = Server::new(cfg.clone(), quotas.clone(), h1.now, h1.unix0);
    h2.server = Server::new(cfg.clone(), quotas.clone(), h2.now, h2.unix0);
    let mut a = Client::udp("203.0.113.7:40001");
    let mut b = Client::udp("203.0.113.7:40002");
    h1.allocate_ok(&mut a);
    let out = h2.allocate(&mut b);
    assert_eq!(out.msg().class, Class::Error);
    out.err_signed(486, &b);
    assert_eq!(quotas.total(), 1);
}

//! STUN Binding (RFC 8489), RFC 5780 behaviour discovery, unknown attributes and methods.

mod common;

use common::*;
use switchboard_stun::{attr_type, Class, Method};
use switchboard_turn::{Rfc5780, Transport};

fn binding() -> Req {
    Req::new(Method::BINDING)
}

fn rfc5780_config() -> switchboard_turn::ServerConfig {
    let mut cfg = config();
    cfg.rfc5780 = Some(Rfc5780 {
        ips: [ip("192.0.2.200"), ip("192.0.2.201")],
        ports: [3478, 3479],
    });
    cfg
}

#[test]
fn binding_udp_ipv4_xor_mapped_address_is_client_address() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let req = binding();
    let tid = req.tid;
    let out = h.request(c.tuple, &req);
    assert_eq!(out.to(), c.tuple);
    assert_eq!(out.sent_from(), sa(SERVER_ADDR));
    let m = out.msg();
    assert_eq!(m.method, Method::BINDING);
    assert_eq!(m.class, Class::Success);
    assert_eq!(m.tid, tid);
    assert_eq!(
        m.xor_address(attr_type::XOR_MAPPED_ADDRESS),
        Some(sa("203.0.113.7:40001"))
    );
    assert_eq!(h.server.stats.binding_requests, 1);
}

#[test]
fn binding_udp_ipv6_xor_mapped_address_is_client_address() {
    let mut h = H::new(config());
    let mut c = Client::udp("[2001:db8:1:2::77]:40002");
    c.tuple.server = sa("[2001:db8::1]:3478");
    let out = h.request(c.tuple, &binding());
    let m = out.msg();
    assert_eq!(m.class, Class::Success);
    assert_eq!(
        m.xor_address(attr_type::XOR_MAPPED_ADDRESS),
        Some(sa("[2001:db8:1:2::77]:40002"))
    );
}

#[test]
fn binding_over_tcp_xor_mapped_address_is_client_address() {
    let mut h = H::new(config());
    let c = Client::tcp("203.0.113.8:51000");
    let out = h.request(c.tuple, &binding());
    assert_eq!(out.to().transport, Transport::Tcp);
    let m = out.msg();
    assert_eq!(m.class, Class::Success);
    assert_eq!(
        m.xor_address(attr_type::XOR_MAPPED_ADDRESS),
        Some(sa("203.0.113.8:51000"))
    );
}

#[test]
fn binding_fingerprint_is_echoed_only_when_request_had_one() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");

    let with = h.request(c.tuple, &binding().fingerprint());
    let m = with.msg();
    assert!(m.has_fingerprint());
    assert!(m.verify_fingerprint(), "FINGERPRINT must be correct");

    let without = h.request(c.tuple, &binding());
    assert!(!without.msg().has_fingerprint());
}

#[test]
fn binding_response_to_20_byte_request_is_small_and_has_no_software() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let req = binding().build();
    assert_eq!(req.len(), 20);
    let out = h.send(c.tuple, &req);
    let m = out.msg();
    assert!(
        out.data().len() * 10 <= req.len() * 16,
        "amplification: {} bytes for a 20-byte request",
        out.data().len()
    );
    assert!(!m.has(attr_type::SOFTWARE));
    assert!(!m.has_message_integrity());
}

#[test]
fn change_request_without_rfc5780_is_420_listing_0x0003() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let out = h.request(c.tuple, &binding().u32(attr_type::CHANGE_REQUEST, 0x6));
    let m = out.err(420);
    assert_eq!(
        m.get(attr_type::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x03][..])
    );
}

#[test]
fn rfc5780_binding_has_other_address_and_response_origin() {
    let mut h = H::new(rfc5780_config());
    let c = Client::udp("203.0.113.7:40001");
    let out = h.request(c.tuple, &binding());
    assert_eq!(out.sent_from(), sa("192.0.2.200:3478"));
    let m = out.msg();
    assert_eq!(m.class, Class::Success);
    assert_eq!(
        m.address(attr_type::OTHER_ADDRESS),
        Some(sa("192.0.2.201:3479"))
    );
    assert_eq!(
        m.address(attr_type::RESPONSE_ORIGIN),
        Some(sa("192.0.2.200:3478"))
    );
}

#[test]
fn rfc5780_change_request_changes_source_address() {
    let mut h = H::new(rfc5780_config());
    let c = Client::udp("203.0.113.7:40001");
    for (flags, expect) in [
        (0x0, "192.0.2.200:3478"),
        (0x4, "192.0.2.201:3478"),
        (0x2, "192.0.2.200:3479"),
        (0x6, "192.0.2.201:3479"),
    ] {
        let out = h.request(c.tuple, &binding().u32(attr_type::CHANGE_REQUEST, flags));
        assert_eq!(out.sent_from(), sa(expect), "CHANGE-REQUEST {flags:#x}");
        assert_eq!(out.to(), c.tuple);
        let m = out.msg();
        assert_eq!(m.class, Class::Success);
        assert_eq!(
            m.address(attr_type::RESPONSE_ORIGIN),
            Some(sa(expect)),
            "RESPONSE-ORIGIN for {flags:#x}"
        );
        assert_eq!(
            m.xor_address(attr_type::XOR_MAPPED_ADDRESS),
            Some(c.tuple.client)
        );
    }
}

#[test]
fn rfc5780_change_request_over_tcp_is_400() {
    let mut h = H::new(rfc5780_config());
    let c = Client::tcp("203.0.113.7:40001");
    let out = h.request(c.tuple, &binding().u32(attr_type::CHANGE_REQUEST, 0x4));
    assert_eq!(out.sent_from(), c.tuple.server);
    out.err(400);
}

#[test]
fn unknown_comprehension_required_attribute_is_420_listing_it() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let out = h.request(
        c.tuple,
        &binding()
            .attr(0x0031, b"abcd")
            .attr(0x7FFE, b"x")
            .fingerprint(),
    );
    let m = out.err(420);
    assert_eq!(
        m.get(attr_type::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x31, 0x7F, 0xFE][..])
    );
    assert!(m.verify_fingerprint());
}

#[test]
fn unknown_comprehension_required_attribute_in_turn_request_is_420() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let out = h.signed(
        &mut c,
        Req::new(Method::ALLOCATE)
            .udp_transport()
            .attr(0x0042, &[1, 2, 3, 4]),
    );
    let m = out.err(420);
    assert_eq!(
        m.get(attr_type::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x42][..])
    );
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn unknown_comprehension_optional_attribute_is_ignored() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let out = h.request(c.tuple, &binding().attr(0x8111, b"opt").attr(0xC0FE, b""));
    let m = out.msg();
    assert_eq!(m.class, Class::Success);
    assert_eq!(
        m.xor_address(attr_type::XOR_MAPPED_ADDRESS),
        Some(c.tuple.client)
    );
}

#[test]
fn unknown_method_request_is_400() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let out = h.request(c.tuple, &Req::new(Method(0x0155)));
    let m = out.err(400);
    assert_eq!(m.method, Method(0x0155));
    assert_eq!(error_reason(&m), "Bad Request");
}

#[test]
fn binding_indication_and_responses_get_no_answer() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    assert!(h
        .request(c.tuple, &Req::indication(Method::BINDING))
        .is_none());
    let mut resp = Req::new(Method::BINDING);
    resp.class = Class::Success;
    assert!(h.request(c.tuple, &resp).is_none());
}

#[test]
fn garbage_is_dropped_and_counted_as_malformed() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let mut bad = binding().build();
    bad[4] ^= 0xFF; // break the magic cookie
    assert!(h.send(c.tuple, &bad).is_none());
    assert!(h.send(c.tuple, &[0u8; 7]).is_none());
    assert_eq!(h.server.stats.dropped_malformed, 2);
}

#[test]
fn request_with_wrong_fingerprint_is_discarded() {
    // RFC 8489 §6.3 / §7.3: a FINGERPRINT that is present must be correct, otherwise the
    // message is not STUN (demultiplexing) and is silently discarded.
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let mut req = binding().fingerprint().build();
    let n = req.len();
    req[n - 1] ^= 0x01;
    assert!(h.send(c.tuple, &req).is_none());
    assert_eq!(h.server.stats.binding_requests, 0);
    assert_eq!(h.server.stats.dropped_malformed, 1);
}

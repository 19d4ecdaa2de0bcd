//! Relaying: Send/Data indications (RFC 8656 §10), ChannelData (§12.4, §12.5), max_bps.

mod common;

use common::*;
use switchboard_stun::{attr_type, Class, Message, Method};
use switchboard_turn::Transport;

const PEER: &str = "8.8.8.8:3478";
const RELAY: &str = "198.51.100.1:50000";

fn setup_with(cfg: switchboard_turn::ServerConfig, c: &mut Client) -> H {
    let mut h = H::new(cfg);
    h.allocate_long(c, 3600);
    h
}

fn setup() -> (H, Client) {
    let mut c = Client::udp("203.0.113.7:40001");
    let h = setup_with(config(), &mut c);
    (h, c)
}

#[test]
fn send_indication_with_permission_relays_exact_payload() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa(PEER)]);
    let payload: Vec<u8> = (0..=255u8).collect();
    let out = h.send_ind(&c, sa(PEER), &payload);
    let Out::Peer {
        alloc,
        relay,
        peer,
        data,
    } = out
    else {
        panic!("expected Transmit::Peer, got {out:?}");
    };
    assert_eq!(alloc, h.alloc_id(&c));
    assert_eq!(relay, sa(RELAY));
    assert_eq!(peer, sa(PEER));
    assert_eq!(data, payload);
    assert_eq!(h.server.stats.client_to_peer_packets, 1);
    assert_eq!(h.server.stats.client_to_peer_bytes, 256);
}

#[test]
fn send_indication_without_permission_is_dropped() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa("1.1.1.1:53")]);
    assert!(h.send_ind(&c, sa(PEER), b"nope").is_none());
    assert_eq!(h.server.stats.dropped_no_permission, 1);
    assert_eq!(h.server.stats.client_to_peer_packets, 0);
}

#[test]
fn send_indication_without_allocation_is_dropped() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    assert!(h.send_ind(&c, sa(PEER), b"nope").is_none());
}

#[test]
fn send_indication_with_unknown_required_attribute_is_dropped() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa(PEER)]);
    let ind = Req::indication(Method::SEND)
        .peer(sa(PEER))
        .attr(attr_type::DATA, b"x")
        .attr(0x0055, b"??");
    assert!(h.request(c.tuple, &ind).is_none());
}

#[test]
fn channel_data_on_bound_channel_goes_to_peer() {
    let (mut h, mut c) = setup();
    h.bind_ok(&mut c, 0x4001, sa(PEER));
    let out = h.chan_data(&c, 0x4001, b"hello peer");
    assert_eq!(out.peer(), (sa(RELAY), sa(PEER), &b"hello peer"[..]));
    // UDP datagrams may carry padding after the payload; it is not relayed.
    let padded = channel_data(0x4001, b"abc", true);
    assert_eq!(padded.len(), 8);
    let out = h.send(c.tuple, &padded);
    assert_eq!(out.peer().2, b"abc");
}

#[test]
fn channel_data_over_tcp_goes_to_peer() {
    let mut c = Client::tcp("203.0.113.7:40001");
    let mut h = setup_with(config(), &mut c);
    h.bind_ok(&mut c, 0x4001, sa(PEER));
    let out = h.chan_data(&c, 0x4001, b"hello");
    assert_eq!(out.peer(), (sa(RELAY), sa(PEER), &b"hello"[..]));
}

#[test]
fn channel_data_on_unbound_channel_is_dropped() {
    let (mut h, mut c) = setup();
    h.bind_ok(&mut c, 0x4001, sa(PEER));
    assert!(h.chan_data(&c, 0x4002, b"hello").is_none());
    assert_eq!(h.server.stats.dropped_no_permission, 1);
    // Declared length beyond the datagram: malformed.
    assert!(h.send(c.tuple, &[0x40, 0x01, 0x00, 0x10, 1, 2]).is_none());
    assert_eq!(h.server.stats.dropped_malformed, 1);
}

#[test]
fn peer_data_on_bound_channel_becomes_channel_data_udp() {
    let (mut h, mut c) = setup();
    h.bind_ok(&mut c, 0x4ABC, sa(PEER));
    let id = h.alloc_id(&c);
    let out = h.peer_sends(id, sa(PEER), b"12345");
    assert_eq!(out.to(), c.tuple);
    assert_eq!(out.sent_from(), c.tuple.server);
    assert_eq!(
        out.data(),
        &[0x4A, 0xBC, 0x00, 0x05, b'1', b'2', b'3', b'4', b'5'][..]
    );
    assert_eq!(h.server.stats.peer_to_client_packets, 1);
    assert_eq!(h.server.stats.peer_to_client_bytes, 5);
}

#[test]
fn peer_data_on_bound_channel_over_tcp_is_padded_to_four() {
    let mut c = Client::tcp("203.0.113.7:40001");
    let mut h = setup_with(config(), &mut c);
    h.bind_ok(&mut c, 0x4000, sa(PEER));
    let id = h.alloc_id(&c);
    let out = h.peer_sends(id, sa(PEER), b"12345");
    assert_eq!(
        out.data(),
        &[0x40, 0x00, 0x00, 0x05, b'1', b'2', b'3', b'4', b'5', 0, 0, 0][..]
    );
    let out = h.peer_sends(id, sa(PEER), b"1234");
    assert_eq!(
        out.data(),
        &[0x40, 0x00, 0x00, 0x04, b'1', b'2', b'3', b'4'][..]
    );
}

fn check_data_indication(out: &Out, peer: &str, payload: &[u8]) {
    let data = out.data();
    let m = Message::parse(data).expect("Data indication parses");
    assert_eq!(m.as_bytes().len(), data.len(), "no trailing bytes");
    assert_eq!(m.method, Method::DATA);
    assert_eq!(m.class, Class::Indication);
    assert_eq!(m.xor_address(attr_type::XOR_PEER_ADDRESS), Some(sa(peer)));
    assert_eq!(m.get(attr_type::DATA), Some(payload));
    assert!(!m.has_message_integrity() && !m.has_fingerprint());
    assert_eq!(data.len() % 4, 0);
}

#[test]
fn peer_data_without_channel_becomes_data_indication() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa(PEER)]);
    let id = h.alloc_id(&c);
    let out = h.peer_sends(id, sa(PEER), b"hello client");
    assert_eq!(out.to(), c.tuple);
    check_data_indication(&out, PEER, b"hello client");
    // Odd length: padded, DATA length exact. Transaction ids differ between indications.
    let out2 = h.peer_sends(id, sa(PEER), b"odd");
    check_data_indication(&out2, PEER, b"odd");
    assert_ne!(out.msg().tid, out2.msg().tid);
}

#[test]
fn peer_data_without_permission_is_dropped() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa("1.1.1.1:53")]);
    let id = h.alloc_id(&c);
    assert!(h.peer_sends(id, sa(PEER), b"unsolicited").is_none());
    assert_eq!(h.server.stats.dropped_no_permission, 1);
    assert_eq!(h.server.stats.peer_to_client_packets, 0);
}

#[test]
fn ipv6_peer_data_indication_and_send() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let (_, v6) = h.allocate_dual(&mut c);
    let peer = "[2606:4700::1111]:8443";
    h.permit_ok(&mut c, &[sa(peer)]);
    let id = h.alloc_id(&c);
    let out = h.peer_sends(id, sa(peer), b"from v6 peer");
    check_data_indication(&out, peer, b"from v6 peer");
    let out = h.send_ind(&c, sa(peer), b"to v6 peer");
    assert_eq!(out.peer(), (v6, sa(peer), &b"to v6 peer"[..]));
}

#[test]
fn ipv6_peer_channel_data_uses_v6_relay() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    let (v4, v6) = h.allocate_dual(&mut c);
    h.bind_ok(&mut c, 0x4000, sa("[2606:4700::1111]:8443"));
    h.bind_ok(&mut c, 0x4001, sa(PEER));
    assert_eq!(h.chan_data(&c, 0x4000, b"a").peer().0, v6);
    assert_eq!(h.chan_data(&c, 0x4001, b"b").peer().0, v4);
}

#[test]
fn max_bps_drops_over_budget_and_refills_after_one_second() {
    let mut cfg = config();
    cfg.max_bps = 1000;
    let mut c = Client::udp("203.0.113.7:40001");
    let mut h = setup_with(cfg, &mut c);
    h.permit_ok(&mut c, &[sa(PEER)]);
    let payload = [7u8; 200];
    let passed = (0..10)
        .filter(|_| !h.send_ind(&c, sa(PEER), &payload).is_none())
        .count();
    assert_eq!(passed, 5);
    assert_eq!(h.server.stats.dropped_bandwidth, 5);
    h.advance_secs(1);
    let passed = (0..10)
        .filter(|_| !h.send_ind(&c, sa(PEER), &payload).is_none())
        .count();
    assert_eq!(passed, 5);
    assert_eq!(h.server.stats.dropped_bandwidth, 10);
}

#[test]
fn max_bps_burst_is_capped_at_one_second_after_idling() {
    let mut cfg = config();
    cfg.max_bps = 1000;
    let mut c = Client::udp("203.0.113.7:40001");
    let mut h = setup_with(cfg, &mut c);
    h.permit_ok(&mut c, &[sa(PEER)]);
    h.advance_secs(30);
    let payload = [7u8; 200];
    let passed = (0..20)
        .filter(|_| !h.send_ind(&c, sa(PEER), &payload).is_none())
        .count();
    assert_eq!(
        passed, 5,
        "idle time must not accumulate more than max_bps bytes"
    );
}

#[test]
fn max_bps_counts_both_directions() {
    let mut cfg = config();
    cfg.max_bps = 1000;
    let mut c = Client::udp("203.0.113.7:40001");
    let mut h = setup_with(cfg, &mut c);
    h.bind_ok(&mut c, 0x4000, sa(PEER));
    let id = h.alloc_id(&c);
    let payload = [1u8; 400];
    assert!(!h.chan_data(&c, 0x4000, &payload).is_none());
    assert!(!h.peer_sends(id, sa(PEER), &payload).is_none());
    assert!(h.peer_sends(id, sa(PEER), &payload).is_none());
    assert!(h.chan_data(&c, 0x4000, &payload).is_none());
    assert_eq!(h.server.stats.dropped_bandwidth, 2);
}

#[test]
fn max_bps_zero_is_unlimited() {
    let (mut h, mut c) = setup();
    h.permit_ok(&mut c, &[sa(PEER)]);
    let payload = [0u8; 1200];
    for _ in 0..1000 {
        assert!(!h.send_ind(&c, sa(PEER), &payload).is_none());
    }
    assert_eq!(h.server.stats.dropped_bandwidth, 0);
}

#[test]
fn relayed_data_to_other_tuple_is_not_mixed_up() {
    let mut h = H::new(config());
    let mut a = Client::udp("203.0.113.7:40001");
    let mut b = Client::tcp("203.0.113.8:40001");
    let ra = h.allocate_ok(&mut a)[0];
    let rb = h.allocate_ok(&mut b)[0];
    assert_ne!(ra, rb);
    h.bind_ok(&mut a, 0x4000, sa(PEER));
    h.bind_ok(&mut b, 0x4000, sa("1.1.1.1:53"));
    assert_eq!(
        h.chan_data(&a, 0x4000, b"a").peer(),
        (ra, sa(PEER), &b"a"[..])
    );
    assert_eq!(
        h.chan_data(&b, 0x4000, b"b").peer(),
        (rb, sa("1.1.1.1:53"), &b"b"[..])
    );
    let id_b = h.alloc_id(&b);
    let out = h.peer_sends(id_b, sa("1.1.1.1:53"), b"x");
    assert_eq!(out.to().transport, Transport::Tcp);
    assert_eq!(out.to(), b.tuple);
}

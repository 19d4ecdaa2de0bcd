//! RFC 6062 TCP allocations: Allocate, Connect (answered when the driver reports the
//! outcome), ConnectionBind, ConnectionAttempt, timeouts and lifetimes.

mod common;

use common::*;
use std::net::SocketAddr;
use switchboard_stun::{attr_type, Class, Message, Method};
use switchboard_turn::server::tcp_relay::{BIND_TIMEOUT, CONNECT_TIMEOUT};
use switchboard_turn::{AllocId, Transport};

const PEER: &str = "8.8.8.8:80";
const CONTROL: &str = "203.0.113.7:40001";
const DATA: &str = "203.0.113.7:40002";

fn tcp_allocate_req() -> Req {
    Req::new(Method::ALLOCATE).attr(attr_type::REQUESTED_TRANSPORT, &[6, 0, 0, 0])
}

/// A TCP client with a TCP allocation; returns its id and relayed address.
fn setup() -> (H, Client, AllocId, SocketAddr) {
    let mut h = H::new(config());
    let mut c = Client::tcp(CONTROL);
    let out = h.signed(&mut c, tcp_allocate_req().lifetime(3600));
    let relay = relayed_addresses(&out.ok(&c))[0];
    let id = h.alloc_id(&c);
    (h, c, id, relay)
}

fn connect(h: &mut H, c: &mut Client, peer: SocketAddr) -> Out {
    h.signed(c, Req::new(Method::CONNECT).peer(peer))
}

/// The driver reports the outcome of the last connection the core started.
fn report(h: &mut H, ok: bool) -> (u32, Out) {
    let (_, conn_id, _, _) = *h.relays.tcp_connects.last().expect("a connect was started");
    let mut out = vec![0u8; 2048];
    let t = h
        .server
        .tcp_connect_result(h.now, conn_id, ok, &mut out, &mut h.relays);
    (conn_id, t.into())
}

fn connection_id(m: &Message) -> u32 {
    m.u32(attr_type::CONNECTION_ID).expect("CONNECTION-ID")
}

/// Connect to `peer` and let the driver report success; returns the connection id.
fn connected(h: &mut H, c: &mut Client, peer: SocketAddr) -> u32 {
    assert!(connect(h, c, peer).is_none());
    let (id, out) = report(h, true);
    assert_eq!(connection_id(&out.ok(c)), id);
    id
}

fn bind(h: &mut H, data: &mut Client, conn_id: u32) -> Out {
    h.signed(
        data,
        Req::new(Method::CONNECTION_BIND).u32(attr_type::CONNECTION_ID, conn_id),
    )
}

#[test]
fn allocate_tcp_over_udp_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp(CONTROL);
    h.signed(&mut c, tcp_allocate_req()).err_signed(400, &c);
    assert!(h.relays.opened.is_empty());
}

#[test]
fn allocate_tcp_over_tcp_opens_a_tcp_relay() {
    let (h, c, id, relay) = setup();
    assert_eq!(h.relays.tcp_opened, vec![(id, relay)]);
    assert!(h.server.allocation(id).expect("allocation").tcp);
    assert_eq!(h.server.allocation_for(&c.tuple), Some(id));
}

#[test]
fn allocate_tcp_over_tls_succeeds() {
    let mut h = H::new(config());
    let mut c = Client::new(Transport::Tls, CONTROL);
    h.signed(&mut c, tcp_allocate_req()).ok(&c);
    assert_eq!(h.relays.tcp_opened.len(), 1);
}

#[test]
fn allocate_tcp_with_even_port_dont_fragment_or_dual_is_400() {
    for attr in [
        (attr_type::EVEN_PORT, vec![0x80, 0, 0, 0]),
        (attr_type::DONT_FRAGMENT, vec![]),
        (attr_type::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
    ] {
        let mut h = H::new(config());
        let mut c = Client::tcp(CONTROL);
        h.signed(&mut c, tcp_allocate_req().attr(attr.0, &attr.1))
            .err_signed(400, &c);
        assert!(h.relays.opened.is_empty());
    }
}

#[test]
fn connect_to_denied_peer_is_403() {
    let (mut h, mut c, _, _) = setup();
    connect(&mut h, &mut c, sa("10.0.0.1:80")).err_signed(403, &c);
    assert!(h.relays.tcp_connects.is_empty());
    assert_eq!(h.server.stats.peer_denied, 1);
}

#[test]
fn connect_is_answered_only_when_the_driver_reports_success() {
    let (mut h, mut c, id, relay) = setup();
    let out = connect(&mut h, &mut c, sa(PEER));
    assert!(out.is_none(), "no answer before the connection completes");
    let (alloc, conn_id, from, peer) = h.relays.tcp_connects[0];
    assert_eq!((alloc, from, peer), (id, relay, sa(PEER)));
    // Connect installs a permission for the peer.
    let a = h.server.allocation(id).expect("allocation");
    assert!(a.has_permission(sa(PEER).ip(), h.now));
    let (reported, out) = report(&mut h, true);
    assert_eq!(reported, conn_id);
    assert_eq!(out.to(), c.tuple, "answer goes to the control connection");
    let m = out.ok(&c);
    assert_eq!(m.method, Method::CONNECT);
    assert_eq!(connection_id(&m), conn_id);
    assert!(h.relays.tcp_closed.is_empty());
}

#[test]
fn connect_failure_is_447() {
    let (mut h, mut c, _, _) = setup();
    assert!(connect(&mut h, &mut c, sa(PEER)).is_none());
    let (conn_id, out) = report(&mut h, false);
    let m = out.err_signed(447, &c);
    assert_eq!(error_reason(&m), "Connection Timeout or Failure");
    assert_eq!(h.relays.tcp_closed, vec![conn_id]);
    assert_eq!(h.server.tcp_connection_count(), 0);
    // The peer may be tried again.
    assert!(connect(&mut h, &mut c, sa(PEER)).is_none());
}

#[test]
fn connect_that_cannot_start_is_447_at_once() {
    let (mut h, mut c, _, _) = setup();
    h.relays.tcp_connect_fails = true;
    connect(&mut h, &mut c, sa(PEER)).err_signed(447, &c);
    assert_eq!(h.server.tcp_connection_count(), 0);
}

#[test]
fn connect_timeout_is_447_after_30_seconds() {
    let (mut h, mut c, _, _) = setup();
    assert!(connect(&mut h, &mut c, sa(PEER)).is_none());
    let conn_id = h.relays.tcp_connects[0].1;
    let mut out = vec![0u8; 2048];
    h.advance(CONNECT_TIMEOUT - std::time::Duration::from_secs(1));
    h.tick();
    assert!(h.server.next_deferred(&mut out).is_none());
    h.advance_secs(2);
    h.tick();
    let t: Out = h.server.next_deferred(&mut out).expect("447 owed").into();
    assert_eq!(t.to(), c.tuple);
    t.err_signed(447, &c);
    assert!(h.server.next_deferred(&mut out).is_none());
    assert_eq!(h.relays.tcp_closed, vec![conn_id]);
    // A late success report finds nothing and closes the socket.
    let late: Out = h
        .server
        .tcp_connect_result(h.now, conn_id, true, &mut out, &mut h.relays)
        .into();
    assert!(late.is_none());
}

#[test]
fn duplicate_connect_is_446_while_connecting_and_after() {
    let (mut h, mut c, _, _) = setup();
    assert!(connect(&mut h, &mut c, sa(PEER)).is_none());
    connect(&mut h, &mut c, sa(PEER)).err_signed(446, &c);
    report(&mut h, true).1.ok(&c);
    let out = connect(&mut h, &mut c, sa(PEER));
    assert_eq!(
        error_reason(&out.err_signed(446, &c)),
        "Connection Already Exists"
    );
    assert_eq!(h.relays.tcp_connects.len(), 1);
    // Another port of the same host is another connection.
    assert!(connect(&mut h, &mut c, sa("8.8.8.8:81")).is_none());
}

#[test]
fn connect_family_mismatch_is_443() {
    let (mut h, mut c, _, _) = setup();
    connect(&mut h, &mut c, sa("[2001:4860:4860::8888]:80")).err_signed(443, &c);
}

#[test]
fn connect_without_peer_is_400_and_on_udp_allocation_is_400() {
    let (mut h, mut c, _, _) = setup();
    h.signed(&mut c, Req::new(Method::CONNECT))
        .err_signed(400, &c);
    let mut u = Client::tcp("203.0.113.7:40009");
    h.signed(&mut u, Req::new(Method::ALLOCATE).udp_transport())
        .ok(&u);
    connect(&mut h, &mut u, sa(PEER)).err_signed(400, &u);
}

#[test]
fn connect_without_allocation_is_437() {
    let mut h = H::new(config());
    let mut c = Client::tcp(CONTROL);
    connect(&mut h, &mut c, sa(PEER)).err_signed(437, &c);
}

#[test]
fn connection_bind_with_unknown_id_is_400() {
    let (mut h, _, _, _) = setup();
    let mut d = Client::tcp(DATA);
    bind(&mut h, &mut d, 0x1234_5678).err_signed(400, &d);
    h.signed(&mut d, Req::new(Method::CONNECTION_BIND))
        .err_signed(400, &d);
    assert!(h.relays.tcp_binds.is_empty());
}

#[test]
fn connection_bind_pipes_the_data_connection_once() {
    let (mut h, mut c, _, _) = setup();
    let conn_id = connected(&mut h, &mut c, sa(PEER));
    let mut d = Client::tcp(DATA);
    let out = bind(&mut h, &mut d, conn_id);
    let m = out.ok(&d);
    assert_eq!(
        (m.method, m.class),
        (Method::CONNECTION_BIND, Class::Success)
    );
    assert_eq!(h.relays.tcp_binds, vec![(conn_id, d.tuple)]);
    let mut d2 = Client::tcp("203.0.113.7:40003");
    bind(&mut h, &mut d2, conn_id).err_signed(400, &d2);
    // Bound connections do not time out.
    h.advance(BIND_TIMEOUT * 2);
    h.tick();
    assert!(h.relays.tcp_closed.is_empty());
}

#[test]
fn connection_bind_needs_the_allocation_owners_credentials_and_a_stream() {
    let (mut h, mut c, _, _) = setup();
    let conn_id = connected(&mut h, &mut c, sa(PEER));
    let mut bob = Client::tcp(DATA).user("bob", "builder");
    bind(&mut h, &mut bob, conn_id).err_signed(441, &bob);
    let mut udp = Client::udp(DATA);
    bind(&mut h, &mut udp, conn_id).err_signed(400, &udp);
    // The control connection itself cannot become a data connection.
    bind(&mut h, &mut c, conn_id).err_signed(400, &c);
    assert!(h.relays.tcp_binds.is_empty());
}

#[test]
fn connection_not_bound_within_30_seconds_is_closed() {
    let (mut h, mut c, _, _) = setup();
    let conn_id = connected(&mut h, &mut c, sa(PEER));
    h.advance(BIND_TIMEOUT + std::time::Duration::from_secs(1));
    h.tick();
    assert_eq!(h.relays.tcp_closed, vec![conn_id]);
    let mut d = Client::tcp(DATA);
    bind(&mut h, &mut d, conn_id).err_signed(400, &d);
}

#[test]
fn incoming_connection_from_permitted_peer_sends_connection_attempt() {
    let (mut h, mut c, id, _) = setup();
    h.permit_ok(&mut c, &[sa(PEER)]);
    let peer = sa("8.8.8.8:45678");
    let mut out = vec![0u8; 2048];
    let (conn_id, t) = h
        .server
        .tcp_peer_connected(h.now, id, peer, &mut out)
        .expect("accepted");
    let t: Out = t.into();
    assert_eq!(t.to(), c.tuple);
    let m = t.msg();
    assert_eq!(
        (m.method, m.class),
        (Method::CONNECTION_ATTEMPT, Class::Indication)
    );
    assert_eq!(connection_id(&m), conn_id);
    assert_eq!(m.xor_address(attr_type::XOR_PEER_ADDRESS), Some(peer));
    let mut d = Client::tcp(DATA);
    bind(&mut h, &mut d, conn_id).ok(&d);
    assert_eq!(h.relays.tcp_binds, vec![(conn_id, d.tuple)]);
}

#[test]
fn incoming_connection_without_permission_is_refused() {
    let (mut h, mut c, id, _) = setup();
    h.permit_ok(&mut c, &[sa("1.1.1.1:53")]);
    let mut out = vec![0u8; 2048];
    assert!(h
        .server
        .tcp_peer_connected(h.now, id, sa(PEER), &mut out)
        .is_none());
    assert_eq!(h.server.tcp_connection_count(), 0);
    // Permissions expire for connections too.
    h.permit_ok(&mut c, &[sa(PEER)]);
    h.advance_secs(301);
    assert!(h
        .server
        .tcp_peer_connected(h.now, id, sa(PEER), &mut out)
        .is_none());
}

#[test]
fn deleting_the_allocation_closes_its_connections() {
    let (mut h, mut c, id, relay) = setup();
    let a = connected(&mut h, &mut c, sa(PEER));
    let b = connected(&mut h, &mut c, sa("8.8.4.4:443"));
    h.refresh(&mut c, Some(0)).ok(&c);
    let mut closed = h.relays.tcp_closed.clone();
    closed.sort_unstable();
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(closed, want);
    assert!(h.relays.closed.contains(&(id, relay)), "listener closed");
    assert_eq!(h.server.tcp_connection_count(), 0);
}

#[test]
fn closing_the_control_connection_or_expiry_closes_connections() {
    let (mut h, mut c, _, _) = setup();
    let a = connected(&mut h, &mut c, sa(PEER));
    let tuple = c.tuple;
    h.server.client_closed(&tuple, &mut h.relays);
    assert_eq!(h.relays.tcp_closed, vec![a]);

    let mut h = H::new(config());
    let mut c = Client::tcp(CONTROL);
    h.signed(&mut c, tcp_allocate_req()).ok(&c);
    let b = connected(&mut h, &mut c, sa(PEER));
    let mut d = Client::tcp(DATA);
    bind(&mut h, &mut d, b).ok(&d);
    h.advance_secs(601);
    h.tick();
    assert_eq!(h.relays.tcp_closed, vec![b]);
}

#[test]
fn driver_close_forgets_the_connection() {
    let (mut h, mut c, _, _) = setup();
    let a = connected(&mut h, &mut c, sa(PEER));
    h.server.tcp_closed(a);
    assert_eq!(h.server.tcp_connection_count(), 0);
    // The peer can be connected again.
    assert!(connect(&mut h, &mut c, sa(PEER)).is_none());
}

#[test]
fn no_channels_or_send_on_tcp_allocations() {
    let (mut h, mut c, _, _) = setup();
    h.bind(&mut c, 0x4000, sa(PEER)).err_signed(400, &c);
    h.permit_ok(&mut c, &[sa(PEER)]);
    assert!(h.send_ind(&c, sa(PEER), b"udp?").is_none());
    assert_eq!(h.server.stats.dropped_no_permission, 1);
}

#[test]
fn relayed_tcp_bytes_are_counted_and_charged_against_max_bps() {
    let mut cfg = config();
    cfg.max_bps = 1000;
    let mut h = H::new(cfg);
    let mut c = Client::tcp(CONTROL);
    h.signed(&mut c, tcp_allocate_req()).ok(&c);
    let conn = connected(&mut h, &mut c, sa(PEER));
    assert!(h.server.tcp_relayed(h.now, conn, true, 600));
    assert!(!h.server.tcp_relayed(h.now, conn, false, 600));
    assert_eq!(h.server.stats.client_to_peer_bytes, 600);
    assert_eq!(h.server.stats.peer_to_client_bytes, 600);
    h.advance_secs(1);
    assert!(h.server.tcp_relayed(h.now, conn, true, 600));
}

#[test]
fn connection_ids_tell_their_core() {
    let (mut h, mut c, _, _) = setup();
    h.server.set_connection_id_space(3, 2);
    for port in 1..=5 {
        let id = connected(&mut h, &mut c, SocketAddr::new(sa(PEER).ip(), port));
        assert_eq!(switchboard_turn::connection_owner(id, 3), 2);
    }
}

#[test]
fn connections_per_allocation_are_capped() {
    use switchboard_turn::server::tcp_relay::MAX_CONNECTIONS_PER_ALLOCATION;
    let (mut h, mut c, id, _) = setup();
    for port in 0..MAX_CONNECTIONS_PER_ALLOCATION as u16 {
        let peer = SocketAddr::new(sa(PEER).ip(), 1000 + port);
        assert!(connect(&mut h, &mut c, peer).is_none());
    }
    connect(&mut h, &mut c, sa("8.8.8.8:9999")).err_signed(508, &c);
    h.permit_ok(&mut c, &[sa(PEER)]);
    let mut out = vec![0u8; 2048];
    assert!(h
        .server
        .tcp_peer_connected(h.now, id, sa("8.8.8.8:5555"), &mut out)
        .is_none());
}

#[test]
fn reloaded_filter_closes_connections_to_newly_denied_peers() {
    let (mut h, mut c, _, _) = setup();
    let a = connected(&mut h, &mut c, sa(PEER));
    let mut cfg = config();
    cfg.peer_filter =
        switchboard_turn::PeerFilter::new(Vec::new(), vec!["8.8.8.0/24".parse().expect("range")]);
    h.server.set_config(std::sync::Arc::new(cfg));
    h.tick();
    assert_eq!(h.relays.tcp_closed, vec![a]);
    assert_eq!(h.server.tcp_connection_count(), 0);
}

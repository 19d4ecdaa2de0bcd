//! Transaction layer tests with fake time: timer schedules over UDP and TCP, ACK building,
//! absorption of retransmissions, CANCEL, limits and matching.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::message::Method;

mod server;

const PEER: &str = "192.0.2.7:5060";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn request(method: &str, branch: &str, call_id: &str, seq: u32) -> String {
    format!(
        "{method} sip:bob@biloxi.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:proxy.atlanta.example;lr>\r\n\
         To: Bob <sip:bob@biloxi.example>\r\n\
         From: Alice <sip:alice@atlanta.example>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {seq} {method}\r\n\
         Contact: <sip:alice@pc33.atlanta.example>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn owned(text: &str) -> Message<'static> {
    Message::parse(text.as_bytes()).unwrap().into_owned()
}

fn response(status: u16, branch: &str, method: &str, to_tag: Option<&str>) -> String {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SIP/2.0 {status} Whatever\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example:5060;branch={branch}\r\n\
         To: Bob <sip:bob@biloxi.example>{tag}\r\n\
         From: Alice <sip:alice@atlanta.example>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710\r\n\
         CSeq: 314159 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn transmits(layer: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

fn events(layer: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

fn text(t: &Transmit) -> String {
    String::from_utf8(t.bytes.to_vec()).unwrap()
}

fn start_line(t: &Transmit) -> String {
    text(t).lines().next().unwrap().to_owned()
}

/// Runs the timers up to `start + until`; what was sent, by offset from `start`.
fn run(layer: &mut TransactionLayer, start: Instant, until: Duration) -> Vec<(Duration, Transmit)> {
    let mut out = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > start + until {
            break;
        }
        layer.handle_timeout(at);
        assert!(
            !matches!(layer.poll_timeout(), Some(next) if next <= at),
            "timer did not advance"
        );
        for t in transmits(layer) {
            out.push((at - start, t));
        }
    }
    out
}

fn secs(list: &[(Duration, Transmit)]) -> Vec<f64> {
    list.iter().map(|(d, _)| d.as_secs_f64()).collect()
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(Config::default())
}

fn send_invite(layer: &mut TransactionLayer, now: Instant, transport: Transport) -> TxId {
    let invite = owned(&request(
        "INVITE",
        "z9hG4bK776asdhds",
        "a84b4c76e66710",
        314159,
    ));
    let id = layer.send_request(now, invite, peer(), transport).unwrap();
    let sent = transmits(layer);
    assert_eq!(sent.len(), 1);
    assert!(start_line(&sent[0]).starts_with("INVITE "));
    id
}

fn feed(layer: &mut TransactionLayer, now: Instant, text: &str, transport: Transport) {
    layer.handle_datagram(now, text.as_bytes(), peer(), transport);
}

#[test]
fn client_invite_udp_retransmits_with_timer_a_until_b() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Udp);
    let sent = run(&mut l, t0, Duration::from_secs(40));
    assert_eq!(secs(&sent), [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert!(sent
        .iter()
        .all(|(_, t)| start_line(t).starts_with("INVITE ")));
    assert_eq!(events(&mut l), [TxEvent::Timeout { tx: id }]);
    assert_eq!(l.counters().live(), 0);
    assert_eq!(l.counters().timeouts, 1);
    assert_eq!(l.counters().retransmissions, 6);
}

#[test]
fn client_invite_tcp_never_retransmits() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Tcp);
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    assert!(run(&mut l, t0, Duration::from_secs(40)).is_empty());
    assert_eq!(events(&mut l), [TxEvent::Timeout { tx: id }]);
}

#[test]
fn client_non_invite_udp_doubles_up_to_t2_until_f() {
    let mut l = layer();
    let t0 = Instant::now();
    let options = owned(&request("OPTIONS", "z9hG4bKopt1", "c1", 1));
    let id = l.send_request(t0, options, peer(), Transport::Udp).unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    let sent = run(&mut l, t0, Duration::from_secs(40));
    assert_eq!(
        secs(&sent),
        [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(events(&mut l), [TxEvent::Timeout { tx: id }]);
    assert_eq!(l.counters().live(), 0);
}

#[test]
fn client_non_invite_tcp_final_ends_at_once() {
    let mut l = layer();
    let t0 = Instant::now();
    let options = owned(&request("OPTIONS", "z9hG4bKopt1", "c1", 1));
    let id = l.send_request(t0, options, peer(), Transport::Tcp).unwrap();
    feed(
        &mut l,
        t0,
        &response(200, "z9hG4bKopt1", "OPTIONS", Some("x")),
        Transport::Tcp,
    );
    assert!(!l.contains(id));
    assert!(matches!(&events(&mut l)[..], [TxEvent::Response { tx, .. }] if *tx == id));
}

#[test]
fn client_non_invite_proceeding_then_final_waits_k() {
    let mut l = layer();
    let t0 = Instant::now();
    let reg = owned(&request("REGISTER", "z9hG4bKreg", "c1", 1));
    let id = l.send_request(t0, reg, peer(), Transport::Udp).unwrap();
    transmits(&mut l);
    feed(
        &mut l,
        t0 + Duration::from_millis(100),
        &response(100, "z9hG4bKreg", "REGISTER", None),
        Transport::Udp,
    );
    // Timer E still fires in Proceeding, and is then reset to T2 (§17.1.2.2).
    let sent = run(&mut l, t0, Duration::from_secs(5));
    assert_eq!(secs(&sent), [0.5, 4.5]);
    let t = t0 + Duration::from_secs(5);
    feed(
        &mut l,
        t,
        &response(401, "z9hG4bKreg", "REGISTER", Some("r")),
        Transport::Udp,
    );
    feed(
        &mut l,
        t,
        &response(401, "z9hG4bKreg", "REGISTER", Some("r")),
        Transport::Udp,
    );
    let ev = events(&mut l);
    assert_eq!(
        ev.len(),
        2,
        "1xx and one final; the retransmitted final is absorbed"
    );
    assert_eq!(l.poll_timeout(), Some(t + Duration::from_secs(5)));
    assert!(run(&mut l, t, Duration::from_secs(6)).is_empty());
    assert!(!l.contains(id));
}

#[test]
fn client_invite_non_2xx_builds_ack_and_resends_it() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Udp);
    feed(
        &mut l,
        t0,
        &response(180, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    // No more Timer A in Proceeding.
    assert!(run(&mut l, t0, Duration::from_secs(10)).is_empty());
    let t = t0 + Duration::from_secs(10);
    feed(
        &mut l,
        t,
        &response(486, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    let ack = Message::parse(&sent[0].bytes).unwrap();
    let Message::Request(ack) = ack else { panic!() };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri.to_string(), "sip:bob@biloxi.example");
    let h = &ack.headers;
    assert_eq!(h.values("Via").count(), 1);
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(h.to().unwrap().tag(), Some("b1"));
    assert_eq!(h.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(h.call_id().unwrap(), "a84b4c76e66710");
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Ack));
    assert_eq!(h.get("Route"), Some("<sip:proxy.atlanta.example;lr>"));
    let ev = events(&mut l);
    assert_eq!(ev.len(), 2);
    assert!(
        matches!(&ev[1], TxEvent::Response { tx, response: Message::Response(r) } if *tx == id && r.status == 486)
    );
    // The 486 again: the same ACK again, nothing for the TU.
    feed(
        &mut l,
        t,
        &response(486, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bytes, sent[0].bytes);
    assert!(events(&mut l).is_empty());
    // Timer D = 32 s.
    assert_eq!(l.poll_timeout(), Some(t + Duration::from_secs(32)));
    run(&mut l, t, Duration::from_secs(33));
    assert!(!l.contains(id));
}

#[test]
fn client_invite_non_2xx_over_tcp_ends_at_once() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Tcp);
    feed(
        &mut l,
        t0,
        &response(603, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Tcp,
    );
    assert_eq!(transmits(&mut l).len(), 1, "the ACK");
    assert!(!l.contains(id));
}

#[test]
fn client_invite_2xx_goes_up_and_accepted_ends_after_m() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Udp);
    feed(
        &mut l,
        t0,
        &response(200, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    // A retransmission and a fork's 2xx: both to the TU; the layer sends no ACK.
    feed(
        &mut l,
        t0,
        &response(200, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    feed(
        &mut l,
        t0,
        &response(200, "z9hG4bK776asdhds", "INVITE", Some("b2")),
        Transport::Udp,
    );
    feed(
        &mut l,
        t0,
        &response(180, "z9hG4bK776asdhds", "INVITE", Some("b3")),
        Transport::Udp,
    );
    assert!(transmits(&mut l).is_empty());
    assert_eq!(events(&mut l).len(), 3);
    assert!(run(&mut l, t0, Duration::from_secs(31)).is_empty());
    assert!(l.contains(id));
    run(&mut l, t0, Duration::from_secs(32));
    assert!(!l.contains(id));
    assert!(events(&mut l).is_empty(), "M is no timeout");
}

#[test]
fn client_invite_in_proceeding_is_bounded_by_timer_c() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Udp);
    feed(
        &mut l,
        t0,
        &response(180, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    events(&mut l);
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(180)));
    run(&mut l, t0, Duration::from_secs(180));
    assert_eq!(events(&mut l), [TxEvent::Timeout { tx: id }]);
}

#[test]
fn cancel_waits_for_a_provisional_and_copies_the_invite() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Udp);
    assert_eq!(l.cancel(t0, id), Err(TxError::CancelBeforeProvisional));
    feed(
        &mut l,
        t0,
        &response(180, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    let cancel_id = l.cancel(t0, id).unwrap();
    let sent = transmits(&mut l);
    let Message::Request(c) = Message::parse(&sent[0].bytes).unwrap() else {
        panic!()
    };
    assert_eq!(c.method, Method::Cancel);
    assert_eq!(
        c.headers.top_via().unwrap().branch(),
        Some("z9hG4bK776asdhds")
    );
    assert_eq!(c.headers.to().unwrap().tag(), None);
    assert_eq!(c.headers.cseq().unwrap().seq, 314159);
    // Its 200 goes to the CANCEL's transaction, the 487 to the INVITE's.
    feed(
        &mut l,
        t0,
        &response(200, "z9hG4bK776asdhds", "CANCEL", Some("b1")),
        Transport::Udp,
    );
    feed(
        &mut l,
        t0,
        &response(487, "z9hG4bK776asdhds", "INVITE", Some("b1")),
        Transport::Udp,
    );
    let ev = events(&mut l);
    assert!(matches!(&ev[1], TxEvent::Response { tx, .. } if *tx == cancel_id));
    assert!(matches!(&ev[2], TxEvent::Response { tx, .. } if *tx == id));
}

//! User agent tests against raw peers written in the test (no second user agent): the
//! outbound 407 answered once, 422 answered once with the Min-SE, and the out-of-dialog
//! answers (481, OPTIONS 200, 405, 483, 420, 422, malformed requests → 400, junk ignored);
//! the responses that make a dialog carry the INVITE's Record-Route.

use std::time::{Duration, Instant};

use super::tests::{addr, audio, config, A, B};
use super::*;
use crate::digest::{Credentials, Secret};
use crate::sdp::Direction;

/// A raw peer at B's address: what A sends there, and answers written by the test.
fn raw_out(ua: &mut UserAgent) -> Vec<Message<'static>> {
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| Message::parse(&t.bytes).unwrap().into_owned())
        .collect()
}

fn feed(ua: &mut UserAgent, now: Instant, m: &Message<'_>) {
    let mut bytes = Vec::new();
    m.to_bytes(&mut bytes);
    ua.handle_datagram(now, &bytes, addr(B), Transport::Udp);
}

#[test]
fn outbound_407_is_answered_once_with_proxy_authorization() {
    let now = Instant::now();
    let mut a = UserAgent::new(config(A), now);
    let issuer = crate::digest::NonceIssuer::new(
        b"0123456789abcdef",
        "trunk",
        crate::digest::Algorithm::Md5,
        60,
    );
    let out = Outbound {
        target: "sip:+4930123@trunk.example".into(),
        from: format!("\"Room\" <sip:gw@{A}>"),
        dest: addr(B),
        transport: Transport::Udp,
        credentials: Some(("gw".into(), "pw".into())),
        headers: vec![(
            "P-Asserted-Identity".into(),
            "<sip:+4930999@trunk.example>".into(),
        )],
        offer: audio(4000, Direction::SendRecv),
    };
    let call = a.call(now, out).unwrap();
    let first = raw_out(&mut a).remove(0);
    assert!(first.headers().get("P-Asserted-Identity").is_some());
    let mut challenge =
        crate::transaction::response_to(&first, 407, "Proxy Authentication Required");
    challenge.headers_mut().set(
        "To",
        format!("{};tag=px", first.headers().get("To").unwrap()),
    );
    let unix = switchboard_util::unix_now();
    challenge.headers_mut().push(
        "Proxy-Authenticate",
        issuer.challenge(unix, "aa", false).to_header_value(),
    );
    feed(&mut a, now, &challenge);
    let sent = raw_out(&mut a);
    assert!(sent[0].is_request(), "the layer's ACK of the 407");
    let second = sent
        .iter()
        .find(|m| matches!(m, Message::Request(r) if r.method == crate::Method::Invite))
        .unwrap();
    assert_eq!(second.headers().cseq().unwrap().seq, 2);
    assert_ne!(
        second.headers().top_via().unwrap().branch(),
        first.headers().top_via().unwrap().branch()
    );
    let creds = Credentials::parse(second.headers().get("Proxy-Authorization").unwrap()).unwrap();
    issuer
        .verify(
            &creds,
            "INVITE",
            second.body(),
            Secret::Password("pw"),
            unix,
        )
        .unwrap();
    // A second 407 is not answered again: the call fails.
    let mut again = crate::transaction::response_to(second, 407, "Proxy Authentication Required");
    again.headers_mut().set(
        "To",
        format!("{};tag=px", second.headers().get("To").unwrap()),
    );
    again.headers_mut().push(
        "Proxy-Authenticate",
        issuer.challenge(unix, "bb", false).to_header_value(),
    );
    feed(&mut a, now, &again);
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        matches!(&events[..], [UaEvent::Ended { call: c, reason }] if *c == call && reason.status == Some(407))
    );
    assert_eq!(raw_out(&mut a).len(), 1, "only the ACK");
    a.handle_timeout(now + Duration::from_secs(100));
    assert_eq!(a.counters().tx.live(), 0);
    assert_eq!(a.counters().tracked_transactions, 0);
}

fn raw_request(method: &str, to_tag: Option<&str>) -> String {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:room1@{A} SIP/2.0\r\nVia: SIP/2.0/UDP {B};branch=z9hG4bKraw{method}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@{B}>;tag=r1\r\nTo: <sip:room1@{A}>{tag}\r\n\
         Call-ID: raw-{method}\r\nCSeq: 1 {method}\r\nContact: <sip:x@{B}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn answer_to(ua: &mut UserAgent, now: Instant, text: &str) -> String {
    ua.handle_datagram(now, text.as_bytes(), addr(B), Transport::Udp);
    let t = ua.poll_transmit().expect("an answer");
    String::from_utf8(t.bytes.to_vec()).unwrap()
}

#[test]
fn out_of_dialog_answers() {
    let now = Instant::now();
    let mut a = UserAgent::new(config(A), now);
    let r = answer_to(&mut a, now, &raw_request("BYE", Some("nosuch")));
    assert!(r.starts_with("SIP/2.0 481 "), "{r}");
    let r = answer_to(&mut a, now, &raw_request("INFO", None));
    assert!(r.starts_with("SIP/2.0 481 "), "{r}");
    let r = answer_to(&mut a, now, &raw_request("OPTIONS", None));
    assert!(
        r.starts_with("SIP/2.0 200 ")
            && r.contains("Allow: INVITE")
            && r.contains("Accept: application/sdp"),
        "{r}"
    );
    let r = answer_to(&mut a, now, &raw_request("REGISTER", None));
    assert!(
        r.starts_with("SIP/2.0 405 ") && r.contains("Allow: "),
        "{r}"
    );
    let r = answer_to(&mut a, now, &raw_request("MESSAGE", None));
    assert!(r.starts_with("SIP/2.0 405 "), "{r}");
    let zero = raw_request("INVITE", None).replace("Max-Forwards: 70", "Max-Forwards: 0");
    let r = answer_to(&mut a, now, &zero);
    assert!(r.starts_with("SIP/2.0 483 "), "{r}");
    let rq = raw_request("INVITE", None)
        .replace("branch=z9hG4bKrawINVITE", "branch=z9hG4bKreq")
        .replace(
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nRequire: foo, 100rel",
        );
    let r = answer_to(&mut a, now, &rq);
    assert!(
        r.starts_with("SIP/2.0 420 ") && r.contains("Unsupported: foo\r\n"),
        "{r}"
    );
    let small = raw_request("INVITE", None)
        .replace("branch=z9hG4bKrawINVITE", "branch=z9hG4bKse")
        .replace(
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nSession-Expires: 30",
        );
    let r = answer_to(&mut a, now, &small);
    assert!(
        r.starts_with("SIP/2.0 422 ") && r.contains("Min-SE: 90"),
        "{r}"
    );
    // Malformed: a CSeq that is not a number; still readable enough for a 400.
    let bad = raw_request("INVITE", None)
        .replace("branch=z9hG4bKrawINVITE", "branch=z9hG4bKbad")
        .replace("CSeq: 1 INVITE", "CSeq: one INVITE");
    let r = answer_to(&mut a, now, &bad);
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    for junk in [
        &b"\x00\xff garbage"[..],
        b"INVITE sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\r\n\r\n",
    ] {
        a.handle_datagram(now, junk, addr(B), Transport::Udp);
    }
    assert!(std::iter::from_fn(|| a.poll_event()).next().is_none());
    a.handle_timeout(now + Duration::from_secs(100));
    assert_eq!(a.counters().tx.live(), 0);
    assert_eq!(a.counters().calls, 0);
}

#[test]
fn session_interval_too_small_is_retried_once_with_min_se() {
    let now = Instant::now();
    let mut a = UserAgent::new(config(A), now);
    let out = Outbound {
        target: format!("sip:room1@{B}"),
        from: format!("<sip:alice@{A}>"),
        dest: addr(B),
        transport: Transport::Udp,
        credentials: None,
        headers: Vec::new(),
        offer: audio(4000, Direction::SendRecv),
    };
    assert!(!format!("{out:?}").contains("secret"));
    let call = a.call(now, out).unwrap();
    let first = raw_out(&mut a).remove(0);
    assert_eq!(first.headers().get("Session-Expires"), Some("1800"));
    let too_small = |m: &Message<'_>| {
        let mut r = crate::transaction::response_to(m, 422, "Session Interval Too Small");
        r.headers_mut()
            .set("To", format!("{};tag=uas", m.headers().get("To").unwrap()));
        r.headers_mut().push("Min-SE", "3600");
        r
    };
    feed(&mut a, now, &too_small(&first));
    let sent = raw_out(&mut a);
    let second = sent
        .iter()
        .find(|m| matches!(m, Message::Request(r) if r.method == crate::Method::Invite))
        .unwrap();
    assert_eq!(second.headers().get("Session-Expires"), Some("3600"));
    assert_eq!(second.headers().get("Min-SE"), Some("3600"));
    assert_eq!(second.headers().cseq().unwrap().seq, 2);
    feed(&mut a, now, &too_small(second));
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        matches!(&events[..], [UaEvent::Ended { call: c, reason }] if *c == call && reason.status == Some(422))
    );
    a.handle_timeout(now + Duration::from_secs(100));
    assert_eq!(a.counters().tx.live(), 0);
    assert_eq!(a.counters().tracked_transactions, 0);
}

#[test]
fn transport_error_ends_the_outbound_call() {
    let now = Instant::now();
    let mut a = UserAgent::new(config(A), now);
    let out = Outbound {
        target: format!("sip:room1@{B}"),
        from: format!("<sip:alice@{A}>"),
        dest: addr(B),
        transport: Transport::Udp,
        credentials: None,
        headers: Vec::new(),
        offer: audio(4000, Direction::SendRecv),
    };
    let call = a.call(now, out).unwrap();
    let tx = a
        .poll_transmit()
        .unwrap()
        .tx
        .expect("the INVITE's transaction");
    a.transport_error(now, tx);
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(matches!(&events[..], [UaEvent::Ended { call: c, reason }]
        if *c == call && reason.by == EndedBy::Error && reason.status == Some(503)));
    assert_eq!(a.counters().tx.live(), 0);
    assert_eq!(a.counters().tracked_transactions, 0);
    assert_eq!(a.counters().calls_ended.error, 1);
}

#[test]
fn ringing_and_ok_copy_the_record_route_of_the_invite_in_order() {
    let now = Instant::now();
    let mut a = UserAgent::new(config(A), now);
    // Two proxies, the nearer one twice (a transport change: WebSocket in, UDP out), one
    // header holding a list and one more line, with parameters A does not know.
    let rr1 = "<sip:192.0.2.7:5060;r2=on;lr>, <sip:192.0.2.7:8080;transport=ws;r2=on;lr>";
    let rr2 = "<sip:p2.example;lr;ftag=x1>";
    let invite = raw_request("INVITE", None).replace(
        "Max-Forwards: 70",
        &format!("Max-Forwards: 70\r\nRecord-Route: {rr1}\r\nRecord-Route: {rr2}"),
    );
    a.handle_datagram(now, invite.as_bytes(), addr(B), Transport::Udp);
    let call = match std::iter::from_fn(|| a.poll_event())
        .collect::<Vec<_>>()
        .as_slice()
    {
        [UaEvent::IncomingCall { call, .. }] => *call,
        other => panic!("expected one IncomingCall, got {other:?}"),
    };
    let record_route = |m: &Message<'_>| -> Vec<String> {
        m.headers()
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("Record-Route"))
            .map(|h| h.value.to_string())
            .collect()
    };
    let sent = |a: &mut UserAgent, status: u16| -> Message<'static> {
        raw_out(a)
            .into_iter()
            .find(|m| matches!(m, Message::Response(r) if r.status == status))
            .unwrap_or_else(|| panic!("no {status} sent"))
    };
    a.ring(now, call).unwrap();
    assert_eq!(record_route(&sent(&mut a, 180)), [rr1, rr2], "180 Ringing");
    a.accept(now, call, audio(4000, Direction::SendRecv))
        .unwrap();
    assert_eq!(record_route(&sent(&mut a, 200)), [rr1, rr2], "200 OK");
}

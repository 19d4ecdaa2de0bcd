use std::time::{Duration, Instant};

use super::reliable::{PrackTracker, Provisional, RSeqCounter};

use super::*;

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Supported: timer\r\n\
Session-Expires: 1800\r\n\
Content-Length: 0\r\n\r\n";

/// The 200 as it reaches Alice through two record-routing proxies (P2 nearer to Bob).
const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
Record-Route: <sip:p2.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Content-Length: 0\r\n\r\n";

fn msg(s: &str) -> Message<'_> {
    Message::parse(s.as_bytes()).expect("test message parses")
}

fn ruri(m: &Message<'_>) -> String {
    match m {
        Message::Request(r) => r.uri.to_string(),
        Message::Response(_) => String::new(),
    }
}

#[test]
fn the_uac_dialog_routes_through_the_reversed_record_route() {
    let mut d = Dialog::uac(&msg(INVITE), &msg(OK)).unwrap();
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(
        (d.id.local_tag.as_str(), d.id.remote_tag.as_str()),
        ("1928301774", "a6c85cf")
    );
    assert_eq!(d.next_hop().to_string(), "sip:p1.atlanta.example.com;lr");
    let via = "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKack1";
    let ack = d.ack(314159, via);
    assert_eq!(ruri(&ack), "sip:bob@192.0.2.4");
    let routes: Vec<&str> = ack.headers().values("Route").collect();
    assert_eq!(
        routes,
        [
            "<sip:p1.atlanta.example.com;lr>",
            "<sip:p2.biloxi.example.com;lr>"
        ]
    );
    assert_eq!(ack.headers().get("CSeq"), Some("314159 ACK"));
    assert_eq!(ack.headers().get("Via"), Some(via));
    let bye = d.request(Method::Bye, "SIP/2.0/UDP x;branch=z9hG4bKbye1");
    assert_eq!(bye.headers().get("CSeq"), Some("314160 BYE"));
    assert_eq!(
        bye.headers().to().unwrap().tag(),
        Some("a6c85cf"),
        "To carries the peer's tag"
    );
    assert_eq!(bye.headers().from().unwrap().tag(), Some("1928301774"));
    // What we built parses back, and the peer's dialog id of it is ours reversed.
    let mut out = Vec::new();
    bye.to_bytes(&mut out);
    let again = Message::parse(&out).unwrap();
    let theirs = DialogId::of_incoming_request(&again).unwrap();
    assert_eq!(
        (theirs.local_tag, theirs.remote_tag),
        (d.id.remote_tag.clone(), d.id.local_tag.clone())
    );
}

#[test]
fn a_strict_router_gets_the_request_uri_and_the_target_goes_last() {
    let ok = OK.replace(
        "Record-Route: <sip:p2.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>",
        "Record-Route: <sip:p2.biloxi.example.com;lr>, <sip:old.atlanta.example.com>",
    );
    let mut d = Dialog::uac(&msg(INVITE), &msg(&ok)).unwrap();
    let bye = d.request(Method::Bye, "SIP/2.0/UDP x;branch=z9hG4bK1");
    assert_eq!(ruri(&bye), "sip:old.atlanta.example.com");
    let routes: Vec<&str> = bye.headers().values("Route").collect();
    assert_eq!(
        routes,
        ["<sip:p2.biloxi.example.com;lr>", "<sip:bob@192.0.2.4>"]
    );
}

#[test]
fn the_uas_dialog_keeps_the_record_route_order_and_checks_cseq() {
    let invite = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 69\r\nRecord-Route: <sip:p1.example.com;lr>\r\n",
    );
    let contact = NameAddr::parse("<sip:gw@198.51.100.1:5060>")
        .unwrap()
        .into_owned();
    let mut d = Dialog::uas(&msg(&invite), "gw77", contact, 1000, true).unwrap();
    assert_eq!(d.remote_seq, Some(314159));
    assert_eq!(d.next_hop().to_string(), "sip:p1.example.com;lr");
    let bye = d.request(Method::Bye, "SIP/2.0/UDP gw;branch=z9hG4bK2");
    assert_eq!(bye.headers().get("CSeq"), Some("1001 BYE"));
    assert_eq!(bye.headers().from().unwrap().tag(), Some("gw77"));
    assert_eq!(ruri(&bye), "sip:alice@pc33.atlanta.example.com");

    // The peer's re-INVITE with a new Contact moves the target; an older CSeq is refused.
    let reinvite = "INVITE sip:gw@198.51.100.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKre1\r\n\
To: <sip:bob@biloxi.example.com>;tag=gw77\r\n\
From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314160 INVITE\r\n\
Contact: <sip:alice@203.0.113.9:5062>\r\n\
Content-Length: 0\r\n\r\n";
    d.on_request(&msg(reinvite)).unwrap();
    assert_eq!(d.remote_target.to_string(), "sip:alice@203.0.113.9:5062");
    let old = reinvite.replace("CSeq: 314160 INVITE", "CSeq: 314100 INFO");
    assert_eq!(
        d.on_request(&msg(&old)),
        Err(DialogError::CSeqOutOfOrder {
            got: 314100,
            last: 314160
        })
    );
    let other = reinvite.replace("tag=gw77", "tag=someone-else");
    assert_eq!(d.on_request(&msg(&other)), Err(DialogError::Mismatch));
}

#[test]
fn an_early_dialog_is_confirmed_by_the_2xx() {
    let ringing = OK
        .replace("SIP/2.0 200 OK", "SIP/2.0 180 Ringing")
        .replace("Session-Expires: 1800;refresher=uac\r\n", "");
    let mut d = Dialog::uac(&msg(INVITE), &msg(&ringing)).unwrap();
    assert_eq!(d.state, DialogState::Early);
    d.on_response(&msg(OK)).unwrap();
    assert_eq!(d.state, DialogState::Confirmed);
    // A 100 has no To tag: no dialog from it.
    let trying = "SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKnashds8\r\n\
To: <sip:bob@biloxi.example.com>\r\nFrom: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(Dialog::uac(&msg(INVITE), &msg(trying)).is_err());
}

#[test]
fn session_timer_refreshes_at_half_or_expires_before_the_end() {
    let t0 = Instant::now();
    // refresher=uac and we sent the INVITE: we refresh every 900 s.
    let mut ours = SessionTimer::from_response(&msg(OK), true, t0)
        .unwrap()
        .unwrap();
    assert!(ours.we_refresh);
    assert_eq!(ours.handle_timeout(t0 + Duration::from_secs(899)), None);
    assert_eq!(
        ours.handle_timeout(t0 + Duration::from_secs(900)),
        Some(TimerAction::Refresh)
    );
    assert_eq!(
        ours.handle_timeout(t0 + Duration::from_secs(901)),
        None,
        "once"
    );
    ours.refreshed(t0 + Duration::from_secs(901));
    assert_eq!(ours.poll_timeout(), t0 + Duration::from_secs(1801));
    // The UAS of the same call watches: BYE at 1800 − 32 s without a refresh.
    let mut theirs = SessionTimer::from_response(&msg(OK), false, t0)
        .unwrap()
        .unwrap();
    assert!(!theirs.we_refresh);
    assert_eq!(theirs.handle_timeout(t0 + Duration::from_secs(1767)), None);
    assert_eq!(
        theirs.handle_timeout(t0 + Duration::from_secs(1768)),
        Some(TimerAction::Expire)
    );
    // No Session-Expires: no timer.
    let plain = OK.replace("Session-Expires: 1800;refresher=uac\r\n", "");
    assert_eq!(
        SessionTimer::from_response(&msg(&plain), true, t0).unwrap(),
        None
    );
}

#[test]
fn a_uas_refuses_a_too_short_interval_with_422_and_picks_the_refresher() {
    assert_eq!(
        negotiate(&msg(INVITE), 90).unwrap(),
        Negotiation::Accept {
            header: "1800;refresher=uac".into(),
            we_refresh: false
        }
    );
    let short = INVITE.replace("Session-Expires: 1800", "Session-Expires: 60");
    assert_eq!(
        negotiate(&msg(&short), 90).unwrap(),
        Negotiation::TooSmall(90)
    );
    let no_support = INVITE.replace("Supported: timer\r\n", "");
    assert_eq!(
        negotiate(&msg(&no_support), 90).unwrap(),
        Negotiation::Accept {
            header: "1800;refresher=uas".into(),
            we_refresh: true
        }
    );
    let none = INVITE.replace("Session-Expires: 1800\r\n", "");
    assert_eq!(negotiate(&msg(&none), 90).unwrap(), Negotiation::None);
}

#[test]
fn reliable_provisionals_are_acknowledged_once_and_in_order() {
    let mut uas = RSeqCounter::new(776656);
    let first = uas.next_rseq();
    assert_eq!((first, uas.next_rseq()), (776656, 776657));
    let mut uac = PrackTracker::new();
    assert_eq!(
        uac.on_provisional(776656, 314159, "INVITE"),
        Provisional::Prack("776656 314159 INVITE".into())
    );
    assert_eq!(
        uac.on_provisional(776656, 314159, "INVITE"),
        Provisional::Duplicate
    );
    assert_eq!(
        uac.on_provisional(776658, 314159, "INVITE"),
        Provisional::OutOfOrder
    );
    assert_eq!(
        uac.on_provisional(776657, 314159, "INVITE"),
        Provisional::Prack("776657 314159 INVITE".into())
    );
}

//! User agent tests inside a call, on fake time: session-timer refreshes (UPDATE) and
//! expiry, a re-INVITE hold round trip, INFO DTMF both content types, 100rel with PRACK,
//! and two forks answering one INVITE.

use std::time::{Duration, Instant};

use super::tests::{addr, audio, config, ended, Net, A, B};
use super::*;
use crate::message::Method;
use crate::sdp::Direction;

fn timers(se: u32) -> Net {
    let mut a = config(A);
    a.session_expires = Some(se);
    let mut b = config(B);
    b.session_expires = Some(se);
    Net::new(a, b)
}

#[test]
fn session_timer_refreshed_by_update_keeps_the_call() {
    let mut n = timers(90);
    let (ca, _) = n.connected();
    let invite = n
        .wire
        .iter()
        .find(|(a, t)| *a && t.starts_with("INVITE "))
        .unwrap();
    assert!(invite.1.contains("Session-Expires: 90") && invite.1.contains("Supported: timer"));
    let ok = n
        .wire
        .iter()
        .find(|(a, t)| !*a && t.starts_with("SIP/2.0 200") && t.contains("INVITE"))
        .unwrap();
    assert!(
        ok.1.contains("Session-Expires: 90;refresher=uac"),
        "{}",
        ok.1
    );
    n.run_for(Duration::from_secs(200));
    // The UAC refreshes every 45 s, by UPDATE since B allows it.
    assert_eq!(n.sent_by_a("UPDATE "), 4);
    assert_eq!(n.sent_by_b("UPDATE "), 0);
    assert!(
        n.take_a().is_empty() && n.take_b().is_empty(),
        "call still up"
    );
    n.a.hangup(n.now, ca).unwrap();
    n.pump();
    ended(&n.take_a());
    ended(&n.take_b());
    n.assert_quiet();
}

#[test]
fn session_timer_expires_when_the_refresher_stops() {
    let mut n = timers(90);
    n.lose = Box::new(|from_a, t| from_a && t.starts_with("UPDATE "));
    n.connected();
    n.run_for(Duration::from_secs(59));
    assert!(n.take_b().is_empty());
    n.run_for(Duration::from_secs(2));
    let b = ended(&n.take_b());
    assert_eq!(
        (b.by, b.reason.as_str()),
        (EndedBy::Timeout, "Session expired")
    );
    assert_eq!(ended(&n.take_a()).by, EndedBy::Remote);
    n.assert_quiet();
}

#[test]
fn session_refresh_by_reinvite_without_update() {
    let mut n = timers(120);
    // B says it does not take UPDATE: the refresh is a re-INVITE with the same SDP.
    n.lose = Box::new(|_, _| false);
    let (ca, cb) = n.connected();
    if let Some(c) = n.a.calls.get_mut(&ca) {
        c.peer_update = false;
    }
    let offer = n
        .wire
        .iter()
        .find(|(a, t)| *a && t.starts_with("INVITE "))
        .unwrap()
        .1
        .clone();
    let o_line = offer
        .lines()
        .find(|l| l.starts_with("o="))
        .unwrap()
        .to_owned();
    n.run_for(Duration::from_secs(61));
    let reinvites: Vec<_> = n
        .wire
        .iter()
        .filter(|(a, t)| *a && t.starts_with("INVITE "))
        .collect();
    assert_eq!(reinvites.len(), 2);
    assert!(reinvites[1].1.contains(&o_line), "same o= version");
    assert!(
        n.take_b().is_empty(),
        "a refresh without a new offer is not a Reoffer"
    );
    assert_eq!(n.sent_by_a("ACK "), 2);
    n.b.hangup(n.now, cb).unwrap();
    n.pump();
    ended(&n.take_a());
    ended(&n.take_b());
    n.assert_quiet();
}

#[test]
fn hold_round_trip_by_reinvite() {
    let mut n = Net::pair();
    let (ca, cb) = n.connected();
    n.a.reoffer(n.now, ca, audio(4000, Direction::SendOnly))
        .unwrap();
    assert_eq!(
        n.a.reoffer(n.now, ca, audio(4000, Direction::SendOnly)),
        Err(UaError::Busy)
    );
    n.pump();
    let offer = match &n.take_b()[..] {
        [UaEvent::Reoffer { call, offer }] if *call == cb => offer.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(offer.direction(&offer.media[0]), Direction::SendOnly);
    n.b.answer_reoffer(n.now, cb, audio(5000, Direction::RecvOnly))
        .unwrap();
    n.pump();
    match &n.take_a()[..] {
        [UaEvent::ReofferAnswered {
            call,
            answer: Some(sdp),
            status: 200,
        }] => {
            assert_eq!(*call, ca);
            assert_eq!(sdp.direction(&sdp.media[0]), Direction::RecvOnly);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(n.sent_by_a("ACK "), 2);
    n.run_for(Duration::from_secs(40));
    assert!(
        n.take_b().is_empty(),
        "the re-INVITE's 2xx was ACKed: no BYE"
    );
    // Resume from the other side.
    n.b.reoffer(n.now, cb, audio(5000, Direction::SendRecv))
        .unwrap();
    n.pump();
    assert!(matches!(n.take_a()[..], [UaEvent::Reoffer { .. }]));
    n.a.answer_reoffer(n.now, ca, audio(4000, Direction::SendRecv))
        .unwrap();
    n.pump();
    assert!(matches!(
        n.take_b()[..],
        [UaEvent::ReofferAnswered {
            status: 200,
            answer: Some(_),
            ..
        }]
    ));
    n.a.hangup(n.now, ca).unwrap();
    n.pump();
    ended(&n.take_a());
    ended(&n.take_b());
    n.assert_quiet();
}

#[test]
fn dtmf_by_info() {
    let mut n = Net::pair();
    let (ca, cb) = n.connected();
    n.a.send_dtmf_info(n.now, ca, '5', 160).unwrap();
    n.a.send_dtmf_info(n.now, ca, '#', 100).unwrap();
    assert_eq!(
        n.a.send_dtmf_info(n.now, ca, 'x', 100),
        Err(UaError::BadDigit('x'))
    );
    n.pump();
    assert_eq!(
        n.take_b(),
        vec![
            UaEvent::Dtmf {
                call: cb,
                digit: '5',
                duration_ms: 160
            },
            UaEvent::Dtmf {
                call: cb,
                digit: '#',
                duration_ms: 100
            },
        ]
    );
    assert_eq!(n.sent_by_b("SIP/2.0 200 OK"), 3);
    // application/dtmf from a raw INFO inside B's dialog (built from A's dialog).
    let via = n.a.via(Transport::Udp);
    let dialog = n.a.calls.get_mut(&ca).unwrap().dialog.as_mut().unwrap();
    let mut info = dialog.request(Method::Info, &via);
    info.headers_mut().push("Content-Type", "application/dtmf");
    info.set_body(b"7".to_vec());
    let mut bytes = Vec::new();
    info.to_bytes(&mut bytes);
    n.b.handle_datagram(n.now, &bytes, addr(A), Transport::Udp);
    let mut text = info.clone();
    text.headers_mut().set("Content-Type", "text/plain");
    text.headers_mut()
        .set("CSeq", format!("{} INFO", dialog.local_seq + 1));
    text.headers_mut().set("Via", n.a.via(Transport::Udp));
    let mut bytes = Vec::new();
    text.to_bytes(&mut bytes);
    n.b.handle_datagram(n.now, &bytes, addr(A), Transport::Udp);
    n.pump();
    assert_eq!(
        n.take_b(),
        vec![UaEvent::Dtmf {
            call: cb,
            digit: '7',
            duration_ms: 250
        }]
    );
    assert_eq!(n.sent_by_b("SIP/2.0 415"), 1);
    n.a.hangup(n.now, ca).unwrap();
    n.pump();
    n.assert_quiet();
}

#[test]
fn reliable_ringing_is_pracked() {
    let mut n = Net::pair();
    let (ca, cb) = n.call(vec![("Require".into(), "100rel".into())]);
    n.b.ring(n.now, cb).unwrap();
    n.pump();
    assert!(matches!(
        n.take_a()[..],
        [UaEvent::Ringing { status: 180, .. }]
    ));
    let ringing = n
        .wire
        .iter()
        .find(|(a, t)| !*a && t.starts_with("SIP/2.0 180"))
        .unwrap();
    assert!(ringing.1.contains("RSeq: ") && ringing.1.contains("Require: 100rel"));
    assert_eq!(n.sent_by_a("PRACK "), 1);
    let prack = n
        .wire
        .iter()
        .find(|(a, t)| *a && t.starts_with("PRACK "))
        .unwrap();
    assert!(
        prack.1.contains("RAck: ") && prack.1.contains("CSeq: 2 PRACK"),
        "{}",
        prack.1
    );
    n.run_for(Duration::from_secs(10));
    assert_eq!(
        n.sent_by_b("SIP/2.0 180"),
        1,
        "no retransmission after the PRACK"
    );
    n.b.accept(n.now, cb, audio(5000, Direction::SendRecv))
        .unwrap();
    n.pump();
    assert!(matches!(n.take_a()[..], [UaEvent::Connected { .. }]));
    n.a.hangup(n.now, ca).unwrap();
    n.pump();
    let bye = n
        .wire
        .iter()
        .find(|(a, t)| *a && t.starts_with("BYE "))
        .unwrap();
    assert!(
        bye.1.contains("CSeq: 3 BYE"),
        "after the PRACK's CSeq: {}",
        bye.1
    );
    assert_eq!(ended(&n.take_b()).by, EndedBy::Remote);
    n.assert_quiet();
}

#[test]
fn reliable_ringing_without_prack_fails_the_invite() {
    let mut n = Net::pair();
    n.lose = Box::new(|from_a, t| from_a && t.starts_with("PRACK "));
    let (_, cb) = n.call(vec![("Require".into(), "100rel".into())]);
    n.b.ring(n.now, cb).unwrap();
    n.run_for(Duration::from_secs(33));
    assert!(
        n.sent_by_b("SIP/2.0 180") >= 7,
        "retransmitted until the PRACK"
    );
    let b = ended(&n.take_b());
    assert_eq!((b.by, b.status), (EndedBy::Timeout, Some(504)));
    assert_eq!(ended(&n.take_a()).status, Some(504));
    n.assert_quiet();
}

#[test]
fn second_fork_gets_ack_and_bye() {
    let now = Instant::now();
    let mut a = UserAgent::new(config(A), now);
    let call = a
        .call(
            now,
            Outbound {
                target: format!("sip:room1@{B}"),
                from: format!("<sip:alice@{A}>"),
                dest: addr(B),
                transport: Transport::Udp,
                credentials: None,
                headers: Vec::new(),
                offer: audio(4000, Direction::SendRecv),
            },
        )
        .unwrap();
    let invite_bytes = a.poll_transmit().unwrap().bytes;
    let invite = Message::parse(&invite_bytes).unwrap();
    let answer = |tag: &str| {
        let mut r = crate::transaction::response_to(&invite, 200, "OK");
        let to = format!("{};tag={tag}", invite.headers().get("To").unwrap());
        r.headers_mut().set("To", to);
        r.headers_mut().push("Contact", format!("<sip:{tag}@{B}>"));
        let mut bytes = Vec::new();
        r.to_bytes(&mut bytes);
        bytes
    };
    for tag in ["one", "two", "one"] {
        a.handle_datagram(now, &answer(tag), addr(B), Transport::Udp);
    }
    let sent: Vec<String> = std::iter::from_fn(|| a.poll_transmit())
        .map(|t| String::from_utf8(t.bytes.to_vec()).unwrap())
        .collect();
    let starts: Vec<&str> = sent.iter().map(|s| &s[..4]).collect();
    assert_eq!(starts, ["ACK ", "ACK ", "BYE ", "ACK "], "{sent:?}");
    assert!(sent[2].contains("tag=two"));
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(matches!(&events[..], [UaEvent::Connected { call: c, .. }] if *c == call));
    a.hangup(now, call).unwrap();
    a.handle_timeout(now + Duration::from_secs(400));
    assert_eq!(a.counters().tx.live(), 0);
    assert_eq!(a.counters().calls, 0);
    assert_eq!(a.counters().tracked_transactions, 0);
}

//! Offers, answers, candidates and messages: routed to the addressed peer of the same room
//! only, with `from`, `seq` and the payload copied byte for byte.

mod common;

use common::*;
use serde_json::{json, Value};

/// Ada, Bob and Cy in "demo", with the membership events taken.
fn trio(d: &mut Driver) -> (Peer, Peer, Peer) {
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    let c = d.join("demo", "Cy");
    d.take(a.conn);
    d.take(b.conn);
    (a, b, c)
}

#[test]
fn offer_reaches_only_the_addressed_peer() {
    let mut d = Driver::open();
    let (a, b, c) = trio(&mut d);
    d.send_json(
        a.conn,
        json!({"type": "offer", "to": b.id, "sdp": "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"}),
    );
    let o = d.take_one(b.conn);
    assert_eq!(o["type"], "offer");
    assert_eq!(o["from"], a.id.as_str());
    assert_eq!(o["sdp"], "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n");
    assert_eq!(o["seq"], 2, "after peer-joined of Cy");
    assert!(o.get("to").is_none(), "{o}");
    d.assert_silent(a.conn);
    d.assert_silent(c.conn);
}

#[test]
fn every_kind_is_relayed_with_from_and_its_field() {
    let mut d = Driver::open();
    let (a, b, c) = trio(&mut d);
    let cases = [
        ("offer", "sdp", json!("v=0 offer")),
        ("answer", "sdp", json!("v=0 answer")),
        (
            "candidate",
            "candidate",
            json!({"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host", "sdpMid": "0", "sdpMLineIndex": 0}),
        ),
        ("candidate", "candidate", Value::Null),
        (
            "message",
            "data",
            json!({"chat": ["hi", 1, 2.5, true, null]}),
        ),
        ("message", "data", json!("text")),
        ("message", "data", json!(42)),
        ("message", "data", json!([])),
        ("message", "data", Value::Null),
    ];
    for (want_seq, (kind, field, payload)) in (1u64..).zip(cases) {
        let mut msg = json!({"type": kind, "to": c.id});
        msg[field] = payload.clone();
        d.send_json(b.conn, msg);
        let got = d.take_one(c.conn);
        assert_eq!(got["type"], kind, "{got}");
        assert_eq!(got["from"], b.id.as_str(), "{got}");
        assert_eq!(got.get(field), Some(&payload), "{got}");
        assert_eq!(got["seq"], want_seq, "{got}");
        d.assert_silent(b.conn);
        d.assert_silent(a.conn);
    }
}

#[test]
fn payloads_are_copied_byte_for_byte() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    let to = &b.id;
    let cases = [
        (
            "offer",
            "sdp",
            r#""v=0\r\na=fingerprint:sha-256 AB:CD\r\n\u00e9\ud83c\udf89\/""#,
        ),
        ("answer", "sdp", r#""caf\u00E9 \"quoted\" \\ back""#),
        (
            "candidate",
            "candidate",
            r#"{ "candidate" : "candidate:0 1 UDP 2122 10.0.0.1 5000 typ host" , "sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null }"#,
        ),
        ("candidate", "candidate", "null"),
        (
            "message",
            "data",
            r#"{"a":{"b":{"c":[1,2.50,-0.0,1e300,{"d":"\u0000\n"}]}},"z":"日本"}"#,
        ),
        ("message", "data", r#"  [ 1 ,  2 ]"#),
        ("message", "data", "12345678901234567890123"),
        ("message", "data", "null"),
    ];
    for (kind, field, raw) in cases {
        let text = format!(r#"{{"type":"{kind}","to":"{to}","{field}":{raw}}}"#);
        d.send(a.conn, &text);
        let got = d.take_one_raw(b.conn);
        assert_eq!(raw_field(&got, field), raw.trim_start(), "{kind}: {got}");
        assert_eq!(raw_field(&got, "from"), format!("\"{}\"", a.id));
        assert_eq!(raw_field(&got, "type"), format!("\"{kind}\""));
        d.assert_silent(a.conn);
    }
}

#[test]
fn unknown_fields_are_ignored_and_not_relayed() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.send_json(
        a.conn,
        json!({"type": "offer", "to": b.id, "sdp": "v=0", "extra": {"x": [1]}, "from": "forged", "seq": 99}),
    );
    let o = d.take_one(b.conn);
    assert_eq!(o["from"], a.id.as_str(), "from is not forgeable");
    assert_eq!(o["seq"], 1, "seq is the server's");
    assert!(o.get("extra").is_none(), "{o}");
    d.assert_silent(a.conn);
}

#[test]
fn seq_is_shared_by_membership_events_and_relayed_messages() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.message(&b, &a, json!(1));
    d.send_json(b.conn, json!({"type": "ping", "id": 1}));
    d.take(b.conn);
    let c = d.join("demo", "Cy");
    d.send_json(c.conn, json!({"type": "leave"}));
    d.message(&b, &a, json!(2));
    let got = d.take(a.conn);
    assert_eq!(
        types(&got),
        [
            "peer-joined",
            "message",
            "peer-joined",
            "peer-left",
            "message"
        ]
    );
    assert_eq!(seqs(&got), [1, 2, 3, 4, 5]);
}

#[test]
fn peer_of_another_room_is_unknown_and_never_reached() {
    let mut d = Driver::open();
    let a = d.join("one", "Ada");
    let x = d.join("two", "Xi");
    let y = d.join("two", "Yu");
    d.take(x.conn);
    for msg in [
        json!({"type": "offer", "to": x.id, "sdp": "v=0", "ref": 1}),
        json!({"type": "answer", "to": x.id, "sdp": "v=0", "ref": 1}),
        json!({"type": "candidate", "to": x.id, "candidate": null, "ref": 1}),
        json!({"type": "message", "to": x.id, "data": "psst", "ref": 1}),
    ] {
        d.send_json(a.conn, msg);
        let e = d.expect_error(a.conn, "unknown-peer");
        assert_eq!(e["ref"], 1);
    }
    d.assert_silent(x.conn);
    d.assert_silent(y.conn);
    // And the other way round.
    d.message(&x, &a, json!("psst"));
    d.expect_error(x.conn, "unknown-peer");
    d.assert_silent(a.conn);
}

#[test]
fn unknown_peer_does_not_reveal_whether_the_id_exists_elsewhere() {
    let mut d = Driver::open();
    let a = d.join("one", "Ada");
    let x = d.join("two", "Xi");
    // A never-issued id of the same shape as a real one.
    let fake: String =
        x.id.chars()
            .map(|c| if c.is_ascii_digit() { 'f' } else { c })
            .collect();
    let fake = if fake == x.id {
        format!("{}0", &x.id[..x.id.len() - 1])
    } else {
        fake
    };
    assert_ne!(fake, x.id);
    let mut answers = Vec::new();
    for id in [&x.id, &fake] {
        d.send_json(
            a.conn,
            json!({"type": "offer", "to": id, "sdp": "v=0", "ref": "r"}),
        );
        let raw = d.take_one_raw(a.conn);
        answers.push(raw.replace(id.as_str(), "<ID>"));
    }
    assert_eq!(answers[0], answers[1]);
    d.assert_silent(x.conn);
}

#[test]
fn a_peer_that_left_is_unknown() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.send_json(b.conn, json!({"type": "leave"}));
    d.take(a.conn);
    d.take(b.conn);
    d.message(&a, &b, json!("hello?"));
    d.expect_error(a.conn, "unknown-peer");
    d.assert_silent(b.conn);
}

#[test]
fn sending_to_a_suspended_peer_is_accepted_silently() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.disconnect(b.conn);
    d.send_json(a.conn, json!({"type": "offer", "to": b.id, "sdp": "v=0"}));
    d.assert_silent(a.conn);
    assert!(d.take_raw(b.conn).is_empty());
}

#[test]
fn ill_formed_relay_messages_are_bad_message_and_not_relayed() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    for msg in [
        json!({"type": "offer", "sdp": "v=0"}),
        json!({"type": "offer", "to": b.id}),
        json!({"type": "offer", "to": b.id, "sdp": 5}),
        json!({"type": "offer", "to": b.id, "sdp": {"sdp": "v=0"}}),
        json!({"type": "offer", "to": b.id, "sdp": null}),
        json!({"type": "answer", "to": b.id}),
        json!({"type": "answer", "to": b.id, "sdp": ["v=0"]}),
        json!({"type": "candidate", "to": b.id}),
        json!({"type": "candidate", "to": b.id, "candidate": "candidate:1 1 udp"}),
        json!({"type": "candidate", "to": b.id, "candidate": [1]}),
        json!({"type": "candidate", "to": b.id, "candidate": 3}),
        json!({"type": "candidate", "candidate": null}),
        json!({"type": "message", "to": b.id}),
        json!({"type": "message", "data": 1}),
    ] {
        d.send_json(a.conn, msg.clone());
        let e = d.take_one(a.conn);
        assert_eq!(e["code"], "bad-message", "{msg}: {e}");
        assert_eq!(e["fatal"], false);
        d.assert_silent(b.conn);
    }
}

#[test]
fn ill_typed_to_is_bad_message() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    for to in [json!(5), json!(null), json!([b.id]), json!({"id": b.id})] {
        d.send_json(a.conn, json!({"type": "message", "to": to, "data": 1}));
        let e = d.take_one(a.conn);
        assert_eq!(e["code"], "bad-message", "to {to}: {e}");
        d.assert_silent(b.conn);
    }
}

#[test]
fn relay_in_both_directions_keeps_separate_numbering() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn); // peer-joined: Ada's seq 1
    for i in 0..5 {
        d.send_json(
            a.conn,
            json!({"type": "candidate", "to": b.id, "candidate": {"i": i}}),
        );
        d.send_json(
            b.conn,
            json!({"type": "candidate", "to": a.id, "candidate": {"i": i}}),
        );
    }
    let to_b = d.take(b.conn);
    let to_a = d.take(a.conn);
    assert_eq!(seqs(&to_b), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(&to_a), [2, 3, 4, 5, 6]);
    for (i, m) in to_b.iter().enumerate() {
        assert_eq!(m["candidate"]["i"], i);
    }
}

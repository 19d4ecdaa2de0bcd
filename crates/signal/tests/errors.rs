//! Malformed messages, `ref` echoing, ping, errors the driver reports, and shutdown.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn garbage_is_bad_message_and_the_connection_survives() {
    let mut d = Driver::open();
    let c = d.connect();
    for text in [
        "",
        "not json",
        "{\"type\":\"join\"",
        "[1,2]",
        "\"join\"",
        "42",
        "null",
        "{}",
        r#"{"room":"demo"}"#,
        r#"{"type":5}"#,
        r#"{"type":null}"#,
        r#"{"type":"JOIN","room":"demo"}"#,
        r#"{"type":"subscribe"}"#,
        r#"{"type":"hello"}"#,
        // serde could read these as structs, but messages are objects.
        r#"["ping"]"#,
        r#"["join",null,null,null,null,"demo"]"#,
        r#"[5]"#,
        r#"  ["ref"]"#,
    ] {
        d.send(c, text);
        let e = d.expect_error(c, "bad-message");
        assert!(e.get("ref").is_none(), "{text}: {e}");
    }
    let j = d.join_on(c, json!({"type": "join", "room": "demo"}));
    assert_eq!(j["type"], "joined");
}

#[test]
fn garbage_from_a_joined_peer_is_bad_message_and_reaches_nobody() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    for text in ["{", "[]", r#"{"type":"shout","to":"x"}"#] {
        d.send(b.conn, text);
        d.expect_error(b.conn, "bad-message");
    }
    d.assert_silent(a.conn);
    d.message(&b, &a, json!("still here"));
    assert_eq!(seq(&d.take_one(a.conn)), 2);
}

#[test]
fn ack_needs_a_numeric_seq() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    for msg in [
        json!({"type": "ack"}),
        json!({"type": "ack", "seq": "3"}),
        json!({"type": "ack", "seq": -1}),
        json!({"type": "ack", "seq": null}),
    ] {
        d.send_json(a.conn, msg.clone());
        let e = d.take_one(a.conn);
        assert_eq!(e["code"], "bad-message", "{msg}: {e}");
    }
    // A good ack has no answer.
    d.send_json(a.conn, json!({"type": "ack", "seq": 0}));
    d.assert_silent(a.conn);
    d.send_json(a.conn, json!({"type": "ack", "seq": 1000}));
    d.assert_silent(a.conn);
}

#[test]
fn unknown_type_echoes_ref() {
    let mut d = Driver::open();
    let c = d.connect();
    d.send(c, r#"{"type":"shout","ref":"abc"}"#);
    assert_eq!(d.expect_error(c, "bad-message")["ref"], "abc");
}

#[test]
fn ref_strings_and_numbers_are_echoed_exactly() {
    let mut d = Driver::open();
    let c = d.connect();
    let longest = format!("\"{}\"", "r".repeat(64));
    for raw in [
        r#""a""#,
        r#""""#,
        r#""caf\u00e9 \"q\"""#,
        "7",
        "0",
        "-12",
        "3.25",
        "1e3",
        "123456789012345678901234567890",
        longest.as_str(),
    ] {
        d.send(c, &format!(r#"{{"type":"offer","ref":{raw}}}"#));
        let text = d.take_one_raw(c);
        assert_eq!(raw_field(&text, "code"), r#""not-joined""#, "{text}");
        assert_eq!(raw_field(&text, "ref"), raw, "{text}");
    }
}

#[test]
fn other_refs_are_not_echoed() {
    let mut d = Driver::open();
    let c = d.connect();
    let too_long = format!("\"{}\"", "r".repeat(65));
    let too_long_number = "1".repeat(65);
    for raw in [
        r#"{"id":1}"#,
        "[1]",
        "true",
        "false",
        "null",
        too_long.as_str(),
        too_long_number.as_str(),
    ] {
        d.send(c, &format!(r#"{{"type":"offer","ref":{raw}}}"#));
        let e = d.expect_error(c, "not-joined");
        assert!(e.get("ref").is_none(), "ref {raw} echoed: {e}");
    }
}

#[test]
fn ref_is_echoed_for_each_kind_of_refusal() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let cases = [
        (
            json!({"type": "join", "room": "x", "ref": "r1"}),
            "already-joined",
        ),
        (
            json!({"type": "offer", "to": "nobody", "sdp": "v", "ref": "r2"}),
            "unknown-peer",
        ),
        (
            json!({"type": "offer", "to": a.id, "ref": "r3"}),
            "bad-message",
        ),
        (
            json!({"type": "kick", "peer": a.id, "ref": "r4"}),
            "forbidden",
        ),
        (json!({"type": "ack", "ref": "r5"}), "bad-message"),
    ];
    for (msg, code) in cases {
        d.send_json(a.conn, msg.clone());
        let e = d.expect_error(a.conn, code);
        assert_eq!(e["ref"], msg["ref"], "{e}");
    }
    let c = d.connect();
    d.send_json(c, json!({"type": "join", "room": "bad room", "ref": 9}));
    assert_eq!(d.expect_error(c, "bad-room")["ref"], 9);
    d.send_json(c, json!({"type": "resume", "token": "nope", "ref": 10}));
    assert_eq!(d.expect_error(c, "bad-resume")["ref"], 10);
}

#[test]
fn ref_is_echoed_when_a_field_is_ill_typed() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    for msg in [
        json!({"type": "message", "to": 5, "data": 1, "ref": "t1"}),
        json!({"type": "ack", "seq": "x", "ref": "t2"}),
        json!({"type": "join", "room": 5, "ref": "t3"}),
    ] {
        d.send_json(a.conn, msg.clone());
        let e = d.take_one(a.conn);
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["ref"], msg["ref"], "{msg}: {e}");
    }
}

#[test]
fn ping_is_answered_with_pong_echoing_id() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    for id in [json!(1), json!("abc"), json!({"n": [1, 2]}), json!(2.5)] {
        d.send_json(a.conn, json!({"type": "ping", "id": id}));
        let p = d.take_one(a.conn);
        assert_eq!(p["type"], "pong");
        assert_eq!(p["id"], id);
        assert!(p.get("seq").is_none(), "pong is not numbered: {p}");
    }
    d.send_json(a.conn, json!({"type": "ping"}));
    let p = d.take_one(a.conn);
    assert_eq!(p["type"], "pong");
    assert!(matches!(p.get("id"), None | Some(Value::Null)), "{p}");
    // Pongs do not use up seq numbers.
    let b = d.join("demo", "Bob");
    assert_peer_joined(&d.take_one(a.conn), &b.id, "Bob", 1);
}

#[test]
fn ping_id_is_copied_byte_for_byte() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let raw = r#"{"t" : "\u00e9", "n":1.50}"#;
    d.send(a.conn, &format!(r#"{{"type":"ping","id":{raw}}}"#));
    let text = d.take_one_raw(a.conn);
    assert_eq!(raw_field(&text, "id"), raw);
}

#[test]
fn reported_fatal_errors_close_with_1008_or_1009() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.report(b.conn, ErrorCode::TooLarge, "frame over 1 MiB", true);
    let e = d.expect_fatal(b.conn, "too-large", 1009);
    assert_eq!(e["reason"], "frame over 1 MiB");
    assert!(e.get("ref").is_none());
    let c = d.connect();
    d.report(c, ErrorCode::OriginNotAllowed, "origin refused", true);
    d.expect_fatal(c, "origin-not-allowed", 1008);
    let x = d.join("demo", "Xi");
    d.take(a.conn);
    d.report(x.conn, ErrorCode::BadMessage, "binary frame", true);
    d.expect_fatal(x.conn, "bad-message", 1008);
    // A closed connection hears nothing more and is ignored afterwards.
    d.send_json(b.conn, json!({"type": "ping"}));
    d.disconnect(b.conn);
    assert!(d.take_raw(b.conn).is_empty());
    // Losing the transport this way suspends the session: the others see nothing yet.
    d.assert_silent(a.conn);
    let (_, _, replay) = d.resume_ok(&b, 0);
    assert_eq!(
        types(&replay),
        ["peer-joined"],
        "Xi joined while Bob was away"
    );
}

#[test]
fn reported_non_fatal_error_keeps_the_connection() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    d.report(
        a.conn,
        ErrorCode::BadMessage,
        "binary frames are not supported",
        false,
    );
    let e = d.expect_error(a.conn, "bad-message");
    assert_eq!(e["reason"], "binary frames are not supported");
    d.send_json(a.conn, json!({"type": "ping", "id": 1}));
    assert_eq!(d.take_one(a.conn)["type"], "pong");
}

#[test]
fn shutdown_tells_every_connection_and_closes_it() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    let x = d.join("other", "Xi");
    let idle = d.connect();
    d.take(a.conn);
    d.shutdown();
    for conn in [a.conn, b.conn, x.conn, idle] {
        d.expect_fatal(conn, "server-shutdown", 1008);
    }
    assert_eq!(d.counts().0, 0, "no connection left");
}

/// Found by the `signal_hub` fuzz target (fuzz/README.md): an SDP whose JSON string holds
/// a lone surrogate escape was relayed as it came, and peers with a strict JSON parser
/// could not read the offer at all.
#[test]
fn unpaired_surrogate_escapes_in_relayed_values_are_refused_not_relayed() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    let id = &b.id;
    for text in [
        // The fuzzer's input, as sent.
        format!(
            r#"{{"type":"offer","to":"{id}","sdp":"v=0\r\na=fingerprint:sha-256 AB:CD\r\n\u00e9\ud41c\udf89\/"}}"#
        ),
        format!(r#"{{"type":"message","to":"{id}","data":{{"x":["\ud83d"]}},"ref":"r1"}}"#),
        format!(r#"{{"type":"candidate","to":"{id}","candidate":{{"candidate":"\udc00\ud800"}}}}"#),
        r#"{"type":"ping","id":"\udfff"}"#.to_string(),
    ] {
        d.send(a.conn, &text);
        let e = d.expect_error(a.conn, "bad-message");
        assert!(
            e["reason"].as_str().unwrap_or("").contains("surrogate"),
            "{e}"
        );
        d.assert_silent(b.conn);
    }
    // A properly paired escape (an emoji) still goes through byte for byte.
    let sdp = r#""v=0\r\n\ud83d\ude00""#;
    d.send(
        a.conn,
        &format!(r#"{{"type":"offer","to":"{id}","sdp":{sdp}}}"#),
    );
    let got = d.take_one_raw(b.conn);
    assert_eq!(raw_field(&got, "sdp"), sdp);
}

/// Numbers are relayed as the client wrote them, even past what a double holds: that is
/// valid JSON (JavaScript reads it as Infinity). The fuzzer's first check refused it; the
/// check was wrong, not the hub (fuzz/README.md).
#[test]
fn numbers_beyond_a_double_are_relayed_byte_for_byte() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    let data = r#"{"big":1e700,"exact":12345678901234567890123,"neg":-0.0}"#;
    d.send(
        a.conn,
        &format!(r#"{{"type":"message","to":"{}","data":{data}}}"#, b.id),
    );
    let got = d.take_one_raw(b.conn);
    assert_eq!(raw_field(&got, "data"), data);
}

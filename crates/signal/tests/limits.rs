//! Message size and rate limits.

mod common;

use common::*;
use serde_json::json;

fn rate(r: u32) -> Driver {
    Driver::new(HubConfig {
        rate: r,
        ..HubConfig::default()
    })
}

/// A `message` from `from` to `to` padded to exactly `len` bytes.
fn message_of_len(from_to: &str, len: usize) -> String {
    let head = format!(r#"{{"type":"message","to":"{from_to}","data":""#);
    let pad = len - head.len() - 2;
    let text = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(text.len(), len);
    text
}

#[test]
fn messages_up_to_max_message_pass_and_larger_ones_are_dropped() {
    let mut d = Driver::new(HubConfig {
        max_message: 200,
        ..HubConfig::default()
    });
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.send(a.conn, &message_of_len(&b.id, 200));
    assert_eq!(d.take_one(b.conn)["type"], "message");
    d.assert_silent(a.conn);
    d.send(a.conn, &message_of_len(&b.id, 201));
    let e = d.expect_error(a.conn, "too-large");
    assert!(e["reason"].as_str().unwrap().contains("200"), "{e}");
    d.assert_silent(b.conn);
    // Size is checked before parsing: oversized garbage is too-large too.
    d.send(a.conn, &"{".repeat(201));
    d.expect_error(a.conn, "too-large");
    // The connection and the session are fine.
    d.message(&a, &b, json!("small"));
    assert_eq!(seq(&d.take_one(b.conn)), 2);
}

#[test]
fn default_max_message_is_64_kib() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.send(a.conn, &message_of_len(&b.id, 65536));
    assert_eq!(d.take_one(b.conn)["from"], a.id.as_str());
    d.send(a.conn, &message_of_len(&b.id, 65537));
    d.expect_error(a.conn, "too-large");
    d.assert_silent(b.conn);
}

#[test]
fn bursts_of_4x_the_rate_pass_then_messages_are_dropped() {
    let mut d = rate(5);
    let b = d.join("demo", "Bob");
    let a = d.join("demo", "Ada"); // the join is Ada's first message
    d.take(b.conn);
    for i in 0..19 {
        d.message(&a, &b, json!(i));
    }
    assert_eq!(d.take(b.conn).len(), 19);
    d.assert_silent(a.conn);
    d.message(&a, &b, json!("one too many"));
    let e = d.expect_error(a.conn, "rate-limited");
    assert!(e.get("ref").is_none());
    d.assert_silent(b.conn);
    // A second later, 5 more pass.
    d.advance(secs(1));
    for i in 0..6 {
        d.message(&a, &b, json!(i));
    }
    assert_eq!(seqs(&d.take(b.conn)), [21, 22, 23, 24, 25]);
    d.expect_error(a.conn, "rate-limited");
}

#[test]
fn the_limit_is_per_connection() {
    let mut d = rate(5);
    let a = d.connect();
    let b = d.connect();
    for _ in 0..25 {
        d.send_json(a, json!({"type": "ping"}));
    }
    let got = d.take(a);
    assert_eq!(types(&got).iter().filter(|t| **t == "pong").count(), 20);
    for _ in 0..20 {
        d.send_json(b, json!({"type": "ping"}));
    }
    assert!(types(&d.take(b)).iter().all(|t| *t == "pong"));
}

#[test]
fn a_flood_past_10x_is_disconnected() {
    let mut d = rate(5);
    let c = d.connect();
    // Everything at one instant: 20 pass (4x burst), 180 are dropped, and the client has
    // then used up the 10x allowance (40x burst).
    for _ in 0..200 {
        d.send_json(c, json!({"type": "ping"}));
    }
    let got = d.take(c);
    assert_eq!(got.len(), 200);
    assert!(got[..20].iter().all(|m| m["type"] == "pong"));
    for e in &got[20..] {
        assert_eq!(e["code"], "rate-limited", "{e}");
        assert_eq!(e["fatal"], false);
    }
    assert_eq!(d.closed(c), None);
    d.send_json(c, json!({"type": "ping"}));
    d.expect_fatal(c, "rate-limited", 1008);
    d.send_json(c, json!({"type": "ping"}));
    assert!(d.take_raw(c).is_empty(), "ignored after the close");
}

#[test]
fn sustained_8x_is_dropped_but_not_disconnected() {
    let mut d = rate(5);
    let c = d.connect();
    let (mut pongs, mut dropped) = (0, 0);
    // 40 messages per second for a minute.
    for _ in 0..2400 {
        d.send_json(c, json!({"type": "ping"}));
        for m in d.take(c) {
            match m["type"].as_str().unwrap() {
                "pong" => pongs += 1,
                _ => {
                    assert_eq!(m["code"], "rate-limited");
                    assert_eq!(m["fatal"], false, "disconnected after {pongs} pongs");
                    dropped += 1;
                }
            }
        }
        d.advance(millis(25));
    }
    assert_eq!(d.closed(c), None);
    // 20 of burst plus 5 per second.
    assert!((315..=325).contains(&pongs), "{pongs} pongs");
    assert_eq!(pongs + dropped, 2400);
}

#[test]
fn sustained_20x_is_disconnected_within_seconds() {
    let mut d = rate(5);
    let c = d.connect();
    let start = d.now;
    while d.closed(c).is_none() {
        assert!(
            d.now - start < secs(10),
            "still connected after 10 s at 20x"
        );
        d.send_json(c, json!({"type": "ping"}));
        let got = d.take(c);
        if let Some(last) = got.last() {
            if last["fatal"] == true {
                assert_eq!(last["code"], "rate-limited");
            }
        }
        d.advance(millis(10));
    }
    assert_eq!(d.closed(c), Some(1008));
    // 200 of burst, spent at 100/s while 50/s come back: about 4 s.
    let took = d.now - start;
    assert!(took > secs(3) && took < secs(5), "{took:?}");
}

#[test]
fn the_limit_recovers_after_a_pause() {
    let mut d = rate(5);
    let c = d.connect();
    for _ in 0..30 {
        d.send_json(c, json!({"type": "ping"}));
    }
    assert_eq!(d.take(c).iter().filter(|m| m["type"] == "pong").count(), 20);
    d.advance(secs(10));
    for _ in 0..20 {
        d.send_json(c, json!({"type": "ping"}));
    }
    assert!(
        d.take(c).iter().all(|m| m["type"] == "pong"),
        "full burst again"
    );
    d.send_json(c, json!({"type": "ping"}));
    d.expect_error(c, "rate-limited");
}

#[test]
fn rate_zero_is_unlimited() {
    let mut d = rate(0);
    let c = d.connect();
    for _ in 0..10_000 {
        d.send_json(c, json!({"type": "ping"}));
    }
    let got = d.take(c);
    assert_eq!(got.len(), 10_000);
    assert!(got.iter().all(|m| m["type"] == "pong"));
    assert_eq!(d.closed(c), None);
}

#[test]
fn a_disconnected_flooder_keeps_its_session_for_the_grace_period() {
    let mut d = rate(5);
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    // The join was Bob's first message.
    for _ in 0..199 {
        d.send_json(b.conn, json!({"type": "ping"}));
    }
    assert_eq!(d.take(b.conn).len(), 199);
    d.send_json(b.conn, json!({"type": "ping"}));
    d.expect_fatal(b.conn, "rate-limited", 1008);
    d.assert_silent(a.conn);
    d.message(&a, &b, json!("while away"));
    let (_, _, replay) = d.resume_ok(&b, 0);
    assert_eq!(replay[0]["data"], "while away");
}

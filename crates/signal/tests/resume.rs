//! Suspended sessions: the grace period, `resume`, replay of what was missed, and tokens
//! that rotate on every resume.

mod common;

use common::*;
use serde_json::json;

/// Ada and Bob in "demo", membership events taken.
fn pair(d: &mut Driver) -> (Peer, Peer) {
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    (a, b)
}

#[test]
fn resume_within_grace_keeps_the_peer_and_nobody_notices() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    d.advance_and_tick(secs(29));
    d.assert_silent(a.conn);
    let (b2, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["protocol"], 1);
    assert_eq!(resumed["room"], "demo");
    assert_eq!(resumed["peerId"], b.id.as_str());
    assert_eq!(resumed["gap"], false);
    assert_eq!(resumed["peers"], json!([{"id": a.id, "name": "Ada"}]));
    assert!(resumed.get("seq").is_none(), "{resumed}");
    assert_ne!(b2.resume, b.resume, "a new resume token");
    assert!(replay.is_empty(), "{replay:?}");
    d.assert_silent(a.conn);
    // Routing goes to the new connection, both ways.
    d.message(&a, &b2, json!("back?"));
    assert_eq!(d.take_one(b2.conn)["data"], "back?");
    d.message(&b2, &a, json!("yes"));
    assert_eq!(d.take_one(a.conn)["from"], b.id.as_str());
    assert_eq!(d.counts(), (2, 2, 0, 1));
}

#[test]
fn messages_sent_while_suspended_are_replayed_in_order() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    d.send_json(a.conn, json!({"type": "offer", "to": b.id, "sdp": "v=0 o"}));
    d.send_json(
        a.conn,
        json!({"type": "candidate", "to": b.id, "candidate": {"c": 1}}),
    );
    let c = d.join("demo", "Cy");
    d.send_json(
        c.conn,
        json!({"type": "candidate", "to": b.id, "candidate": null}),
    );
    d.message(&a, &b, json!({"n": 3}));
    d.send_json(c.conn, json!({"type": "leave"}));
    d.take(a.conn);
    let (b2, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["gap"], false);
    assert_eq!(
        types(&replay),
        [
            "offer",
            "candidate",
            "peer-joined",
            "candidate",
            "message",
            "peer-left"
        ]
    );
    assert_eq!(seqs(&replay), [1, 2, 3, 4, 5, 6]);
    assert_eq!(replay[0]["sdp"], "v=0 o");
    assert_eq!(replay[1]["candidate"], json!({"c": 1}));
    assert_eq!(replay[2]["peer"]["id"], c.id.as_str());
    assert_eq!(replay[3]["from"], c.id.as_str());
    assert!(replay[3]["candidate"].is_null());
    assert_eq!(replay[4]["data"]["n"], 3);
    assert_peer_left(&replay[5], &c.id, "left", 6);
    // Numbering continues after the replay.
    d.message(&a, &b2, json!("next"));
    assert_eq!(seq(&d.take_one(b2.conn)), 7);
}

#[test]
fn last_seq_skips_what_was_already_seen() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    for i in 1..=3 {
        d.message(&a, &b, json!(i));
    }
    assert_eq!(seqs(&d.take(b.conn)), [1, 2, 3]);
    d.disconnect(b.conn);
    d.message(&a, &b, json!(4));
    let (b2, resumed, replay) = d.resume_ok(&b, 2);
    assert_eq!(resumed["gap"], false);
    assert_eq!(seqs(&replay), [3, 4]);
    assert_eq!(replay[1]["data"], 4);
    // What a resume acknowledged is not replayed again.
    d.disconnect(b2.conn);
    let (_, _, replay) = d.resume_ok(&b2, 3);
    assert_eq!(seqs(&replay), [4]);
}

#[test]
fn acked_messages_are_not_replayed() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    for i in 1..=4 {
        d.message(&a, &b, json!(i));
    }
    d.take(b.conn);
    d.send_json(b.conn, json!({"type": "ack", "seq": 3}));
    d.assert_silent(b.conn);
    d.disconnect(b.conn);
    let (_, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["gap"], false, "acknowledged messages are not lost");
    assert_eq!(seqs(&replay), [4]);
}

#[test]
fn old_resume_token_stops_working_and_the_new_one_works() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    let (b2, _, _) = d.resume_ok(&b, 0);
    let (c, got) = d.resume(&b.resume, 0);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "bad-resume");
    assert_eq!(got[0]["fatal"], false);
    assert_eq!(d.closed(c), None);
    assert_eq!(
        d.closed(b2.conn),
        None,
        "the failed attempt did not touch the session"
    );
    d.disconnect(b2.conn);
    let (b3, resumed, _) = d.resume_ok(&b2, 0);
    assert_ne!(b3.resume, b2.resume);
    assert_eq!(resumed["peerId"], b.id.as_str());
    d.assert_silent(a.conn);
}

#[test]
fn resume_of_an_attached_session_closes_the_old_connection() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    d.message(&a, &b, json!("seen on the old connection"));
    d.take(b.conn);
    let (b2, resumed, replay) = d.resume_ok(&b, 1);
    assert_eq!(resumed["gap"], false);
    assert!(replay.is_empty());
    assert_eq!(d.closed(b.conn), Some(1000));
    assert!(
        d.take_raw(b.conn).is_empty(),
        "no error on the replaced connection"
    );
    // Messages still arriving on the replaced connection are ignored (the driver panics if
    // anything is sent on a closed connection).
    d.send_json(
        b.conn,
        json!({"type": "message", "to": a.id, "data": "ghost"}),
    );
    d.send_json(b.conn, json!({"type": "join", "room": "demo"}));
    d.assert_silent(a.conn);
    assert_eq!(d.counts().1, 2, "no new session");
    // The old connection's late disconnect does not suspend the session.
    d.disconnect(b.conn);
    assert_eq!(d.counts().2, 0);
    assert_eq!(d.hub.poll_timeout(), None);
    d.advance_and_tick(secs(120));
    d.assert_silent(a.conn);
    d.message(&a, &b2, json!("to the new connection"));
    let m = d.take_one(b2.conn);
    assert_eq!(m["data"], "to the new connection");
    assert_eq!(m["seq"], 2);
}

#[test]
fn unknown_resume_tokens_are_bad_resume() {
    let mut d = Driver::open();
    let (_a, b) = pair(&mut d);
    for msg in [
        json!({"type": "resume", "token": "0123456789abcdef", "lastSeq": 0}),
        json!({"type": "resume", "token": "", "lastSeq": 0}),
        json!({"type": "resume", "token": b.id, "lastSeq": 0}),
        json!({"type": "resume", "lastSeq": 0}),
    ] {
        let c = d.connect();
        d.send_json(c, msg);
        d.expect_error(c, "bad-resume");
        // The connection may join instead.
        let j = d.join_on(c, json!({"type": "join", "room": "elsewhere"}));
        assert_eq!(j["type"], "joined");
    }
    d.assert_silent(b.conn);
}

#[test]
fn the_token_of_a_session_that_left_is_bad_resume() {
    let mut d = Driver::open();
    let (_a, b) = pair(&mut d);
    d.send_json(b.conn, json!({"type": "leave"}));
    d.take(b.conn);
    let (_, got) = d.resume(&b.resume, 0);
    assert_eq!(got[0]["code"], "bad-resume", "{got:?}");
}

#[test]
fn grace_expiry_ends_the_session() {
    let mut d = Driver::new(HubConfig {
        grace: secs(10),
        ..HubConfig::default()
    });
    let (a, b) = pair(&mut d);
    assert_eq!(d.hub.poll_timeout(), None);
    d.advance(secs(3));
    d.disconnect(b.conn);
    let deadline = d.now + secs(10);
    assert_eq!(d.hub.poll_timeout(), Some(deadline));
    d.advance_and_tick(secs(10) - millis(1));
    d.assert_silent(a.conn);
    assert_eq!(d.hub.poll_timeout(), Some(deadline));
    d.advance_and_tick(millis(1));
    assert_peer_left(&d.take_one(a.conn), &b.id, "timeout", 2);
    assert_eq!(d.hub.poll_timeout(), None);
    let (_, got) = d.resume(&b.resume, 0);
    assert_eq!(got[0]["code"], "bad-resume", "{got:?}");
    d.message(&a, &b, json!("gone"));
    d.expect_error(a.conn, "unknown-peer");
}

#[test]
fn resume_after_the_grace_period_fails_even_before_the_timer_runs() {
    let mut d = Driver::new(HubConfig {
        grace: secs(10),
        ..HubConfig::default()
    });
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    d.advance(secs(11));
    let (_, got) = d.resume(&b.resume, 0);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "bad-resume", "{got:?}");
    d.tick();
    let left = d.take(a.conn);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_peer_left(&left[0], &b.id, "timeout", 2);
}

#[test]
fn poll_timeout_reports_the_earliest_deadline() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    let c = d.join("demo", "Cy");
    d.take(a.conn);
    d.disconnect(b.conn);
    let first = d.now + secs(30);
    d.advance(secs(5));
    d.disconnect(c.conn);
    let second = d.now + secs(30);
    assert_eq!(d.hub.poll_timeout(), Some(first));
    d.now = first;
    d.tick();
    assert_peer_left(&d.take_one(a.conn), &b.id, "timeout", 3);
    assert_eq!(d.hub.poll_timeout(), Some(second));
    // Resuming the other one clears the timer.
    let _ = d.resume_ok(&c, 0);
    assert_eq!(d.hub.poll_timeout(), None);
    d.now = second;
    d.tick();
    d.assert_silent(a.conn);
}

#[test]
fn a_session_can_be_suspended_and_resumed_repeatedly() {
    let mut d = Driver::new(HubConfig {
        grace: secs(10),
        ..HubConfig::default()
    });
    let (a, mut b) = pair(&mut d);
    for round in 1..=5u64 {
        d.disconnect(b.conn);
        d.message(&a, &b, json!(round));
        d.advance_and_tick(secs(8));
        let (b2, resumed, replay) = d.resume_ok(&b, round - 1);
        assert_eq!(resumed["gap"], false);
        assert_eq!(seqs(&replay), [round]);
        b = b2;
    }
    d.assert_silent(a.conn);
    d.advance_and_tick(secs(60));
    d.assert_silent(a.conn);
}

#[test]
fn resumed_peers_list_is_current() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    let c = d.join("demo", "Cy");
    d.send_json(a.conn, json!({"type": "leave"}));
    let (_, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["peers"], json!([{"id": c.id, "name": "Cy"}]));
    assert_eq!(types(&replay), ["peer-joined", "peer-left"]);
}

#[test]
fn leave_after_resume_ends_the_session_for_good() {
    let mut d = Driver::open();
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    let (b2, _, _) = d.resume_ok(&b, 0);
    d.send_json(b2.conn, json!({"type": "leave"}));
    assert_eq!(d.take_one(b2.conn)["type"], "left");
    assert_peer_left(&d.take_one(a.conn), &b.id, "left", 2);
    let (_, got) = d.resume(&b2.resume, 0);
    assert_eq!(got[0]["code"], "bad-resume");
}

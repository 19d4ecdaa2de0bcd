//! The resume buffer's limits: `gap` after an overflow while attached, the end of a
//! suspended session whose buffer overflows, and acks that keep it small.

mod common;

use common::*;
use serde_json::json;

fn small_buffer(messages: usize, bytes: usize) -> Driver {
    Driver::new(HubConfig {
        replay_messages: messages,
        replay_bytes: bytes,
        rate: 0,
        ..HubConfig::default()
    })
}

/// Ada and Bob in "demo", membership events taken.
fn pair(d: &mut Driver) -> (Peer, Peer) {
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    (a, b)
}

#[test]
fn overflow_while_attached_gives_gap_from_an_old_last_seq() {
    let mut d = small_buffer(4, 1 << 20);
    let (a, b) = pair(&mut d);
    for i in 1..=6 {
        d.message(&a, &b, json!(i));
    }
    assert_eq!(
        seqs(&d.take(b.conn)),
        [1, 2, 3, 4, 5, 6],
        "all delivered live"
    );
    d.disconnect(b.conn);
    let (_, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["gap"], true);
    assert_eq!(
        seqs(&replay),
        [3, 4, 5, 6],
        "what is still kept is replayed"
    );
    d.assert_silent(a.conn);
}

#[test]
fn no_gap_when_the_dropped_messages_were_seen() {
    for (last_seq, want) in [(2, vec![3, 4, 5, 6]), (5, vec![6]), (6, vec![])] {
        let mut d = small_buffer(4, 1 << 20);
        let (a, b) = pair(&mut d);
        for i in 1..=6 {
            d.message(&a, &b, json!(i));
        }
        d.take(b.conn);
        d.disconnect(b.conn);
        let (_, resumed, replay) = d.resume_ok(&b, last_seq);
        assert_eq!(resumed["gap"], false, "lastSeq {last_seq}");
        assert_eq!(seqs(&replay), want, "lastSeq {last_seq}");
    }
}

#[test]
fn a_full_buffer_while_suspended_is_still_resumable() {
    let mut d = small_buffer(4, 1 << 20);
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    for i in 1..=4 {
        d.message(&a, &b, json!(i));
    }
    d.assert_silent(a.conn);
    let (_, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["gap"], false);
    assert_eq!(seqs(&replay), [1, 2, 3, 4]);
}

#[test]
fn overflow_while_suspended_ends_the_session() {
    let mut d = Driver::new(HubConfig {
        replay_messages: 4,
        room_capacity: 2,
        ..HubConfig::default()
    });
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    for i in 1..=4 {
        d.message(&a, &b, json!(i));
    }
    d.assert_silent(a.conn);
    d.message(&a, &b, json!(5));
    // The fifth message is accepted, but it ends Bob's session.
    assert_peer_left(&d.take_one(a.conn), &b.id, "timeout", 2);
    assert_eq!(d.hub.poll_timeout(), None);
    let (_, got) = d.resume(&b.resume, 0);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "bad-resume");
    d.message(&a, &b, json!(6));
    d.expect_error(a.conn, "unknown-peer");
    // Bob's place in the room is free again.
    let c = d.join("demo", "Cy");
    assert_peer_joined(&d.take_one(a.conn), &c.id, "Cy", 3);
}

#[test]
fn byte_limit_overflow_while_suspended_ends_the_session() {
    let mut d = small_buffer(256, 1000);
    let (a, b) = pair(&mut d);
    d.disconnect(b.conn);
    let big = "x".repeat(400);
    d.message(&a, &b, json!(big));
    d.message(&a, &b, json!(big));
    d.assert_silent(a.conn);
    d.message(&a, &b, json!(big));
    assert_peer_left(&d.take_one(a.conn), &b.id, "timeout", 2);
    let (_, got) = d.resume(&b.resume, 0);
    assert_eq!(got[0]["code"], "bad-resume");
}

#[test]
fn byte_limit_overflow_while_attached_gives_gap() {
    let mut d = small_buffer(256, 1000);
    let (a, b) = pair(&mut d);
    let big = "x".repeat(400);
    for _ in 0..3 {
        d.message(&a, &b, json!(big));
    }
    assert_eq!(d.take(b.conn).len(), 3);
    d.disconnect(b.conn);
    let (_, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["gap"], true);
    assert_eq!(seqs(&replay), [2, 3]);
}

#[test]
fn an_unacknowledged_full_buffer_overflows_with_the_next_message_while_suspended() {
    let mut d = small_buffer(4, 1 << 20);
    let (a, b) = pair(&mut d);
    for i in 1..=6 {
        d.message(&a, &b, json!(i));
    }
    d.take(b.conn);
    d.disconnect(b.conn);
    d.assert_silent(a.conn);
    d.message(&a, &b, json!(7));
    assert_peer_left(&d.take_one(a.conn), &b.id, "timeout", 2);
}

#[test]
fn acking_sessions_never_get_a_gap() {
    // A buffer of 4 and a session that lives through 600 messages, acking every third one
    // and losing its transport every 50: acks keep the buffer from ever overflowing.
    let mut d = small_buffer(4, 1 << 20);
    let (a, mut b) = pair(&mut d);
    let mut last = 0;
    for i in 1..=600u64 {
        d.message(&a, &b, json!(i));
        last = seq(&d.take_one(b.conn));
        if i % 3 == 0 {
            d.send_json(b.conn, json!({"type": "ack", "seq": last}));
            d.assert_silent(b.conn);
        }
        if i % 50 == 0 {
            d.disconnect(b.conn);
            d.message(&a, &b, json!("away 1"));
            d.message(&a, &b, json!("away 2"));
            d.assert_silent(a.conn);
            let (b2, resumed, replay) = d.resume_ok(&b, last);
            assert_eq!(resumed["gap"], false, "at message {i}");
            assert_eq!(seqs(&replay), [last + 1, last + 2], "at message {i}");
            last += 2;
            b = b2;
        }
    }
    assert_eq!(last, 600 + 2 * 12);
}

#[test]
fn ack_beyond_what_was_sent_loses_nothing() {
    let mut d = small_buffer(4, 1 << 20);
    let (a, b) = pair(&mut d);
    d.send_json(b.conn, json!({"type": "ack", "seq": 1000}));
    d.assert_silent(b.conn);
    d.disconnect(b.conn);
    d.message(&a, &b, json!(1));
    d.message(&a, &b, json!(2));
    let (_, resumed, replay) = d.resume_ok(&b, 0);
    assert_eq!(resumed["gap"], false);
    assert_eq!(seqs(&replay), [1, 2]);
}

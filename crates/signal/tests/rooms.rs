//! Joining, membership events, capacity, leaving and joining again.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;

#[test]
fn join_answer_has_every_field() {
    let mut d = Driver::new(HubConfig {
        grace: secs(7),
        ..HubConfig::default()
    });
    let c = d.connect();
    let j = d.join_on(c, json!({"type": "join", "room": "demo", "name": "Ada"}));
    assert_eq!(j["type"], "joined");
    assert_eq!(j["protocol"], 1);
    assert_eq!(j["room"], "demo");
    assert_eq!(j["name"], "Ada");
    assert!(j["peerId"].as_str().is_some_and(|s| !s.is_empty()), "{j}");
    assert!(j["resume"].as_str().is_some_and(|s| !s.is_empty()), "{j}");
    assert_ne!(j["resume"], j["peerId"]);
    assert_eq!(j["grace"], 7);
    assert_eq!(j["peers"], json!([]));
    assert_eq!(j["grants"], json!(["publish", "subscribe"]));
    assert!(j.get("seq").is_none(), "joined carries no seq: {j}");
}

#[test]
fn default_grace_is_30_and_default_name_is_guest() {
    let mut d = Driver::open();
    let c = d.connect();
    let j = d.join_on(c, json!({"type": "join", "room": "demo"}));
    assert_eq!(j["name"], "guest");
    assert_eq!(j["grace"], 30);
    // Others see the default name too.
    let b = d.connect();
    let k = d.join_on(b, json!({"type": "join", "room": "demo", "name": "Bob"}));
    assert_eq!(k["peers"], json!([{"id": j["peerId"], "name": "guest"}]));
    let ev = d.take_one(c);
    assert_peer_joined(&ev, k["peerId"].as_str().unwrap(), "Bob", 1);
}

#[test]
fn peers_list_names_everyone_already_there() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    let c = d.connect();
    let j = d.join_on(c, json!({"type": "join", "room": "demo", "name": "Cy"}));
    let peers = j["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{j}");
    let mut seen: Vec<(String, String)> = peers
        .iter()
        .map(|p| {
            assert!(
                p.get("identity").is_none(),
                "open rooms have no identity: {p}"
            );
            (
                p["id"].as_str().unwrap().into(),
                p["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![(a.id.clone(), "Ada".into()), (b.id.clone(), "Bob".into())];
    want.sort();
    assert_eq!(seen, want);
    assert!(peers.iter().all(|p| p["id"] != j["peerId"]));
}

#[test]
fn names_are_escaped_and_round_trip() {
    let mut d = Driver::open();
    let name = "Ada \"the\" \\ Lovelace é 日本 🎉";
    let a = d.join("demo", name);
    let b = d.connect();
    let j = d.join_on(b, json!({"type": "join", "room": "demo", "name": "Bob"}));
    assert_eq!(j["peers"][0]["name"], name);
    let c = d.connect();
    let k = d.join_on(c, json!({"type": "join", "room": "demo", "name": name}));
    assert_eq!(k["name"], name);
    let ev = d.take(a.conn);
    assert_eq!(ev[1]["peer"]["name"], name);
}

#[test]
fn peer_joined_and_peer_left_are_numbered_per_session() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    assert_peer_joined(&d.take_one(a.conn), &b.id, "Bob", 1);
    d.assert_silent(b.conn);
    let c = d.join("demo", "Cy");
    assert_peer_joined(&d.take_one(a.conn), &c.id, "Cy", 2);
    assert_peer_joined(&d.take_one(b.conn), &c.id, "Cy", 1);
    d.assert_silent(c.conn);

    d.send_json(b.conn, json!({"type": "leave"}));
    let left = d.take_one(b.conn);
    assert_eq!(left, json!({"type": "left"}));
    assert_peer_left(&d.take_one(a.conn), &b.id, "left", 3);
    assert_peer_left(&d.take_one(c.conn), &b.id, "left", 1);
}

#[test]
fn membership_events_stay_in_their_room() {
    let mut d = Driver::open();
    let a = d.join("one", "Ada");
    let x = d.join("two", "Xi");
    let b = d.join("one", "Bob");
    assert_peer_joined(&d.take_one(a.conn), &b.id, "Bob", 1);
    d.assert_silent(x.conn);
    let y = d.connect();
    let j = d.join_on(y, json!({"type": "join", "room": "two", "name": "Yu"}));
    assert_eq!(j["peers"].as_array().unwrap().len(), 1);
    assert_eq!(j["peers"][0]["id"], x.id.as_str());
    d.take(x.conn);
    d.send_json(b.conn, json!({"type": "leave"}));
    d.take(b.conn);
    assert_peer_left(&d.take_one(a.conn), &b.id, "left", 2);
    d.assert_silent(x.conn);
    d.assert_silent(y);
}

#[test]
fn peer_ids_and_resume_tokens_are_unique() {
    let mut d = Driver::open();
    let mut ids = HashSet::new();
    let mut tokens = HashSet::new();
    for i in 0..40 {
        let p = d.join(&format!("room{}", i % 10), "x");
        assert!(ids.insert(p.id), "duplicate peer id");
        assert!(tokens.insert(p.resume), "duplicate resume token");
    }
}

#[test]
fn room_full_at_capacity() {
    let mut d = Driver::new(HubConfig {
        room_capacity: 2,
        ..HubConfig::default()
    });
    let a = d.join("demo", "Ada");
    let _b = d.join("demo", "Bob");
    d.take(a.conn);
    let c = d.connect();
    d.send_json(
        c,
        json!({"type": "join", "room": "demo", "name": "Cy", "ref": "j1"}),
    );
    let e = d.expect_error(c, "room-full");
    assert_eq!(e["ref"], "j1");
    d.assert_silent(a.conn);
    // Another room is not affected, and the refused connection can go there.
    let j = d.join_on(c, json!({"type": "join", "room": "other"}));
    assert_eq!(j["type"], "joined");
}

#[test]
fn suspended_sessions_count_until_they_time_out() {
    let mut d = Driver::new(HubConfig {
        room_capacity: 2,
        ..HubConfig::default()
    });
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.disconnect(b.conn);
    let c = d.connect();
    d.send_json(c, json!({"type": "join", "room": "demo"}));
    d.expect_error(c, "room-full");
    d.advance_and_tick(secs(30));
    assert_peer_left(&d.take_one(a.conn), &b.id, "timeout", 2);
    let j = d.join_on(c, json!({"type": "join", "room": "demo"}));
    assert_eq!(j["type"], "joined");
    assert_eq!(j["peers"].as_array().unwrap().len(), 1);
}

#[test]
fn a_slot_frees_after_leave() {
    let mut d = Driver::new(HubConfig {
        room_capacity: 2,
        ..HubConfig::default()
    });
    let _a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    let c = d.connect();
    d.send_json(c, json!({"type": "join", "room": "demo"}));
    d.expect_error(c, "room-full");
    d.send_json(b.conn, json!({"type": "leave"}));
    let j = d.join_on(c, json!({"type": "join", "room": "demo"}));
    assert_eq!(j["type"], "joined");
}

#[test]
fn leave_then_join_again_on_the_same_connection() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.send_json(b.conn, json!({"type": "leave"}));
    assert_eq!(d.take_one(b.conn), json!({"type": "left"}));
    assert_eq!(d.closed(b.conn), None);
    // After leave the connection has no session.
    d.send_json(
        b.conn,
        json!({"type": "message", "to": a.id, "data": 1, "ref": 5}),
    );
    assert_eq!(d.expect_error(b.conn, "not-joined")["ref"], 5);
    d.send_json(b.conn, json!({"type": "leave"}));
    d.expect_error(b.conn, "not-joined");
    // Joining again gives a new peer id; the others see the old one leave and the new one join.
    let j = d.join_on(
        b.conn,
        json!({"type": "join", "room": "demo", "name": "Bob2"}),
    );
    assert_eq!(j["type"], "joined");
    assert_ne!(j["peerId"], b.id.as_str());
    assert_ne!(j["resume"], b.resume.as_str());
    assert_eq!(j["peers"][0]["id"], a.id.as_str());
    let ev = d.take(a.conn);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_peer_left(&ev[0], &b.id, "left", 2);
    assert_peer_joined(&ev[1], j["peerId"].as_str().unwrap(), "Bob2", 3);
    // The new session counts its own seq from 1, and the old peer id is gone.
    d.message(&a, &b, json!("to the old id"));
    d.expect_error(a.conn, "unknown-peer");
    d.send_json(
        a.conn,
        json!({"type": "message", "to": j["peerId"], "data": 2}),
    );
    assert_eq!(seq(&d.take_one(b.conn)), 1);
}

#[test]
fn leave_then_join_another_room() {
    let mut d = Driver::open();
    let a = d.join("one", "Ada");
    d.send_json(a.conn, json!({"type": "leave"}));
    d.take(a.conn);
    assert_eq!(d.counts().3, 0, "the empty room is removed");
    let x = d.join("two", "Xi");
    let j = d.join_on(
        a.conn,
        json!({"type": "join", "room": "two", "name": "Ada"}),
    );
    assert_eq!(j["room"], "two");
    assert_eq!(j["peers"][0]["id"], x.id.as_str());
}

#[test]
fn rooms_exist_while_they_have_members() {
    let mut d = Driver::open();
    let a = d.join("one", "Ada");
    let b = d.join("one", "Bob");
    let _x = d.join("two", "Xi");
    assert_eq!(d.counts(), (3, 3, 0, 2));
    d.send_json(a.conn, json!({"type": "leave"}));
    assert_eq!(d.counts(), (3, 2, 0, 2));
    d.disconnect(b.conn);
    assert_eq!(d.counts(), (2, 2, 1, 2));
    d.advance_and_tick(secs(30));
    assert_eq!(d.counts(), (2, 1, 0, 1));
}

#[test]
fn second_join_or_resume_is_already_joined() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    d.send_json(
        a.conn,
        json!({"type": "join", "room": "demo", "ref": "again"}),
    );
    assert_eq!(d.expect_error(a.conn, "already-joined")["ref"], "again");
    d.send_json(a.conn, json!({"type": "join", "room": "other"}));
    d.expect_error(a.conn, "already-joined");
    d.send_json(
        a.conn,
        json!({"type": "resume", "token": a.resume, "lastSeq": 0}),
    );
    d.expect_error(a.conn, "already-joined");
    let j = d.connect();
    let k = d.join_on(j, json!({"type": "join", "room": "demo"}));
    assert_eq!(
        k["peers"].as_array().unwrap().len(),
        1,
        "still one Ada: {k}"
    );
}

#[test]
fn room_messages_before_join_are_not_joined() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let c = d.connect();
    for msg in [
        json!({"type": "offer", "to": a.id, "sdp": "v=0"}),
        json!({"type": "answer", "to": a.id, "sdp": "v=0"}),
        json!({"type": "candidate", "to": a.id, "candidate": null}),
        json!({"type": "message", "to": a.id, "data": {}}),
        json!({"type": "ack", "seq": 1}),
        json!({"type": "kick", "peer": a.id}),
        json!({"type": "leave"}),
    ] {
        d.send_json(c, msg.clone());
        let e = d.expect_error(c, "not-joined");
        assert!(e.get("ref").is_none(), "{msg}: {e}");
    }
    d.assert_silent(a.conn);
}

#[test]
fn bad_rooms_and_names() {
    let mut d = Driver::open();
    let long_room = "r".repeat(65);
    let long_name = "n".repeat(65);
    for msg in [
        json!({"type": "join"}),
        json!({"type": "join", "room": ""}),
        json!({"type": "join", "room": "a b"}),
        json!({"type": "join", "room": "a/b"}),
        json!({"type": "join", "room": "café"}),
        json!({"type": "join", "room": "x\u{0}"}),
        json!({"type": "join", "room": long_room}),
        json!({"type": "join", "room": "ok", "name": ""}),
        json!({"type": "join", "room": "ok", "name": long_name}),
        json!({"type": "join", "room": "ok", "name": "line\nbreak"}),
        json!({"type": "join", "room": "ok", "name": "bell\u{7}"}),
    ] {
        let c = d.connect();
        d.send_json(c, msg.clone());
        let e = d.take_one(c);
        assert_eq!(e["code"], "bad-room", "{msg}: {e}");
        assert_eq!(e["fatal"], false);
        // The connection is still usable.
        let j = d.join_on(c, json!({"type": "join", "room": "fine"}));
        assert_eq!(j["type"], "joined", "{msg}");
        d.send_json(c, json!({"type": "leave"}));
        assert_eq!(d.take_one(c)["type"], "left");
    }
    assert_eq!(d.counts().3, 0, "no bad room was created");
}

#[test]
fn longest_room_and_name_are_accepted() {
    let mut d = Driver::open();
    let room = format!("{}_-.9Z", "a".repeat(59));
    assert_eq!(room.len(), 64);
    let name = "é".repeat(64);
    let c = d.connect();
    let j = d.join_on(c, json!({"type": "join", "room": room, "name": name}));
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(j["room"], room.as_str());
    assert_eq!(j["name"], name.as_str());
}

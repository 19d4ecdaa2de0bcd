//! Direct calls through the real binary (docs/signaling.md, "Direct calls"): devices
//! keep their line (`@user`) open over WebSocket and talk to the server's `calls` peer
//! with messages; a call is a private mesh room both sides join to exchange offer and
//! answer. Ringing on every device, answered elsewhere, decline, busy, unreachable,
//! cancel, no answer, invite, and who may take a line or join a call room.

use crate::common;

use common::lines::{join_call, try_join, Line};
use common::Server;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_signal::token::{mint, Claims};

const SECRET: &str = "a room token secret for calls";

fn room_token(room: &str, sub: &str) -> String {
    let claims = Claims {
        room: room.into(),
        sub: Some(sub.into()),
        exp: switchboard_util::unix_now() + 3600,
        nbf: None,
        grants: None,
    };
    mint(SECRET.as_bytes(), &claims).unwrap()
}

fn server(args: &[&str]) -> (Server, SocketAddr) {
    let mut all = vec!["--call-domain", "a.test"];
    all.extend_from_slice(args);
    let s = Server::start(&all);
    let addr = s.http.expect("http");
    (s, addr)
}

#[test]
fn ada_calls_bob_whose_devices_ring_one_answers_and_they_exchange_offer_and_answer() {
    let (s, addr) = server(&[]);
    assert!(
        s.startup
            .iter()
            .any(|l| l.contains("calls: addresses user@a.test; identities: open lines")),
        "{:?}",
        s.startup
    );
    let mut ada = Line::open(addr, "ada", None);
    let mut b1 = Line::open(addr, "bob", None);
    let mut b2 = Line::open(addr, "bob", None);
    let dialing = ada.dial("bob@a.test");
    let (id, room) = (dialing["id"].clone(), dialing["room"].clone());
    assert!(room.as_str().unwrap().starts_with("call-"), "{dialing}");
    assert!(
        dialing.get("token").is_none(),
        "no room tokens, no token: {dialing}"
    );
    assert_eq!(ada.expect("ringing")["to"], "bob@a.test");
    for b in [&mut b1, &mut b2] {
        let inc = b.expect("incoming");
        assert_eq!(
            (&inc["id"], &inc["from"], &inc["fromName"], &inc["room"]),
            (&id, &json!("ada@a.test"), &json!("ada"), &room)
        );
    }
    let (mut ada_call, _) = join_call(addr, &dialing, "Ada");
    b2.request(json!({"call": "accept", "id": id}));
    assert_eq!(ada.expect("answered")["by"], "bob@a.test");
    assert_eq!(b2.expect("answered")["by"], "bob@a.test");
    assert_eq!(b1.expect("ended")["reason"], "answered-elsewhere");
    let (mut bob_call, j) = join_call(addr, &json!({"room": room}), "Bob");
    let ada_id = j["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Ada")
        .map(|p| p["id"].as_str().unwrap().to_string())
        .expect("Ada is in the call room");
    let pj = ada_call.expect("peer-joined");
    let bob_id = pj["peer"]["id"].as_str().unwrap().to_string();
    ada_call.send(json!({"type": "offer", "to": bob_id, "sdp": "v=0\r\n"}));
    let offer = bob_call.expect("offer");
    assert_eq!(offer["from"], ada_id.as_str());
    bob_call.send(json!({"type": "answer", "to": ada_id, "sdp": "v=0\r\n"}));
    assert_eq!(ada_call.expect("answer")["from"], bob_id.as_str());
    // Ada leaves the room: Bob is alone, the call is over for both.
    ada_call.send(json!({"type": "leave"}));
    let e = b2.expect("ended");
    assert_eq!((&e["id"], &e["reason"]), (&id, &json!("hangup")));
    assert_eq!(ada.expect("ended")["reason"], "hangup");
    b1.quiet();
    assert_eq!(
        s.metric_reaching("switchboard_calls_total{result=\"answered\"}", 1),
        1
    );
    assert_eq!(s.metric("switchboard_calls_active"), 0);
}

#[test]
fn decline_busy_unreachable_and_cancel_reach_the_caller() {
    let (s, addr) = server(&[]);
    let mut ada = Line::open(addr, "ada", None);
    let mut bob = Line::open(addr, "bob", None);
    let mut carol = Line::open(addr, "carol", None);

    // Declined.
    let id = ada.dial("bob")["id"].clone();
    ada.expect("ringing");
    bob.expect("incoming");
    bob.request(json!({"call": "decline", "id": id}));
    let e = ada.expect("ended");
    assert_eq!((&e["id"], &e["reason"]), (&id, &json!("declined")));
    bob.expect("ended");

    // Declined as busy.
    let id = ada.dial("bob")["id"].clone();
    ada.expect("ringing");
    bob.expect("incoming");
    bob.request(json!({"call": "decline", "id": id, "reason": "busy"}));
    assert_eq!(ada.expect("ended")["reason"], "busy");
    bob.expect("ended");

    // Cancelled before an answer.
    let id = ada.dial("bob")["id"].clone();
    ada.expect("ringing");
    bob.expect("incoming");
    ada.request(json!({"call": "cancel", "id": id}));
    let e = bob.expect("ended");
    assert_eq!((&e["id"], &e["reason"]), (&id, &json!("cancelled")));
    assert_eq!(ada.expect("ended")["reason"], "cancelled");

    // Busy: bob is in an answered call with ada; carol calls him.
    let dialing = ada.dial("bob");
    let id = dialing["id"].clone();
    ada.expect("ringing");
    bob.expect("incoming");
    bob.request(json!({"call": "accept", "id": id}));
    ada.expect("answered");
    bob.expect("answered");
    let e = carol.dial_fails("bob");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("busy"), &json!("bob@a.test is in another call"))
    );
    bob.quiet();

    // Unreachable: not signed in, another domain without federation, a bad address.
    let e = carol.dial_fails("dave");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (
            &json!("unreachable"),
            &json!("dave@a.test is not signed in")
        )
    );
    let e = carol.dial_fails("bob@b.test");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("unreachable"), &json!("no federation with b.test"))
    );
    carol.request(json!({"call": "dial", "to": "not an address", "ref": 9}));
    let e = carol.expect("error");
    assert_eq!(e["ref"], 9);

    assert_eq!(s.metric("switchboard_calls_total{result=\"declined\"}"), 1);
    assert_eq!(s.metric("switchboard_calls_total{result=\"busy\"}"), 2);
    assert_eq!(s.metric("switchboard_calls_total{result=\"cancelled\"}"), 1);
    assert_eq!(
        s.metric("switchboard_calls_total{result=\"unreachable\"}"),
        2
    );
    assert_eq!(s.metric("switchboard_calls_active"), 1);
}

#[test]
fn nobody_answers_within_the_ring_timeout() {
    let (_s, addr) = server(&["--call-ring-timeout", "1"]);
    let mut ada = Line::open(addr, "ada", None);
    let mut bob = Line::open(addr, "bob", None);
    let started = Instant::now();
    let id = ada.dial("bob")["id"].clone();
    ada.expect("ringing");
    bob.expect("incoming");
    let e = ada.expect("ended");
    assert_eq!((&e["id"], &e["reason"]), (&id, &json!("no-answer")));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(bob.expect("ended")["reason"], "no-answer");
}

#[test]
fn carol_is_invited_into_the_call_and_joins_its_room() {
    let (_s, addr) = server(&[]);
    let mut ada = Line::open(addr, "ada", None);
    let mut bob = Line::open(addr, "bob", None);
    let mut carol = Line::open(addr, "carol", None);
    let dialing = ada.dial("bob");
    let id = dialing["id"].clone();
    ada.expect("ringing");
    let incoming = bob.expect("incoming");
    let (mut ada_call, _) = join_call(addr, &dialing, "Ada");
    bob.request(json!({"call": "accept", "id": id}));
    ada.expect("answered");
    bob.expect("answered");
    let (_bob_call, _) = join_call(addr, &incoming, "Bob");
    ada_call.expect("peer-joined");

    bob.request(json!({"call": "invite", "id": id, "to": "carol@a.test"}));
    assert_eq!(ada.expect("ringing")["to"], "carol@a.test");
    assert_eq!(bob.expect("ringing")["to"], "carol@a.test");
    let inc = carol.expect("incoming");
    assert_eq!(
        (&inc["id"], &inc["from"], &inc["room"]),
        (&id, &json!("bob@a.test"), &dialing["room"])
    );
    carol.request(json!({"call": "accept", "id": id}));
    for l in [&mut ada, &mut bob, &mut carol] {
        assert_eq!(l.expect("answered")["by"], "carol@a.test");
    }
    let (_carol_call, j) = join_call(addr, &inc, "Carol");
    let names: Vec<&str> = j["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"Ada") && names.contains(&"Bob"),
        "{names:?}"
    );
    assert_eq!(ada_call.expect("peer-joined")["peer"]["name"], "Carol");
    // Bob hangs up: ada and carol go on.
    bob.request(json!({"call": "hangup", "id": id}));
    assert_eq!(bob.expect("ended")["reason"], "hangup");
    for l in [&mut ada, &mut carol] {
        let e = l.expect("left");
        assert_eq!(
            (&e["who"], &e["reason"]),
            (&json!("bob@a.test"), &json!("hangup"))
        );
    }
}

#[test]
fn with_room_tokens_lines_and_call_rooms_admit_only_their_people() {
    let (_s, addr) = server(&["--room-token-secret", SECRET]);
    let ada_token = room_token("*", "ada");
    let mut ada = Line::open(addr, "ada", Some(&ada_token));
    let mut bob = Line::open(addr, "bob", Some(&room_token("@bob", "bob")));
    // Eve cannot take ada's line, with a token for any room or for that line.
    for t in [room_token("*", "eve"), room_token("@ada", "eve")] {
        let (_, j) = try_join(addr, "@ada", "eve", Some(&t));
        assert_eq!(
            (&j["type"], &j["code"]),
            (&json!("error"), &json!("forbidden")),
            "{j}"
        );
    }
    let dialing = ada.dial("bob");
    let id = dialing["id"].clone();
    let room = dialing["room"].as_str().unwrap().to_string();
    assert!(dialing["token"].is_string(), "{dialing}");
    ada.expect("ringing");
    let incoming = bob.expect("incoming");
    assert_ne!(
        incoming["token"], dialing["token"],
        "each gets a token naming them"
    );
    let (_ada_call, j) = join_call(addr, &dialing, "Ada");
    assert_eq!(j["type"], "joined");
    // Eve: without a token, with one for any room, or with ada's line token: refused.
    for t in [None, Some(room_token("*", "eve")), Some(ada_token.clone())] {
        let (_, j) = try_join(addr, &room, "eve", t.as_deref());
        assert_eq!(j["type"], "error", "{j}");
    }
    bob.request(json!({"call": "accept", "id": id}));
    ada.expect("answered");
    let (_bob_call, j) = join_call(addr, &incoming, "Bob");
    assert_eq!(j["type"], "joined");
}

#[test]
fn with_configured_users_a_line_needs_the_users_secret() {
    let (s, addr) = server(&[
        "--call-user",
        "ada:ada-secret-1",
        "--call-user",
        "bob:bob-secret-1",
    ]);
    assert!(
        s.startup
            .iter()
            .any(|l| l.contains("identities: 2 configured users")),
        "{:?}",
        s.startup
    );
    for (user, token) in [
        ("ada", Some("bob-secret-1")),
        ("ada", None),
        ("eve", Some("ada-secret-1")),
    ] {
        let (_, j) = try_join(addr, &format!("@{user}"), user, token);
        assert_eq!(
            (&j["type"], &j["code"]),
            (&json!("error"), &json!("unauthorized")),
            "{user} {token:?}"
        );
    }
    let mut ada = Line::open(addr, "ada", Some("ada-secret-1"));
    let e = ada.dial_fails("eve");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("unreachable"), &json!("no user eve@a.test"))
    );
    let mut bob = Line::open(addr, "bob", Some("bob-secret-1"));
    ada.dial("bob");
    ada.expect("ringing");
    bob.expect("incoming");
}

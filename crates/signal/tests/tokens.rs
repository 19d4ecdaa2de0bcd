//! Room tokens (JWT HS256): admission, expiry, identity, grants, and kicking.

mod common;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard_signal::token::mint;
use switchboard_signal::Claims;

const SECRET: &[u8] = b"correct horse battery staple";
const OLD_SECRET: &[u8] = b"the secret before rotation";

fn secured() -> Driver {
    Driver::new(HubConfig {
        token_secrets: vec![SECRET.to_vec(), OLD_SECRET.to_vec()],
        grace: secs(300),
        ..HubConfig::default()
    })
}

/// Claims for `room`, valid for an hour from the start of the test.
fn claims(room: &str) -> Claims {
    Claims {
        room: room.into(),
        sub: None,
        exp: UNIX_START + 3600,
        nbf: None,
        grants: None,
    }
}

fn token(c: &Claims) -> String {
    mint(SECRET, c).unwrap()
}

fn with_grants(room: &str, grants: &[&str]) -> String {
    token(&Claims {
        grants: Some(grants.iter().map(|g| g.to_string()).collect()),
        ..claims(room)
    })
}

fn join_msg(room: &str, tok: &str) -> Value {
    json!({"type": "join", "room": room, "name": "x", "token": tok, "ref": "j"})
}

/// The answer to a join with `tok` on a fresh connection.
fn try_join(d: &mut Driver, room: &str, tok: &str) -> Value {
    let c = d.connect();
    d.join_on(c, join_msg(room, tok))
}

fn join_as(d: &mut Driver, room: &str, name: &str, tok: &str) -> Peer {
    d.join_with(json!({"type": "join", "room": room, "name": name, "token": tok}))
}

fn assert_refused(answer: &Value, code: &str) {
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], code, "{answer}");
    assert_eq!(answer["fatal"], false, "{answer}");
    assert_eq!(answer["ref"], "j", "{answer}");
}

fn sorted(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

#[test]
fn a_token_is_required() {
    let mut d = secured();
    let c = d.connect();
    d.send_json(c, json!({"type": "join", "room": "demo", "ref": "j"}));
    assert_refused(&d.take_one(c), "unauthorized");
    assert_eq!(d.counts().3, 0, "no room was created");
    let j = d.join_on(c, join_msg("demo", &token(&claims("demo"))));
    assert_eq!(j["type"], "joined", "{j}");
}

#[test]
fn malformed_and_badly_signed_tokens_are_unauthorized() {
    let mut d = secured();
    let good = token(&claims("demo"));
    let parts: Vec<&str> = good.split('.').collect();
    let other = mint(b"another secret", &claims("other")).unwrap();
    let other_payload = other.split('.').nth(1).unwrap();
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims("demo"),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let cases = [
        String::new(),
        "garbage".into(),
        "a.b.c".into(),
        mint(b"wrong secret", &claims("demo")).unwrap(),
        format!("{}.{}.{}", parts[0], other_payload, parts[2]),
        format!("{}.{}.", none_header, parts[1]),
        format!("{}.{}", parts[0], parts[1]),
        hs512,
    ];
    for tok in &cases {
        assert_refused(&try_join(&mut d, "demo", tok), "unauthorized");
    }
    assert_eq!(d.counts().1, 0);
}

#[test]
fn tokens_missing_required_claims_are_unauthorized() {
    let mut d = secured();
    let key = EncodingKey::from_secret(SECRET);
    let exp = UNIX_START + 3600;
    for c in [
        json!({"room": "demo"}),
        json!({"exp": exp}),
        json!({"room": "demo", "exp": "tomorrow"}),
        json!({"room": "demo", "exp": exp, "grants": ["publish", "superuser"]}),
        json!({"room": "demo", "exp": exp, "grants": "publish"}),
    ] {
        let tok = encode(&Header::new(Algorithm::HS256), &c, &key).unwrap();
        assert_refused(&try_join(&mut d, "demo", &tok), "unauthorized");
    }
}

#[test]
fn claims_the_protocol_does_not_define_are_ignored() {
    let mut d = secured();
    let c = json!({
        "room": "demo", "exp": UNIX_START + 3600, "aud": "switchboard", "iss": "backend",
        "iat": UNIX_START, "jti": "abc", "custom": {"x": 1},
    });
    let tok = encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let j = try_join(&mut d, "demo", &tok);
    assert_eq!(j["type"], "joined", "{j}");
}

#[test]
fn every_secret_of_the_list_verifies() {
    let mut d = secured();
    let new = token(&claims("demo"));
    let old = mint(OLD_SECRET, &claims("demo")).unwrap();
    assert_eq!(try_join(&mut d, "demo", &new)["type"], "joined");
    assert_eq!(try_join(&mut d, "demo", &old)["type"], "joined");
}

#[test]
fn a_token_admits_to_its_room_only_unless_it_says_star() {
    let mut d = secured();
    let demo = token(&claims("demo"));
    assert_refused(&try_join(&mut d, "other", &demo), "unauthorized");
    assert_refused(&try_join(&mut d, "dem", &demo), "unauthorized");
    assert_refused(&try_join(&mut d, "Demo", &demo), "unauthorized");
    let any = token(&claims("*"));
    for room in ["demo", "other", "x"] {
        let j = try_join(&mut d, room, &any);
        assert_eq!(j["type"], "joined", "{j}");
        assert_eq!(j["room"], room);
    }
}

#[test]
fn expired_tokens_are_token_expired() {
    let mut d = secured();
    let now = d.unix();
    for exp in [now, now - 1, 1] {
        let tok = token(&Claims {
            exp,
            ..claims("demo")
        });
        assert_refused(&try_join(&mut d, "demo", &tok), "token-expired");
    }
    let tok = token(&Claims {
        exp: now + 1,
        ..claims("demo")
    });
    assert_eq!(try_join(&mut d, "demo", &tok)["type"], "joined");
    // The same token, a second later.
    d.advance(secs(1));
    assert_refused(&try_join(&mut d, "demo", &tok), "token-expired");
}

#[test]
fn tokens_not_valid_yet_are_refused_until_nbf() {
    let mut d = secured();
    let tok = token(&Claims {
        nbf: Some(d.unix() + 60),
        ..claims("demo")
    });
    let early = try_join(&mut d, "demo", &tok);
    assert_refused(&early, "unauthorized");
    d.advance(secs(60));
    assert_eq!(try_join(&mut d, "demo", &tok)["type"], "joined");
}

#[test]
fn a_token_on_an_open_server_is_ignored() {
    let mut d = Driver::open();
    let j = try_join(&mut d, "demo", "not even a jwt");
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(j["grants"], json!(["publish", "subscribe"]));
}

#[test]
fn sub_is_shown_as_identity() {
    let mut d = secured();
    let ada = token(&Claims {
        sub: Some("ada@example.org".into()),
        ..claims("demo")
    });
    let a = join_as(&mut d, "demo", "Ada", &ada);
    let b = join_as(&mut d, "demo", "Bob", &token(&claims("demo")));
    let c = d.connect();
    let j = d.join_on(c, join_msg("demo", &ada));
    let peers = j["peers"].as_array().unwrap();
    let ada_entry = peers.iter().find(|p| p["id"] == a.id.as_str()).unwrap();
    assert_eq!(ada_entry["identity"], "ada@example.org");
    assert_eq!(ada_entry["name"], "Ada");
    let bob_entry = peers.iter().find(|p| p["id"] == b.id.as_str()).unwrap();
    assert!(bob_entry.get("identity").is_none(), "{bob_entry}");
    // peer-joined carries it too.
    let ev = d.take(b.conn);
    assert_eq!(ev[0]["peer"]["identity"], "ada@example.org");
    let ev = d.take(a.conn);
    assert!(ev[0]["peer"].get("identity").is_none(), "{}", ev[0]);
}

#[test]
fn joined_lists_the_grants() {
    let mut d = secured();
    let j = try_join(&mut d, "demo", &token(&claims("demo")));
    assert_eq!(sorted(&j["grants"]), ["publish", "subscribe"]);
    let j = try_join(&mut d, "demo", &with_grants("demo", &["subscribe"]));
    assert_eq!(j["grants"], json!(["subscribe"]));
    let j = try_join(&mut d, "demo", &with_grants("demo", &["admin", "publish"]));
    assert_eq!(sorted(&j["grants"]), ["admin", "publish"]);
    let j = try_join(&mut d, "demo", &with_grants("demo", &[]));
    assert_eq!(j["grants"], json!([]));
}

#[test]
fn subscribe_only_cannot_offer_but_can_answer() {
    let mut d = secured();
    let viewer = join_as(
        &mut d,
        "demo",
        "Viewer",
        &with_grants("demo", &["subscribe"]),
    );
    let host = join_as(&mut d, "demo", "Host", &token(&claims("demo")));
    d.take(viewer.conn);
    d.send_json(
        viewer.conn,
        json!({"type": "offer", "to": host.id, "sdp": "v=0", "ref": "o1"}),
    );
    assert_eq!(d.expect_error(viewer.conn, "forbidden")["ref"], "o1");
    d.assert_silent(host.conn);
    // The host may offer to the viewer, who answers and trickles.
    d.send_json(
        host.conn,
        json!({"type": "offer", "to": viewer.id, "sdp": "v=0 o"}),
    );
    assert_eq!(d.take_one(viewer.conn)["type"], "offer");
    d.send_json(
        viewer.conn,
        json!({"type": "answer", "to": host.id, "sdp": "v=0 a"}),
    );
    d.send_json(
        viewer.conn,
        json!({"type": "candidate", "to": host.id, "candidate": {"c": 1}}),
    );
    d.message(&viewer, &host, json!("hi"));
    d.assert_silent(viewer.conn);
    assert_eq!(
        types(&d.take(host.conn)),
        ["answer", "candidate", "message"]
    );
}

#[test]
fn publish_only_cannot_answer_nor_receive_offers() {
    let mut d = secured();
    let camera = join_as(&mut d, "demo", "Cam", &with_grants("demo", &["publish"]));
    let host = join_as(&mut d, "demo", "Host", &token(&claims("demo")));
    d.take(camera.conn);
    // An offer to a peer that may not subscribe is refused to the sender.
    d.send_json(
        host.conn,
        json!({"type": "offer", "to": camera.id, "sdp": "v=0", "ref": 1}),
    );
    assert_eq!(d.expect_error(host.conn, "forbidden")["ref"], 1);
    d.assert_silent(camera.conn);
    // The publisher offers and trickles, but may not answer.
    d.send_json(
        camera.conn,
        json!({"type": "offer", "to": host.id, "sdp": "v=0 o"}),
    );
    d.send_json(
        camera.conn,
        json!({"type": "candidate", "to": host.id, "candidate": null}),
    );
    assert_eq!(types(&d.take(host.conn)), ["offer", "candidate"]);
    d.send_json(
        camera.conn,
        json!({"type": "answer", "to": host.id, "sdp": "v=0 a"}),
    );
    d.expect_error(camera.conn, "forbidden");
    d.assert_silent(host.conn);
}

#[test]
fn without_grants_only_message_is_allowed() {
    let mut d = secured();
    let mute = join_as(&mut d, "demo", "Mute", &with_grants("demo", &[]));
    let host = join_as(&mut d, "demo", "Host", &token(&claims("demo")));
    d.take(mute.conn);
    for (kind, field, v) in [
        ("offer", "sdp", json!("v=0")),
        ("answer", "sdp", json!("v=0")),
        ("candidate", "candidate", json!(null)),
    ] {
        let mut m = json!({"type": kind, "to": host.id});
        m[field] = v;
        d.send_json(mute.conn, m);
        d.expect_error(mute.conn, "forbidden");
    }
    d.assert_silent(host.conn);
    d.message(&mute, &host, json!("text only"));
    assert_eq!(d.take_one(host.conn)["data"], "text only");
}

/// Admin, Bob and Cy in "demo", membership events taken.
fn admin_room(d: &mut Driver) -> (Peer, Peer, Peer) {
    let admin = join_as(
        d,
        "demo",
        "Admin",
        &with_grants("demo", &["admin", "publish"]),
    );
    let b = join_as(d, "demo", "Bob", &token(&claims("demo")));
    let c = join_as(d, "demo", "Cy", &token(&claims("demo")));
    d.take(admin.conn);
    d.take(b.conn);
    (admin, b, c)
}

#[test]
fn admin_kick_ends_the_session() {
    let mut d = secured();
    let (admin, b, c) = admin_room(&mut d);
    d.send_json(admin.conn, json!({"type": "kick", "peer": b.id}));
    let e = d.expect_fatal(b.conn, "kicked", 1008);
    assert!(e.get("ref").is_none());
    assert_peer_left(&d.take_one(admin.conn), &b.id, "kicked", 3);
    assert_peer_left(&d.take_one(c.conn), &b.id, "kicked", 1);
    // The kicked session is gone for good.
    d.disconnect(b.conn);
    d.advance_and_tick(secs(600));
    d.assert_silent(admin.conn);
    let (_, got) = d.resume(&b.resume, 0);
    assert_eq!(got[0]["code"], "bad-resume");
    d.message(&c, &b, json!("?"));
    d.expect_error(c.conn, "unknown-peer");
    assert_eq!(d.counts().1, 2);
}

#[test]
fn kicking_a_suspended_peer() {
    let mut d = secured();
    let (admin, b, c) = admin_room(&mut d);
    d.disconnect(b.conn);
    d.send_json(admin.conn, json!({"type": "kick", "peer": b.id}));
    assert_peer_left(&d.take_one(admin.conn), &b.id, "kicked", 3);
    assert_peer_left(&d.take_one(c.conn), &b.id, "kicked", 1);
    assert_eq!(d.hub.poll_timeout(), None);
    let (_, got) = d.resume(&b.resume, 0);
    assert_eq!(got[0]["code"], "bad-resume");
}

#[test]
fn kick_needs_the_admin_grant() {
    let mut d = secured();
    let (admin, b, c) = admin_room(&mut d);
    d.send_json(b.conn, json!({"type": "kick", "peer": c.id, "ref": 1}));
    assert_eq!(d.expect_error(b.conn, "forbidden")["ref"], 1);
    d.send_json(b.conn, json!({"type": "kick", "peer": admin.id}));
    d.expect_error(b.conn, "forbidden");
    d.assert_silent(c.conn);
    d.assert_silent(admin.conn);
}

#[test]
fn open_rooms_have_no_admin() {
    let mut d = Driver::open();
    let a = d.join("demo", "Ada");
    let b = d.join("demo", "Bob");
    d.take(a.conn);
    d.send_json(a.conn, json!({"type": "kick", "peer": b.id}));
    d.expect_error(a.conn, "forbidden");
    d.assert_silent(b.conn);
}

#[test]
fn kick_of_an_unknown_or_foreign_peer() {
    let mut d = secured();
    let (admin, b, _c) = admin_room(&mut d);
    let x = join_as(&mut d, "elsewhere", "Xi", &token(&claims("elsewhere")));
    d.send_json(
        admin.conn,
        json!({"type": "kick", "peer": x.id, "ref": "k"}),
    );
    assert_eq!(d.expect_error(admin.conn, "unknown-peer")["ref"], "k");
    d.assert_silent(x.conn);
    d.send_json(
        admin.conn,
        json!({"type": "kick", "peer": "p0000000000000000"}),
    );
    d.expect_error(admin.conn, "unknown-peer");
    d.send_json(admin.conn, json!({"type": "kick"}));
    d.expect_error(admin.conn, "bad-message");
    d.assert_silent(b.conn);
}

#[test]
fn a_resumed_session_keeps_its_grants_after_the_token_expires() {
    let mut d = secured();
    let admin_tok = token(&Claims {
        exp: d.unix() + 60,
        grants: Some(vec!["admin".into()]),
        ..claims("demo")
    });
    let admin = join_as(&mut d, "demo", "Admin", &admin_tok);
    let b = join_as(&mut d, "demo", "Bob", &token(&claims("demo")));
    d.take(admin.conn);
    d.disconnect(admin.conn);
    d.advance_and_tick(secs(120));
    assert_refused(&try_join(&mut d, "demo", &admin_tok), "token-expired");
    let (admin2, _, _) = d.resume_ok(&admin, 1);
    d.send_json(
        admin2.conn,
        json!({"type": "offer", "to": b.id, "sdp": "v=0"}),
    );
    d.expect_error(admin2.conn, "forbidden");
    d.send_json(admin2.conn, json!({"type": "kick", "peer": b.id}));
    d.expect_fatal(b.conn, "kicked", 1008);
    assert_peer_left(&d.take_one(admin2.conn), &b.id, "kicked", 2);
}

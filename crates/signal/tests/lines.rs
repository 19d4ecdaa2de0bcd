//! Lines (`@user`) and direct-call rooms (`call-<32 hex>`): who may join them under
//! each identity mode, that they stay mesh, and that every line with a device in it
//! asks for the server's calls peer (docs/signaling.md, "Direct calls").

use serde_json::{json, Value};
use std::sync::Arc;
use switchboard_signal::token::mint;
use switchboard_signal::{Claims, Connection, Grants, HubConfig, Signaling, CALLS};

mod handle;
use handle::{send, take_one};

const SECRET: &[u8] = b"correct horse battery staple";
const CALL_ROOM: &str = "call-0123456789abcdef0123456789abcdef";

fn join(sig: &Arc<Signaling>, room: &str, token: Option<&str>) -> (Connection, Value) {
    let c = sig.connect();
    let mut msg = json!({"type": "join", "room": room, "name": "x", "topology": "sfu"});
    if let Some(t) = token {
        msg["token"] = json!(t);
    }
    send(&c, msg);
    let j = take_one(&c);
    (c, j)
}

fn code(j: &Value) -> &str {
    assert_eq!(j["type"], "error", "{j}");
    j["code"].as_str().unwrap()
}

fn token(room: &str, sub: Option<&str>) -> String {
    let c = Claims {
        room: room.into(),
        sub: sub.map(str::to_string),
        exp: switchboard_util::unix_now() + 3600,
        nbf: None,
        grants: None,
    };
    mint(SECRET, &c).unwrap()
}

#[test]
fn with_room_tokens_a_line_is_only_for_its_user_and_a_call_room_only_for_its_token() {
    let sig = Signaling::new(
        HubConfig {
            token_secrets: vec![SECRET.to_vec()],
            ..HubConfig::default()
        },
        2,
    );
    let (_, j) = join(&sig, "@ada", Some(&token("@ada", Some("ada"))));
    assert_eq!(
        (&j["type"], &j["topology"]),
        (&json!("joined"), &json!("mesh")),
        "{j}"
    );
    let (_, j) = join(&sig, "@ada", Some(&token("*", Some("ada"))));
    assert_eq!(j["type"], "joined", "a token for any room names ada: {j}");
    assert_eq!(
        code(&join(&sig, "@ada", Some(&token("*", Some("bob")))).1),
        "forbidden"
    );
    assert_eq!(
        code(&join(&sig, "@ada", Some(&token("*", None))).1),
        "forbidden"
    );
    assert_eq!(
        code(&join(&sig, "@ada", Some(&token("@bob", Some("ada")))).1),
        "unauthorized"
    );
    assert_eq!(code(&join(&sig, "@ada", None).1), "unauthorized");

    let (_, j) = join(&sig, CALL_ROOM, Some(&token(CALL_ROOM, Some("bob"))));
    assert_eq!(
        (&j["type"], &j["topology"]),
        (&json!("joined"), &json!("mesh")),
        "{j}"
    );
    assert_eq!(
        code(&join(&sig, CALL_ROOM, Some(&token("*", Some("eve")))).1),
        "forbidden"
    );
    // The same for services that admit by token (WHIP).
    assert!(sig
        .admit_token(
            Some(&token("*", None)),
            CALL_ROOM,
            switchboard_util::unix_now()
        )
        .is_err());
    let own = token(CALL_ROOM, None);
    assert!(sig
        .admit_token(Some(&own), CALL_ROOM, switchboard_util::unix_now())
        .is_ok());
    // Ordinary rooms named like calls but not quite are ordinary.
    let (_, j) = join(&sig, "call-1", Some(&token("*", None)));
    assert_eq!(j["type"], "joined", "{j}");
}

#[test]
fn with_configured_users_a_line_needs_the_users_secret() {
    let sig = Signaling::new(
        HubConfig {
            line_users: vec![
                ("ada".into(), b"ada-secret".to_vec()),
                ("bob".into(), b"bob-secret".to_vec()),
            ],
            ..HubConfig::default()
        },
        1,
    );
    assert_eq!(join(&sig, "@ada", Some("ada-secret")).1["type"], "joined");
    for wrong in [Some("bob-secret"), Some("ada-secret "), Some(""), None] {
        assert_eq!(
            code(&join(&sig, "@ada", wrong).1),
            "unauthorized",
            "{wrong:?}"
        );
    }
    assert_eq!(code(&join(&sig, "@zed", Some("x")).1), "unauthorized");
    // Ordinary rooms stay open, and lines are not room names of any other shape.
    assert_eq!(join(&sig, "lobby", None).1["type"], "joined");
    for bad in [
        "@",
        "@Ada",
        "@a b",
        "@ada@b",
        &format!("@{}", "x".repeat(65)),
    ] {
        assert_eq!(
            code(&join(&sig, bad, Some("ada-secret")).1),
            "bad-room",
            "{bad}"
        );
    }
}

#[test]
fn call_rooms_hold_few_members_and_lines_are_open_without_users_or_tokens() {
    let sig = Signaling::new(
        HubConfig {
            call_room_capacity: 2,
            ..HubConfig::default()
        },
        1,
    );
    assert_eq!(join(&sig, "@anyone", None).1["type"], "joined");
    let _a = join(&sig, CALL_ROOM, None);
    let _b = join(&sig, CALL_ROOM, None);
    assert_eq!(code(&join(&sig, CALL_ROOM, None).1), "room-full");
    // A line admits no service by token (WHIP, the SIP API).
    assert!(sig.admit_token(None, "@anyone", 0).is_err());
}

#[test]
fn a_line_with_a_device_asks_for_the_calls_peer_again_until_it_is_there() {
    let sig = Signaling::new(HubConfig::default(), 2);
    let mut wanted = sig.service_requests(CALLS);
    let (a1, _) = join(&sig, "@ada", None);
    assert_eq!(wanted.try_recv().as_deref(), Ok("@ada"));
    let (_a2, _) = join(&sig, "@ada", None);
    assert!(wanted.try_recv().is_err(), "asked once");
    let grants = Grants::DEFAULT;
    let calls = sig.join_service_as("@ada", "calls", CALLS, grants).unwrap();
    assert_eq!(calls.peers().len(), 2);
    // The calls peer leaves while devices remain: asked again.
    drop(calls);
    assert_eq!(wanted.try_recv().as_deref(), Ok("@ada"));
    let calls = sig.join_service_as("@ada", "calls", CALLS, grants).unwrap();
    assert!(wanted.try_recv().is_err());
    // A device that joins a served line asks for nothing.
    let (_a3, _) = join(&sig, "@ada", None);
    assert!(wanted.try_recv().is_err());
    drop(calls);
    assert_eq!(wanted.try_recv().as_deref(), Ok("@ada"));
    drop(a1);
    // Ordinary rooms never ask.
    let _l = join(&sig, "lobby", None);
    assert!(wanted.try_recv().is_err());
}

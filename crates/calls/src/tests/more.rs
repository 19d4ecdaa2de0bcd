//! Invites, limits, federation and the wire's odds and ends.

use super::{answered_call, book, config};
use crate::{Address, CallConfig, CallResult, EndReason, FederationAction, FederationInput};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_third_person_is_invited_into_the_same_room() {
    let (mut t, id, room) = answered_call();
    t.up("carol", "c1");
    t.say(
        "ada",
        "a1",
        json!({"call": "invite", "id": id, "to": "carol"}),
    );
    let ringing = json!({"call": "ringing", "id": id, "to": "carol@a.test"});
    assert_eq!(t.one("ada", "a1"), ringing);
    assert_eq!(t.one("bob", "b1"), ringing);
    t.quiet("bob", "b2");
    assert_eq!(
        t.one("carol", "c1"),
        json!({"call": "incoming", "id": id, "from": "ada@a.test", "fromName": "ada on a1", "room": room, "token": "T"})
    );
    t.say("carol", "c1", json!({"call": "accept", "id": id}));
    let answered = json!({"call": "answered", "id": id, "by": "carol@a.test"});
    for (u, d) in [("ada", "a1"), ("bob", "b1"), ("carol", "c1")] {
        assert_eq!(t.one(u, d), answered);
    }
    t.members(&room, 3);
    // bob hangs up: the call goes on for ada and carol.
    t.say("bob", "b1", json!({"call": "hangup", "id": id}));
    assert_eq!(t.one("bob", "b1")["call"], "ended");
    let left = json!({"call": "left", "id": id, "who": "bob@a.test", "reason": "hangup", "detail": "bob@a.test hung up"});
    assert_eq!(t.one("ada", "a1"), left);
    assert_eq!(t.one("carol", "c1"), left);
    t.members(&room, 2);
    assert!(t.results().is_empty());
    t.say("carol", "c1", json!({"call": "hangup", "id": id}));
    assert_eq!(t.one("ada", "a1")["reason"], "hangup");
    assert_eq!(t.results(), ["answered"]);
}

#[test]
fn invites_that_fail_leave_the_call_as_it_is() {
    let (mut t, id, _) = answered_call();
    t.say(
        "ada",
        "a1",
        json!({"call": "invite", "id": id, "to": "carol"}),
    );
    let left = t.one("ada", "a1");
    assert_eq!(
        (&left["call"], &left["who"], &left["reason"]),
        (
            &json!("left"),
            &json!("carol@a.test"),
            &json!("unreachable")
        )
    );
    t.quiet("bob", "b1");
    t.say(
        "ada",
        "a1",
        json!({"call": "invite", "id": id, "to": "bob"}),
    );
    assert_eq!(t.one("ada", "a1")["reason"], "already in the call");
    // carol declines: everyone in the call hears it, nobody leaves.
    t.up("carol", "c1");
    t.say(
        "bob",
        "b1",
        json!({"call": "invite", "id": id, "to": "carol"}),
    );
    assert_eq!(t.one("carol", "c1")["from"], "bob@a.test");
    t.say("carol", "c1", json!({"call": "decline", "id": id}));
    for (u, d) in [("ada", "a1"), ("bob", "b1")] {
        let e = t.one(u, d);
        assert_eq!(
            (&e["call"], &e["who"], &e["reason"]),
            (&json!("left"), &json!("carol@a.test"), &json!("declined"))
        );
    }
    assert_eq!(t.book.calls(), 1);
    // A ringing callee cannot invite; a full call takes nobody more.
    let mut cfg = config();
    cfg.max_parties = 2;
    t.book.set_config(cfg);
    t.say(
        "ada",
        "a1",
        json!({"call": "invite", "id": id, "to": "carol"}),
    );
    assert_eq!(t.one("ada", "a1")["reason"], "the call is full (2 parties)");
}

#[test]
fn calls_per_user_calls_per_server_and_the_dial_rate_are_bounded() {
    let mut cfg = config();
    cfg.max_calls_per_user = 2;
    cfg.max_calls = 4;
    cfg.dials_per_minute = 4;
    let mut t = book(cfg);
    for u in ["ada", "bob", "carol", "dan", "eve"] {
        t.up(u, &format!("{u}1"));
    }
    t.say("ada", "ada1", json!({"call": "dial", "to": "bob"}));
    t.say("ada", "ada1", json!({"call": "dial", "to": "carol"}));
    t.say(
        "ada",
        "ada1",
        json!({"call": "dial", "to": "dan", "ref": 1}),
    );
    let e = t.one("ada", "ada1");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("failed"), &json!("you are in 2 calls already"))
    );
    // bob rings twice (ada's call and now eve's): a third caller finds him busy.
    t.say("eve", "eve1", json!({"call": "dial", "to": "bob"}));
    assert_eq!(t.one("bob", "bob1")["call"], "incoming");
    t.say("dan", "dan1", json!({"call": "dial", "to": "bob"}));
    let e = t.one("dan", "dan1");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("busy"), &json!("bob@a.test has too many calls"))
    );
    // Four calls: the server is full.
    t.say("carol", "carol1", json!({"call": "dial", "to": "dan"}));
    assert_eq!(t.one("dan", "dan1")["call"], "incoming");
    t.say("dan", "dan1", json!({"call": "dial", "to": "eve"}));
    let e = t.one("dan", "dan1");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("failed"), &json!("the server is at its call limit"))
    );
    assert_eq!(t.book.calls(), 4);
    // dan has dialled twice; two more within the minute, then rate-limited.
    t.say("dan", "dan1", json!({"call": "dial", "to": "eve"}));
    t.say("dan", "dan1", json!({"call": "dial", "to": "eve"}));
    t.say(
        "dan",
        "dan1",
        json!({"call": "dial", "to": "eve", "ref": "x"}),
    );
    let e = t.one("dan", "dan1");
    assert_eq!(
        (&e["reason"], &e["ref"]),
        (&json!("rate-limited"), &json!("x"))
    );
    assert_eq!(t.results(), ["rate-limited"]);
    t.pass(Duration::from_secs(60));
    t.say("dan", "dan1", json!({"call": "dial", "to": "eve"}));
    // (The calls rang out meanwhile: the server has room again.)
    assert_eq!(
        t.got("dan", "dan1")[0]["call"],
        "dialing",
        "the window moved on"
    );
}

#[test]
fn a_remote_callee_is_rung_through_the_federation() {
    let mut cfg = config();
    cfg.federated_domains = vec!["b.test".into()];
    let mut t = book(cfg);
    t.up("ada", "a1");
    t.say(
        "ada",
        "a1",
        json!({"call": "dial", "to": "bob@b.test", "ref": 1}),
    );
    let got = t.got("ada", "a1");
    assert_eq!(
        got.len(),
        1,
        "no ringing before the far end says so: {got:?}"
    );
    let (id, room) = (
        got[0]["id"].as_str().unwrap().to_string(),
        got[0]["room"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        t.federation(),
        [FederationAction::Dial {
            domain: "b.test".into(),
            id: Arc::from(id.as_str()),
            from: "ada@a.test".into(),
            from_name: "ada on a1".into(),
            to: "bob@b.test".into(),
            room: Arc::from(room.as_str()),
        }]
    );
    let bob = Address::parse("bob@b.test", "a.test").unwrap();
    t.book
        .federation_event(&id, &bob, FederationInput::Ringing, t.now);
    t.take();
    assert_eq!(
        t.one("ada", "a1"),
        json!({"call": "ringing", "id": id, "to": "bob@b.test"})
    );
    // Events about someone else are ignored.
    let mallory = Address::parse("mallory@b.test", "a.test").unwrap();
    t.book
        .federation_event(&id, &mallory, FederationInput::Answered, t.now);
    t.take();
    assert!(t.out.is_empty());
    t.book
        .federation_event(&id, &bob, FederationInput::Answered, t.now);
    t.take();
    assert_eq!(t.one("ada", "a1")["by"], "bob@b.test");
    t.members(&room, 2);
    t.say("ada", "a1", json!({"call": "hangup", "id": id}));
    assert_eq!(
        t.federation(),
        [FederationAction::Notify {
            domain: "b.test".into(),
            to: "bob@b.test".into(),
            event: crate::Event::Ended {
                id: Arc::from(id.as_str()),
                reference: None,
                reason: EndReason::Hangup,
                detail: "ada@a.test hung up".into(),
            },
        }]
    );
    // A remote decline ends a call that rings.
    t.say("ada", "a1", json!({"call": "dial", "to": "bob@b.test"}));
    let id = t.got("ada", "a1")[0]["id"].as_str().unwrap().to_string();
    let gone = FederationInput::Gone {
        reason: EndReason::Busy,
        detail: "486 Busy Here".into(),
    };
    t.book.federation_event(&id, &bob, gone, t.now);
    t.take();
    let e = t.one("ada", "a1");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("busy"), &json!("486 Busy Here"))
    );
    assert_eq!(t.results(), ["busy"]);
}

#[test]
fn a_remote_caller_rings_a_local_line() {
    let mut cfg = config();
    cfg.federated_domains = vec!["*".into()];
    let mut t = book(cfg);
    t.up("bob", "b1");
    let ada = Address::parse("ada@b.test", "a.test").unwrap();
    t.book
        .federation_dial(ada.clone(), "Ada", "bob", json!("s1"), t.now);
    t.take();
    let fed = t.federation();
    let FederationAction::Notify { domain, to, event } = &fed[0] else {
        panic!("{fed:?}")
    };
    assert_eq!((domain.as_str(), to.as_str()), ("b.test", "ada@b.test"));
    let d = event.to_json(None);
    assert_eq!(
        (&d["call"], &d["ref"], &d["to"]),
        (&json!("dialing"), &json!("s1"), &json!("bob@a.test"))
    );
    assert!(d.get("token").is_none());
    let id = d["id"].as_str().unwrap().to_string();
    let inc = t.one("bob", "b1");
    assert_eq!(
        (&inc["from"], &inc["fromName"], &inc["room"]),
        (&json!("ada@b.test"), &json!("Ada"), &d["room"])
    );
    t.say("bob", "b1", json!({"call": "accept", "id": id}));
    let fed = t.federation();
    assert!(
        matches!(
            &fed[..],
            [FederationAction::Notify {
                event: crate::Event::Answered { .. },
                ..
            }]
        ),
        "{fed:?}"
    );
    t.book.federation_event(
        &id,
        &ada,
        FederationInput::Gone {
            reason: EndReason::Hangup,
            detail: "BYE".into(),
        },
        t.now,
    );
    t.take();
    assert_eq!(t.one("bob", "b1")["reason"], "hangup");
    // Nobody signed in, or a domain nobody federates with: refused to the federation.
    let mut t = book(CallConfig {
        federated_domains: vec!["b.test".into()],
        ..config()
    });
    t.book
        .federation_dial(ada.clone(), "Ada", "bob", json!(1), t.now);
    t.book.federation_dial(
        Address::parse("x@c.test", "a").unwrap(),
        "X",
        "bob",
        json!(2),
        t.now,
    );
    t.take();
    let details: Vec<String> = t
        .federation()
        .iter()
        .map(|f| match f {
            FederationAction::Notify { event, .. } => {
                event.to_json(None)["detail"].as_str().unwrap().to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        details,
        ["bob@a.test is not signed in", "no federation with c.test"]
    );
    assert_eq!(t.results(), ["unreachable", "unreachable"]);
}

#[test]
fn events_carry_a_token_only_with_a_room() {
    let e = crate::Event::Answered {
        id: Arc::from("x"),
        by: "bob@a.test".into(),
    };
    assert!(e.to_json(Some("T")).get("token").is_none());
    assert_eq!(e.room(), None);
    assert_eq!(
        CallResult::Unanswered(EndReason::NoAnswer).as_str(),
        "no-answer"
    );
    for r in CallResult::LABELS.iter().skip(1) {
        assert_eq!(EndReason::from_wire(r).map(|r| r.as_str()), Some(*r));
    }
}

#[test]
fn an_invitee_who_does_not_answer_leaves_the_call_going() {
    let mut cfg = config();
    cfg.ring_timeout = Duration::from_secs(5);
    let mut t = book(cfg);
    t.up("ada", "a1");
    t.up("bob", "b1");
    t.up("carol", "c1");
    let (id, room) = t.ada_dials("bob");
    t.pass(Duration::from_secs(4));
    t.say("bob", "b1", json!({"call": "accept", "id": id}));
    t.members(&room, 2);
    t.say(
        "bob",
        "b1",
        json!({"call": "invite", "id": id, "to": "carol"}),
    );
    assert_eq!(t.one("carol", "c1")["call"], "incoming");
    // ada's own ring was answered in time: only carol's times out, 5 s after her invite.
    t.pass(Duration::from_secs(4));
    assert!(t.out.is_empty(), "{:?}", t.out);
    t.pass(Duration::from_secs(1));
    assert_eq!(t.one("carol", "c1")["reason"], "no-answer");
    for (u, d) in [("ada", "a1"), ("bob", "b1")] {
        let e = t.one(u, d);
        assert_eq!(
            (&e["call"], &e["who"], &e["reason"]),
            (&json!("left"), &json!("carol@a.test"), &json!("no-answer"))
        );
    }
    assert_eq!(t.book.calls(), 1);
    // A party's line going away does not end a call it is in: its room does.
    t.down("bob", "b1");
    assert!(t.out.is_empty(), "{:?}", t.out);
    t.members(&room, 1);
    assert_eq!(t.one("ada", "a1")["reason"], "hangup");
}

#[test]
fn invites_count_against_the_dial_rate_and_may_ring_another_domain() {
    let mut cfg = config();
    cfg.dials_per_minute = 2;
    cfg.federated_domains = vec!["b.test".into()];
    let mut t = book(cfg);
    t.up("ada", "a1");
    t.up("bob", "b1");
    let (id, room) = t.ada_dials("bob");
    t.say("bob", "b1", json!({"call": "accept", "id": id}));
    t.members(&room, 2);
    t.say(
        "ada",
        "a1",
        json!({"call": "invite", "id": id, "to": "dan@b.test"}),
    );
    assert_eq!(
        t.federation(),
        [FederationAction::Dial {
            domain: "b.test".into(),
            id: Arc::from(id.as_str()),
            from: "ada@a.test".into(),
            from_name: "ada on a1".into(),
            to: "dan@b.test".into(),
            room: Arc::from(room.as_str()),
        }]
    );
    t.say(
        "ada",
        "a1",
        json!({"call": "invite", "id": id, "to": "erin@b.test"}),
    );
    let e = t.one("ada", "a1");
    assert_eq!(
        (&e["call"], &e["who"], &e["reason"]),
        (
            &json!("left"),
            &json!("erin@b.test"),
            &json!("rate-limited")
        )
    );
    assert!(t.federation().is_empty());
    // The remote invitee answers: everyone in the call hears it.
    let dan = Address::parse("dan@b.test", "a.test").unwrap();
    t.book
        .federation_event(&id, &dan, FederationInput::Answered, t.now);
    t.take();
    assert_eq!(t.one("bob", "b1")["by"], "dan@b.test");
    assert_eq!(t.one("ada", "a1")["by"], "dan@b.test");
    assert!(
        t.federation().is_empty(),
        "dan's server is not told dan answered"
    );
}

/// A far party's participant is not a room member (the driver does not count it): it may
/// join early to carry the offer, and counts from its answer on.
#[test]
fn a_far_party_counts_from_its_answer_not_from_its_participant() {
    let mut cfg = config();
    cfg.federated_domains = vec!["b.test".into()];
    let mut t = book(cfg);
    t.up("ada", "a1");
    let bob = Address::parse("bob@b.test", "a.test").unwrap();
    let dial = |t: &mut super::T| {
        t.say("ada", "a1", json!({"call": "dial", "to": "bob@b.test"}));
        let got = t.got("ada", "a1");
        let id = got[0]["id"].as_str().unwrap().to_string();
        let room = got[0]["room"].as_str().unwrap().to_string();
        t.members(&room, 1);
        (id, room)
    };
    let ended = |t: &super::T| match &t.federation()[..] {
        [FederationAction::Notify {
            event: crate::Event::Ended { reason, .. },
            ..
        }] => *reason,
        other => panic!("{other:?}"),
    };
    // The caller leaves the room before the answer: cancelled, and the far side hears it.
    let (_, room) = dial(&mut t);
    t.members(&room, 0);
    assert_eq!(ended(&t), EndReason::Cancelled);
    assert_eq!(t.results(), ["cancelled"]);
    assert_eq!(t.book.calls(), 0);
    // Answered: the caller alone in the room with the far party is a connected call (no
    // connect deadline), and the caller leaving then hangs up.
    let (id, room) = dial(&mut t);
    t.book
        .federation_event(&id, &bob, FederationInput::Answered, t.now);
    t.take();
    t.pass(Duration::from_secs(120));
    assert_eq!(
        t.book.calls(),
        1,
        "a connected call has no connect deadline"
    );
    t.members(&room, 0);
    assert_eq!(ended(&t), EndReason::Hangup);
    assert_eq!(t.results(), ["answered"]);
    assert_eq!(t.book.calls(), 0);
}

#[test]
fn calls_from_one_domain_are_rate_limited_per_minute() {
    let mut cfg = config();
    cfg.federated_domains = vec!["*".into()];
    cfg.remote_dials_per_minute = 2;
    cfg.max_calls_per_user = 10;
    let mut t = book(cfg);
    t.up("bob", "b1");
    let from = |d: &str| Address::parse(&format!("ada@{d}"), "a.test").unwrap();
    let dial = |t: &mut super::T, d: &str| {
        t.book
            .federation_dial(from(d), "Ada", "bob", json!(d), t.now);
        t.take();
        let fed = t.federation();
        let FederationAction::Notify { event, .. } = &fed[0] else {
            panic!("{fed:?}")
        };
        event.to_json(None)["call"].as_str().unwrap().to_string()
            + " "
            + event.to_json(None)["reason"].as_str().unwrap_or("")
    };
    assert_eq!(dial(&mut t, "b.test"), "dialing ");
    assert_eq!(dial(&mut t, "b.test"), "dialing ");
    assert_eq!(dial(&mut t, "b.test"), "ended rate-limited");
    // Another domain has its own count; a minute later b.test may call again.
    assert_eq!(dial(&mut t, "c.test"), "dialing ");
    t.now += Duration::from_secs(61);
    assert_eq!(dial(&mut t, "b.test"), "dialing ");
}

//! The call book, transition by transition, through its public face: devices on lines
//! send the JSON requests of the wire, and what the book asks the driver to do is read
//! back as the JSON devices would receive.

use crate::{Action, CallBook, CallConfig, FederationAction};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct T {
    pub(super) book: CallBook,
    pub(super) now: Instant,
    pub(super) out: Vec<Action>,
}

pub(super) fn config() -> CallConfig {
    CallConfig {
        domain: "a.test".into(),
        ..CallConfig::default()
    }
}

pub(super) fn book(cfg: CallConfig) -> T {
    let mut n = 0;
    let ids = Box::new(move || {
        n += 1;
        format!("{n:032x}")
    });
    T {
        book: CallBook::new(cfg, ids),
        now: Instant::now(),
        out: Vec::new(),
    }
}

pub(super) fn dev(s: &str) -> Arc<str> {
    Arc::from(s)
}

impl T {
    pub(super) fn take(&mut self) {
        self.out = self.book.drain().collect();
    }

    pub(super) fn up(&mut self, user: &str, device: &str) {
        self.book
            .line_up(user, dev(device), &format!("{user} on {device}"), self.now);
        self.take();
    }

    pub(super) fn down(&mut self, user: &str, device: &str) {
        self.book.line_down(user, device, self.now);
        self.take();
    }

    pub(super) fn say(&mut self, user: &str, device: &str, req: Value) {
        self.book
            .message(user, dev(device), &req.to_string(), self.now);
        self.take();
    }

    pub(super) fn members(&mut self, room: &str, n: usize) {
        self.book.room_members(room, n, self.now);
        self.take();
    }

    pub(super) fn pass(&mut self, d: Duration) {
        self.now += d;
        self.book.handle_timeout(self.now);
        self.take();
    }

    /// What `device` of `user` was sent, as JSON (a token "T" where a room is given).
    pub(super) fn got(&self, user: &str, device: &str) -> Vec<Value> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    user: u,
                    device: d,
                    event,
                } if u == user && &**d == device => Some(event.to_json(Some("T"))),
                _ => None,
            })
            .collect()
    }

    /// The one event `device` of `user` got.
    pub(super) fn one(&self, user: &str, device: &str) -> Value {
        let got = self.got(user, device);
        assert_eq!(
            got.len(),
            1,
            "{user}/{device} got {got:?}; all: {:?}",
            self.out
        );
        got.into_iter().next().unwrap()
    }

    pub(super) fn quiet(&self, user: &str, device: &str) {
        let got = self.got(user, device);
        assert!(got.is_empty(), "{user}/{device} got {got:?}");
    }

    pub(super) fn results(&self) -> Vec<&'static str> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Finished(r) => Some(r.as_str()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn federation(&self) -> Vec<FederationAction> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Federation(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// ada (device a1) dials bob; returns the call id and room.
    pub(super) fn ada_dials(&mut self, to: &str) -> (String, String) {
        self.say("ada", "a1", json!({"call": "dial", "to": to, "ref": 7}));
        let d = self.got("ada", "a1").swap_remove(0);
        assert_eq!(d["call"], "dialing", "{d}");
        assert_eq!(d["ref"], 7);
        assert_eq!(d["token"], "T");
        (
            d["id"].as_str().unwrap().to_string(),
            d["room"].as_str().unwrap().to_string(),
        )
    }
}

/// ada and bob (two devices) signed in, ada dialled bob, bob's b1 accepted.
pub(super) fn answered_call() -> (T, String, String) {
    let mut t = book(config());
    t.up("ada", "a1");
    t.up("bob", "b1");
    t.up("bob", "b2");
    let (id, room) = t.ada_dials("bob");
    t.say("bob", "b1", json!({"call": "accept", "id": id}));
    t.members(&room, 1);
    t.members(&room, 2);
    (t, id, room)
}

mod more;

#[test]
fn a_dial_rings_every_device_and_the_first_accept_takes_the_call() {
    let mut t = book(config());
    t.up("ada", "a1");
    t.up("bob", "b1");
    t.up("bob", "b2");
    t.say(
        "ada",
        "a1",
        json!({"call": "dial", "to": "bob@a.test", "ref": "r1"}),
    );
    let got = t.got("ada", "a1");
    assert_eq!(got.len(), 2, "{got:?}");
    let (id, room) = (got[0]["id"].clone(), got[0]["room"].clone());
    assert_eq!(
        got[0],
        json!({"call": "dialing", "id": id, "ref": "r1", "to": "bob@a.test", "room": room, "token": "T"})
    );
    assert!(room.as_str().unwrap().starts_with("call-"));
    assert_eq!(room.as_str().unwrap().len(), 5 + 32);
    assert_eq!(
        got[1],
        json!({"call": "ringing", "id": id, "to": "bob@a.test"})
    );
    let incoming = json!({"call": "incoming", "id": id, "from": "ada@a.test",
        "fromName": "ada on a1", "room": room, "token": "T"});
    assert_eq!(t.one("bob", "b1"), incoming);
    assert_eq!(t.one("bob", "b2"), incoming);
    assert!(t.out.contains(&Action::OpenRoom {
        room: Arc::from(room.as_str().unwrap())
    }));

    t.say("bob", "b2", json!({"call": "accept", "id": id}));
    let answered = json!({"call": "answered", "id": id, "by": "bob@a.test"});
    assert_eq!(t.one("ada", "a1"), answered);
    assert_eq!(t.one("bob", "b2"), answered);
    let other = t.one("bob", "b1");
    assert_eq!(
        (&other["call"], &other["reason"]),
        (&json!("ended"), &json!("answered-elsewhere"))
    );
    // b1 was too late.
    t.say("bob", "b1", json!({"call": "accept", "id": id}));
    assert_eq!(t.one("bob", "b1")["call"], "error");
    t.quiet("ada", "a1");
    assert_eq!(t.book.calls(), 1);
}

#[test]
fn the_call_ends_for_all_when_one_member_is_left_in_the_room() {
    let (mut t, id, room) = answered_call();
    t.members(&room, 1);
    let ended = json!({"call": "ended", "id": id, "reason": "hangup", "detail": "everyone else left the call"});
    assert_eq!(t.one("ada", "a1"), ended);
    assert_eq!(t.one("bob", "b1"), ended);
    t.quiet("bob", "b2");
    assert_eq!(t.results(), ["answered"]);
    assert!(t.out.contains(&Action::CloseRoom {
        room: Arc::from(room.as_str())
    }));
    assert_eq!(t.book.calls(), 0);
    assert_eq!(t.book.call_of_room(&room), None);
}

#[test]
fn a_hangup_of_one_of_two_ends_the_call() {
    let (mut t, id, _) = answered_call();
    t.say("bob", "b1", json!({"call": "hangup", "id": id}));
    assert_eq!(t.one("bob", "b1")["reason"], "hangup");
    let e = t.one("ada", "a1");
    assert_eq!(
        (&e["call"], &e["reason"], &e["detail"]),
        (
            &json!("ended"),
            &json!("hangup"),
            &json!("bob@a.test hung up")
        )
    );
    assert_eq!(t.results(), ["answered"]);
}

#[test]
fn decline_and_busy_end_the_call_with_their_reason() {
    for (reason, expected) in [
        (None, "declined"),
        (Some("declined"), "declined"),
        (Some("busy"), "busy"),
    ] {
        let mut t = book(config());
        t.up("ada", "a1");
        t.up("bob", "b1");
        t.up("bob", "b2");
        let (id, _) = t.ada_dials("bob");
        let mut req = json!({"call": "decline", "id": id});
        if let Some(r) = reason {
            req["reason"] = json!(r);
        }
        t.say("bob", "b1", req);
        let e = t.one("ada", "a1");
        assert_eq!(
            (&e["call"], &e["reason"]),
            (&json!("ended"), &json!(expected))
        );
        assert_eq!(t.one("bob", "b1")["reason"], expected);
        assert_eq!(
            t.one("bob", "b2")["reason"],
            expected,
            "the other device stops ringing"
        );
        assert_eq!(t.results(), [expected]);
        assert_eq!(t.book.calls(), 0);
    }
}

#[test]
fn a_callee_in_an_answered_call_is_busy() {
    let (mut t, _, _) = answered_call();
    t.up("carol", "c1");
    t.say(
        "carol",
        "c1",
        json!({"call": "dial", "to": "bob", "ref": 1}),
    );
    let e = t.one("carol", "c1");
    assert_eq!(
        (&e["call"], &e["reason"], &e["ref"]),
        (&json!("ended"), &json!("busy"), &json!(1))
    );
    assert_eq!(e["detail"], "bob@a.test is in another call");
    t.quiet("bob", "b1");
    t.quiet("bob", "b2");
    assert_eq!(t.results(), ["busy"]);
    // A call that only rings does not make anyone busy: carol may ring ada and bob both.
    let mut t = book(config());
    for (u, d) in [("ada", "a1"), ("bob", "b1"), ("carol", "c1")] {
        t.up(u, d);
    }
    t.ada_dials("bob");
    t.say("carol", "c1", json!({"call": "dial", "to": "bob"}));
    assert_eq!(t.one("bob", "b1")["call"], "incoming");
}

#[test]
fn unreachable_says_why() {
    let mut cfg = config();
    cfg.known_users = Some(HashSet::from(["ada".to_string(), "bob".to_string()]));
    let mut t = book(cfg);
    t.up("ada", "a1");
    for (to, reason, detail) in [
        ("bob", "unreachable", "bob@a.test is not signed in"),
        ("zed", "unreachable", "no user zed@a.test"),
        ("bob@b.test", "unreachable", "no federation with b.test"),
        ("ada", "failed", "you cannot call yourself"),
    ] {
        t.say("ada", "a1", json!({"call": "dial", "to": to, "ref": to}));
        let e = t.one("ada", "a1");
        assert_eq!(
            (&e["call"], &e["reason"], &e["detail"], &e["ref"]),
            (&json!("ended"), &json!(reason), &json!(detail), &json!(to)),
            "{to}"
        );
        assert!(e["id"].is_string());
        assert_eq!(t.results(), [reason]);
        assert!(!t.out.iter().any(|a| matches!(a, Action::OpenRoom { .. })));
    }
    assert_eq!(t.book.calls(), 0);
}

#[test]
fn bad_requests_get_errors_and_change_nothing() {
    let mut t = book(config());
    t.up("ada", "a1");
    for (req, reason) in [
        (
            json!({"call": "teleport", "ref": 3}),
            "unknown call request \"teleport\"",
        ),
        (json!({"to": "bob"}), "no \"call\" field"),
        (
            json!({"call": "dial", "ref": 3}),
            "dial needs a string \"to\"",
        ),
        (
            json!({"call": "dial", "to": "b o b", "ref": 3}),
            "user \"b o b\" is not 1-64 characters of a-z 0-9 _ - .",
        ),
        (
            json!({"call": "accept", "id": "nope"}),
            "no call ringing on this device",
        ),
        (
            json!({"call": "decline", "id": "nope", "reason": "bored"}),
            "decline reason \"bored\" is not declined or busy",
        ),
        (
            json!({"call": "cancel", "id": "nope"}),
            "no call of yours to cancel",
        ),
        (
            json!({"call": "hangup", "id": "nope"}),
            "you are not in this call",
        ),
        (
            json!({"call": "invite", "id": "nope", "to": "bob"}),
            "you are not in this call",
        ),
    ] {
        t.say("ada", "a1", req.clone());
        let e = t.one("ada", "a1");
        assert_eq!(
            (&e["call"], &e["reason"]),
            (&json!("error"), &json!(reason)),
            "{req}"
        );
        assert!(t.results().is_empty());
    }
    t.book.message("ada", dev("a1"), "{not json", t.now);
    t.take();
    assert_eq!(t.one("ada", "a1")["call"], "error");
    assert_eq!(t.book.calls(), 0);
}

#[test]
fn the_caller_cancels_before_an_answer() {
    let mut t = book(config());
    t.up("ada", "a1");
    t.up("bob", "b1");
    t.up("bob", "b2");
    let (id, room) = t.ada_dials("bob");
    // bob cannot cancel ada's call.
    t.say("bob", "b1", json!({"call": "cancel", "id": id}));
    assert_eq!(t.one("bob", "b1")["call"], "error");
    t.say("ada", "a1", json!({"call": "cancel", "id": id}));
    let ended =
        json!({"call": "ended", "id": id, "reason": "cancelled", "detail": "ada@a.test cancelled"});
    assert_eq!(t.one("ada", "a1"), ended);
    assert_eq!(t.one("bob", "b1"), ended);
    assert_eq!(t.one("bob", "b2"), ended);
    assert_eq!(t.results(), ["cancelled"]);
    assert!(t.out.contains(&Action::CloseRoom {
        room: Arc::from(room.as_str())
    }));
}

#[test]
fn cancel_after_the_answer_hangs_up_and_hangup_before_it_cancels() {
    let (mut t, id, _) = answered_call();
    t.say("ada", "a1", json!({"call": "cancel", "id": id}));
    assert_eq!(t.one("bob", "b1")["reason"], "hangup");
    assert_eq!(t.results(), ["answered"]);

    let mut t = book(config());
    t.up("ada", "a1");
    t.up("bob", "b1");
    let (id, _) = t.ada_dials("bob");
    t.say("ada", "a1", json!({"call": "hangup", "id": id}));
    assert_eq!(t.one("bob", "b1")["reason"], "cancelled");
    assert_eq!(t.results(), ["cancelled"]);
    // A callee's hangup while it rings declines.
    let (id, _) = t.ada_dials("bob");
    t.say("bob", "b1", json!({"call": "hangup", "id": id}));
    assert_eq!(t.one("ada", "a1")["reason"], "declined");
}

#[test]
fn nobody_answers_within_the_ring_timeout() {
    let mut cfg = config();
    cfg.ring_timeout = Duration::from_secs(10);
    let mut t = book(cfg);
    t.up("ada", "a1");
    t.up("bob", "b1");
    let start = t.now;
    let (id, _) = t.ada_dials("bob");
    assert_eq!(t.book.poll_timeout(), Some(start + Duration::from_secs(10)));
    t.pass(Duration::from_millis(9999));
    assert!(t.out.is_empty());
    t.pass(Duration::from_millis(1));
    let e = t.one("ada", "a1");
    assert_eq!(
        (&e["id"], &e["reason"], &e["detail"]),
        (
            &json!(id),
            &json!("no-answer"),
            &json!("no answer from bob@a.test")
        )
    );
    assert_eq!(t.one("bob", "b1")["reason"], "no-answer");
    assert_eq!(t.results(), ["no-answer"]);
    assert_eq!(t.book.poll_timeout(), None);
}

#[test]
fn an_answered_call_whose_room_never_gathers_fails() {
    let mut cfg = config();
    cfg.connect_timeout = Duration::from_secs(5);
    let mut t = book(cfg);
    t.up("ada", "a1");
    t.up("bob", "b1");
    let (id, room) = t.ada_dials("bob");
    t.members(&room, 1);
    t.say("bob", "b1", json!({"call": "accept", "id": id}));
    assert_eq!(t.book.poll_timeout(), Some(t.now + Duration::from_secs(5)));
    t.pass(Duration::from_secs(5));
    let e = t.one("ada", "a1");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("failed"), &json!("nobody joined the call room"))
    );
    assert_eq!(t.one("bob", "b1")["reason"], "failed");
    assert_eq!(t.results(), ["answered"]);
}

#[test]
fn the_caller_leaving_the_room_or_the_line_before_an_answer_cancels() {
    let mut t = book(config());
    t.up("ada", "a1");
    t.up("bob", "b1");
    let (_, room) = t.ada_dials("bob");
    t.members(&room, 1);
    t.quiet("bob", "b1");
    t.members(&room, 0);
    assert_eq!(t.one("bob", "b1")["reason"], "cancelled");
    assert_eq!(t.results(), ["cancelled"]);

    let (_, _) = t.ada_dials("bob");
    t.down("ada", "a1");
    let e = t.one("bob", "b1");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("cancelled"), &json!("ada@a.test signed off"))
    );
    assert_eq!(t.book.calls(), 0);
}

#[test]
fn devices_that_sign_in_while_it_rings_ring_and_the_last_one_leaving_is_unreachable() {
    let mut t = book(config());
    t.up("ada", "a1");
    t.up("bob", "b1");
    let (id, room) = t.ada_dials("bob");
    t.up("bob", "b2");
    let e = t.one("bob", "b2");
    assert_eq!(
        (&e["call"], &e["id"], &e["room"], &e["from"]),
        (
            &json!("incoming"),
            &json!(id),
            &json!(room),
            &json!("ada@a.test")
        )
    );
    t.up("bob", "b2");
    assert!(t.out.is_empty(), "the same device twice rings once");
    t.down("bob", "b1");
    t.quiet("ada", "a1");
    t.down("bob", "b2");
    let e = t.one("ada", "a1");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("unreachable"), &json!("bob@a.test signed off"))
    );
    assert_eq!(t.book.lines(), 1);
}

//! The hub split into shards by room, through the runtime handle ([`Signaling`]): rooms
//! on different shards stay isolated, a resume finds its shard from the token, a
//! connection moves to another shard when it joins a room there, and peer ids are unique
//! across shards.

use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Instant;
use switchboard_signal::{
    shard_of_room, Connection, ErrorCode, Hub, HubConfig, Received, ShardId, Signaling,
};

mod handle;
use handle::{send, take, take_one};

const SHARDS: usize = 4;

/// Two room names that live on different shards.
fn rooms_on_two_shards() -> (String, String) {
    let a = "alpha".to_string();
    let b = (0..)
        .map(|i| format!("room-{i}"))
        .find(|r| shard_of_room(r, SHARDS) != shard_of_room(&a, SHARDS))
        .unwrap();
    (a, b)
}

/// Everything queued for `c`, parsed (the handle queues synchronously).
/// A new connection in `room`; returns it with its `joined`.
fn join(sig: &std::sync::Arc<Signaling>, room: &str, name: &str) -> (Connection, Value) {
    let c = sig.connect();
    send(&c, json!({"type": "join", "room": room, "name": name}));
    let j = take_one(&c);
    assert_eq!(j["type"], "joined", "{j}");
    (c, j)
}

#[test]
fn rooms_on_different_shards_are_isolated() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let (ra, rb) = rooms_on_two_shards();
    let (a1, _) = join(&sig, &ra, "a1");
    let (a2, j2) = join(&sig, &ra, "a2");
    assert_eq!(j2["peers"].as_array().unwrap().len(), 1);
    let pj = take_one(&a1);
    assert_eq!(pj["type"], "peer-joined");
    let (b1, jb) = join(&sig, &rb, "b1");
    assert_eq!(jb["peers"], json!([]), "room {rb} sees nobody of {ra}");
    assert!(
        take(&a1).is_empty() && take(&a2).is_empty(),
        "{ra} hears nothing of {rb}"
    );
    // Addressing across rooms (and shards) is as if the peer did not exist.
    let a2_id = j2["peerId"].as_str().unwrap();
    send(&b1, json!({"type": "message", "to": a2_id, "data": 1}));
    let e = take_one(&b1);
    assert_eq!(e["code"], "unknown-peer", "{e}");
    assert!(take(&a2).is_empty());
    // Within the room, relays work.
    send(
        &a1,
        json!({"type": "message", "to": a2_id, "data": {"x": 1}}),
    );
    let m = take_one(&a2);
    assert_eq!(m["data"], json!({"x": 1}));
    let snap = sig.snapshot();
    assert_eq!((snap.connections, snap.sessions, snap.rooms), (3, 3, 2));
    assert_eq!(snap.shards, SHARDS);
    assert_eq!(snap.stats.joins, 3);
    assert_eq!(snap.stats.errors[ErrorCode::UnknownPeer.index()], 1);
}

#[test]
fn a_resume_lands_on_the_shard_of_its_session() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let (ra, _) = rooms_on_two_shards();
    let (a, ja) = join(&sig, &ra, "a");
    let (b, jb) = join(&sig, &ra, "b");
    take(&a);
    a.close();
    let b_id = jb["peerId"].as_str().unwrap();
    send(
        &b,
        json!({"type": "message", "to": ja["peerId"], "data": "while away"}),
    );
    assert!(take(&b).is_empty());
    // Try from connections that start on every shard: each must find the session.
    let mut token = ja["resume"].as_str().unwrap().to_string();
    for _ in 0..SHARDS {
        let c = sig.connect();
        send(&c, json!({"type": "resume", "token": token, "lastSeq": 0}));
        let got = take(&c);
        assert_eq!(got[0]["type"], "resumed", "{got:?}");
        assert_eq!(got[0]["peerId"], ja["peerId"]);
        assert_eq!(got[0]["peers"][0]["id"], b_id);
        // What came while it was away is replayed, each time (nothing was acked).
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[1]["type"], "peer-joined", "{got:?}");
        assert_eq!(got[2]["data"], "while away", "{got:?}");
        token = got[0]["resume"].as_str().unwrap().to_string();
    }
    // A token of no shard, or of a session that does not exist, is refused.
    for bad in ["zz.0123", "0.0123", "nonsense"] {
        let c = sig.connect();
        send(&c, json!({"type": "resume", "token": bad, "lastSeq": 0}));
        assert_eq!(take_one(&c)["code"], "bad-resume", "{bad}");
    }
}

#[test]
fn a_resume_closes_the_old_connection_on_its_shard() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let (a, ja) = join(&sig, "alpha", "a");
    let c = sig.connect();
    send(
        &c,
        json!({"type": "resume", "token": ja["resume"], "lastSeq": 0}),
    );
    assert_eq!(take(&c)[0]["type"], "resumed");
    assert_eq!(take(&a), vec![json!({"closed": 1000})]);
}

#[test]
fn after_leave_a_connection_joins_a_room_of_another_shard() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let (ra, rb) = rooms_on_two_shards();
    let (x, _) = join(&sig, &ra, "x");
    let (c, _) = join(&sig, &ra, "c");
    take(&x);
    send(&c, json!({"type": "leave"}));
    assert_eq!(take_one(&c)["type"], "left");
    assert_eq!(take_one(&x)["type"], "peer-left");
    let (y, _) = join(&sig, &rb, "y");
    send(&c, json!({"type": "join", "room": rb, "name": "c again"}));
    let j = take_one(&c);
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(j["peers"][0]["name"], "y");
    assert_eq!(take_one(&y)["type"], "peer-joined");
    assert!(take(&x).is_empty(), "the old room hears nothing");
    // Its connection works on the new shard: ping, relay, close suspends there.
    send(&c, json!({"type": "ping", "id": 5}));
    assert_eq!(take_one(&c), json!({"type": "pong", "id": 5}));
    c.close();
    let snap = sig.snapshot();
    assert_eq!((snap.connections, snap.suspended), (2, 1));
}

#[test]
fn peer_ids_and_resume_tokens_are_unique_across_shards() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let mut ids = HashSet::new();
    let mut tokens = HashSet::new();
    let mut shards_used = HashSet::new();
    let mut conns = Vec::new();
    for i in 0..200 {
        let room = format!("r{}", i % 50);
        shards_used.insert(shard_of_room(&room, SHARDS));
        let (c, j) = join(&sig, &room, "p");
        assert!(ids.insert(j["peerId"].as_str().unwrap().to_string()));
        assert!(tokens.insert(j["resume"].as_str().unwrap().to_string()));
        conns.push(c);
    }
    assert_eq!(shards_used.len(), SHARDS, "the rooms cover every shard");
    assert_eq!(ids.len(), 200);
}

#[test]
fn pre_join_traffic_works_on_any_shard() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    for _ in 0..SHARDS {
        let c = sig.connect();
        send(&c, json!({"type": "ping"}));
        assert_eq!(take_one(&c), json!({"type": "pong", "id": null}));
        send(&c, json!({"type": "offer", "to": "p1", "sdp": "x"}));
        assert_eq!(take_one(&c)["code"], "not-joined");
        c.report(ErrorCode::OriginNotAllowed, "no", true);
        let got = take(&c);
        assert_eq!(got[0]["code"], "origin-not-allowed");
        assert_eq!(got[1], json!({"closed": 1008}));
    }
}

#[test]
fn the_rate_limit_moves_with_the_connection() {
    let cfg = HubConfig {
        rate: 1,
        ..HubConfig::default()
    };
    let sig = Signaling::new(cfg, SHARDS);
    let c = sig.connect();
    // A burst of 4 is allowed: spend 3 before the join, which moves the connection.
    for _ in 0..3 {
        send(&c, json!({"type": "ping"}));
    }
    assert_eq!(take(&c).len(), 3);
    let room = (0..)
        .map(|i| format!("r{i}"))
        .find(|r| shard_of_room(r, SHARDS) as u64 != c.id() % SHARDS as u64)
        .unwrap();
    send(&c, json!({"type": "join", "room": room}));
    assert_eq!(take_one(&c)["type"], "joined");
    send(&c, json!({"type": "ping"}));
    assert_eq!(
        take_one(&c)["code"],
        "rate-limited",
        "the burst was used up"
    );
}

#[test]
fn the_sans_io_hub_hands_back_what_belongs_to_another_shard() {
    let now = Instant::now();
    let (mine, other) = rooms_on_two_shards();
    let index = shard_of_room(&mine, SHARDS);
    let mut hub = Hub::new_shard(
        HubConfig::default(),
        now,
        ShardId::new(index, SHARDS).unwrap(),
    );
    hub.connect(1, now);
    let join_other = json!({"type": "join", "room": other}).to_string();
    assert_eq!(
        hub.receive(1, &join_other, now, 0),
        Received::OtherShard(shard_of_room(&other, SHARDS))
    );
    assert_eq!(hub.drain_outputs().count(), 0, "nothing was said");
    // A resume token names its room, and so the shard of its session.
    let resume_elsewhere = json!({"type": "resume", "token": format!("00~{other}")});
    assert_eq!(
        hub.receive(1, &resume_elsewhere.to_string(), now, 0),
        Received::OtherShard(shard_of_room(&other, SHARDS))
    );
    let join_mine = json!({"type": "join", "room": mine}).to_string();
    assert_eq!(hub.receive(1, &join_mine, now, 0), Received::Handled);
    assert_eq!(hub.drain_outputs().count(), 1, "joined");
    assert!(hub.detach(1).is_none(), "a connection in a room stays");
    hub.connect(2, now);
    let d = hub.detach(2).unwrap();
    assert_eq!(hub.counts().0, 1);
    let mut other_hub = Hub::new_shard(
        HubConfig::default(),
        now,
        ShardId::new(shard_of_room(&other, SHARDS), SHARDS).unwrap(),
    );
    other_hub.attach(2, d);
    assert_eq!(
        other_hub.receive_moved(2, &join_other, now, 0),
        Received::Handled
    );
    assert_eq!(other_hub.counts(), (1, 1, 0, 1));
}

#[test]
fn one_shard_still_works() {
    let sig = Signaling::new(HubConfig::default(), 1);
    let (a, _) = join(&sig, "alpha", "a");
    let (b, jb) = join(&sig, "zeta", "b");
    send(
        &a,
        json!({"type": "message", "to": jb["peerId"], "data": 1}),
    );
    assert_eq!(take_one(&a)["code"], "unknown-peer");
    assert!(take(&b).is_empty());
    assert_eq!(sig.shard_count(), 1);
    let per_core = Signaling::new(HubConfig::default(), 0);
    assert_eq!(per_core.shard_count(), Signaling::default_shards());
}

/// Many threads joining, relaying, moving between rooms (and shards) and resuming at
/// once: no deadlock, nothing left behind, and every relayed message reaches only its
/// own room.
#[test]
fn concurrent_traffic_over_shards_leaves_nothing_behind() {
    let sig = Signaling::new(
        HubConfig {
            rate: 0,
            room_capacity: 64,
            ..HubConfig::default()
        },
        SHARDS,
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let sig = sig.clone();
            std::thread::spawn(move || {
                for round in 0..50 {
                    let room = format!("room-{}", (t * 7 + round) % 10);
                    let c = sig.connect();
                    send(&c, json!({"type": "join", "room": room, "name": "t"}));
                    // Others of the room may already have said something after `joined`.
                    let first = take(&c);
                    let j = first[0].clone();
                    assert_eq!(j["type"], "joined", "{j}");
                    let me = j["peerId"].as_str().unwrap().to_string();
                    for p in j["peers"].as_array().unwrap() {
                        send(&c, json!({"type": "message", "to": p["id"], "data": room}));
                    }
                    // Whatever arrived must be from this room.
                    for v in first.into_iter().chain(take(&c)) {
                        if v["type"] == "message" {
                            assert_eq!(v["data"], room.as_str(), "{v}");
                        }
                    }
                    // Lose the transport, resume on a new one, then leave.
                    c.close();
                    let c2 = sig.connect();
                    send(
                        &c2,
                        json!({"type": "resume", "token": j["resume"], "lastSeq": 0}),
                    );
                    let got = take(&c2);
                    assert_eq!(got[0]["type"], "resumed", "{got:?}");
                    assert_eq!(got[0]["peerId"], me.as_str());
                    for v in &got[1..] {
                        if v["type"] == "message" {
                            assert_eq!(v["data"], room.as_str(), "{v}");
                        }
                    }
                    send(&c2, json!({"type": "leave"}));
                    c2.close();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let snap = sig.snapshot();
    assert_eq!(
        (snap.connections, snap.sessions, snap.suspended, snap.rooms),
        (0, 0, 0, 0),
        "{snap:?}"
    );
    assert_eq!(snap.stats.joins, 400);
    assert_eq!(snap.stats.resumes, 400);
}

/// One keepalive per transport per period, whichever shard holds it, spread over the
/// period's ticks; service participants get none.
#[test]
fn keepalives_reach_every_transport_once_a_period() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let (room_a, room_b) = rooms_on_two_shards();
    let conns: Vec<Connection> = (0..10).map(|_| sig.connect()).collect();
    handle::receive(
        &conns[0],
        &format!(r#"{{"type":"join","room":"{room_a}"}}"#),
    );
    handle::receive(
        &conns[1],
        &format!(r#"{{"type":"join","room":"{room_b}"}}"#),
    );
    for c in &conns {
        take(c);
    }
    let period = 3;
    sig.keepalive(7, period);
    let first: usize = conns.iter().map(|c| take(c).len()).sum();
    assert!(
        first > 0 && first < conns.len(),
        "a share per tick: {first}"
    );
    sig.keepalive(8, period);
    sig.keepalive(9, period);
    for c in &conns {
        assert_eq!(
            take(c).len() + usize::from(c.id() % period == 7 % period),
            1,
            "connection {}",
            c.id()
        );
    }
    sig.keepalive(10, period);
    for c in conns.iter().filter(|c| c.id() % period == 10 % period) {
        assert_eq!(take(c), vec![json!({"keepalive": true})]);
    }
}

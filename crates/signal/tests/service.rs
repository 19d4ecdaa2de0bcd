//! Service participants (members of rooms created by the server: the SFU, gateways, the
//! cluster link) through the runtime handle: same room rules as a browser's `join`, the
//! same isolation between rooms, typed events, typed refusals.

use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::sync::Arc;
use switchboard_signal::token::mint;
use switchboard_signal::{
    Claims, Connection, ErrorCode, Grants, HubConfig, LeaveReason, Out, RelayKind, ServiceEvent,
    Signaling, MAX_SERVICES_PER_ROOM,
};

mod handle;
use handle::{send, take, take_one};

const SHARDS: usize = 3;

fn take_raw(c: &Connection) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(Out::Text(t)) = c.try_recv() {
        got.push(t.to_string());
    }
    got
}

fn join(sig: &Arc<Signaling>, msg: Value) -> (Connection, Value) {
    let c = sig.connect();
    send(&c, msg);
    let j = take_one(&c);
    (c, j)
}

fn join_room(sig: &Arc<Signaling>, room: &str, name: &str) -> (Connection, String) {
    let (c, j) = join(sig, json!({"type": "join", "room": room, "name": name}));
    assert_eq!(j["type"], "joined", "{j}");
    (c, j["peerId"].as_str().unwrap().to_string())
}

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_string()).unwrap()
}

fn sfu() -> Grants {
    Grants {
        publish: true,
        subscribe: true,
        admin: false,
    }
}

#[test]
fn browsers_see_a_service_participant_as_a_peer() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let (a, a_id) = join_room(&sig, "r", "Ada");
    let sp = sig.join_service("r", "SFU", sfu()).unwrap();
    assert_eq!(sp.room(), "r");
    assert_eq!(sp.peers().len(), 1);
    assert_eq!(&*sp.peers()[0].id, a_id);
    assert_eq!(&*sp.peers()[0].name, "Ada");
    let pj = take_one(&a);
    assert_eq!(pj["type"], "peer-joined");
    assert_eq!(pj["peer"], json!({"id": &**sp.peer_id(), "name": "SFU"}));
    let (b, b_id) = join_room(&sig, "r", "Bob");
    let j = &take(&a);
    assert_eq!(j[0]["peer"]["id"], b_id);
    match sp.try_recv() {
        Some(ServiceEvent::PeerJoined(p)) => {
            assert_eq!((&*p.id, &*p.name, p.identity), (b_id.as_str(), "Bob", None))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sp.try_recv(), None);
    drop(b);
    let snap = sig.snapshot();
    assert_eq!((snap.connections, snap.services, snap.sessions), (2, 1, 3));
}

#[test]
fn offers_reach_it_typed_and_raw_and_its_answers_reach_the_browser() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let sp = sig.join_service("r", "SFU", sfu()).unwrap();
    let (a, a_id) = join_room(&sig, "r", "Ada");
    assert!(matches!(sp.try_recv(), Some(ServiceEvent::PeerJoined(_))));
    // Odd spacing and escapes must arrive byte for byte.
    let sdp = r#""v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\u00e9""#;
    let text = format!(r#"{{"type":"offer","to":"{}","sdp":{sdp}}}"#, sp.peer_id());
    handle::receive(&a, &text);
    match sp.try_recv() {
        Some(ServiceEvent::Relay {
            from,
            kind,
            payload,
        }) => {
            assert_eq!(&*from, a_id);
            assert_eq!(kind, RelayKind::Offer);
            assert_eq!(payload.get(), sdp);
        }
        other => panic!("{other:?}"),
    }
    let cand = r#"{"candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host","sdpMid":"0"}"#;
    handle::receive(
        &a,
        &format!(
            r#"{{"type":"candidate","to":"{}","candidate":{cand}}}"#,
            sp.peer_id()
        ),
    );
    match sp.try_recv() {
        Some(ServiceEvent::Relay { kind, payload, .. }) => {
            assert_eq!(kind, RelayKind::Candidate);
            assert_eq!(payload.get(), cand);
        }
        other => panic!("{other:?}"),
    }
    let answer = r#""v=0\r\ns=answer\r\n""#;
    sp.send_answer(&a_id, &raw(answer)).unwrap();
    sp.send_candidate(&a_id, &raw("null")).unwrap();
    sp.send_message(&a_id, &raw(r#"{"k":[1,2]}"#)).unwrap();
    let got = take_raw(&a);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0],
        format!(
            r#"{{"type":"answer","seq":1,"from":"{}","sdp":{answer}}}"#,
            sp.peer_id()
        )
    );
    assert!(got[1].ends_with(r#""candidate":null}"#), "{}", got[1]);
    assert!(got[2].ends_with(r#""data":{"k":[1,2]}}"#), "{}", got[2]);
    // Its sends are checked as a browser's are.
    let e = sp.send_offer(&a_id, &raw("{}")).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage, "an sdp must be a string");
    let e = sp.send_candidate(&a_id, &raw("3")).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadMessage);
    let e = sp.send_message("p-nobody", &raw("1")).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownPeer);
    assert!(take(&a).is_empty());
}

#[test]
fn it_cannot_address_or_be_addressed_from_another_room() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let sp = sig.join_service("r", "SFU", sfu()).unwrap();
    // Rooms on the same shard and on another: neither sees it.
    let same = (0..)
        .map(|i| format!("o{i}"))
        .find(|r| sig.shard_of_room(r) == sig.shard_of_room("r"))
        .unwrap();
    let other = (0..)
        .map(|i| format!("o{i}"))
        .find(|r| sig.shard_of_room(r) != sig.shard_of_room("r"))
        .unwrap();
    for room in [same, other] {
        let (c, j) = join(&sig, json!({"type": "join", "room": room, "name": "Eve"}));
        assert_eq!(j["peers"], json!([]), "{room}: {j}");
        let c_id = j["peerId"].as_str().unwrap();
        for kind in ["offer", "answer"] {
            send(
                &c,
                json!({"type": kind, "to": &**sp.peer_id(), "sdp": "v=0"}),
            );
            assert_eq!(take_one(&c)["code"], "unknown-peer", "{room}");
        }
        send(
            &c,
            json!({"type": "message", "to": &**sp.peer_id(), "data": 1}),
        );
        assert_eq!(take_one(&c)["code"], "unknown-peer", "{room}");
        let e = sp.send_offer(c_id, &raw(r#""v=0""#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownPeer, "{room}");
        assert!(take(&c).is_empty());
        drop(c);
    }
    assert_eq!(
        sp.try_recv(),
        None,
        "nothing from other rooms, not even peer-joined"
    );
}

#[test]
fn capacity_and_room_names_apply_to_it() {
    let cfg = HubConfig {
        room_capacity: 2,
        ..HubConfig::default()
    };
    let sig = Signaling::new(cfg, SHARDS);
    let _sp = sig.join_service("r", "SFU", sfu()).unwrap();
    let (_a, _) = join_room(&sig, "r", "Ada");
    let (_b, _) = join_room(&sig, "r", "Bob");
    let (_c, j) = join(&sig, json!({"type": "join", "room": "r"}));
    assert_eq!(
        j["code"], "room-full",
        "the service participant takes no client's place, the clients fill the room"
    );
    // Service participants have a bound of their own.
    let more: Vec<_> = (1..MAX_SERVICES_PER_ROOM)
        .map(|i| sig.join_service("r", &format!("S{i}"), sfu()).unwrap())
        .collect();
    let e = sig.join_service("r", "one-too-many", sfu()).unwrap_err();
    assert_eq!(e.code, ErrorCode::RoomFull);
    drop(more);
    let e = sig.join_service("bad room!", "SFU", sfu()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRoom);
    let e = sig.join_service("r2", "", sfu()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRoom);
    let snap = sig.snapshot();
    assert_eq!((snap.services, snap.sessions), (1, 3));
}

#[test]
fn grants_apply_as_given() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let watcher = Grants {
        publish: false,
        subscribe: false,
        admin: false,
    };
    let sp = sig.join_service("r", "Recorder", watcher).unwrap();
    let (a, a_id) = join_room(&sig, "r", "Ada");
    let e = sp.send_offer(&a_id, &raw(r#""v=0""#)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let e = sp.send_answer(&a_id, &raw(r#""v=0""#)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    sp.send_message(&a_id, &raw("1")).unwrap();
    assert_eq!(take_one(&a)["data"], 1);
    // Without subscribe it receives no offers.
    send(
        &a,
        json!({"type": "offer", "to": &**sp.peer_id(), "sdp": "v=0"}),
    );
    assert_eq!(take_one(&a)["code"], "forbidden");
}

#[test]
fn leaving_tells_the_room_and_ends_its_events() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let sp = sig.join_service("r", "SFU", sfu()).unwrap();
    let id = sp.peer_id().to_string();
    let (a, _) = join_room(&sig, "r", "Ada");
    let (b, _) = join_room(&sig, "r", "Bob");
    take(&a);
    sp.leave();
    for c in [&a, &b] {
        let v = take_one(c);
        assert_eq!(v["type"], "peer-left");
        assert_eq!(v["peerId"], id);
        assert_eq!(v["reason"], "left");
    }
    send(&a, json!({"type": "message", "to": id, "data": 1}));
    assert_eq!(take_one(&a)["code"], "unknown-peer");
    assert_eq!(sig.snapshot().services, 0);
}

#[test]
fn a_browser_leaving_is_a_typed_event() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let sp = sig.join_service("r", "SFU", sfu()).unwrap();
    let (a, a_id) = join_room(&sig, "r", "Ada");
    assert!(matches!(sp.try_recv(), Some(ServiceEvent::PeerJoined(_))));
    send(&a, json!({"type": "leave"}));
    assert_eq!(
        sp.try_recv(),
        Some(ServiceEvent::PeerLeft {
            peer: a_id.as_str().into(),
            reason: LeaveReason::Left
        })
    );
}

#[tokio::test]
async fn a_kicked_service_participant_gets_a_fatal_error_then_the_end() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let cfg = HubConfig {
        token_secrets: vec![secret.to_vec()],
        ..HubConfig::default()
    };
    let sig = Signaling::new(cfg, SHARDS);
    let sp = sig.join_service("r", "SFU", sfu()).unwrap();
    let claims = Claims {
        room: "r".into(),
        sub: None,
        exp: switchboard_util::unix_now() + 3600,
        nbf: None,
        grants: Some(vec!["admin".into(), "publish".into()]),
    };
    let token = mint(secret, &claims).unwrap();
    let (admin, j) = join(
        &sig,
        json!({"type": "join", "room": "r", "name": "Op", "token": token}),
    );
    assert_eq!(j["type"], "joined", "{j}");
    assert!(matches!(sp.recv().await, Some(ServiceEvent::PeerJoined(_))));
    send(&admin, json!({"type": "kick", "peer": &**sp.peer_id()}));
    let v = take_one(&admin);
    assert_eq!(
        (v["type"].as_str(), v["reason"].as_str()),
        (Some("peer-left"), Some("kicked"))
    );
    match sp.recv().await {
        Some(ServiceEvent::Error { code, fatal, .. }) => {
            assert_eq!((code, fatal), (ErrorCode::Kicked, true))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sp.recv().await, None);
    let e = sp
        .send_message(j["peerId"].as_str().unwrap(), &raw("1"))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotJoined);
}

#[tokio::test]
async fn events_wake_a_waiting_participant_and_shutdown_ends_it() {
    let sig = Signaling::new(HubConfig::default(), SHARDS);
    let sp = Arc::new(sig.join_service("r", "SFU", sfu()).unwrap());
    let waiter = {
        let sp = sp.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = sp.recv().await {
                got.push(e);
            }
            got
        })
    };
    tokio::task::yield_now().await;
    let (a, _) = join_room(&sig, "r", "Ada");
    send(
        &a,
        json!({"type": "message", "to": &**sp.peer_id(), "data": "hi"}),
    );
    tokio::task::yield_now().await;
    sig.shutdown();
    let got = waiter.await.unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(matches!(got[0], ServiceEvent::PeerJoined(_)));
    assert!(matches!(&got[1], ServiceEvent::Relay { payload, .. } if payload.get() == r#""hi""#));
    assert!(matches!(
        got[2],
        ServiceEvent::Error {
            code: ErrorCode::ServerShutdown,
            fatal: true,
            ..
        }
    ));
    let got = take(&a);
    assert_eq!(got.last(), Some(&json!({"closed": 1008})), "{got:?}");
}

/// Between a client and a service with a kind (the SFU) the service enforces the grants:
/// a viewer (subscribe only) offers receive-only to the SFU and a camera (publish only)
/// answers the SFU's renegotiation; between two clients the grants still apply.
#[tokio::test]
async fn grants_toward_a_kinded_service_are_left_to_the_service() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let cfg = HubConfig {
        token_secrets: vec![secret.to_vec()],
        ..HubConfig::default()
    };
    let sig = Signaling::new(cfg, SHARDS);
    let sp = sig.join_service_as("r", "SFU", "sfu", sfu()).unwrap();
    let token = |grants: &[&str]| {
        let claims = Claims {
            room: "r".into(),
            sub: None,
            exp: switchboard_util::unix_now() + 3600,
            nbf: None,
            grants: Some(grants.iter().map(|g| g.to_string()).collect()),
        };
        mint(secret, &claims).unwrap()
    };
    let (viewer, j) = join(
        &sig,
        json!({"type": "join", "room": "r", "name": "Viewer", "token": token(&["subscribe"])}),
    );
    assert_eq!(j["type"], "joined", "{j}");
    let (camera, j) = join(
        &sig,
        json!({"type": "join", "room": "r", "name": "Camera", "token": token(&["publish"])}),
    );
    assert_eq!(j["type"], "joined", "{j}");
    let camera_id = j["peerId"].as_str().unwrap().to_string();
    take(&viewer);
    let sfu_id = &**sp.peer_id();

    send(
        &viewer,
        json!({"type": "offer", "to": sfu_id, "sdp": "v=0 viewer"}),
    );
    send(
        &camera,
        json!({"type": "answer", "to": sfu_id, "sdp": "v=0 camera"}),
    );
    sp.send_offer(&camera_id, &raw(r#""v=0 sfu""#)).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), sp.recv()).await;
        match next.expect("the relays reach the SFU") {
            Some(ServiceEvent::Relay { kind, payload, .. }) => {
                got.push((kind, payload.get().to_string()))
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(
        got.contains(&(RelayKind::Offer, r#""v=0 viewer""#.to_string())),
        "{got:?}"
    );
    assert!(
        got.contains(&(RelayKind::Answer, r#""v=0 camera""#.to_string())),
        "{got:?}"
    );
    assert_eq!(take_one(&camera)["sdp"], "v=0 sfu");
    assert!(take(&viewer).is_empty());

    // Client to client: the viewer still may not offer, the camera may not answer.
    send(
        &viewer,
        json!({"type": "offer", "to": &camera_id, "sdp": "v=0"}),
    );
    assert_eq!(take_one(&viewer)["code"], "forbidden");
}

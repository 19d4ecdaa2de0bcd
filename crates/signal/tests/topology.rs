//! Room topology (mesh or SFU): the creator's `topology`, the `sfu_threshold` turn, the
//! one `ServiceWanted` request per room lifetime, capacities of mesh and SFU rooms, and
//! the service kind that browsers see on the SFU's peer.

mod common;
mod handle;

use common::Driver;
use serde_json::json;
use std::sync::Arc;
use switchboard_signal::{Grants, HubConfig, ServiceEvent, Signaling};

fn cfg(threshold: Option<usize>) -> HubConfig {
    HubConfig {
        sfu_threshold: threshold,
        ..HubConfig::default()
    }
}

/// `n` more clients join `room`; returns what each one's `joined.topology` said.
fn join_many(d: &mut Driver, room: &str, n: usize, topology: Option<&str>) -> Vec<String> {
    (0..n)
        .map(|i| {
            let c = d.connect();
            let mut msg = json!({"type": "join", "room": room, "name": format!("p{i}")});
            if let Some(t) = topology {
                msg["topology"] = json!(t);
            }
            let j = d.join_on(c, msg);
            assert_eq!(j["type"], "joined", "{j}");
            j["topology"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn the_fifth_client_turns_the_room_sfu_and_it_is_requested_once() {
    let mut d = Driver::new(cfg(Some(5)));
    let modes = join_many(&mut d, "r", 4, None);
    assert_eq!(modes, ["mesh"; 4]);
    assert!(d.wanted.is_empty(), "{:?}", d.wanted);
    let modes = join_many(&mut d, "r", 1, None);
    assert_eq!(modes, ["sfu"]);
    assert_eq!(d.wanted, [("r".to_string(), "sfu")]);
    d.wanted.clear();
    // More joins, leaves and joins again: the room stays SFU, nothing is requested again.
    let extra = d.join("r", "late");
    assert_eq!(join_many(&mut d, "r", 1, Some("mesh")), ["sfu"]);
    d.send_json(extra.conn, json!({"type": "leave"}));
    assert_eq!(join_many(&mut d, "r", 1, None), ["sfu"]);
    assert!(d.wanted.is_empty(), "{:?}", d.wanted);
    // Another room has its own count.
    assert_eq!(join_many(&mut d, "other", 4, None), ["mesh"; 4]);
    assert!(d.wanted.is_empty());
}

#[test]
fn a_new_room_lifetime_is_requested_again() {
    let mut d = Driver::new(cfg(Some(2)));
    let a = d.join("r", "a");
    let b = d.join("r", "b");
    assert_eq!(d.wanted.len(), 1);
    d.send_json(a.conn, json!({"type": "leave"}));
    d.send_json(b.conn, json!({"type": "leave"}));
    d.wanted.clear();
    assert_eq!(join_many(&mut d, "r", 2, None), ["mesh", "sfu"]);
    assert_eq!(d.wanted, [("r".to_string(), "sfu")]);
}

#[test]
fn a_mesh_room_never_turns_and_fills_at_the_mesh_capacity() {
    let mut d = Driver::new(HubConfig {
        room_capacity: 8,
        sfu_room_capacity: 100,
        ..cfg(Some(5))
    });
    assert_eq!(join_many(&mut d, "m", 1, Some("mesh")), ["mesh"]);
    // Later joiners cannot change the creator's choice.
    assert_eq!(join_many(&mut d, "m", 7, Some("sfu")), ["mesh"; 7]);
    assert!(d.wanted.is_empty(), "{:?}", d.wanted);
    let c = d.connect();
    d.send_json(c, json!({"type": "join", "room": "m"}));
    let e = d.expect_error(c, "room-full");
    assert!(e["reason"].as_str().unwrap().contains("8"), "{e}");
}

#[test]
fn threshold_zero_makes_every_room_sfu_from_its_first_member() {
    let mut d = Driver::new(cfg(Some(0)));
    assert_eq!(join_many(&mut d, "a", 1, None), ["sfu"]);
    assert_eq!(join_many(&mut d, "b", 1, Some("auto")), ["sfu"]);
    assert_eq!(
        d.wanted,
        [("a".to_string(), "sfu"), ("b".to_string(), "sfu")]
    );
    // `mesh` from the creator still wins.
    assert_eq!(join_many(&mut d, "c", 3, Some("mesh")), ["mesh"; 3]);
    assert_eq!(d.wanted.len(), 2);
}

#[test]
fn the_creator_may_ask_for_sfu_and_off_means_mesh_only() {
    let mut d = Driver::new(cfg(Some(5)));
    assert_eq!(join_many(&mut d, "s", 1, Some("sfu")), ["sfu"]);
    assert_eq!(d.wanted, [("s".to_string(), "sfu")]);
    let mut d = Driver::new(cfg(None));
    assert_eq!(join_many(&mut d, "s", 1, Some("sfu")), ["mesh"]);
    assert_eq!(join_many(&mut d, "a", 8, None), ["mesh"; 8]);
    assert!(d.wanted.is_empty());
    // Nobody serving SFU rooms is the same as `off`.
    let mut d = Driver::new(cfg(Some(0)));
    d.hub.set_sfu_available(false);
    assert_eq!(join_many(&mut d, "s", 2, Some("sfu")), ["mesh", "mesh"]);
    assert!(d.wanted.is_empty());
}

#[test]
fn an_unknown_topology_is_refused() {
    let mut d = Driver::new(cfg(Some(5)));
    let c = d.connect();
    d.send_json(
        c,
        json!({"type": "join", "room": "r", "topology": "star", "ref": 1}),
    );
    let e = d.expect_error(c, "bad-message");
    assert_eq!(e["ref"], 1);
    assert!(e["reason"].as_str().unwrap().contains("star"), "{e}");
    let c2 = d.connect();
    d.send_json(c2, json!({"type": "join", "room": "r", "topology": 5}));
    d.expect_error(c2, "bad-message");
    // Nothing was created: the next creator still decides.
    assert_eq!(join_many(&mut d, "r", 1, Some("sfu")), ["sfu"]);
}

#[test]
fn sfu_rooms_fill_at_the_sfu_capacity() {
    let mut d = Driver::new(HubConfig {
        room_capacity: 3,
        sfu_room_capacity: 6,
        ..cfg(Some(3))
    });
    // The join that turns the room takes the SFU capacity already.
    assert_eq!(
        join_many(&mut d, "r", 6, None),
        ["mesh", "mesh", "sfu", "sfu", "sfu", "sfu"]
    );
    let c = d.connect();
    d.send_json(c, json!({"type": "join", "room": "r"}));
    let e = d.expect_error(c, "room-full");
    assert!(e["reason"].as_str().unwrap().contains("6"), "{e}");
    // A threshold above the mesh capacity: the mesh room fills first.
    let mut d = Driver::new(HubConfig {
        room_capacity: 3,
        sfu_room_capacity: 6,
        ..cfg(Some(5))
    });
    assert_eq!(join_many(&mut d, "r", 3, None), ["mesh"; 3]);
    let c = d.connect();
    d.send_json(c, json!({"type": "join", "room": "r"}));
    d.expect_error(c, "room-full");
}

fn sfu_grants() -> Grants {
    Grants {
        publish: true,
        subscribe: true,
        admin: false,
    }
}

fn join_ws(
    sig: &Arc<Signaling>,
    room: &str,
    name: &str,
) -> (switchboard_signal::Connection, serde_json::Value) {
    let c = sig.connect();
    handle::send(&c, json!({"type": "join", "room": room, "name": name}));
    let j = handle::take_one(&c);
    assert_eq!(j["type"], "joined", "{j}");
    (c, j)
}

#[test]
fn the_runtime_hands_requests_to_the_registered_service_and_shows_its_kind() {
    let sig = Signaling::new(
        HubConfig {
            room_capacity: 2,
            sfu_room_capacity: 3,
            ..cfg(Some(2))
        },
        3,
    );
    // Before anyone serves SFU rooms, rooms stay mesh.
    let (_x, j) = join_ws(&sig, "early", "x");
    let (_y, j2) = join_ws(&sig, "early", "y");
    assert_eq!(
        (j["topology"].as_str(), j2["topology"].as_str()),
        (Some("mesh"), Some("mesh"))
    );
    let mut requests = sig.service_requests("sfu");
    let (a, ja) = join_ws(&sig, "r", "Ada");
    let ada_id = ja["peerId"].as_str().unwrap().to_string();
    assert!(requests.try_recv().is_err());
    let (_b, j) = join_ws(&sig, "r", "Bob");
    assert_eq!(j["topology"], "sfu");
    assert_eq!(&*requests.try_recv().unwrap(), "r");
    assert!(requests.try_recv().is_err(), "once per room lifetime");
    handle::take(&a);
    let sp = sig
        .join_service_as("r", "SFU", "sfu", sfu_grants())
        .unwrap();
    assert_eq!(sp.peers().len(), 2);
    assert!(sp.peers().iter().all(|p| p.service.is_none()));
    assert_eq!(sp.peer_grants(&ada_id), Some(Grants::DEFAULT));
    assert_eq!(sp.peer_grants("p-nobody"), None);
    let pj = handle::take_one(&a);
    assert_eq!(
        pj["peer"],
        json!({"id": &**sp.peer_id(), "name": "SFU", "service": "sfu"})
    );
    // The SFU takes no client's place: a third client fits (SFU capacity 3), a fourth not.
    let (c, j) = join_ws(&sig, "r", "Cy");
    let sfu_peer = j["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == **sp.peer_id())
        .cloned()
        .unwrap();
    assert_eq!(sfu_peer["service"], "sfu");
    match sp.try_recv() {
        Some(ServiceEvent::PeerJoined(p)) => assert_eq!((&*p.name, p.service), ("Cy", None)),
        other => panic!("{other:?}"),
    }
    let d = sig.connect();
    handle::send(&d, json!({"type": "join", "room": "r"}));
    assert_eq!(handle::take_one(&d)["code"], "room-full");
    drop(c);
    // A service without a kind shows none.
    let plain = sig.join_service("r", "Recorder", sfu_grants()).unwrap();
    let got = handle::take(&a);
    let last = got.last().unwrap();
    assert_eq!(last["peer"]["id"], **plain.peer_id());
    assert!(last["peer"].get("service").is_none(), "{last}");
}

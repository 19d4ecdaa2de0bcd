//! Member records (`HubConfig::records`): what a room's owner writes for the cluster
//! store, and how another hub rebuilds the room from them (`Hub::restore`).

mod common;
use common::{seq, Driver};
use serde_json::json;
use std::time::Duration;
use switchboard_signal::HubConfig;

fn recording() -> Driver {
    Driver::new(HubConfig {
        records: true,
        ..HubConfig::default()
    })
}

fn records_of(d: &Driver, room: &str) -> Vec<(String, String)> {
    d.records
        .iter()
        .filter(|((r, _), _)| r == room)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn members_are_written_as_they_come_and_go() {
    let mut d = recording();
    let ada = d.join("r", "Ada");
    let bob = d.join("r", "Bob");
    let keys: Vec<String> = records_of(&d, "r").into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.contains(&"$room".to_string()));
    assert!(keys.contains(&ada.id) && keys.contains(&bob.id));
    let ada_rec: serde_json::Value =
        serde_json::from_str(&d.records[&("r".to_string(), ada.id.clone())]).unwrap();
    assert_eq!(ada_rec["resume"], ada.resume);
    assert_eq!(ada_rec["name"], "Ada");
    // A resume rotates the token: the record follows.
    d.disconnect(ada.conn);
    let (ada2, _, _) = d.resume_ok(&ada, 0);
    let rec: serde_json::Value =
        serde_json::from_str(&d.records[&("r".to_string(), ada.id.clone())]).unwrap();
    assert_eq!(rec["resume"], ada2.resume);
    d.send_json(bob.conn, json!({"type": "leave"}));
    assert_eq!(records_of(&d, "r").len(), 2, "Bob's record went");
    d.send_json(ada2.conn, json!({"type": "leave"}));
    assert!(records_of(&d, "r").is_empty());
    assert_eq!(d.rooms_gone, vec!["r".to_string()]);
}

#[test]
fn a_reload_keeps_writing_records() {
    // Found by the fuzz target: a reload (SIGHUP) with settings that do not say `records`
    // turned them off, and a leave afterwards left its record behind in the store.
    let mut d = recording();
    let ada = d.join("r", "Ada");
    d.hub.set_config(HubConfig::default());
    d.send_json(ada.conn, json!({"type": "leave"}));
    d.tick();
    assert!(records_of(&d, "r").is_empty(), "{:?}", d.records);
}

#[test]
fn another_hub_rebuilds_the_room_and_its_members_resume_with_a_gap() {
    let mut old = recording();
    let ada = old.join("r", "Ada");
    let bob = old.join("r", "Bob");
    old.message(&ada, &bob, json!("one"));
    old.message(&ada, &bob, json!("two"));
    let bob_seen = old.take(bob.conn).iter().map(seq).max().unwrap();
    let records = records_of(&old, "r");

    let mut new = recording();
    let now = new.now;
    assert_eq!(new.hub.restore("r", &records, now), 2);
    assert_eq!(new.hub.restore("r", &records, now), 0, "held already");
    assert_eq!(new.counts().2, 2, "both suspended");
    // Ada comes back first and writes to Bob, who is still away.
    let (ada2, resumed, _) = new.resume_ok(&ada, 3);
    assert_eq!(resumed["gap"], true);
    assert_eq!(resumed["peers"][0]["id"], bob.id);
    new.message(&ada2, &bob, json!("while away"));
    // Bob resumes from the last seq he saw under the old owner: what waited for him is
    // numbered after it, so his SDK does not drop it as already seen.
    let (_bob2, resumed, replay) = new.resume_ok(&bob, bob_seen);
    assert_eq!(resumed["gap"], true);
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_eq!(replay[0]["data"], "while away");
    assert_eq!(seq(&replay[0]), bob_seen + 1);
    // The grace period counts from the restore: nobody resumes, everyone times out.
    let mut idle = recording();
    idle.hub.restore("r", &records, idle.now);
    idle.advance_and_tick(HubConfig::default().grace + Duration::from_secs(1));
    assert_eq!(idle.counts(), (0, 0, 0, 0));
    assert!(idle.records.is_empty() || records_of(&idle, "r").is_empty());
}

#[test]
fn records_that_do_not_fit_are_skipped() {
    let mut d = recording();
    let ada = d.join("r", "Ada");
    let good = records_of(&d, "r");
    let (id, value) = good.iter().find(|(k, _)| k != "$room").cloned().unwrap();
    let mut fresh = recording();
    let now = fresh.now;
    let wrong_room = value.replace("~r\"", "~s\"");
    let junk = [
        (id.clone(), "not json".to_string()),
        (id.clone(), wrong_room),
        ("another-key".to_string(), value.clone()),
        (id.clone(), value.replace("publish", "fly")),
    ];
    assert_eq!(fresh.hub.restore("r", &junk, now), 0);
    assert_eq!(fresh.hub.restore("bad room!", &good, now), 0);
    // A member this hub already knows (the same peer id) is not doubled.
    let elsewhere = [(id.clone(), value.replace("~r\"", "~r2\""))];
    assert_eq!(d.hub.restore("r2", &elsewhere, now), 0);
    assert_eq!(fresh.hub.restore("r", &good, now), 1);
    assert_eq!(ada.id, id);
}

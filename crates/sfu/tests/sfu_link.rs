//! Node links (`Sfu::set_link`): the participant through which a room's tracks from
//! another node enter this one. Its `publish` names the peer each track belongs to, and
//! subscribers see those tracks as that peer's (in `tracks`, by their packets, as the
//! speaker); it is subscribed to this node's tracks but never to its own; and nobody
//! else may name a peer.

mod common;

use std::time::Duration;

use common::{Net, ROOM};
use str0m::media::MediaKind;
use switchboard_sfu::Grants;

const AUDIO: MediaKind = MediaKind::Audio;
const VIDEO: MediaKind = MediaKind::Video;

#[test]
fn a_links_tracks_belong_to_the_peers_it_names_and_it_never_gets_them_back() {
    let mut net = Net::new();
    net.connect_all(&[("alice", &[(AUDIO, false), (VIDEO, false)]), ("bob", &[])]);
    let link = net.join("link-n2", Grants::default());
    assert!(net.sfu.set_link(ROOM, "link-n2"));
    assert!(!net.sfu.set_link(ROOM, "nobody"));
    assert!(!net.sfu.set_link("another-room", "link-n2"));
    // xavier (microphone and camera) and yves (camera) are on node 2.
    net.offer_for(
        link,
        &[
            (AUDIO, false, "microphone", "xavier"),
            (VIDEO, false, "camera", "xavier"),
            (VIDEO, false, "camera", "yves"),
        ],
    );
    net.run_until(Duration::from_secs(5), "tracks", |n| {
        n.client("bob").tracks().len() == 5 && n.client("link-n2").tracks().len() == 2
    });
    let mut bob: Vec<(String, String)> = net
        .client("bob")
        .tracks()
        .into_iter()
        .map(|t| (t.1, t.2))
        .collect();
    bob.sort();
    let expect: Vec<(String, String)> = [
        ("alice", "camera"),
        ("alice", "microphone"),
        ("xavier", "camera"),
        ("xavier", "microphone"),
        ("yves", "camera"),
    ]
    .iter()
    .map(|(p, s)| (p.to_string(), s.to_string()))
    .collect();
    assert_eq!(bob, expect, "bob's tracks name the link's peers");
    let mut back: Vec<String> = net
        .client("link-n2")
        .tracks()
        .into_iter()
        .map(|t| t.1)
        .collect();
    back.sort();
    assert_eq!(
        back,
        ["alice", "alice"],
        "the link gets this node's tracks, none of its own"
    );

    // Media: the link's packets reach bob as xavier's and yves's, alice's reach the link.
    let alice = net.idx("alice");
    net.clients[link].level = Some(-20);
    net.clients[alice].level = Some(-127);
    net.stream(&[link, alice], Duration::from_secs(2), 10);
    net.run_for(Duration::from_millis(200));
    let bob = net.client("bob");
    for (peer, kind) in [("xavier", "audio"), ("xavier", "video"), ("yves", "video")] {
        assert!(
            bob.received_from(peer, kind) >= 90,
            "bob got {} {kind} packets of {peer}",
            bob.received_from(peer, kind)
        );
    }
    assert_eq!(bob.received_from("link-n2", "audio"), 0);
    assert!(net.client("link-n2").received_from("alice", "video") >= 90);
    let speakers: Vec<&str> = net
        .client("alice")
        .msgs("speaker")
        .iter()
        .filter_map(|m| m["peer"].as_str())
        .collect();
    assert_eq!(speakers, ["xavier"], "the speaker is the link's peer");

    // The link leaves (its node went away): its peers' tracks go, and so does the speaker.
    net.sfu.remove_participant(ROOM, "link-n2", net.now);
    net.run_until(Duration::from_secs(5), "tracks after the link left", |n| {
        n.client("bob").tracks().iter().all(|t| t.1 == "alice")
    });
    let last = net.client("bob").msgs("speaker").last().copied().cloned();
    assert_eq!(
        last.map(|m| m["peer"].clone()),
        Some(serde_json::Value::Null)
    );
}

#[test]
fn a_participant_that_is_no_link_cannot_publish_for_another_peer() {
    let mut net = Net::new();
    net.connect_all(&[("alice", &[]), ("bob", &[])]);
    let mallory = net.join("mallory", Grants::default());
    net.offer_for(mallory, &[(VIDEO, false, "camera", "alice")]);
    net.run_until(Duration::from_secs(5), "mallory's track at bob", |n| {
        !n.client("bob").tracks().is_empty()
    });
    let errors = net.client("mallory").msgs("error");
    assert!(
        errors.iter().any(|e| e["code"] == "forbidden"),
        "mallory was told: {errors:?}"
    );
    let bob: Vec<(String, String)> = net
        .client("bob")
        .tracks()
        .into_iter()
        .map(|t| (t.1, t.2))
        .collect();
    assert_eq!(
        bob,
        [("mallory".to_string(), "camera".to_string())],
        "mallory's track is hers"
    );
}

//! The policies at work between real str0m peers: keyframe requests coalesced into at
//! most one PLI a second at the publisher, simulcast layer switches driven by the tile
//! size (continuous sequence numbers across the switch), hidden tiles paused, the
//! dominant speaker announced to the room.

mod common;

use std::time::Duration;

use common::Net;
use str0m::media::{MediaKind, Mid};
use switchboard_sfu::Grants;

const NONE: &[(MediaKind, bool)] = &[];

#[test]
fn sfu_keyframe_requests_are_coalesced_at_the_publisher() {
    let mut net = Net::new();
    net.connect_all(&[
        ("alice", &[(MediaKind::Video, false)]),
        ("s1", NONE),
        ("s2", NONE),
        ("s3", NONE),
        ("s4", NONE),
    ]);
    let a = net.idx("alice");
    // Start the stream, then only delta frames: nothing answers the requests.
    net.stream(&[a], Duration::from_millis(1500), 1_000_000);
    let before = net.clients[a].keyframe_requests;
    let plis_before = net.sfu.stats().plis_sent;
    // Four subscribers ask every 20 ms for 3 s: 600 requests.
    for _ in 0..150 {
        for c in 1..5 {
            net.clients[c].request_keyframes();
        }
        net.send_media(a, false);
        for _ in 0..4 {
            net.step(Duration::from_millis(5));
        }
    }
    net.run_for(Duration::from_millis(100));
    let got = net.clients[a].keyframe_requests - before;
    let sent = net.sfu.stats().plis_sent - plis_before;
    assert!(
        (2..=4).contains(&got),
        "publisher saw {got} keyframe requests in 3 s"
    );
    assert!((2..=4).contains(&sent), "SFU sent {sent} PLIs in 3 s");
    // Every subscriber still receives the stream.
    for c in 1..5 {
        assert!(net.clients[c].received_from("alice", "video") >= 140);
    }
}

#[test]
fn sfu_simulcast_layer_follows_the_tile_and_hidden_tiles_pause() {
    let mut net = Net::new();
    net.connect_all(&[("alice", &[(MediaKind::Video, true)]), ("bob", NONE)]);
    let (a, b) = (net.idx("alice"), net.idx("bob"));
    let mid = net.client("bob").mid_of("alice", "camera").unwrap();
    let layers = |net: &Net| -> Vec<String> {
        net.client("bob")
            .msgs("layers")
            .iter()
            .filter(|m| m["mid"] == mid.as_str())
            .map(|m| m["layer"].as_str().unwrap_or("-").to_string())
            .collect()
    };

    // Default tile (640x360): the middle layer once the layers are all there (the SFU
    // waits 300 ms so it does not switch at each layer's first packet), one layer's
    // packets only.
    net.stream(&[a], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(100));
    assert_eq!(layers(&net), vec!["h"]);
    let warm = net.client("bob").received_from("alice", "video");
    net.stream(&[a], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(100));
    let got = net.client("bob").received_from("alice", "video") - warm;
    assert!(
        (48..=50).contains(&got),
        "one layer of 50 packets, got {got}"
    );

    // A small tile: the low layer, from its next keyframe on.
    net.message(
        b,
        &format!(r#"{{"sfu":"view","tracks":[{{"mid":"{mid}","width":320,"height":180}}]}}"#),
    );
    net.stream(&[a], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(100));
    assert_eq!(layers(&net), vec!["h", "q"]);
    assert!(net.sfu.stats().layer_switches >= 1);
    // One stream for the decoder: sequence numbers without gaps or repeats.
    let mut seqs = net.client("bob").rtp_seqs[&Mid::from(mid.as_str())].clone();
    let n = seqs.len() as u64;
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, n, "no repeated sequence numbers");
    assert_eq!(
        seqs[seqs.len() - 1] - seqs[0] + 1,
        n,
        "no gaps across the switch"
    );
    assert!(n >= 90, "{n}");

    // Hidden: nothing more is forwarded.
    net.message(b, r#"{"sfu":"view","tracks":[]}"#);
    net.run_for(Duration::from_millis(50));
    let paused_at = net.client("bob").received_from("alice", "video");
    net.stream(&[a], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.client("bob").received_from("alice", "video"), paused_at);

    // Shown large again: forwarding resumes at a keyframe.
    net.message(
        b,
        &format!(r#"{{"sfu":"view","tracks":[{{"mid":"{mid}","width":1280,"height":720}}]}}"#),
    );
    net.stream(&[a], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(100));
    let resumed = net.client("bob").received_from("alice", "video") - paused_at;
    assert!(resumed >= 40, "{resumed}");
}

#[test]
fn sfu_dominant_speaker_is_announced_to_the_room() {
    let mut net = Net::new();
    let audio: &[(MediaKind, bool)] = &[(MediaKind::Audio, false)];
    net.connect_all(&[("alice", audio), ("bob", audio), ("carol", audio)]);
    let all: Vec<usize> = (0..3).collect();
    let speakers = |net: &Net, who: &str| -> Vec<String> {
        net.client(who)
            .msgs("speaker")
            .iter()
            .map(|m| m["peer"].as_str().unwrap_or("").to_string())
            .collect()
    };
    net.clients[0].level = Some(-20);
    net.clients[1].level = Some(-127);
    net.clients[2].level = Some(-127);
    net.stream(&all, Duration::from_secs(2), 1);
    for who in ["alice", "bob", "carol"] {
        assert_eq!(speakers(&net, who), vec!["alice"], "{who}");
    }
    net.clients[0].level = Some(-127);
    net.clients[1].level = Some(-15);
    net.stream(&all, Duration::from_secs(3), 1);
    for who in ["alice", "bob", "carol"] {
        assert_eq!(
            speakers(&net, who).last().map(String::as_str),
            Some("bob"),
            "{who}"
        );
    }
}

#[test]
fn sfu_late_joiner_learns_the_current_speaker() {
    let mut net = Net::new();
    let audio: &[(MediaKind, bool)] = &[(MediaKind::Audio, false)];
    net.connect_all(&[("alice", audio), ("bob", audio)]);
    net.clients[0].level = Some(-20);
    net.clients[1].level = Some(-127);
    net.stream(&[0, 1], Duration::from_secs(2), 1);
    assert_eq!(net.client("bob").msgs("speaker").len(), 1);
    // Carol comes after the decision: she is told who speaks, without a change.
    let c = net.join("carol", Grants::default());
    net.offer(c, audio);
    net.stream(&[0, 1], Duration::from_millis(500), 1);
    let carol: Vec<&str> = net
        .client("carol")
        .msgs("speaker")
        .iter()
        .map(|m| m["peer"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(carol, ["alice"]);
    assert_eq!(net.client("bob").msgs("speaker").len(), 1, "no new change");
}

#[test]
fn sfu_shaped_subscriber_gets_the_low_layer_and_climbs_back() {
    let mut net = Net::new();
    net.connect_all(&[("alice", &[(MediaKind::Video, true)]), ("bob", NONE)]);
    let (a, b) = (net.idx("alice"), net.idx("bob"));
    let mid = net.client("bob").mid_of("alice", "camera").unwrap();
    let last_layer = |net: &Net| -> String {
        net.client("bob")
            .msgs("layers")
            .iter()
            .filter(|m| m["mid"] == mid.as_str())
            .filter_map(|m| m["layer"].as_str())
            .next_back()
            .unwrap_or("-")
            .to_string()
    };
    // Layers of ~120/320/460 kbit/s; a 640x360 tile wants h.
    net.stream(&[a], Duration::from_secs(2), 25);
    assert_eq!(last_layer(&net), "h");

    // 300 kbit/s with 2 % loss: down to q, and it keeps flowing.
    net.clients[b].shaper = Some(common::Shaper::new(300_000, 20));
    net.stream(&[a], Duration::from_secs(6), 25);
    assert_eq!(
        last_layer(&net),
        "q",
        "bwe {:?}",
        net.sfu.stats().bwe_estimates
    );
    let before = net.client("bob").received_from("alice", "video");
    net.stream(&[a], Duration::from_secs(2), 25);
    let flowing = net.client("bob").received_from("alice", "video") - before;
    assert!(flowing >= 80, "{flowing} packets in 2 s on the low layer");

    // Unshaped (a fast link with the same 20 ms delay): the estimate climbs back and,
    // after holding, the layer too.
    net.clients[b].shaper = Some(common::Shaper::new(100_000_000, 0));
    let mut waited = 0;
    while last_layer(&net) != "h" {
        assert!(
            waited < 30,
            "not back on h within 30 s: bwe {:?}",
            net.sfu.stats().bwe_estimates
        );
        net.stream(&[a], Duration::from_secs(1), 25);
        waited += 1;
    }
    let st = net.sfu.stats();
    assert!(st.layer_switches >= 2, "{st:?}");
}

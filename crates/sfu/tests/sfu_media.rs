//! Media through the SFU: join, publish, subscribe, forwarding counts at the receiving
//! client, server-initiated renegotiation when a third participant publishes.

mod common;

use std::time::Duration;

use common::Net;
use str0m::media::MediaKind;

const AV: &[(MediaKind, bool)] = &[(MediaKind::Audio, false), (MediaKind::Video, false)];

#[test]
fn sfu_two_publishers_receive_each_other() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV), ("bob", AV)]);

    // Each got one SFU offer carrying the other's two tracks, announced before it.
    for (me, other) in [("alice", "bob"), ("bob", "alice")] {
        let c = net.client(me);
        let tracks = c.tracks();
        assert_eq!(tracks.len(), 2, "{me}: {tracks:?}");
        assert!(tracks.iter().all(|t| t.1 == other));
        assert!(tracks.iter().any(|t| t.2 == "camera" && t.3 == "video"));
        assert!(tracks.iter().any(|t| t.2 == "microphone" && t.3 == "audio"));
    }

    let (a, b) = (net.idx("alice"), net.idx("bob"));
    net.stream(&[a, b], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    for (me, other) in [("alice", "bob"), ("bob", "alice")] {
        let c = net.client(me);
        let video = c.received_from(other, "video");
        let audio = c.received_from(other, "audio");
        assert!(
            video >= 48 && audio >= 48,
            "{me} got video {video}, audio {audio} of 50 each"
        );
    }
    let st = net.sfu.stats();
    assert_eq!((st.rooms, st.participants, st.tracks), (1, 2, 4));
    assert!(st.forwarded_packets >= 180, "{st:?}");
}

#[test]
fn sfu_third_publisher_renegotiates_the_others() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV), ("bob", AV)]);
    let offers_before: Vec<u32> = net.clients.iter().map(|c| c.offers_received).collect();

    let c = net.join("carol", Default::default());
    net.offer(c, AV);
    net.run_until(
        Duration::from_secs(5),
        "carol connected, everyone renegotiated",
        |n| {
            n.clients
                .iter()
                .all(|c| c.connected && c.pending.is_none() && c.inbox.is_empty())
                && n.clients.iter().all(|c| c.tracks().len() == 4)
        },
    );
    for (i, before) in offers_before.iter().enumerate() {
        assert!(
            net.clients[i].offers_received > *before,
            "{} got a new SFU offer",
            net.clients[i].peer
        );
    }
    let idx: Vec<usize> = (0..3).collect();
    net.stream(&idx, Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    for me in ["alice", "bob", "carol"] {
        for other in ["alice", "bob", "carol"].iter().filter(|o| **o != me) {
            let got = net.client(me).received_from(other, "video");
            assert!(got >= 48, "{me} got {got} video packets from {other}");
        }
    }

    // Carol leaves: her tracks leave the others' PCs (m-lines inactive, map updated).
    net.sfu.remove_participant(common::ROOM, "carol", net.now);
    net.run_for(Duration::from_millis(500));
    for me in ["alice", "bob"] {
        let t = net.client(me).tracks();
        assert_eq!(t.len(), 2, "{me}: {t:?}");
        assert!(t.iter().all(|t| t.1 != "carol"));
    }
    assert_eq!(net.sfu.stats().participants, 2);
}

//! In-process media (`Sfu::set_local_media`): a participant that negotiated like a
//! browser but exchanges its RTP with the SFU in-process (the SIP gateway's room leg).
//! What the room publishes reaches it as `SfuOutput::LocalRtp` on its own m-line and
//! payload type, bytes unchanged and no longer through its PC; what it hands in with
//! `handle_local_rtp` reaches the other participants like a browser's packets, with its
//! audio level feeding the speaker detector.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Net, ROOM};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};
use switchboard_sfu::LocalRtp;

#[test]
fn a_local_participant_exchanges_rtp_in_process() {
    let mut net = Net::new();
    net.audio_codecs = Some(vec![Codec::PCMU]);
    net.connect_all(&[
        ("alice", &[(MediaKind::Audio, false)]),
        ("leg", &[(MediaKind::Audio, false)]),
        ("bob", &[]),
    ]);
    net.run_until(Duration::from_secs(5), "tracks", |n| {
        n.client("leg").tracks().len() == 1 && n.client("bob").tracks().len() == 2
    });
    assert!(net.sfu.set_local_media(ROOM, "leg"));
    assert!(!net.sfu.set_local_media(ROOM, "nobody"));
    let leg = net.idx("leg");
    let alice = net.idx("alice");
    let through_pc_before = net.client("leg").received_from("alice", "audio");

    // The room's audio: out in-process, on the leg's m-line for alice's track.
    net.stream(&[alice], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    let slot = Mid::from(
        net.client("leg")
            .mid_of("alice", "microphone")
            .unwrap()
            .as_str(),
    );
    let got: Vec<&LocalRtp> = net
        .local_rtp
        .iter()
        .filter(|(p, _)| p == "leg")
        .map(|(_, r)| r)
        .collect();
    assert!(got.len() >= 45, "{} packets in-process", got.len());
    let pcmu = net.clients[leg]
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::PCMU)
        .map(|p| p.pt())
        .unwrap();
    for r in &got {
        assert_eq!(r.mid, slot);
        assert_eq!(r.pt, pcmu);
        assert_eq!(r.payload.len(), 160);
        assert!(r.payload.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }
    assert!(
        got.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "consecutive sequence numbers"
    );
    assert_eq!(
        net.client("leg").received_from("alice", "audio"),
        through_pc_before,
        "nothing went through the leg's PC"
    );
    assert!(net.client("bob").received_from("alice", "audio") >= 45);

    // The leg's audio: in-process in, to bob as from any publisher.
    let track = net.clients[leg].sending[0];
    let bob_before = net.client("bob").received_from("leg", "audio");
    // Two seconds: the speaker detector takes over after one.
    for i in 0..100u64 {
        let rtp = LocalRtp {
            mid: track,
            pt: pcmu,
            seq: 1000 + i,
            timestamp: 160 * i as u32,
            marker: i == 0,
            audio_level: Some(-20),
            voice_activity: Some(true),
            payload: Arc::from(vec![0x5a; 160]),
        };
        let now = net.now;
        net.sfu.handle_local_rtp(now, ROOM, "leg", &rtp);
        net.sfu.flush(now);
        net.step(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(300));
    let bob = net.client("bob");
    assert!(bob.received_from("leg", "audio") - bob_before >= 95);
    let mid = Mid::from(bob.mid_of("leg", "microphone").unwrap().as_str());
    assert_eq!(bob.last_rtp[&mid].1, vec![0x5a; 160]);
    assert!(
        bob.msgs("speaker")
            .iter()
            .any(|m| m["peer"].as_str() == Some("leg")),
        "the leg's level made it the speaker: {:?}",
        bob.msgs("speaker")
    );

    // A participant without in-process media cannot inject packets.
    let alice_track = net.clients[alice].sending[0];
    let before = net.client("bob").received_from("alice", "audio");
    let fake = LocalRtp {
        mid: alice_track,
        pt: pcmu,
        seq: 1,
        timestamp: 0,
        marker: false,
        audio_level: None,
        voice_activity: None,
        payload: Arc::from(vec![0; 160]),
    };
    let now = net.now;
    net.sfu.handle_local_rtp(now, ROOM, "alice", &fake);
    net.sfu.flush(now);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.client("bob").received_from("alice", "audio"), before);
}

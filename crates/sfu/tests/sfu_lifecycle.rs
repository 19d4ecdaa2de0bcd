//! Participants that go: idle (vanished without a DTLS close, or never connected) within
//! the configured timeout, their tracks leave the others; rooms that empty.

mod common;

use std::time::Duration;

use common::{config, Net, ROOM};
use str0m::media::MediaKind;
use switchboard_sfu::{GoneReason, Grants, SfuConfig, SfuError};

const AV: &[(MediaKind, bool)] = &[(MediaKind::Audio, false), (MediaKind::Video, false)];

#[test]
fn sfu_vanished_participant_is_gone_within_the_idle_timeout() {
    let mut net = Net::with_config(SfuConfig {
        idle_timeout: Duration::from_secs(5),
        ..config()
    });
    net.connect_all(&[("alice", AV), ("bob", AV)]);
    assert_eq!(net.client("bob").tracks().len(), 2);
    let a = net.idx("alice");
    net.clients[a].dead = true;
    let t0 = net.now;
    net.run_until(Duration::from_secs(6), "alice gone", |n| !n.gone.is_empty());
    let after = net.now - t0;
    assert_eq!(net.gone[0].0, "alice");
    assert!(
        matches!(net.gone[0].1, GoneReason::Idle | GoneReason::IceTimeout),
        "{:?}",
        net.gone
    );
    assert!(
        after <= Duration::from_secs(5) + Duration::from_millis(100),
        "{after:?}"
    );
    // Bob renegotiated without alice's tracks.
    net.run_until(Duration::from_secs(2), "bob's map without alice", |n| {
        n.client("bob").tracks().is_empty() && n.client("bob").pending.is_none()
    });
    let st = net.sfu.stats();
    assert_eq!((st.participants, st.tracks), (1, 2));
    // Bob stays (he keeps answering consent checks).
    net.run_for(Duration::from_secs(6));
    assert_eq!(net.gone.len(), 1);
}

#[test]
fn sfu_never_connected_participant_is_gone_and_room_empties() {
    let mut net = Net::with_config(SfuConfig {
        idle_timeout: Duration::from_secs(3),
        ..config()
    });
    net.join("ghost", Grants::default());
    net.clients[0].dead = true;
    net.run_for(Duration::from_millis(3100));
    assert_eq!(net.gone, vec![("ghost".to_string(), GoneReason::Idle)]);
    assert_eq!(net.rooms_empty, vec![ROOM.to_string()]);
    assert_eq!(net.sfu.stats().rooms, 0);
    assert_eq!(net.sfu.poll_timeout(), None);
}

#[test]
fn sfu_join_limits_and_config_errors() {
    let mut cfg = config();
    cfg.limits.participants_per_room = 1;
    let mut net = Net::with_config(cfg);
    net.join("a", Grants::default());
    let now = net.now;
    assert!(matches!(
        net.sfu.add_participant(ROOM, "a", Grants::default(), now),
        Err(SfuError::AlreadyJoined { .. })
    ));
    assert!(matches!(
        net.sfu.add_participant(ROOM, "b", Grants::default(), now),
        Err(SfuError::RoomFull { limit: 1, .. })
    ));
    // Removing twice is harmless; the explicit removal is not reported as gone.
    net.sfu.remove_participant(ROOM, "a", now);
    net.sfu.remove_participant(ROOM, "a", now);
    net.run_for(Duration::from_millis(10));
    assert!(net.gone.is_empty());
    assert_eq!(net.rooms_empty, vec![ROOM.to_string()]);

    for bad in [
        SfuConfig {
            candidates: vec![],
            ..config()
        },
        SfuConfig {
            idle_timeout: Duration::from_secs(31),
            ..config()
        },
        SfuConfig {
            ufrag_prefix: "w:1".into(),
            ..config()
        },
        SfuConfig {
            candidates: vec!["0.0.0.0:3480".parse().unwrap()],
            ..config()
        },
        SfuConfig {
            limits: switchboard_sfu::Limits {
                queue_time: Duration::ZERO,
                ..Default::default()
            },
            ..config()
        },
    ] {
        assert!(matches!(
            switchboard_sfu::Sfu::new(bad, now),
            Err(SfuError::Config(_))
        ));
    }
}

#[test]
fn sfu_routes_by_ufrag_then_address_and_counts_strangers() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV)]);
    let ufrag = net.sfu.local_ufrag(ROOM, "alice").unwrap().to_string();
    assert!(ufrag.starts_with("w1x") && ufrag.len() > 3);
    let before = net.sfu.stats().unknown_datagrams;
    let now = net.now;
    // RTP-looking bytes from an address nobody's STUN came from: dropped, counted.
    let stranger = "10.9.9.9:1234".parse().unwrap();
    assert!(!net
        .sfu
        .handle_datagram(now, stranger, common::sfu_addr(), &[0x80; 40]));
    assert_eq!(net.sfu.stats().unknown_datagrams, before + 1);
}

#[test]
fn sfu_dtls_close_is_gone_at_once() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV), ("bob", AV)]);
    let a = net.idx("alice");
    net.clients[a].rtc.close().unwrap();
    net.run_until(Duration::from_secs(2), "alice gone", |n| !n.gone.is_empty());
    assert_eq!(net.gone, vec![("alice".to_string(), GoneReason::Closed)]);
    net.run_until(Duration::from_secs(2), "bob's map without alice", |n| {
        n.client("bob").tracks().is_empty()
    });
}

/// A Binding request with `ufrag` in USERNAME and a MESSAGE-INTEGRITY of zeros.
fn forged_binding(ufrag: &str) -> Vec<u8> {
    let user = format!("{ufrag}:evil");
    let padded = user.len().div_ceil(4) * 4;
    let len = 4 + padded + 4 + 20;
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&[0x00, 0x06]);
    m.extend_from_slice(&(user.len() as u16).to_be_bytes());
    m.extend_from_slice(user.as_bytes());
    m.resize(m.len() + padded - user.len(), 0);
    m.extend_from_slice(&[0x00, 0x08, 0x00, 20]);
    m.extend_from_slice(&[0; 20]);
    m
}

#[test]
fn sfu_forged_stun_does_not_steal_an_address() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV), ("bob", AV)]);
    let ufrag = net.sfu.local_ufrag(ROOM, "alice").unwrap().to_string();
    let b = net.idx("bob");
    let bob_addr = net.clients[b].addr;
    let now = net.now;
    // Addressed to alice's ufrag with a bad integrity: whatever becomes of it, bob's
    // address stays bob's.
    net.sfu
        .handle_datagram(now, bob_addr, common::sfu_addr(), &forged_binding(&ufrag));
    net.stream(&[b], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    assert!(net.client("alice").received_from("bob", "video") >= 48);
    assert!(net.gone.is_empty());
}

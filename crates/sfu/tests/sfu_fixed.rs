//! One-shot participants (WHEP players): their recvonly m-lines carry the room's tracks
//! with no renegotiation, and are re-pointed when a publisher leaves.

mod common;

use std::time::Duration;

use common::{Net, ROOM};
use str0m::media::MediaKind;

const AV: &[(MediaKind, bool)] = &[(MediaKind::Audio, false), (MediaKind::Video, false)];

#[test]
fn sfu_fixed_player_receives_without_renegotiation() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV)]);
    let w = net.join_fixed("player");
    net.offer_recvonly(w, &[MediaKind::Audio, MediaKind::Video]);
    net.run_until(Duration::from_secs(5), "player connected", |n| {
        n.clients[w].connected && n.clients[w].pending.is_none()
    });
    let a = net.idx("alice");
    net.stream(&[a], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    let per_mid: Vec<u64> = net.clients[w].rtp.values().copied().collect();
    assert_eq!(per_mid.len(), 2, "{per_mid:?}");
    assert!(per_mid.iter().all(|n| *n >= 48), "{per_mid:?}");
    // Alice leaves, bob publishes: the player's m-lines carry bob, still no offer.
    net.sfu.remove_participant(ROOM, "alice", net.now);
    net.clients[a].dead = true;
    let b = net.join("bob", Default::default());
    net.offer(b, AV);
    net.run_until(Duration::from_secs(5), "bob connected", |n| {
        n.clients[b].connected && n.clients[b].pending.is_none()
    });
    let before: u64 = net.clients[w].rtp.values().sum();
    net.stream(&[b], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    let after: u64 = net.clients[w].rtp.values().sum();
    assert!(after - before >= 96, "{before} -> {after}");
    assert_eq!(net.clients[w].offers_received, 0);
    assert!(net.clients[w].messages.is_empty());
    // Gapless on the same m-line across the change of publisher.
    for seqs in net.clients[w].rtp_seqs.values() {
        let mut s = seqs.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), seqs.len());
        assert_eq!(s[s.len() - 1] - s[0] + 1, s.len() as u64, "no gap");
    }
}

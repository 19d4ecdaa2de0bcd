//! Lifetimes: allocations (RFC 8656 §7), permissions (§9: 300 s), channels (§12: 600 s,
//! 5-minute reuse cooldown), and stream connection close (§3.1).

mod common;

use common::*;

const PEER: &str = "8.8.8.8:3478";
const OTHER: &str = "1.1.1.1:53";

#[test]
fn allocation_expires_after_its_lifetime() {
    let mut cfg = config();
    cfg.user_quota = 1;
    let mut h = H::new(cfg);
    let mut c = Client::udp("203.0.113.7:40001");
    let relay = h.allocate_ok(&mut c)[0];
    h.advance_secs(599);
    h.tick();
    assert_eq!(h.server.allocation_count(), 1);
    assert!(h.relays.is_open(relay));
    assert_eq!(h.server.stats.allocations_expired, 0);

    h.advance_secs(1);
    h.tick();
    assert_eq!(h.server.allocation_count(), 0);
    assert!(!h.relays.is_open(relay), "relay closed");
    assert_eq!(h.relays.closed, vec![(h.relays.opened[0].alloc, relay)]);
    assert_eq!(h.quotas.total(), 0, "quota released");
    assert_eq!(h.server.stats.allocations_expired, 1);
    assert_eq!(h.server.stats.allocations, 0);

    // The user can allocate again (quota was 1), and Refresh of the old one is gone.
    let mut c2 = Client::udp("203.0.113.7:40002");
    h.allocate_ok(&mut c2);
    h.refresh(&mut c, Some(600)).err_signed(437, &c);
}

#[test]
fn allocation_with_long_lifetime_outlives_default() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 1200);
    h.advance_secs(1199);
    h.tick();
    assert_eq!(h.server.allocation_count(), 1);
    h.advance_secs(1);
    h.tick();
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn permission_expires_after_300_seconds() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 3600);
    h.permit_ok(&mut c, &[sa(PEER)]);
    let id = h.alloc_id(&c);
    h.advance_secs(299);
    h.tick();
    assert!(!h.send_ind(&c, sa(PEER), b"x").is_none());
    assert!(!h.peer_sends(id, sa(PEER), b"y").is_none());
    h.advance_secs(1);
    assert!(h.send_ind(&c, sa(PEER), b"x").is_none());
    assert!(h.peer_sends(id, sa(PEER), b"y").is_none());
    h.tick();
    let a = h.server.allocation(id).unwrap();
    assert!(a.permissions.is_empty(), "expired permission pruned");
    assert_eq!(h.server.stats.dropped_no_permission, 2);
}

#[test]
fn refreshed_permission_does_not_expire() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 3600);
    for _ in 0..4 {
        h.permit_ok(&mut c, &[sa(PEER)]);
        h.advance_secs(250);
        h.tick();
        assert!(!h.send_ind(&c, sa(PEER), b"x").is_none());
    }
}

#[test]
fn channel_expires_after_600_seconds() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 3600);
    h.bind_ok(&mut c, 0x4000, sa(PEER));
    let id = h.alloc_id(&c);
    // Keep the permission alive so only the channel's lifetime matters.
    h.advance_secs(290);
    h.permit_ok(&mut c, &[sa(PEER)]);
    h.advance_secs(290);
    h.permit_ok(&mut c, &[sa(PEER)]);
    h.advance_secs(19); // 599 s
    h.tick();
    assert_eq!(h.chan_data(&c, 0x4000, b"x").peer().1, sa(PEER));
    assert_eq!(h.peer_sends(id, sa(PEER), b"yy").data()[..2], [0x40, 0x00]);

    h.advance_secs(1); // 600 s
    h.tick();
    assert!(h.chan_data(&c, 0x4000, b"x").is_none());
    // The peer still has a permission, so its data arrives as a Data indication.
    let out = h.peer_sends(id, sa(PEER), b"yy");
    let m = out.msg();
    assert_eq!(m.method, switchboard_stun::Method::DATA);
}

#[test]
fn expired_channel_cannot_be_rebound_to_another_peer_during_cooldown() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 3600);
    h.bind_ok(&mut c, 0x4000, sa(PEER));
    h.advance_secs(601);
    h.tick();
    // Neither the number nor the peer may be reused for 5 minutes after expiry.
    h.bind(&mut c, 0x4000, sa(OTHER)).err_signed(400, &c);
    h.bind(&mut c, 0x4001, sa(PEER)).err_signed(400, &c);
    h.advance_secs(298); // 899 s: 299 s after expiry
    h.tick();
    h.bind(&mut c, 0x4000, sa(OTHER)).err_signed(400, &c);
    h.advance_secs(2); // 901 s
    h.tick();
    h.bind_ok(&mut c, 0x4000, sa(OTHER));
    h.bind_ok(&mut c, 0x4001, sa(PEER));
    assert_eq!(h.chan_data(&c, 0x4000, b"x").peer().1, sa(OTHER));
}

#[test]
fn expired_channel_can_be_rebound_to_the_same_peer() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 3600);
    h.bind_ok(&mut c, 0x4000, sa(PEER));
    h.advance_secs(700);
    h.tick();
    assert!(h.chan_data(&c, 0x4000, b"x").is_none());
    h.bind_ok(&mut c, 0x4000, sa(PEER));
    assert_eq!(h.chan_data(&c, 0x4000, b"x").peer().1, sa(PEER));
}

#[test]
fn expiry_needs_no_timer_for_relaying_decisions() {
    // Even if the driver is late calling handle_timeout, an expired permission is not used.
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_long(&mut c, 3600);
    h.bind_ok(&mut c, 0x4000, sa(PEER));
    h.advance_secs(1000);
    assert!(h.chan_data(&c, 0x4000, b"x").is_none());
    assert!(h.send_ind(&c, sa(PEER), b"x").is_none());
}

#[test]
fn tcp_client_close_deletes_allocation() {
    let mut h = H::new(config());
    let mut c = Client::tcp("203.0.113.7:40001");
    let relay = h.allocate_ok(&mut c)[0];
    let mut other = Client::tcp("203.0.113.7:40002");
    h.allocate_ok(&mut other);
    h.server.client_closed(&c.tuple, &mut h.relays);
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.server.allocation_for(&c.tuple), None);
    assert!(!h.relays.is_open(relay));
    assert_eq!(h.quotas.total(), 1);
    // Closing an unknown connection is harmless.
    h.server.client_closed(&c.tuple, &mut h.relays);
    assert_eq!(h.relays.closed.len(), 1);
}

#[test]
fn close_all_releases_everything() {
    let mut h = H::new(config());
    let mut a = Client::udp("203.0.113.7:40001");
    let mut b = Client::udp("203.0.113.7:40002");
    h.allocate_dual(&mut a);
    h.allocate_ok(&mut b);
    h.server.close_all(&mut h.relays);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.relays.open_count(), 0);
    assert_eq!(h.quotas.total(), 0);
}

#[test]
fn allocation_slot_reuse_keeps_ids_consistent() {
    let mut h = H::new(config());
    let mut a = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut a);
    let id_a = h.alloc_id(&a);
    h.refresh(&mut a, Some(0)).ok(&a);
    let mut b = Client::udp("203.0.113.7:40002");
    let rb = h.allocate_ok(&mut b)[0];
    let id_b = h.alloc_id(&b);
    // The relay was opened under the id that the allocation got.
    let opened = h.relays.opened.iter().find(|o| o.addr == rb).unwrap();
    assert_eq!(opened.alloc, id_b);
    assert_eq!(id_a, id_b, "freed slot reused");
}

/// The driver sleeps until `poll_timeout`: nothing to expire means no deadline, an
/// allocation means a sweep a second after the last one, and the last expiry ends it.
#[test]
fn poll_timeout_asks_for_sweeps_only_while_something_can_expire() {
    let mut h = H::new(config());
    assert_eq!(h.server.poll_timeout(), None, "idle server: no deadline");
    let mut c = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut c);
    let due = h.server.poll_timeout().expect("an allocation can expire");
    assert!(due > h.now && due <= h.now + std::time::Duration::from_secs(1));
    h.advance_secs(1);
    h.tick();
    assert_eq!(
        h.server.poll_timeout(),
        Some(h.now + std::time::Duration::from_secs(1)),
        "next sweep a second after this one"
    );
    h.advance_secs(600);
    h.tick();
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.poll_timeout(), None, "nothing left to expire");
}

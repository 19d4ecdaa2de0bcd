//! The renumbering of a forwarded stream: in order, reordered, lost, duplicated, late
//! from before the switch, restarted, and where the tick resumes.

use super::*;

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// Forwarding of a source whose last packet the tick had was seq 99 / ts 160·99; our
/// next slot is seq 5000 / ts 80000.
fn forward(t0: Instant) -> Forward {
    Forward::new(99, 160 * 99, 5000, 80_000, 160, t0)
}

fn map(f: &mut Forward, seq: u16, t0: Instant, ms: u64) -> Option<(u64, u64, bool)> {
    f.map(seq, 160 * u32::from(seq), at(t0, ms))
        .map(|m| (m.seq, m.timestamp, m.marker))
}

#[test]
fn in_order_packets_follow_the_ticks_last_frame_with_one_marker() {
    let t0 = Instant::now();
    let mut f = forward(t0);
    assert_eq!(map(&mut f, 100, t0, 5), Some((5000, 80_000, true)));
    for k in 1..50u16 {
        let got = map(&mut f, 100 + k, t0, 5 + 20 * u64::from(k));
        let k = u64::from(k);
        assert_eq!(got, Some((5000 + k, 80_000 + 160 * k, false)));
    }
}

#[test]
fn loss_and_reordering_keep_their_gaps_and_places_never_going_below_the_switch() {
    let t0 = Instant::now();
    let mut f = forward(t0);
    // 101 comes before 100, 103 is lost, 104 twice; 99 and 98 (from before the switch)
    // late.
    assert_eq!(map(&mut f, 101, t0, 5), Some((5001, 80_160, true)));
    assert_eq!(map(&mut f, 100, t0, 7), Some((5000, 80_000, false)));
    assert_eq!(map(&mut f, 99, t0, 8), None);
    assert_eq!(map(&mut f, 98, t0, 9), None);
    assert_eq!(map(&mut f, 102, t0, 25), Some((5002, 80_320, false)));
    assert_eq!(map(&mut f, 104, t0, 65), Some((5004, 80_640, false)));
    assert_eq!(map(&mut f, 104, t0, 66), None);
    assert_eq!(map(&mut f, 100, t0, 67), None);
    // Where the tick resumes: after the newest (104), one frame on.
    assert_eq!(f.resume(at(t0, 70)), (5005, 80_800));
    assert_eq!(f.newest_seq(), 104);
}

#[test]
fn a_silence_gap_sets_the_marker_and_time_passes_on_the_timestamp() {
    let t0 = Instant::now();
    let mut f = forward(t0);
    assert!(map(&mut f, 100, t0, 5).is_some());
    // Next talkspurt: seq + 1, timestamp + 50 frames (a second of DTX).
    let m = f.map(101, 160 * 150, at(t0, 1005)).unwrap();
    assert_eq!(
        (m.seq, m.timestamp, m.marker),
        (5001, 80_000 + 160 * 50, true)
    );
}

#[test]
fn sequence_numbers_and_timestamps_wrap() {
    let t0 = Instant::now();
    let mut f = Forward::new(
        65_534,
        u32::MAX - 159,
        65_530,
        u64::from(u32::MAX) - 319,
        160,
        t0,
    );
    let mut last = None;
    for k in 0..10u16 {
        let seq = 65_535u16.wrapping_add(k);
        let ts = u32::MAX.wrapping_add(1).wrapping_add(160 * u32::from(k));
        let m = f.map(seq, ts, at(t0, 20 * u64::from(k))).unwrap();
        if let Some((s, t)) = last {
            assert_eq!((m.seq, m.timestamp), (s + 1, t + 160));
        }
        last = Some((m.seq, m.timestamp));
        // The low bits are what goes on the wire: they wrap too.
        assert_eq!(m.seq as u16, 65_530u16.wrapping_add(k));
    }
}

#[test]
fn a_restarted_sender_continues_our_line_as_time_passed() {
    let t0 = Instant::now();
    let mut f = forward(t0);
    assert!(map(&mut f, 100, t0, 5).is_some());
    assert!(map(&mut f, 101, t0, 25).is_some());
    // The member's stream restarts with unrelated numbers 100 ms later.
    let m = f.map(40_000, 7, at(t0, 125)).unwrap();
    assert_eq!((m.seq, m.timestamp), (5002, 80_160 + 5 * 160));
    assert!(m.marker);
    let m = f.map(40_001, 167, at(t0, 145)).unwrap();
    assert_eq!(
        (m.seq, m.timestamp, m.marker),
        (5003, 80_160 + 6 * 160, false)
    );
}

#[test]
fn the_tick_resumes_one_slot_on_or_as_many_frames_as_passed() {
    let t0 = Instant::now();
    let mut f = forward(t0);
    // Nothing forwarded: the slot forwarding started at.
    assert_eq!(f.resume(at(t0, 100)), (5000, 80_000));
    assert_eq!(f.quiet_for(at(t0, 100)), Duration::from_millis(100));
    assert!(map(&mut f, 100, t0, 5).is_some());
    assert_eq!(f.resume(at(t0, 6)), (5001, 80_160));
    assert_eq!(f.resume(at(t0, 29)), (5001, 80_160));
    assert_eq!(f.resume(at(t0, 65)), (5001, 80_000 + 3 * 160));
    assert_eq!(f.quiet_for(at(t0, 65)), Duration::from_millis(60));
    // A tick less than half a frame after the last forward waits for the next slot.
    assert!(too_soon(f.last_sent(), at(t0, 14)));
    assert!(!too_soon(f.last_sent(), at(t0, 15)));
    assert!(!too_soon(None, at(t0, 6)));
}

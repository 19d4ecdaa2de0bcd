use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Frame(u16),
    Conceal,
    Idle,
}

/// Feeds `arrivals` (ms after t0, sequence number; timestamp = 160 × seq, payload = seq) and
/// pops at 20k + 10 ms for `ticks` ticks.
fn simulate(jb: &mut JitterBuffer, t0: Instant, arrivals: &[(u64, u16)], ticks: u64) -> Vec<Out> {
    let mut arrivals = arrivals.to_vec();
    arrivals.sort_by_key(|a| a.0);
    let mut next = 0;
    let mut out = Vec::new();
    for k in 0..ticks {
        let tick = 20 * k + 10;
        while next < arrivals.len() && arrivals[next].0 <= tick {
            let (at, seq) = arrivals[next];
            let payload = seq.to_be_bytes();
            jb.push(
                seq,
                160 * u32::from(seq),
                &payload,
                t0 + Duration::from_millis(at),
            )
            .unwrap();
            next += 1;
        }
        out.push(match jb.pop(t0 + Duration::from_millis(tick)) {
            Pop::Frame {
                payload,
                sequence,
                timestamp,
            } => {
                assert_eq!(payload, sequence.to_be_bytes());
                assert_eq!(timestamp, 160 * u32::from(sequence));
                Out::Frame(sequence)
            }
            Pop::Conceal { .. } => Out::Conceal,
            Pop::Idle => Out::Idle,
        });
    }
    out
}

fn frames(out: &[Out]) -> Vec<u16> {
    out.iter()
        .filter_map(|o| match o {
            Out::Frame(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn buffer(t0: Instant) -> JitterBuffer {
    JitterBuffer::new(JitterConfig::default(), t0).unwrap()
}

#[test]
fn reordered_and_duplicated_packets_come_out_in_order_once() {
    let t0 = Instant::now();
    let mut jb = buffer(t0);
    let mut arrivals: Vec<(u64, u16)> = (0..20u16).map(|s| (20 * u64::from(s), 1000 + s)).collect();
    arrivals[2].0 = 21; // 1002 overtakes 1001
    arrivals[1].0 = 22;
    arrivals[6].0 = 125; // 1006 after 1007 (120 ms)
    arrivals.push((61, 1003)); // duplicates
    arrivals.push((101, 1005));
    let out = simulate(&mut jb, t0, &arrivals, 30);
    assert_eq!(frames(&out), (1000..1020).collect::<Vec<_>>(), "{out:?}");
    let first = out.iter().position(|o| *o != Out::Idle).unwrap();
    assert!(
        out[first..first + 20]
            .iter()
            .all(|o| matches!(o, Out::Frame(_))),
        "no concealment inside the stream: {out:?}"
    );
    let stats = jb.stats();
    assert_eq!(stats.duplicates, 2);
    assert_eq!(stats.lost, 0);
    assert_eq!(stats.received, 22);
}

#[test]
fn a_gap_yields_one_conceal_frame() {
    let t0 = Instant::now();
    let mut jb = buffer(t0);
    let arrivals: Vec<(u64, u16)> = (0..10u16)
        .filter(|&s| s != 4)
        .map(|s| (20 * u64::from(s), 500 + s))
        .collect();
    let out = simulate(&mut jb, t0, &arrivals, 12);
    let playing: Vec<Out> = out
        .into_iter()
        .skip_while(|o| *o == Out::Idle)
        .take(10)
        .collect();
    use Out::*;
    assert_eq!(
        playing,
        [
            Frame(500),
            Frame(501),
            Frame(502),
            Frame(503),
            Conceal,
            Frame(505),
            Frame(506),
            Frame(507),
            Frame(508),
            Frame(509)
        ]
    );
    assert_eq!(jb.stats().lost, 1);
    // The missing packet arriving now is late, not played.
    assert_eq!(
        jb.push(504, 0, &[], t0 + Duration::from_secs(1)),
        Ok(Pushed::Late)
    );
    assert_eq!(jb.stats().late, 1);
}

#[test]
fn target_delay_grows_with_jitter_and_shrinks_back() {
    let t0 = Instant::now();
    let mut jb = buffer(t0);
    // 2 s steady, 2 s with every third packet 70 ms late, 10 s steady.
    let arrivals: Vec<(u64, u16)> = (0..700u16)
        .map(|s| {
            let sent = 20 * u64::from(s);
            let late = (100..200).contains(&s) && s % 3 == 0;
            (sent + if late { 70 } else { 0 }, s)
        })
        .collect();
    let steady = simulate(&mut jb, t0, &arrivals[..100], 100);
    assert_eq!(jb.target_delay(), Duration::from_millis(20));
    let before = jb.stats();
    let mut all = steady.clone();
    let mut max_target = Duration::ZERO;
    let mut max_buffered = 0;
    // Continue the same simulation tick by tick to watch the target.
    for k in 100..700u64 {
        let tick = 20 * k + 10;
        for &(at, seq) in arrivals.iter().filter(|a| a.0 > tick - 20 && a.0 <= tick) {
            jb.push(
                seq,
                160 * u32::from(seq),
                &seq.to_be_bytes(),
                t0 + Duration::from_millis(at),
            )
            .unwrap();
        }
        if k == 200 {
            assert!(
                jb.target_delay() >= Duration::from_millis(80),
                "{:?}",
                jb.target_delay()
            );
        }
        max_target = max_target.max(jb.target_delay());
        max_buffered = max_buffered.max(jb.buffered_frames());
        all.push(match jb.pop(t0 + Duration::from_millis(tick)) {
            Pop::Frame { sequence, .. } => Out::Frame(sequence),
            Pop::Conceal { .. } => Out::Conceal,
            Pop::Idle => Out::Idle,
        });
    }
    assert!(max_target >= Duration::from_millis(80), "{max_target:?}");
    assert!(
        max_buffered >= 4,
        "the buffer followed the target: {max_buffered}"
    );
    assert!(
        jb.target_delay() < Duration::from_millis(25),
        "shrank back: {:?}",
        jb.target_delay()
    );
    assert!(
        jb.buffered_frames() <= 3,
        "delay shrank back: {}",
        jb.buffered_frames()
    );
    let stats = jb.stats();
    assert!(stats.discarded > before.discarded, "{stats:?}");
    // Only the first spike, before the estimate knew of any jitter, costs a frame.
    assert!(stats.late <= 1 && stats.lost <= 1, "{stats:?}");
    // Played frames are strictly increasing: nothing twice, nothing out of order.
    let played = frames(&all);
    assert!(played.windows(2).all(|w| w[0] < w[1]));
    assert!(played.len() > 680, "{} frames played", played.len());
}

#[test]
fn stopped_stream_goes_idle_and_restarts() {
    let t0 = Instant::now();
    let mut jb = buffer(t0);
    let arrivals: Vec<(u64, u16)> = (0..5u16).map(|s| (20 * u64::from(s), s)).collect();
    let out = simulate(&mut jb, t0, &arrivals, 30);
    assert_eq!(frames(&out), [0, 1, 2, 3, 4]);
    assert_eq!(*out.last().unwrap(), Out::Idle, "{out:?}");
    let conceals = out.iter().filter(|o| **o == Out::Conceal).count();
    assert!((1..=11).contains(&conceals), "{out:?}");
    // A new talk spurt with a jump in sequence numbers plays again.
    let t1 = t0 + Duration::from_secs(10);
    let arrivals: Vec<(u64, u16)> = (0..5u16).map(|s| (20 * u64::from(s), 40_000 + s)).collect();
    let out = simulate(&mut jb, t1, &arrivals, 8);
    assert_eq!(frames(&out), [40_000, 40_001, 40_002, 40_003, 40_004]);
}

#[test]
fn sequence_wrap_and_bad_input() {
    let t0 = Instant::now();
    let mut jb = buffer(t0);
    let arrivals: Vec<(u64, u16)> = (0..8u16)
        .map(|s| (20 * u64::from(s), 65533u16.wrapping_add(s)))
        .collect();
    let out = simulate(&mut jb, t0, &arrivals, 10);
    assert_eq!(frames(&out), [65533, 65534, 65535, 0, 1, 2, 3, 4]);
    assert_eq!(
        jb.push(5, 0, &[0; 1501], t0),
        Err(JitterError::PayloadTooLarge(1501))
    );
    let bad = JitterConfig {
        min_delay: Duration::from_millis(300),
        ..JitterConfig::default()
    };
    assert!(JitterBuffer::new(bad, t0).is_err());
    let zero = JitterConfig {
        capacity: 0,
        ..JitterConfig::default()
    };
    assert!(JitterBuffer::new(zero, t0).is_err());
    let huge = JitterConfig {
        capacity: usize::MAX,
        ..JitterConfig::default()
    };
    assert!(JitterBuffer::new(huge, t0).is_err());
}

#[test]
fn peek_shows_the_packet_after_a_frame_given_up() {
    let t0 = Instant::now();
    let config = JitterConfig {
        max_delay: Duration::from_millis(40),
        ..JitterConfig::default()
    };
    let mut jb = JitterBuffer::new(config, t0).unwrap();
    assert_eq!(jb.peek(), None);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    for seq in 0..4u16 {
        jb.push(
            seq,
            160 * u32::from(seq),
            &[seq as u8],
            at(20 * u64::from(seq)),
        )
        .unwrap();
        assert!(
            matches!(jb.pop(at(20 * u64::from(seq) + 1)), Pop::Frame { sequence, .. } if sequence == seq)
        );
    }
    // 4 is lost; 5..=7 arrive in a burst when 4 was due: 4 is given up at once.
    for seq in 5..8u16 {
        jb.push(seq, 160 * u32::from(seq), &[seq as u8], at(80))
            .unwrap();
    }
    assert!(matches!(jb.pop(at(81)), Pop::Conceal { timestamp: 640 }));
    assert_eq!(jb.peek(), Some(&[5u8][..]));
    assert!(matches!(jb.pop(at(101)), Pop::Frame { sequence: 5, .. }));
    assert_eq!(jb.stats().lost, 1);
}

#[test]
fn peek_shows_the_packet_after_a_frame_waited_for() {
    let t0 = Instant::now();
    let config = JitterConfig {
        min_delay: Duration::from_millis(40),
        ..JitterConfig::default()
    };
    let mut jb = JitterBuffer::new(config, t0).unwrap();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut pops = Vec::new();
    for seq in 0..8u16 {
        if seq != 4 {
            jb.push(
                seq,
                160 * u32::from(seq),
                &[seq as u8],
                at(20 * u64::from(seq)),
            )
            .unwrap();
        }
        match jb.pop(at(20 * u64::from(seq) + 1)) {
            Pop::Frame { sequence, .. } => pops.push(Some(sequence)),
            Pop::Conceal { timestamp } => {
                assert_eq!(timestamp, 640);
                pops.push(None);
                // 4 is waited for (the buffer is at its 2-frame target); 5 is here.
                assert_eq!(jb.peek(), Some(&[5u8][..]));
            }
            Pop::Idle => {}
        }
    }
    assert_eq!(
        pops,
        [Some(0), Some(1), Some(2), Some(3), None, Some(5), Some(6)]
    );
    assert_eq!(jb.stats().lost, 1);
}

use std::time::{Duration, Instant};

use super::vp8::{self, Descriptor, Ids};
use super::{Packet, Rewriter};

const KEY_HEADER: [u8; 10] = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
const DELTA_HEADER: [u8; 4] = [0x31, 0x05, 0x00, 0xaa];

/// A VP8 payload: descriptor with a PictureID (7- or 15-bit), TL0PICIDX and TID, then
/// a frame header (keyframe or not) when `start`, else some partition bytes.
fn payload(pid: Option<(u16, bool)>, tl0: Option<u8>, start: bool, key: bool) -> Vec<u8> {
    let mut v = vec![if start { 0x90 } else { 0x80 }];
    let mut ext = 0u8;
    if pid.is_some() {
        ext |= 0x80;
    }
    if tl0.is_some() {
        ext |= 0x60;
    }
    v.push(ext);
    match pid {
        Some((p, true)) => v.extend([0x80 | (p >> 8) as u8, p as u8]),
        Some((p, false)) => v.push(p as u8 & 0x7f),
        None => {}
    }
    if let Some(t) = tl0 {
        v.push(t);
        v.push(0x40); // TID 1, Y 0
    }
    if start && key {
        v.extend(KEY_HEADER);
    } else if start {
        v.extend(DELTA_HEADER);
    } else {
        v.extend([7u8; 20]);
    }
    v
}

#[test]
fn descriptor_fields_keyframes_and_in_place_writes() {
    let key = payload(Some((0x1234, true)), Some(200), true, true);
    let d = Descriptor::parse(&key).unwrap();
    assert_eq!(d.picture_id, Some(0x1234));
    assert!(d.wide_picture_id);
    assert_eq!(d.tl0_pic_idx, Some(200));
    assert_eq!(d.temporal_id, Some(1));
    assert!(d.starts_frame && d.keyframe);
    assert!(vp8::is_keyframe(&key));
    assert!(super::vp8_is_keyframe(&key));

    let delta = payload(Some((5, false)), None, true, false);
    let d = Descriptor::parse(&delta).unwrap();
    assert_eq!(
        (d.picture_id, d.wide_picture_id, d.tl0_pic_idx),
        (Some(5), false, None)
    );
    assert!(d.starts_frame && !d.keyframe);
    let middle = payload(Some((5, false)), None, false, true);
    assert!(
        !vp8::is_keyframe(&middle),
        "not the first packet of the frame"
    );
    // A keyframe tag without the start code is not trusted.
    let mut fake = key.clone();
    let n = fake.len();
    fake[n - 6] = 0;
    assert!(!vp8::is_keyframe(&fake));
    // No extension at all: a start, no ids.
    let plain = [0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
    let d = Descriptor::parse(&plain).unwrap();
    assert_eq!((d.picture_id, d.tl0_pic_idx), (None, None));
    assert!(d.keyframe);

    let mut buf = key.clone();
    assert!(Descriptor::parse(&key).unwrap().write(
        &mut buf,
        Ids {
            picture_id: Some(0x7ffe),
            tl0_pic_idx: Some(3)
        }
    ));
    let again = Descriptor::parse(&buf).unwrap();
    assert_eq!(
        (again.picture_id, again.tl0_pic_idx),
        (Some(0x7ffe), Some(3))
    );
    assert_eq!(buf[6..], key[6..], "only the descriptor changes");
    // A 7-bit field keeps its width: the id is cut to 7 bits.
    let mut buf = delta.clone();
    let d = Descriptor::parse(&delta).unwrap();
    assert!(d.write(
        &mut buf,
        Ids {
            picture_id: Some(0x1ff),
            tl0_pic_idx: Some(9)
        }
    ));
    assert_eq!(Descriptor::parse(&buf).unwrap().picture_id, Some(0x7f));
    assert_eq!(buf.len(), delta.len());
    assert!(!d.write(&mut [0x90], Ids::default()));
}

#[test]
fn malformed_or_truncated_descriptors_are_refused_never_panic() {
    assert_eq!(Descriptor::parse(&[]), None);
    // L without T.
    assert_eq!(Descriptor::parse(&[0x90, 0x40, 0x01, 0x00]), None);
    let key = payload(Some((0x1234, true)), Some(200), true, true);
    // Every prefix shorter than the descriptor plus one byte is refused.
    for n in 0..7 {
        assert_eq!(Descriptor::parse(&key[..n]), None, "{n}");
    }
    assert!(Descriptor::parse(&key[..7]).is_some());
    assert!(!vp8::is_keyframe(&key[..8]), "start code cut off");
    for b in 0..=255u8 {
        for c in 0..=255u8 {
            let _ = Descriptor::parse(&[b, c, 0xff]);
            let _ = Descriptor::parse(&[b, 0xf0, c]);
        }
    }
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// A packet of `layer`; VP8 with a 15-bit PictureID and TL0PICIDX. (Every field of a
/// packet, positionally, so each test line reads like a packet trace.)
#[allow(clippy::too_many_arguments)]
fn pkt(
    layer: u8,
    seq: u64,
    ts: u32,
    pid: u16,
    tl0: u8,
    start: bool,
    key: bool,
    arrival: Instant,
) -> Packet {
    let p = payload(Some((pid, true)), Some(tl0), start, key);
    let d = Descriptor::parse(&p).unwrap();
    Packet {
        layer,
        seq,
        timestamp: ts,
        keyframe: d.keyframe,
        vp8: Some(d),
        arrival,
    }
}

#[test]
fn starts_at_a_keyframe_of_the_target_with_the_given_first_seq() {
    let t0 = Instant::now();
    let mut r = Rewriter::new(90_000, 1000);
    assert_eq!(r.wants_keyframe(), None, "paused: nothing wanted");
    assert!(r
        .rewrite(&pkt(0, 50, 9000, 10, 1, true, true, t0))
        .is_none());
    r.set_target(Some(0));
    assert_eq!(r.wants_keyframe(), Some(0));
    assert!(
        r.rewrite(&pkt(0, 51, 12000, 11, 2, true, false, t0))
            .is_none(),
        "delta frame"
    );
    assert!(
        r.rewrite(&pkt(1, 80, 5000, 7, 1, true, true, t0)).is_none(),
        "other layer"
    );
    let out = r
        .rewrite(&pkt(0, 52, 15000, 12, 3, true, true, t0))
        .unwrap();
    assert_eq!((out.seq, out.timestamp), (1000, 15000));
    assert_eq!(
        out.vp8,
        Some(Ids {
            picture_id: Some(12),
            tl0_pic_idx: Some(3)
        })
    );
    assert!(out.switched);
    assert_eq!(
        (r.current(), r.wants_keyframe(), r.switches()),
        (Some(0), None, 1)
    );
    let out = r
        .rewrite(&pkt(0, 53, 15000, 12, 3, false, false, t0))
        .unwrap();
    assert_eq!((out.seq, out.timestamp, out.switched), (1001, 15000, false));
    // Older than the keyframe that started the stream: dropped.
    assert!(r
        .rewrite(&pkt(0, 51, 12000, 11, 2, true, false, t0))
        .is_none());
    assert_eq!(r.dropped(), 4);
}

#[test]
fn a_switch_waits_for_the_new_layers_keyframe_then_continues_every_number() {
    let t0 = Instant::now();
    let mut r = Rewriter::new(90_000, 0);
    r.set_target(Some(0));
    // Layer 0 (q) running: seq 100.., ts 3000/frame, pid 500.., tl0 40...
    let mut out = Vec::new();
    for i in 0..5u64 {
        let p = pkt(
            0,
            100 + i,
            3000 * i as u32,
            500 + i as u16,
            40 + i as u8,
            true,
            i == 0,
            at(t0, 33 * i),
        );
        out.push(r.rewrite(&p).unwrap());
    }
    assert_eq!(
        out.iter().map(|o| o.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    r.set_target(Some(1));
    assert_eq!(r.wants_keyframe(), Some(1));
    // Layer 1 delta frames: not yet; layer 0 still flows.
    assert!(r
        .rewrite(&pkt(
            1,
            7000,
            777_000,
            20_000,
            200,
            true,
            false,
            at(t0, 160)
        ))
        .is_none());
    let o = r
        .rewrite(&pkt(0, 105, 15000, 505, 45, true, false, at(t0, 165)))
        .unwrap();
    assert_eq!(o.seq, 5);
    // Layer 1 keyframe 35 ms later: seq 6, ts +35 ms of 90 kHz, pid and tl0 +1.
    let o = r
        .rewrite(&pkt(1, 7002, 780_000, 20_002, 201, true, true, at(t0, 200)))
        .unwrap();
    assert!(o.switched);
    assert_eq!(o.seq, 6);
    assert_eq!(o.timestamp, 15000 + 35 * 90);
    assert_eq!(
        o.vp8,
        Some(Ids {
            picture_id: Some(506),
            tl0_pic_idx: Some(46)
        })
    );
    assert_eq!(
        (r.current(), r.wants_keyframe(), r.switches()),
        (Some(1), None, 2)
    );
    // The rest of the frame and the next frame follow the new offsets.
    let o = r
        .rewrite(&pkt(
            1,
            7003,
            780_000,
            20_002,
            201,
            false,
            false,
            at(t0, 201),
        ))
        .unwrap();
    assert_eq!((o.seq, o.timestamp), (7, 15000 + 3150));
    let o = r
        .rewrite(&pkt(
            1,
            7004,
            783_000,
            20_003,
            201,
            true,
            false,
            at(t0, 233),
        ))
        .unwrap();
    assert_eq!((o.seq, o.timestamp), (8, 15000 + 3150 + 3000));
    assert_eq!(o.vp8.unwrap().picture_id, Some(507));
    // Old layer after the switch, and the new layer from before its keyframe: dropped.
    assert!(r
        .rewrite(&pkt(0, 106, 18000, 506, 46, true, false, at(t0, 234)))
        .is_none());
    assert!(r
        .rewrite(&pkt(
            1,
            7001,
            777_000,
            20_001,
            200,
            false,
            false,
            at(t0, 235)
        ))
        .is_none());
    // A late packet of the current layer keeps its place (a retransmission).
    let o = r
        .rewrite(&pkt(
            1,
            7003,
            780_000,
            20_002,
            201,
            false,
            false,
            at(t0, 300),
        ))
        .unwrap();
    assert_eq!(o.seq, 7);
}

#[test]
fn a_switch_right_after_the_old_frame_still_moves_time_forward() {
    let t0 = Instant::now();
    let mut r = Rewriter::new(90_000, 0);
    r.set_target(Some(2));
    let a = r
        .rewrite(&pkt(2, 10, 1_000_000, 1, 1, true, true, t0))
        .unwrap();
    r.set_target(Some(0));
    // The low layer's keyframe of the same instant (simulcast layers are captured
    // together) must not reuse or go below the last timestamp.
    let b = r.rewrite(&pkt(0, 90, 50, 9, 9, true, true, t0)).unwrap();
    assert_eq!(b.seq, a.seq + 1);
    assert_eq!(b.timestamp, a.timestamp + 900, "the 10 ms minimum");
}

#[test]
fn wraparounds_of_seq_timestamp_picture_id_and_tl0() {
    let t0 = Instant::now();
    let mut r = Rewriter::new(90_000, u16::MAX);
    r.set_target(Some(0));
    // Incoming: extended seq crossing 2^16, ts crossing 2^32, pid crossing 0x7fff,
    // tl0 crossing 255.
    let mut outs = Vec::new();
    for i in 0..6u64 {
        let p = pkt(
            0,
            65_533 + i,
            (u32::MAX - 5999).wrapping_add(3000 * i as u32),
            (0x7ffd + i as u16) & 0x7fff,
            253u8.wrapping_add(i as u8),
            true,
            i == 0,
            at(t0, 33 * i),
        );
        outs.push(r.rewrite(&p).unwrap());
    }
    let seqs: Vec<u64> = outs.iter().map(|o| o.seq).collect();
    assert_eq!(seqs, [65_535, 65_536, 65_537, 65_538, 65_539, 65_540]);
    for w in outs.windows(2) {
        assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 3000);
        let (a, b) = (w[0].vp8.unwrap(), w[1].vp8.unwrap());
        assert_eq!(b.picture_id.unwrap(), (a.picture_id.unwrap() + 1) & 0x7fff);
        assert_eq!(
            b.tl0_pic_idx.unwrap(),
            a.tl0_pic_idx.unwrap().wrapping_add(1)
        );
    }
    assert_eq!(outs[2].vp8.unwrap().picture_id, Some(0x7fff));
    assert_eq!(outs[3].vp8.unwrap().picture_id, Some(0));
    // Switching when the last ids sit at their maximum wraps them to 0.
    r.set_target(Some(1));
    let last = *outs.last().unwrap();
    let tl0_last = last.vp8.unwrap().tl0_pic_idx.unwrap();
    let mut p = pkt(1, 3, 77, 0x7fff, 255, true, true, at(t0, 200));
    p.vp8 = Descriptor::parse(&payload(Some((0x4000, true)), Some(9), true, true));
    let o = r.rewrite(&p).unwrap();
    assert_eq!(o.seq, 65_541);
    assert_eq!(
        o.vp8.unwrap().picture_id,
        Some(last.vp8.unwrap().picture_id.unwrap() + 1)
    );
    assert_eq!(o.vp8.unwrap().tl0_pic_idx, Some(tl0_last.wrapping_add(1)));
}

#[test]
fn seven_bit_picture_ids_stay_seven_bits_and_wrap_at_128() {
    let t0 = Instant::now();
    let mut r = Rewriter::new(90_000, 0);
    r.set_target(Some(0));
    let mut last = None;
    for i in 0..300u16 {
        let pl = payload(Some(((100 + i) & 0x7f, false)), None, true, i == 0);
        let d = Descriptor::parse(&pl).unwrap();
        let p = Packet {
            layer: 0,
            seq: u64::from(i),
            timestamp: u32::from(i) * 3000,
            keyframe: d.keyframe,
            vp8: Some(d),
            arrival: at(t0, u64::from(i) * 33),
        };
        let id = r.rewrite(&p).unwrap().vp8.unwrap().picture_id.unwrap();
        assert!(id <= 0x7f);
        if let Some(prev) = last {
            assert_eq!(id, (prev + 1) & 0x7f);
        }
        last = Some(id);
    }
}

#[test]
fn pause_drops_at_once_and_resume_waits_for_a_keyframe_with_the_paused_time_in_ts() {
    let t0 = Instant::now();
    let mut r = Rewriter::new(90_000, 0);
    r.set_target(Some(1));
    let a = r.rewrite(&pkt(1, 10, 1000, 1, 1, true, true, t0)).unwrap();
    r.set_target(None);
    assert_eq!((r.current(), r.wants_keyframe()), (None, None));
    assert!(r
        .rewrite(&pkt(1, 11, 4000, 2, 2, true, false, at(t0, 33)))
        .is_none());
    assert!(r
        .rewrite(&pkt(1, 12, 7000, 3, 3, true, true, at(t0, 66)))
        .is_none());
    r.set_target(Some(1));
    assert_eq!(r.wants_keyframe(), Some(1));
    assert!(r
        .rewrite(&pkt(1, 500, 9000, 4, 4, true, false, at(t0, 5000)))
        .is_none());
    let b = r
        .rewrite(&pkt(1, 501, 9000, 5, 5, true, true, at(t0, 5000)))
        .unwrap();
    assert_eq!(b.seq, a.seq + 1);
    assert_eq!(b.timestamp, a.timestamp + 5000 * 90);
    assert_eq!(b.vp8.unwrap().picture_id, Some(2));
}

#[test]
fn audio_or_other_codecs_forward_every_packet_without_vp8_ids() {
    let t0 = Instant::now();
    let mut r = Rewriter::new(48_000, 7);
    r.set_target(Some(0));
    for i in 0..3u64 {
        let p = Packet {
            layer: 0,
            seq: 1_000_000 + i,
            timestamp: 960 * i as u32,
            keyframe: true,
            vp8: None,
            arrival: at(t0, 20 * i),
        };
        let o = r.rewrite(&p).unwrap();
        assert_eq!((o.seq, o.timestamp, o.vp8), (7 + i, 960 * i as u32, None));
        assert_eq!(o.switched, i == 0);
    }
}

/// A small deterministic generator (no rand dependency in this crate).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_switching_over_three_layers_gives_one_gapless_monotonic_stream() {
    let t0 = Instant::now();
    let mut rng = Lcg(42);
    let mut r = Rewriter::new(90_000, 60_000);
    r.set_target(Some(0));
    // Per layer: next seq, ts base, pid, tl0, packets per frame.
    let mut seq = [10u64, 40_000, 65_000];
    let ts_base = [5u32, 4_000_000_000, 123_456];
    let mut pid = [0x7f00u16, 3, 1000];
    let mut tl0 = [250u8, 0, 77];
    let per_frame = [1u64, 3, 6];
    let mut forwarded: Vec<(u8, super::Rewritten)> = Vec::new();
    let mut switches_seen = 0;
    for frame in 0..3000u64 {
        let now = at(t0, frame * 33);
        if rng.next(40) == 0 {
            r.set_target(Some(rng.next(3) as u8));
        }
        for layer in 0..3usize {
            // Keyframes at independent random times per layer.
            let key = frame == 0 || rng.next(20) == 0;
            let ts = ts_base[layer].wrapping_add(3000 * frame as u32);
            for k in 0..per_frame[layer] {
                let pl = payload(
                    Some((pid[layer], true)),
                    Some(tl0[layer]),
                    k == 0,
                    key && k == 0,
                );
                let d = Descriptor::parse(&pl).unwrap();
                let p = Packet {
                    layer: layer as u8,
                    seq: seq[layer],
                    timestamp: ts,
                    keyframe: d.keyframe,
                    vp8: Some(d),
                    arrival: now,
                };
                seq[layer] += 1;
                if let Some(o) = r.rewrite(&p) {
                    assert_eq!(r.current(), Some(layer as u8));
                    if o.switched {
                        switches_seen += 1;
                        assert!(p.keyframe, "switch only at a keyframe");
                    }
                    forwarded.push((layer as u8, o));
                }
            }
            pid[layer] = (pid[layer] + 1) & 0x7fff;
            tl0[layer] = tl0[layer].wrapping_add(1);
        }
    }
    assert!(switches_seen > 20, "{switches_seen}");
    assert_eq!(switches_seen, r.switches());
    assert_eq!(forwarded[0].1.seq, 60_000);
    for w in forwarded.windows(2) {
        let ((_, a), (lb, b)) = (w[0], w[1]);
        assert_eq!(b.seq, a.seq + 1, "no gap, no repeat");
        let dt = b.timestamp.wrapping_sub(a.timestamp);
        assert!(dt < 90_000, "timestamps never go back ({dt})");
        let (ia, ib) = (a.vp8.unwrap(), b.vp8.unwrap());
        let dp = ib.picture_id.unwrap().wrapping_sub(ia.picture_id.unwrap()) & 0x7fff;
        assert!(dp <= 1, "picture id steps by 0 or 1, got {dp}");
        let dl = ib
            .tl0_pic_idx
            .unwrap()
            .wrapping_sub(ia.tl0_pic_idx.unwrap());
        assert!(dl <= 1, "tl0picidx steps by 0 or 1");
        if b.switched {
            assert!(
                (900..=3000).contains(&dt),
                "plausible gap at a switch: {dt} (layer {lb})"
            );
            assert_eq!(dp, 1);
        }
    }
}

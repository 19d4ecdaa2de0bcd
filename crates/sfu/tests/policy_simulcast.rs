//! The policy modules together, the way the SFU core drives them for one simulcast
//! publisher and two subscribers, on fake time: incoming layers measured
//! (`BitrateMeter`), layers allocated per subscriber from its estimate and tile
//! (`SubscriberLayers`), keyframes requested through one coalescer per layer
//! (`KeyframeRequests`), packets rewritten per subscriber (`Rewriter`). The publisher
//! answers a PLI with a keyframe 200 ms later and sends none otherwise.

use std::time::{Duration, Instant};

use switchboard_sfu::keyframe::KeyframeRequests;
use switchboard_sfu::layer::{
    BitrateMeter, Demand, LayerConfig, LayerRate, SubscriberLayers, Tile,
};
use switchboard_sfu::rewrite::{vp8, Packet, Rewriter, Rewritten};

const FRAME: Duration = Duration::from_micros(33_333);
/// The publisher's encoder answers a PLI after this (so requests repeat meanwhile).
const KEYFRAME_DELAY: Duration = Duration::from_millis(200);
/// Nominal layer bitrates (q, h, f) and sizes.
const RATES: [u64; 3] = [150_000, 500_000, 1_500_000];
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

struct Layer {
    seq: u64,
    ts: u32,
    picture_id: u16,
    tl0: u8,
    /// When the publisher's encoder delivers the keyframe a PLI asked for.
    keyframe_due: Option<Instant>,
    meter: BitrateMeter,
    plis: KeyframeRequests,
    pli_times: Vec<Instant>,
}

/// One VP8 packet payload: descriptor (15-bit PictureID, TL0PICIDX, TID 0), then the
/// frame header on the first packet of a frame (a keyframe's announces `size`).
fn payload(l: &Layer, first: bool, key: bool, size: (u16, u16), len: usize) -> Vec<u8> {
    let mut p = vec![if first { 0x90 } else { 0x80 }, 0xe0];
    p.extend([
        0x80 | (l.picture_id >> 8) as u8,
        l.picture_id as u8,
        l.tl0,
        0x00,
    ]);
    if first && key {
        p.extend([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend(size.0.to_le_bytes());
        p.extend(size.1.to_le_bytes());
    } else if first {
        p.extend([0x31, 0x05, 0x00]);
    }
    p.resize(len.max(p.len() + 1), 0x55);
    p
}

struct Subscriber {
    tile: Tile,
    layers: SubscriberLayers<u8>,
    rewriter: Rewriter,
    /// (when, where it went, bytes, incoming layer) of every forwarded packet.
    out: Vec<(Instant, Rewritten, usize, u8)>,
    switches: Vec<(Instant, Option<u8>)>,
}

impl Subscriber {
    fn new(tile: Tile) -> Subscriber {
        Subscriber {
            tile,
            layers: SubscriberLayers::new(LayerConfig::default()),
            rewriter: Rewriter::new(90_000, 1),
            out: Vec::new(),
            switches: Vec::new(),
        }
    }
}

/// The estimate of subscriber 0 over time: 3 Mbit/s, 300 kbit/s from 10 s, 3 Mbit/s
/// again from 20 s. Subscriber 1 always has plenty but a small tile.
fn estimate(at: Duration) -> u64 {
    if at >= Duration::from_secs(10) && at < Duration::from_secs(20) {
        300_000
    } else {
        3_000_000
    }
}

#[test]
fn layers_follow_the_estimate_and_tile_with_one_gapless_stream_and_coalesced_plis() {
    let t0 = Instant::now();
    let mut layers: Vec<Layer> = (0..3)
        .map(|i| Layer {
            seq: 1000 * (i + 1),
            ts: 7_000_000 * (i as u32 + 1),
            picture_id: 100 * i as u16,
            tl0: 10 * i as u8,
            keyframe_due: Some(t0),
            meter: BitrateMeter::new(),
            plis: KeyframeRequests::default(),
            pli_times: Vec::new(),
        })
        .collect();
    let mut subs = [
        Subscriber::new(Tile {
            width: 1280,
            height: 720,
        }),
        Subscriber::new(Tile {
            width: 320,
            height: 180,
        }),
    ];
    let mut next_alloc = t0;
    let mut sizes: [(u16, u16); 3] = [(0, 0); 3];
    for frame in 0..900u32 {
        let now = t0 + FRAME * frame;
        // Allocation every 500 ms from the measured layers.
        if now >= next_alloc {
            next_alloc = now + Duration::from_millis(500);
            let active: Vec<LayerRate> = layers
                .iter()
                .enumerate()
                .filter(|(_, l)| l.meter.is_active(now, Duration::from_millis(1500)))
                .map(|(i, l)| LayerRate {
                    layer: i as u8,
                    bitrate_bps: l.meter.bitrate_bps(now),
                    width: sizes[i].0,
                    height: sizes[i].1,
                })
                .collect();
            for (n, s) in subs.iter_mut().enumerate() {
                let est = if n == 0 {
                    estimate(now - t0)
                } else {
                    100_000_000
                };
                let demand = [Demand {
                    key: 7u8,
                    layers: &active,
                    tile: s.tile,
                }];
                for a in s.layers.allocate(est, &demand, now) {
                    if a.changed {
                        s.rewriter.set_target(a.layer);
                        s.switches.push((now, a.layer));
                    }
                }
            }
        }
        // Keyframe requests of the rewriters, coalesced per layer; deferred ones fall due.
        for s in &subs {
            if let Some(l) = s.rewriter.wants_keyframe() {
                let layer = &mut layers[usize::from(l)];
                if layer.plis.request(now) {
                    layer.keyframe_due.get_or_insert(now + KEYFRAME_DELAY);
                    layer.pli_times.push(now);
                }
            }
        }
        for layer in &mut layers {
            if layer.plis.poll_timeout().is_some_and(|t| t <= now) && layer.plis.poll(now) {
                layer.keyframe_due.get_or_insert(now + KEYFRAME_DELAY);
                layer.pli_times.push(now);
            }
        }
        // The publisher sends one frame per layer.
        for (i, layer) in layers.iter_mut().enumerate() {
            let key = layer.keyframe_due.is_some_and(|t| t <= now);
            if key {
                layer.keyframe_due = None;
            }
            let bytes = (RATES[i] / 8 / 30) as usize * if key { 4 } else { 1 };
            let packets = bytes.div_ceil(1100);
            for k in 0..packets {
                let pl = payload(layer, k == 0, key, SIZES[i], bytes / packets);
                let d = vp8::Descriptor::parse(&pl).expect("valid VP8");
                if let Some(sz) = vp8::keyframe_size(&pl) {
                    sizes[i] = sz;
                }
                if d.keyframe {
                    layer.plis.keyframe_received(now);
                }
                layer.meter.add(pl.len() + 12, now);
                let p = Packet {
                    layer: i as u8,
                    seq: layer.seq,
                    timestamp: layer.ts,
                    keyframe: d.keyframe,
                    vp8: Some(d),
                    arrival: now,
                };
                layer.seq += 1;
                for s in &mut subs {
                    if let Some(o) = s.rewriter.rewrite(&p) {
                        s.out.push((now, o, pl.len() + 12, i as u8));
                    }
                }
            }
            layer.ts = layer.ts.wrapping_add(3000);
            layer.picture_id = (layer.picture_id + 1) & 0x7fff;
            layer.tl0 = layer.tl0.wrapping_add(1);
        }
    }

    // Subscriber 0: f, down to q within a second of the drop, back to f only after
    // the estimate held (3 s), never more.
    let s0 = &subs[0];
    // The layer of the last packet forwarded by then.
    let layer_at = |s: &Subscriber, secs: f64| {
        let at = t0 + Duration::from_secs_f64(secs);
        s.out.iter().rev().find(|(t, ..)| *t <= at).map(|o| o.3)
    };
    assert_eq!(layer_at(s0, 9.0), Some(2));
    assert_eq!(layer_at(s0, 11.0), Some(0));
    assert_eq!(layer_at(s0, 19.5), Some(0));
    assert_eq!(layer_at(s0, 21.0), Some(0), "not before the hold");
    assert_eq!(layer_at(s0, 25.0), Some(2));
    // The first q packet after the drop: within the allocation period plus a frame.
    let down = s0
        .out
        .iter()
        .find(|(t, _, _, l)| *t >= t0 + Duration::from_secs(10) && *l == 0)
        .unwrap();
    assert!(down.1.switched);
    assert!(
        down.0 <= t0 + Duration::from_millis(10_600),
        "{:?}",
        down.0 - t0
    );
    // While at 300 kbit/s, what was forwarded over any second fits the estimate.
    let from = t0 + Duration::from_secs(11);
    let bytes: usize = s0
        .out
        .iter()
        .filter(|(t, ..)| *t >= from && *t < from + Duration::from_secs(8))
        .map(|o| o.2)
        .sum();
    assert!(bytes * 8 / 8 <= 300_000, "{} bit/s", bytes * 8 / 8);
    // Subscriber 1 (small tile) stays on q throughout.
    assert_eq!(subs[1].switches.len(), 1, "{:?}", subs[1].switches);
    assert!(subs[1].out.iter().all(|o| o.3 == 0));

    // Both see one stream: seq +1 each packet, timestamps never back, ids continuous.
    for s in &subs {
        assert!(s.out.len() > 800, "{}", s.out.len());
        for w in s.out.windows(2) {
            let (a, b) = (w[0].1, w[1].1);
            assert_eq!(b.seq, a.seq + 1);
            assert!(b.timestamp.wrapping_sub(a.timestamp) < 90_000);
            let (pa, pb) = (
                a.vp8.unwrap().picture_id.unwrap(),
                b.vp8.unwrap().picture_id.unwrap(),
            );
            assert!((pb.wrapping_sub(pa) & 0x7fff) <= 1);
        }
    }
    // The publisher got at most one PLI per second per layer, however many asked.
    for l in &layers {
        for w in l.pli_times.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_secs(1));
        }
    }
    assert!(layers[0].plis.sent() >= 1);
    let coalesced: u64 = layers.iter().map(|l| l.plis.coalesced()).sum();
    assert!(coalesced >= 3, "{coalesced}");
}

//! What forwarding costs the core: time spent inside the `Sfu` calls (not the in-test
//! clients) per forwarded packet, one publisher (VP8 + Opus) to many subscribers, in the
//! in-test network of `tests/common`. A measurement, so a bench target (not run by
//! `cargo test`): `cargo bench -p switchboard-sfu --bench sfu_cost`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::Net;
use str0m::media::MediaKind;

fn main() {
    // SFU_COST_SUBS="50" measures one size (e.g. under callgrind or heaptrack).
    let sizes: Vec<usize> = std::env::var("SFU_COST_SUBS")
        .ok()
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![10, 50, 99]);
    for subs in sizes {
        let mut net = Net::new();
        // SFU_COST_FRAME_PACKETS: RTP packets per video frame (default 4, ~240 kbit/s),
        // sent back to back with the frame's audio packet as a browser's pacer sends a
        // frame when the link has room, so they reach the SFU in one receive batch
        // (1: one video packet per frame, as before the per-batch flush).
        net.video_frame_packets = std::env::var("SFU_COST_FRAME_PACKETS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4);
        let av: &[(MediaKind, bool)] = &[(MediaKind::Audio, false), (MediaKind::Video, false)];
        let mut peers: Vec<(String, &[(MediaKind, bool)])> = vec![("pub".to_string(), av)];
        for i in 0..subs {
            peers.push((format!("s{i}"), &[]));
        }
        let refs: Vec<(&str, &[(MediaKind, bool)])> =
            peers.iter().map(|(p, m)| (p.as_str(), *m)).collect();
        net.connect_all(&refs);
        let p = net.idx("pub");
        net.stream(&[p], Duration::from_secs(1), 25);
        let (c0, f0) = (net.sfu_cpu, net.sfu.stats().forwarded_packets);
        // SFU_COST_SECS: length of the measured stream (callgrind: two lengths, the
        // difference is the steady state without the joins).
        let secs = std::env::var("SFU_COST_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        net.stream(&[p], Duration::from_secs(secs), 25);
        let cpu = net.sfu_cpu - c0;
        let fwd = net.sfu.stats().forwarded_packets - f0;
        eprintln!(
            "{subs} subscribers: {fwd} packets forwarded in {:.1} ms of SFU time: {:.2} us/packet, {:.0} packets per SFU-second",
            cpu.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e6 / fwd as f64,
            fwd as f64 / cpu.as_secs_f64()
        );
        let est = net.sfu.stats().bwe_estimates;
        eprintln!(
            "  subscribers' estimates (kbit/s): min {} max {}",
            est.iter().min().copied().unwrap_or(0) / 1000,
            est.iter().max().copied().unwrap_or(0) / 1000
        );
        if (fwd as usize) < subs * 2 * 48 * secs as usize {
            eprintln!("  fewer packets forwarded than 48 a second per stream and subscriber: the measurement is off");
            std::process::exit(1);
        }
    }
}

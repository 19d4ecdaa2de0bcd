//! What subscribers count during the measured window (packets, bytes, sequence gaps per
//! SSRC), and the window's report with percentiles.

use serde_json::{json, Value};
use std::collections::HashMap;

/// One incoming RTP stream's extended sequence numbers seen in the window.
#[derive(Default, Clone, Copy)]
struct SeqSpan {
    first: u64,
    max: u64,
    count: u64,
}

/// Added latency above which a packet counts as late (useless to a real-time decoder).
pub const LATE_US: u32 = 200_000;

/// A subscriber's receive counters for the window.
#[derive(Default)]
pub struct RxStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets that arrived more than `LATE_US` after they were sent.
    pub late: u64,
    streams: HashMap<u32, SeqSpan>,
}

impl RxStats {
    pub fn record(&mut self, ssrc: u32, seq: u64, len: usize, latency_us: Option<u32>) {
        self.packets += 1;
        self.bytes += len as u64;
        if latency_us.is_some_and(|l| l > LATE_US) {
            self.late += 1;
        }
        let s = self.streams.entry(ssrc).or_insert(SeqSpan {
            first: seq,
            max: seq,
            count: 0,
        });
        s.count += 1;
        s.first = s.first.min(seq);
        s.max = s.max.max(seq);
    }

    /// Packets expected from the sequence spans and packets missing from them
    /// (retransmissions that filled a gap count as received).
    pub fn expected_and_lost(&self) -> (u64, u64) {
        self.streams.values().fold((0, 0), |(e, l), s| {
            let expected = s.max - s.first + 1;
            (e + expected, l + expected.saturating_sub(s.count))
        })
    }
}

/// The measured window, as the media thread saw it.
#[derive(Default)]
pub struct Report {
    pub window_s: f64,
    pub publishers: usize,
    pub publishers_connected: usize,
    pub sent_packets: u64,
    pub keyframe_requests: u64,
    pub subscribers: usize,
    pub subscribers_connected: usize,
    pub subscribers_failed: usize,
    /// Subscribers that received anything in the window.
    pub subscribers_receiving: usize,
    pub subscribers_lossless: usize,
    /// Subscribers that lost less than 1 % of their packets.
    pub subscribers_under_1pct: usize,
    /// Subscribers whose lost plus late packets are under 1 %: the ones "held".
    pub subscribers_ok: usize,
    pub late: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub expected: u64,
    pub lost: u64,
    pub join_ms: Vec<f64>,
    pub latency_us: Vec<u32>,
    /// Calls (each sends and receives one audio stream).
    pub calls: usize,
    pub calls_connected: usize,
    /// Calls that got back at least 99.9 % of what they sent, with lost + late under 0.1 %.
    pub calls_ok: usize,
    /// Calls' packets that did not come back (sent − received, per call, when positive).
    pub calls_missing: u64,
}

/// Most packets a call may miss per 1,000 sent and still count as held (0.1 %).
pub const CALL_MISS_PER_MILLE: u64 = 1;

impl Report {
    pub fn add_subscriber(&mut self, rx: &RxStats) {
        let (expected, lost) = rx.expected_and_lost();
        if rx.packets > 0 {
            self.subscribers_receiving += 1;
            if lost == 0 {
                self.subscribers_lossless += 1;
            }
            if (lost as f64) < expected as f64 * 0.01 {
                self.subscribers_under_1pct += 1;
            }
            if ((lost + rx.late) as f64) < expected as f64 * 0.01 {
                self.subscribers_ok += 1;
            }
        }
        self.late += rx.late;
        self.rx_packets += rx.packets;
        self.rx_bytes += rx.bytes;
        self.expected += expected;
        self.lost += lost;
    }

    /// A call that sent `sent` packets in the window and received `rx`. Its loss is the
    /// larger of what did not come back (sent − received: an echo returns every packet)
    /// and the gaps plus late packets in what did.
    pub fn add_call(&mut self, connected: bool, sent: u64, rx: &RxStats) {
        self.calls += 1;
        self.calls_connected += usize::from(connected);
        let (_, lost) = rx.expected_and_lost();
        let missing = sent.saturating_sub(rx.packets);
        self.calls_missing += missing;
        let bad = missing.max(lost + rx.late);
        if sent > 0 && bad * 1000 <= sent * CALL_MISS_PER_MILLE {
            self.calls_ok += 1;
        }
        self.add_subscriber(rx);
    }

    pub fn json(&mut self) -> Value {
        self.latency_us.sort_unstable();
        self.join_ms.sort_by(f64::total_cmp);
        let lat = |q: f64| percentile(&self.latency_us, q).map(|v| v as f64 / 1000.0);
        let join = |q: f64| percentile(&self.join_ms, q);
        json!({
            "window_s": round3(self.window_s),
            "publishers": self.publishers,
            "publishers_connected": self.publishers_connected,
            "sent_packets": self.sent_packets,
            "keyframe_requests": self.keyframe_requests,
            "subscribers": self.subscribers,
            "subscribers_connected": self.subscribers_connected,
            "subscribers_failed": self.subscribers_failed,
            "subscribers_receiving": self.subscribers_receiving,
            "subscribers_lossless": self.subscribers_lossless,
            "subscribers_under_1pct": self.subscribers_under_1pct,
            "subscribers_ok": self.subscribers_ok,
            "late_packets": self.late,
            "late_ms": LATE_US / 1000,
            "rx_packets": self.rx_packets,
            "rx_bytes": self.rx_bytes,
            "rx_pkt_per_s": round3(self.rx_packets as f64 / self.window_s.max(1e-9)),
            "expected_packets": self.expected,
            "lost_packets": self.lost,
            "loss_pct": round3(100.0 * self.lost as f64 / (self.expected.max(1)) as f64),
            "latency_ms": {
                "samples": self.latency_us.len(),
                "p50": lat(0.5), "p99": lat(0.99), "p999": lat(0.999),
                "max": self.latency_us.last().map(|v| *v as f64 / 1000.0),
            },
            "calls": self.calls,
            "calls_connected": self.calls_connected,
            "calls_ok": self.calls_ok,
            "calls_missing_packets": self.calls_missing,
            "join_ms": {
                "count": self.join_ms.len(),
                "p50": join(0.5).map(round3), "p99": join(0.99).map(round3),
                "max": self.join_ms.last().copied().map(round3),
            },
        })
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_losses_and_refills_are_not() {
        let mut rx = RxStats::default();
        for seq in [10, 11, 13, 14] {
            rx.record(1, seq, 100, Some(1000));
        }
        rx.record(2, 500, 50, None);
        assert_eq!(rx.expected_and_lost(), (6, 1));
        rx.record(1, 12, 100, Some(LATE_US + 1)); // retransmission fills the gap, late
        assert_eq!(rx.late, 1);
        assert_eq!(rx.expected_and_lost(), (6, 0));
        assert_eq!(rx.packets, 6);
        assert_eq!(rx.bytes, 550);
    }

    #[test]
    fn calls_held_only_within_a_tenth_of_a_percent() {
        let mut r = Report::default();
        let echo = |n: u64, skip: &dyn Fn(u64) -> bool| {
            let mut rx = RxStats::default();
            (0..n)
                .filter(|s| !skip(*s))
                .for_each(|s| rx.record(7, s, 160, Some(900)));
            rx
        };
        r.add_call(true, 1000, &echo(1000, &|_| false));
        r.add_call(true, 1000, &echo(999, &|_| false)); // one short: 0.1 %, held
        r.add_call(true, 1000, &echo(998, &|_| false)); // two short: not held
        r.add_call(true, 1000, &echo(1000, &|s| s == 10 || s == 20)); // gaps: not held
        r.add_call(false, 0, &RxStats::default()); // nothing sent: not held
        assert_eq!(r.calls, 5);
        assert_eq!(r.calls_connected, 4);
        assert_eq!(r.calls_ok, 2);
        assert_eq!(r.calls_missing, 1 + 2 + 2);
        assert_eq!(r.lost, 2);
    }

    #[test]
    fn percentiles_by_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
    }

    #[test]
    fn report_counts_clean_subscribers() {
        let mut r = Report::default();
        let mut a = RxStats::default();
        (0..200).for_each(|s| a.record(1, s, 10, Some(500)));
        let mut b = RxStats::default();
        (0..200)
            .filter(|s| s % 50 != 7)
            .for_each(|s| b.record(1, s, 10, None));
        let mut c = RxStats::default();
        (0..200).for_each(|s| c.record(1, s, 10, Some(if s < 5 { LATE_US * 2 } else { 10 })));
        r.add_subscriber(&a);
        r.add_subscriber(&b);
        r.add_subscriber(&c);
        assert_eq!(r.subscribers_ok, 1, "b lost 2 %, c had 2.5 % late");
        assert_eq!(r.late, 5);
        assert_eq!(r.subscribers_receiving, 3);
        assert_eq!(r.subscribers_lossless, 2);
        assert_eq!(r.subscribers_under_1pct, 2, "b lost 4 of 200 = 2 %");
        assert_eq!(r.lost, 4);
    }
}

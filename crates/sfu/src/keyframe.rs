//! Keyframe-request coalescing, one [`KeyframeRequests`] per (publisher track, simulcast
//! layer).
//!
//! Every subscriber that joins, loses packets or is switched to a layer needs a keyframe
//! of that layer, and a 50-person room would otherwise flood the publisher with PLIs (each
//! keyframe costs it several times a normal frame of uplink). So the SFU sends the
//! publisher at most one PLI per interval (default 1 s) per layer, whatever the number of
//! requests: the first request in a quiet period goes out at once, any request inside the
//! interval after a PLI is deferred (not lost) to the interval's end, and a keyframe that
//! arrives in the meantime satisfies the deferred requests without a new PLI. Pure state:
//! the caller sends the PLI (str0m `StreamRx::request_keyframe`) when told to, and calls
//! [`KeyframeRequests::poll`] at [`KeyframeRequests::poll_timeout`].

use std::time::{Duration, Instant};

/// The default shortest time between two PLIs to one publisher layer.
pub const DEFAULT_PLI_INTERVAL: Duration = Duration::from_secs(1);

/// The keyframe requests for one publisher layer. No allocation; O(1) per call.
#[derive(Clone, Debug)]
pub struct KeyframeRequests {
    interval: Duration,
    /// When the last PLI was sent.
    last_sent: Option<Instant>,
    /// A request arrived inside the interval and no keyframe has answered it yet.
    pending: bool,
    sent: u64,
    coalesced: u64,
}

impl Default for KeyframeRequests {
    fn default() -> Self {
        KeyframeRequests::new(DEFAULT_PLI_INTERVAL)
    }
}

impl KeyframeRequests {
    /// At most one PLI per `interval` (a zero interval sends every request).
    pub fn new(interval: Duration) -> KeyframeRequests {
        KeyframeRequests {
            interval,
            last_sent: None,
            pending: false,
            sent: 0,
            coalesced: 0,
        }
    }

    /// Whether a PLI may go out at `now` (none sent in the last interval).
    fn may_send(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }

    fn send(&mut self, now: Instant) -> bool {
        self.last_sent = Some(now);
        self.pending = false;
        self.sent += 1;
        true
    }

    /// Someone (a subscriber's PLI/FIR, or the SFU switching a subscriber to this layer)
    /// wants a keyframe. True: send a PLI to the publisher now. False: it is covered by the
    /// PLI of the current interval or deferred to its end ([`KeyframeRequests::poll`]).
    pub fn request(&mut self, now: Instant) -> bool {
        if self.may_send(now) {
            return self.send(now);
        }
        if self.pending {
            self.coalesced += 1;
        }
        self.pending = true;
        false
    }

    /// A keyframe of this layer arrived: the requests waiting for one are answered.
    pub fn keyframe_received(&mut self, _now: Instant) {
        if self.pending {
            self.coalesced += 1;
        }
        self.pending = false;
    }

    /// At or after [`KeyframeRequests::poll_timeout`]: true when the deferred request is
    /// due, meaning send a PLI now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.may_send(now) {
            return self.send(now);
        }
        false
    }

    /// When a deferred request falls due (`None`: nothing deferred).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        // `pending` is only set while a PLI was sent within the interval.
        self.last_sent.map(|t| t + self.interval)
    }

    /// Whether a request is waiting for the interval's end.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// PLIs this layer was told to send.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Requests answered without a PLI of their own (merged into another, or satisfied
    /// by a keyframe that arrived while they waited).
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_request_goes_out_at_once_and_a_burst_becomes_one_deferred_pli() {
        let t0 = Instant::now();
        let mut k = KeyframeRequests::default();
        assert_eq!(k.poll_timeout(), None);
        assert!(k.request(t0));
        // 49 more subscribers ask within the second: nothing now, one PLI at t0 + 1 s.
        for i in 1..50 {
            assert!(!k.request(t0 + ms(i * 10)));
        }
        assert!(k.is_pending());
        assert_eq!(k.poll_timeout(), Some(t0 + ms(1000)));
        assert!(!k.poll(t0 + ms(999)), "not before the interval's end");
        assert!(k.poll(t0 + ms(1000)));
        assert!(!k.poll(t0 + ms(1000)), "once");
        assert_eq!(k.poll_timeout(), None);
        assert_eq!(k.sent(), 2);
        assert_eq!(k.coalesced(), 48);
    }

    #[test]
    fn at_most_one_pli_per_interval_under_constant_requests() {
        let t0 = Instant::now();
        let mut k = KeyframeRequests::default();
        let mut sent_at = Vec::new();
        for step in 0..1000u64 {
            let now = t0 + ms(step * 7);
            if k.request(now) || k.poll(now) {
                sent_at.push(now);
            }
        }
        assert!(sent_at.len() >= 6, "{}", sent_at.len());
        for w in sent_at.windows(2) {
            assert!(w[1] - w[0] >= ms(1000), "{:?}", w[1] - w[0]);
            assert!(
                w[1] - w[0] < ms(1010),
                "deferred requests are not held longer"
            );
        }
    }

    #[test]
    fn a_keyframe_answers_the_deferred_requests() {
        let t0 = Instant::now();
        let mut k = KeyframeRequests::default();
        assert!(k.request(t0));
        assert!(!k.request(t0 + ms(100)));
        k.keyframe_received(t0 + ms(150));
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.poll(t0 + ms(2000)));
        assert_eq!((k.sent(), k.coalesced()), (1, 1));
        // A request after the interval goes out at once again.
        assert!(k.request(t0 + ms(2000)));
    }

    #[test]
    fn a_request_after_a_quiet_interval_is_not_delayed() {
        let t0 = Instant::now();
        let mut k = KeyframeRequests::new(ms(500));
        assert!(k.request(t0));
        assert!(k.request(t0 + ms(500)));
        assert!(!k.request(t0 + ms(600)));
        assert_eq!(k.poll_timeout(), Some(t0 + ms(1000)));
        // A late poll sends the deferred request then.
        assert!(k.poll(t0 + ms(5000)));
        assert!(!k.request(t0 + ms(5100)));
    }

    #[test]
    fn zero_interval_passes_every_request_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now() + ms(10_000);
        let mut k = KeyframeRequests::new(Duration::ZERO);
        assert!(k.request(t0));
        assert!(k.request(t0));
        let mut k = KeyframeRequests::default();
        assert!(k.request(t0));
        assert!(!k.request(t0 - ms(5000)));
        assert!(!k.poll(t0 - ms(5000)));
        assert!(k.poll(t0 + ms(1000)));
    }
}

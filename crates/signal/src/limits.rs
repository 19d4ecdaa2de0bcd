//! Per-connection message rate limiting.

use std::time::Instant;

/// Two token buckets: messages over `rate` (with bursts of 4x) are dropped with an error;
/// a client that keeps sending past 10x the rate is cut off.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    soft: Bucket,
    hard: Bucket,
}

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Disconnect,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f32,
    rate: f32,
    burst: f32,
    last: Instant,
}

impl Bucket {
    fn new(rate: f32, burst: f32, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl RateLimiter {
    /// `rate` messages per second; 0 means unlimited.
    pub fn new(rate: u32, now: Instant) -> RateLimiter {
        let r = rate as f32;
        RateLimiter {
            soft: Bucket::new(r, 4.0 * r, now),
            hard: Bucket::new(10.0 * r, 40.0 * r, now),
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.soft.rate == 0.0 {
            return Verdict::Accept;
        }
        // Every message, accepted or not, draws on the hard bucket.
        if !self.hard.take(now) {
            return Verdict::Disconnect;
        }
        if self.soft.take(now) {
            Verdict::Accept
        } else {
            Verdict::Drop
        }
    }
}

//! Per-connection message rate limiting.

use std::time::Instant;

/// Two token buckets: messages over `rate` (with bursts of 4x) are dropped with an error;
/// a client that keeps sending past 10x the rate is cut off.
///
/// Kept small (32 bytes), as every connection holds one: both buckets are filled at the
/// same instants, so they share `last`, and the hard bucket's rate and both bursts are
/// multiples of the soft rate.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Messages per second; 0 = unlimited.
    rate: f32,
    soft: f32,
    hard: f32,
    last: Instant,
}

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Disconnect,
}

/// The hard bucket refills at this multiple of the rate.
const HARD: f32 = 10.0;
/// Both buckets hold this many seconds of their rate.
const BURST: f32 = 4.0;

/// Take one token from `tokens` if there is one.
fn take(tokens: &mut f32) -> bool {
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

impl RateLimiter {
    /// `rate` messages per second; 0 means unlimited.
    pub fn new(rate: u32, now: Instant) -> RateLimiter {
        let r = rate as f32;
        RateLimiter {
            rate: r,
            soft: BURST * r,
            hard: BURST * HARD * r,
            last: now,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.rate == 0.0 {
            return Verdict::Accept;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.soft = (self.soft + dt * self.rate).min(BURST * self.rate);
        self.hard = (self.hard + dt * HARD * self.rate).min(BURST * HARD * self.rate);
        // Every message, accepted or not, draws on the hard bucket.
        if !take(&mut self.hard) {
            return Verdict::Disconnect;
        }
        if take(&mut self.soft) {
            Verdict::Accept
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_enough_for_every_connection() {
        assert!(std::mem::size_of::<RateLimiter>() <= 32);
    }
}

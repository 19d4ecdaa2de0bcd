//! The per-source bound on SIP messages (`--sip-rate-limit`, default 200 a second with
//! bursts of twice that, per IP address), so that one flooding source cannot take the
//! gateway's signaling from everyone else. Kept apart from the agent so it is tested
//! alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Per-source bound on SIP messages: a token bucket per IP address, so one source
/// cannot take the gateway's signaling from everyone else.
pub struct Flood {
    buckets: HashMap<std::net::IpAddr, (f64, Instant)>,
    /// Messages per second one address may send (0: no bound), and its burst.
    rate: f64,
    burst: f64,
}

impl Default for Flood {
    fn default() -> Flood {
        Flood::new(200)
    }
}

impl Flood {
    /// `rate` messages a second per address, bursts of twice that; 0 admits everything.
    pub fn new(rate: u32) -> Flood {
        Flood {
            buckets: HashMap::new(),
            rate: f64::from(rate),
            burst: 2.0 * f64::from(rate),
        }
    }

    pub fn admit(&mut self, ip: std::net::IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() > 100_000 {
            // Forget addresses that are full again (quiet for a burst's time).
            let refill = Duration::from_secs_f64(self.burst / self.rate);
            self.buckets
                .retain(|_, (_, t)| now.duration_since(*t) < refill);
        }
        let burst = self.burst;
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Flood;
    use std::time::{Duration, Instant};

    #[test]
    fn a_flooding_source_is_bounded_and_others_are_not() {
        let mut f = Flood::default();
        let now = Instant::now();
        let a = "192.0.2.1".parse().unwrap();
        let b = "192.0.2.2".parse().unwrap();
        let admitted = (0..1000).filter(|_| f.admit(a, now)).count();
        assert_eq!(admitted, 400, "the burst");
        assert!(f.admit(b, now), "another source is not affected");
        // A second later, the rate's worth again.
        let later = now + Duration::from_secs(1);
        let admitted = (0..1000).filter(|_| f.admit(a, later)).count();
        assert_eq!(admitted, 200);
        // 0: no bound.
        let mut off = Flood::new(0);
        assert_eq!((0..10_000).filter(|_| off.admit(a, now)).count(), 10_000);
    }
}

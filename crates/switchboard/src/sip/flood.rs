//! The per-source bound on SIP messages (docs/config.md: 200 a second, bursts of 400,
//! per IP address), so that one flooding source cannot take the gateway's signaling from
//! everyone else. Kept apart from the agent so it is tested alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Per-source bound on SIP messages: a token bucket per IP address, so one source
/// cannot take the gateway's signaling from everyone else.
#[derive(Default)]
pub struct Flood {
    buckets: HashMap<std::net::IpAddr, (f64, Instant)>,
}

impl Flood {
    /// Messages per second one address may send, and its burst.
    const RATE: f64 = 200.0;
    const BURST: f64 = 400.0;

    pub fn admit(&mut self, ip: std::net::IpAddr, now: Instant) -> bool {
        if self.buckets.len() > 100_000 {
            // Forget addresses that are full again (quiet for a burst's time).
            let refill = Duration::from_secs_f64(Self::BURST / Self::RATE);
            self.buckets
                .retain(|_, (_, t)| now.duration_since(*t) < refill);
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((Self::BURST, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * Self::RATE).min(Self::BURST);
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
    }
}

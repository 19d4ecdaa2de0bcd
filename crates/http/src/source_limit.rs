//! Requests per source address: a token bucket per client IP (IPv6 by its /64, which
//! one host usually holds whole), for `/api/ice-servers`. Fed the time like the other
//! cores, so it is tested without a clock.
//!
//! The table is bounded: idle buckets (full again) are swept once a minute, and when
//! [`MAX_SOURCES`] addresses are busy at once a new one is refused until some go idle.
//! Refusing is the safe side: this guards credentials for the relay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked at once.
pub const MAX_SOURCES: usize = 65_536;
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Source {
    V4(u32),
    V6Prefix(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.into()),
                None => Source::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One request in bucket units: a bucket refills `per_minute` units per millisecond,
/// exactly, so no fraction is lost however often it is checked.
const REQUEST: u64 = 60_000;

struct Bucket {
    /// Requests that may still be made, in [`REQUEST`] units.
    units: u64,
    at: Instant,
}

/// The limiter: `per_minute` requests per source, in bursts of as many.
pub struct SourceLimiter {
    per_minute: u32,
    buckets: HashMap<Source, Bucket>,
    last_sweep: Option<Instant>,
}

impl SourceLimiter {
    /// `per_minute` 0: no limit.
    pub fn new(per_minute: u32) -> SourceLimiter {
        SourceLimiter {
            per_minute,
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// A new rate; the buckets start over.
    pub fn set_rate(&mut self, per_minute: u32) {
        if per_minute != self.per_minute {
            self.per_minute = per_minute;
            self.buckets.clear();
        }
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// May `ip` make a request at `now`? Err: how long until it may.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let full = u64::from(self.per_minute) * REQUEST;
        if self
            .last_sweep
            .map_or(true, |t| now.saturating_duration_since(t) >= SWEEP_EVERY)
        {
            self.sweep(now, full);
        }
        let key = Source::of(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_SOURCES {
            self.sweep(now, full);
            if self.buckets.len() >= MAX_SOURCES {
                return Err(SWEEP_EVERY);
            }
        }
        let rate = u64::from(self.per_minute);
        let b = self.buckets.entry(key).or_insert(Bucket {
            units: full,
            at: now,
        });
        let ms = now.saturating_duration_since(b.at).as_millis() as u64;
        b.units = (b.units + ms * rate).min(full);
        // Only whole milliseconds were counted: the rest carries over.
        b.at += Duration::from_millis(ms);
        if b.units >= REQUEST {
            b.units -= REQUEST;
            return Ok(());
        }
        Err(Duration::from_millis((REQUEST - b.units).div_ceil(rate)))
    }

    /// Forget sources whose bucket has refilled (idle for a minute or more).
    fn sweep(&mut self, now: Instant, full: u64) {
        let rate = u64::from(self.per_minute);
        self.buckets.retain(|_, b| {
            let ms = now.saturating_duration_since(b.at).as_millis() as u64;
            b.units + ms * rate < full
        });
        self.last_sweep = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn a_burst_of_the_rate_passes_then_one_per_interval() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(6);
        for i in 0..6 {
            assert_eq!(
                l.check(ip("192.0.2.1"), t0),
                Ok(()),
                "request {i} of the burst"
            );
        }
        let wait = l
            .check(ip("192.0.2.1"), t0)
            .expect_err("the 7th is refused");
        assert_eq!(wait, Duration::from_secs(10), "6 a minute: one every 10 s");
        assert_eq!(
            l.check(ip("192.0.2.2"), t0),
            Ok(()),
            "another source has its own bucket"
        );
        assert!(l
            .check(ip("192.0.2.1"), t0 + Duration::from_secs(9))
            .is_err());
        assert_eq!(
            l.check(ip("192.0.2.1"), t0 + Duration::from_secs(10)),
            Ok(())
        );
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(2);
        assert!(l.check(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.check(ip("2001:db8:1:2:ffff::9"), t0).is_ok());
        assert!(l.check(ip("2001:db8:1:2::77"), t0).is_err(), "same /64");
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok(), "another /64");
        assert!(l.check(ip("198.51.100.1"), t0).is_ok());
        assert!(l.check(ip("::ffff:198.51.100.1"), t0).is_ok());
        assert!(
            l.check(ip("198.51.100.1"), t0).is_err(),
            "mapped IPv4 is the same source"
        );
    }

    #[test]
    fn idle_sources_are_forgotten_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(60);
        for i in 0..1000u32 {
            assert!(l
                .check(IpAddr::from((0x0A00_0000 + i).to_be_bytes()), t0)
                .is_ok());
        }
        assert_eq!(l.tracked(), 1000);
        assert!(l
            .check(ip("192.0.2.1"), t0 + Duration::from_secs(61))
            .is_ok());
        assert_eq!(l.tracked(), 1, "sources idle for a minute are swept");

        let mut l = SourceLimiter::new(60);
        for i in 0..MAX_SOURCES as u32 {
            assert!(l
                .check(IpAddr::from((0x0A00_0000 + i).to_be_bytes()), t0)
                .is_ok());
        }
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            l.check(ip("192.0.2.1"), t1),
            Err(SWEEP_EVERY),
            "a full table refuses new sources"
        );
        assert!(
            l.check(IpAddr::from(0x0A00_0001u32.to_be_bytes()), t1)
                .is_ok(),
            "known ones go on"
        );
        assert!(
            l.check(ip("192.0.2.1"), t0 + Duration::from_secs(61))
                .is_ok(),
            "after the sweep"
        );
    }

    #[test]
    fn frequent_checks_lose_no_refill() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(6);
        for _ in 0..6 {
            assert!(l.check(ip("192.0.2.1"), t0).is_ok());
        }
        // Refused every 100 µs for 10 s: the refill still adds up to one request.
        let mut t = t0;
        let mut passed = 0;
        while t < t0 + Duration::from_secs(10) {
            t += Duration::from_micros(100);
            passed += usize::from(l.check(ip("192.0.2.1"), t).is_ok());
        }
        assert_eq!(passed, 1);
    }

    #[test]
    fn zero_means_no_limit() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(0);
        for _ in 0..10_000 {
            assert!(l.check(ip("192.0.2.1"), t0).is_ok());
        }
        assert_eq!(l.tracked(), 0);
    }
}

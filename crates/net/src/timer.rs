//! The timer heap of a worker. Each service says when it next needs
//! `handle_timeout` (its `poll_timeout()`); the heap keeps those deadlines in order,
//! the worker sleeps until the earliest, then runs the services that are due. A
//! changed deadline is pushed again rather than moved: stale entries are skipped when
//! popped (each service has at most one live deadline).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Deadlines of up to 256 services (by index).
#[derive(Default, Debug)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The live deadline of each service.
    current: Vec<Option<Instant>>,
}

impl TimerHeap {
    /// Set (or clear, with None) the deadline of `service`.
    pub fn set(&mut self, service: usize, deadline: Option<Instant>) {
        if self.current.len() <= service {
            self.current.resize(service + 1, None);
        }
        if self.current[service] == deadline {
            return;
        }
        self.current[service] = deadline;
        if let Some(d) = deadline {
            self.heap.push(Reverse((d, service)));
        }
        // Stale entries would pile up if a deadline moved on every pass without ever
        // coming due; rebuild from the live ones when they outnumber them by far.
        if self.heap.len() > 64 + 4 * self.current.len() {
            self.heap = self
                .current
                .iter()
                .enumerate()
                .filter_map(|(s, d)| d.map(|d| Reverse((d, s))))
                .collect();
        }
    }

    /// The earliest live deadline.
    pub fn earliest(&mut self) -> Option<Instant> {
        while let Some(&Reverse((d, s))) = self.heap.peek() {
            if self.current.get(s) == Some(&Some(d)) {
                return Some(d);
            }
            self.heap.pop();
        }
        None
    }

    /// How long the worker may sleep at `now`: until the earliest deadline (rounded
    /// up to the next millisecond, epoll's resolution), or None for no deadline.
    pub fn timeout(&mut self, now: Instant) -> Option<Duration> {
        let d = self.earliest()?.saturating_duration_since(now);
        let ms = d.as_nanos().div_ceil(1_000_000);
        Some(Duration::from_millis(ms.min(u64::MAX as u128) as u64))
    }

    /// The next service due at `now` (its deadline is cleared), or None.
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let d = self.earliest()?;
        if d > now {
            return None;
        }
        let Reverse((_, s)) = self.heap.pop()?;
        self.current[s] = None;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn earliest_deadline_wins_and_due_services_pop_in_order() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
        h.set(0, Some(t0 + ms(300)));
        h.set(1, Some(t0 + ms(10)));
        h.set(2, Some(t0 + ms(50)));
        assert_eq!(h.earliest(), Some(t0 + ms(10)));
        assert_eq!(h.timeout(t0), Some(ms(10)));
        assert_eq!(h.pop_due(t0 + ms(5)), None);
        assert_eq!(h.pop_due(t0 + ms(60)), Some(1));
        assert_eq!(h.pop_due(t0 + ms(60)), Some(2));
        assert_eq!(h.pop_due(t0 + ms(60)), None);
        assert_eq!(h.earliest(), Some(t0 + ms(300)));
    }

    #[test]
    fn moved_and_cleared_deadlines_leave_no_stale_wakeups() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
        h.set(0, Some(t0 + ms(10)));
        h.set(0, Some(t0 + ms(100)));
        h.set(1, Some(t0 + ms(20)));
        h.set(1, None);
        assert_eq!(h.earliest(), Some(t0 + ms(100)));
        assert_eq!(h.pop_due(t0 + ms(50)), None);
        assert_eq!(h.pop_due(t0 + ms(100)), Some(0));
        assert_eq!(h.earliest(), None);
        assert_eq!(h.timeout(t0), None);
    }

    #[test]
    fn past_deadline_means_zero_timeout_and_partial_milliseconds_round_up() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
        h.set(3, Some(t0 + Duration::from_micros(1500)));
        assert_eq!(h.timeout(t0), Some(ms(2)));
        assert_eq!(h.timeout(t0 + ms(5)), Some(Duration::ZERO));
    }

    #[test]
    fn a_deadline_moving_every_pass_does_not_grow_the_heap() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
        for i in 0..10_000 {
            h.set(0, Some(t0 + ms(1000 + i)));
        }
        assert!(h.heap.len() <= 64 + 4);
        assert_eq!(h.earliest(), Some(t0 + ms(1000 + 9999)));
    }
}

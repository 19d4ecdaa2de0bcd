//! Fixed-bucket log-linear latency histogram (microseconds).
//!
//! Values below `2^SUB_BITS` µs get one bucket each; above that every power-of-two
//! range is split into `2^(SUB_BITS-1)` equal buckets, so the relative error of a
//! reported percentile is below `2^-(SUB_BITS-1)` (~3 %). Recording is a couple of
//! integer operations and never allocates; per-thread histograms are merged at the end.

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS; // 64 exact buckets at the bottom
const HALF: u64 = SUB / 2; // buckets per power of two above that
/// Largest value tracked exactly by bucket (larger ones land in the last bucket).
const MAX_EXP: u32 = 40; // 2^40 µs ≈ 12.7 days
const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS + 1) as u64 * HALF) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        if exp > MAX_EXP {
            return BUCKETS - 1;
        }
        let shift = exp - (SUB_BITS - 1);
        let sub = (v >> shift) - HALF; // 0..HALF
        (SUB + (exp - SUB_BITS) as u64 * HALF + sub) as usize
    }

    /// Lowest value and width of bucket `i`.
    fn bucket_range(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < SUB {
            return (i, 1);
        }
        let exp = (i - SUB) / HALF + SUB_BITS as u64;
        let sub = (i - SUB) % HALF;
        let shift = exp - (SUB_BITS as u64 - 1);
        ((HALF + sub) << shift, 1 << shift)
    }

    #[inline]
    pub fn record(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.total += 1;
        self.sum += us as u128;
        if us > self.max {
            self.max = us;
        }
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += *b;
        }
        self.total += o.total;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Value at percentile `p` (0..=100): the middle of the bucket holding the
    /// `ceil(p/100 * n)`-th smallest sample, clamped to the exact maximum (which is also
    /// what the top rank returns). 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        if rank >= self.total {
            return self.max;
        }
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = Self::bucket_range(i);
                return (lo + w / 2).min(self.max);
            }
        }
        self.max
    }

    /// `{"p50":..,"p90":..,"p99":..,"max":..,"mean":..}` in µs.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": self.percentile(50.0),
            "p90": self.percentile(90.0),
            "p99": self.percentile(99.0),
            "p999": self.percentile(99.9),
            "max": self.max(),
            "mean": (self.mean() * 10.0).round() / 10.0,
        })
    }

    /// One human-readable line.
    pub fn summary(&self) -> String {
        format!(
            "p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  (n={})",
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.percentile(99.9),
            self.max,
            self.total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_range_agree() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 30, (1 << 40) - 1, 1 << 40]) {
            let i = Histogram::index(v);
            assert!(i >= last || v >= 100_000, "monotonic at {v}");
            last = i;
            let (lo, w) = Histogram::bucket_range(i);
            assert!(lo <= v && v < lo + w, "v={v} i={i} lo={lo} w={w}");
            // relative width bounded by ~3 %
            assert!(w == 1 || (w as f64) / (lo as f64) <= 1.0 / HALF as f64 + 1e-9);
        }
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn empty() {
        let h = Histogram::new();
        assert_eq!(h.percentile(50.0), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn exact_small_values() {
        let mut h = Histogram::new();
        for v in 1..=50 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 25);
        assert_eq!(h.percentile(90.0), 45);
        assert_eq!(h.percentile(100.0), 50);
        assert_eq!(h.percentile(0.0), 1);
        assert_eq!(h.max(), 50);
    }

    #[test]
    fn uniform_percentiles_within_error() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for p in [50.0, 90.0, 99.0, 99.9] {
            let want = p / 100.0 * 100_000.0;
            let got = h.percentile(p) as f64;
            assert!(
                (got - want).abs() / want < 0.035,
                "p{p}: got {got} want {want}"
            );
        }
        assert_eq!(h.percentile(100.0), 100_000);
    }

    #[test]
    fn merge_and_outlier() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for _ in 0..990 {
            a.record(100);
        }
        for _ in 0..10 {
            b.record(1_000_000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        let p50 = a.percentile(50.0);
        assert!((99..=101).contains(&p50), "{p50}");
        let p999 = a.percentile(99.9) as f64;
        assert!((p999 - 1e6).abs() / 1e6 < 0.035);
        assert_eq!(a.max(), 1_000_000);
        assert!(a.percentile(99.0) <= 101);
    }
}

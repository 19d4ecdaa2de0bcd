//! What the soak's load threads share (soak_mode.rs for TURN and ICE requests,
//! soak_signal.rs for signaling): named counters and a seeded generator, so that a run
//! repeats for a seed.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Counters by name, shared by the load threads.
#[derive(Default, Clone)]
pub struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    pub fn add(&self, key: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key.to_string()).or_default() += n;
        }
    }
    pub fn json(&self) -> Value {
        self.0.lock().map(|m| json!(*m)).unwrap_or(Value::Null)
    }
}

/// A small deterministic generator (xorshift), so runs repeat for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

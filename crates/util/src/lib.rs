//! Helpers that several Switchboard crates need and that must exist once: the wall
//! clock in Unix seconds (token and credential expiry), random hex tokens (peer ids,
//! resume tokens, SSE capabilities, development secrets), and giving a hash table's
//! memory back after a peak. Kept free of any other Switchboard crate so that every
//! crate, the sans-IO cores included, can depend on it.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{BuildHasher, Hash};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 if the clock is set before 1970.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `bytes` bytes from the thread's cryptographically secure generator, as lowercase hex
/// (`2 * bytes` characters). For identifiers a client must not be able to guess.
pub fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(2 * bytes);
    let mut chunk = [0u8; 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        rand::Rng::fill(&mut rand::rng(), &mut chunk[..n]);
        for b in &chunk[..n] {
            let _ = write!(s, "{b:02x}");
        }
        left -= n;
    }
    s
}

/// Give a map's table back after a peak: once fewer than a quarter of its slots are used,
/// shrink it to twice what it holds. A hash map never shrinks on its own, so without
/// this a server would hold the tables of its busiest hour for good (docs/benchmarks.md,
/// "Soak"). Growth at 7/8 full and shrinking below 1/4 keep a map that hovers at one
/// size from being rehashed back and forth.
pub fn shrink_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_asked_length_and_differs() {
        for n in [0, 1, 8, 16, 17, 40] {
            let a = random_hex(n);
            assert_eq!(a.len(), 2 * n);
            assert!(a
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_ne!(random_hex(16), random_hex(16));
    }

    #[test]
    fn sparse_maps_shrink_and_full_ones_do_not() {
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let peak = m.capacity();
        m.retain(|k, _| *k < 100);
        shrink_sparse(&mut m);
        assert!(m.capacity() < peak / 10, "{} of {peak}", m.capacity());
        let before = m.capacity();
        shrink_sparse(&mut m);
        assert_eq!(m.capacity(), before, "not shrunk again while in use");
    }

    #[test]
    fn unix_now_is_after_2024() {
        assert!(unix_now() > 1_700_000_000);
    }
}

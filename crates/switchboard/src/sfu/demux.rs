//! Which SFU worker a datagram belongs to (SFU-DESIGN §2). Every worker's `Sfu` makes
//! its participants' local ICE ufrags start with the worker's prefix (`w<index>x`), so a
//! STUN Binding request names its worker in USERNAME (`local:remote`). Everything else
//! (DTLS, SRTP, STUN answers) is routed by its source address, learned from the Binding
//! requests: the kernel hashes one 5-tuple to one socket of the SO_REUSEPORT group, so
//! the worker that receives a source's Binding requests also receives the rest of its
//! datagrams and the map is per worker, without locks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The ufrag prefix of worker `index`. `x` ends the number, so no prefix is the start
/// of another (`w1x`, `w10x`).
pub fn ufrag_prefix(index: usize) -> String {
    format!("w{index}x")
}

/// The worker a local ufrag names, if it has the form of [`ufrag_prefix`].
pub fn worker_of_ufrag(ufrag: &[u8]) -> Option<usize> {
    let rest = ufrag.strip_prefix(b"w")?;
    let end = rest.iter().position(|&c| c == b'x')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To worker `n` (maybe this one).
    Worker(usize),
    /// Nobody known: try this worker's own participants, else drop.
    Unknown,
}

/// Sources learned from Binding requests, with when they were last seen; forgotten after
/// [`SourceMap::TTL`] without a Binding request (ICE consent checks come every few
/// seconds while a participant lives).
pub struct SourceMap {
    workers: usize,
    map: HashMap<SocketAddr, (usize, Instant), ahash::RandomState>,
    next_sweep: Instant,
}

impl SourceMap {
    pub const TTL: Duration = Duration::from_secs(60);
    /// Sources one worker remembers; new ones beyond are not learned (counted as drops
    /// by the caller when their media arrives).
    pub const MAX: usize = 1 << 16;

    pub fn new(workers: usize, now: Instant) -> SourceMap {
        SourceMap {
            workers: workers.max(1),
            map: HashMap::default(),
            next_sweep: now + Self::TTL,
        }
    }

    /// The route of `datagram` from `source`; a Binding request teaches its source.
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8], now: Instant) -> Route {
        let named = switchboard_net::demux::binding_ufrag(datagram)
            .and_then(worker_of_ufrag)
            .filter(|w| *w < self.workers);
        if let Some(w) = named {
            if self.map.len() < Self::MAX || self.map.contains_key(&source) {
                self.map.insert(source, (w, now));
            }
            return Route::Worker(w);
        }
        match self.map.get(&source) {
            Some((w, _)) => Route::Worker(*w),
            None => Route::Unknown,
        }
    }

    /// Forget sources not seen for [`SourceMap::TTL`]; cheap unless a sweep is due.
    pub fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Self::TTL;
        self.map
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < Self::TTL);
        switchboard_util::shrink_sparse(&mut self.map);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use switchboard_stun::{attr_type, Class, MessageWriter, Method, TransactionId};

    /// A STUN Binding request with USERNAME `username` (also used by the worker's tests).
    pub(in crate::sfu) fn binding(username: &str) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let mut w = MessageWriter::new(
            &mut buf,
            Method::BINDING,
            Class::Request,
            TransactionId([7; 12]),
        )
        .unwrap();
        w.attr(attr_type::USERNAME, username.as_bytes()).unwrap();
        let n = w.finish();
        buf.truncate(n);
        buf
    }

    #[test]
    fn prefixes_name_their_worker_and_nothing_else() {
        for i in [0, 1, 9, 10, 255] {
            let p = ufrag_prefix(i);
            assert_eq!(worker_of_ufrag(format!("{p}Ab3+/").as_bytes()), Some(i));
        }
        for bad in ["", "w", "wx", "w1", "x1x", "w1a x", "w12345x", "W1x"] {
            assert_eq!(worker_of_ufrag(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn binding_requests_teach_their_source_for_the_rest() {
        let now = Instant::now();
        let mut m = SourceMap::new(4, now);
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let dtls = [22u8, 254, 253, 0, 0];
        assert_eq!(m.route(a, &dtls, now), Route::Unknown);
        assert_eq!(m.route(a, &binding("w2xabc:remote"), now), Route::Worker(2));
        assert_eq!(m.route(a, &dtls, now), Route::Worker(2));
        // A worker number out of range is nobody's.
        let b: SocketAddr = "192.0.2.2:5000".parse().unwrap();
        assert_eq!(m.route(b, &binding("w9xabc:remote"), now), Route::Unknown);
        assert_eq!(m.route(b, &dtls, now), Route::Unknown);
        // Forgotten after the TTL without a Binding request.
        m.sweep(now + SourceMap::TTL + Duration::from_secs(1));
        assert_eq!(m.len(), 0);
        assert_eq!(m.route(a, &dtls, now), Route::Unknown);
    }
}

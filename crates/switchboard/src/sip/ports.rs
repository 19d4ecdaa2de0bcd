//! The calls' RTP ports: one even port of `--sip-rtp-ports` per call, bound when the
//! call starts and given back when its [`RtpPort`] drops, so a call that ends in any
//! way (BYE, CANCEL, timeout, a vanished far end) cannot keep one. The number in use is
//! a metric (`switchboard_sip_rtp_ports_in_use`): after every call it returns to zero.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

/// The pool.
pub struct RtpPorts {
    range: RangeInclusive<u16>,
    state: Mutex<State>,
}

struct State {
    used: BTreeSet<u16>,
    /// Where the next search starts: ports are handed out round-robin, so a port just
    /// given back is not reused at once (late packets of the old call).
    next: u16,
}

/// A bound port of the pool; back to the pool on drop.
pub struct RtpPort {
    pool: Arc<RtpPorts>,
    port: u16,
    pub socket: UdpSocket,
}

impl RtpPorts {
    pub fn new(range: RangeInclusive<u16>) -> Arc<RtpPorts> {
        let next = *range.start();
        Arc::new(RtpPorts {
            range,
            state: Mutex::new(State {
                used: BTreeSet::new(),
                next,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn in_use(&self) -> usize {
        self.lock().used.len()
    }

    /// Bind the next free even port of the range on `ip` (ports some other process holds
    /// are skipped); None when every port is taken.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<RtpPort> {
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let first = lo + (lo & 1);
        let slots = (u32::from(hi) - u32::from(first)) / 2 + 1;
        let mut st = self.lock();
        let mut port = st.next.max(first);
        for _ in 0..slots {
            if port > hi || port < first {
                port = first;
            }
            if !st.used.contains(&port) {
                if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)) {
                    st.used.insert(port);
                    st.next = port.saturating_add(2);
                    return Some(RtpPort {
                        pool: self.clone(),
                        port,
                        socket,
                    });
                }
            }
            port = port.saturating_add(2);
        }
        None
    }
}

impl RtpPort {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RtpPort {
    fn drop(&mut self) {
        self.pool.lock().used.remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_even_unique_and_given_back() {
        let pool = RtpPorts::new(41_001..=41_006);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let a = pool.take(ip).unwrap();
        let b = pool.take(ip).unwrap();
        let c = pool.take(ip).unwrap();
        let mut got = vec![a.port(), b.port(), c.port()];
        got.sort_unstable();
        assert_eq!(got, vec![41_002, 41_004, 41_006]);
        assert!(pool.take(ip).is_none(), "only three even ports");
        assert_eq!(pool.in_use(), 3);
        drop(b);
        assert_eq!(pool.in_use(), 2);
        assert_eq!(pool.take(ip).unwrap().port(), 41_004);
        drop((a, c));
        assert_eq!(pool.in_use(), 0);
    }
}

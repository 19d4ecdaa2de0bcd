//! Built-in UDP echo peer: sends every datagram back to its source, in batches of
//! up to 64 with `recvmmsg`/`sendmmsg`, on its own thread.

use crate::net::{bound_udp, Batch};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const SLOTS: usize = 64;

pub struct EchoPeer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl EchoPeer {
    /// Bind to `bind` and start echoing datagrams of up to `max_len` bytes.
    pub fn start(bind: SocketAddr, max_len: usize) -> Result<EchoPeer> {
        let sock = bound_udp(bind)?;
        let addr = sock.local_addr().context("echo peer local address")?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .context("echo peer read timeout")?;
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (s, e, d) = (stop.clone(), echoed.clone(), dropped.clone());
        let slot = max_len.max(2048);
        let handle = std::thread::Builder::new()
            .name("echo-peer".into())
            .spawn(move || {
                let fd = sock.as_raw_fd();
                let mut batch = Batch::new(SLOTS, slot, true);
                while !s.load(Ordering::Relaxed) {
                    // Blocks until one datagram arrives (or the 20 ms timeout), then
                    // takes whatever else is queued.
                    let n = match batch.recv(fd, libc::MSG_WAITFORONE) {
                        Ok(n) => n,
                        Err(_) => continue,
                    };
                    if n == 0 {
                        continue;
                    }
                    batch.echo_prepare(n);
                    let k = batch.send(fd, n).unwrap_or(0);
                    e.fetch_add(k as u64, Ordering::Relaxed);
                    d.fetch_add((n - k) as u64, Ordering::Relaxed);
                }
            })
            .context("spawning echo peer")?;
        Ok(EchoPeer {
            addr,
            stop,
            echoed,
            dropped,
            handle,
        })
    }

    /// Stop the thread; returns (echoed, failed to echo).
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        (
            self.echoed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn echoes_to_source() {
        let p = EchoPeer::start("127.0.0.1:0".parse().unwrap(), 100).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        for i in 0..5u8 {
            c.send_to(&[i; 10], p.addr).unwrap();
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&[i; 10][..], p.addr));
        }
        assert_eq!(p.stop(), (5, 0));
    }
}

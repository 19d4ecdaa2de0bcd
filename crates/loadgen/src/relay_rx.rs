//! Receive side of `relay`: epoll over all allocation sockets, batched `recvmmsg`,
//! ChannelData / Data indication decoding, RTT from the echoed payload, and the
//! allocations' keepalive transactions.

use crate::histogram::Histogram;
use crate::keepalive::{Keepalive, KeepaliveStats};
use crate::net::{now_ns, Batch, Epoll};
use crate::stun_mode::BATCH;
use anyhow::Result;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_stun::{attr_type, ChannelData, Class, Message, Method};

/// Payload header: tag u32, allocation u32, sequence u64, send time u64 (ns).
pub const PAYLOAD_HEADER: usize = 24;

#[inline]
pub fn write_payload_header(p: &mut [u8], tag: u32, alloc: u32, seq: u64, ts: u64) {
    p[0..4].copy_from_slice(&tag.to_be_bytes());
    p[4..8].copy_from_slice(&alloc.to_be_bytes());
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    p[16..24].copy_from_slice(&ts.to_be_bytes());
}

/// (allocation, sequence, send time) of one of our payloads.
#[inline]
pub fn read_payload_header(p: &[u8], tag: u32) -> Option<(u32, u64, u64)> {
    let h = p.get(..PAYLOAD_HEADER)?;
    if u32::from_be_bytes(h[0..4].try_into().ok()?) != tag {
        return None;
    }
    Some((
        u32::from_be_bytes(h[4..8].try_into().ok()?),
        u64::from_be_bytes(h[8..16].try_into().ok()?),
        u64::from_be_bytes(h[16..24].try_into().ok()?),
    ))
}

/// Set by the sender: when to stop (0 = still sending) and how many went out.
pub struct RxControl {
    pub stop_at: AtomicU64,
    pub total_sent: AtomicU64,
}

#[derive(Default)]
pub struct RxStats {
    pub received: u64,
    pub channel_data: u64,
    pub data_indications: u64,
    /// Our payload, but echoed to a different allocation than it was sent on.
    pub misrouted: u64,
    pub invalid: u64,
    pub recv_errors: u64,
    pub hist: Histogram,
    pub keepalive: KeepaliveStats,
}

/// Borrows the allocations' sockets (a scoped thread): no dup'd descriptors, so one
/// process can hold as many allocations as it has file descriptors.
pub struct Receiver<'a> {
    pub socks: Vec<&'a UdpSocket>,
    pub keep: Vec<Keepalive>,
    pub channels: Vec<Option<u16>>,
    pub tag: u32,
    pub slot: usize,
}

impl Receiver<'_> {
    /// Runs until `ctl.stop_at` passes (or everything sent has come back) and
    /// returns the statistics and the keepalive state (with current nonces).
    pub fn run(self, ctl: &RxControl) -> Result<(RxStats, Vec<Keepalive>)> {
        let Receiver {
            socks,
            mut keep,
            channels,
            tag,
            slot,
        } = self;
        let mut ep = Epoll::new(socks.len().min(256))?;
        for (i, s) in socks.iter().enumerate() {
            ep.add(*s, i as u64)?;
        }
        let mut ready: Vec<u64> = Vec::with_capacity(256);
        let mut batch = Batch::new(BATCH, slot, false);
        let mut scratch = vec![0u8; 1500];
        let mut st = RxStats::default();
        let mut next_keepalive = 0u64;
        loop {
            let now = now_ns();
            let stop = ctl.stop_at.load(Ordering::Acquire);
            if stop != 0 && (now >= stop || st.received >= ctl.total_sent.load(Ordering::Acquire)) {
                break;
            }
            if now >= next_keepalive {
                for (k, s) in keep.iter_mut().zip(&socks) {
                    k.poll(s, now, &mut scratch, &mut st.keepalive);
                }
                next_keepalive = now + 20_000_000;
            }
            ready.clear();
            ready.extend(ep.wait(5));
            for &tok in &ready {
                let idx = tok as usize;
                let fd = socks[idx].as_raw_fd();
                loop {
                    let n = match batch.recv(fd, libc::MSG_DONTWAIT) {
                        Ok(n) => n,
                        Err(_) => {
                            st.recv_errors += 1;
                            break;
                        }
                    };
                    let now = now_ns();
                    for i in 0..n {
                        let b = batch.get(i);
                        let payload = if b.first().is_some_and(|&c| c & 0xC0 == 0x40) {
                            match ChannelData::parse(b) {
                                Some(cd) if Some(cd.channel) == channels[idx] => {
                                    st.channel_data += 1;
                                    Some(cd.payload)
                                }
                                _ => None,
                            }
                        } else {
                            match Message::parse(b) {
                                Ok(m)
                                    if m.class == Class::Indication && m.method == Method::DATA =>
                                {
                                    st.data_indications += 1;
                                    m.get(attr_type::DATA)
                                }
                                Ok(m) if matches!(m.class, Class::Success | Class::Error) => {
                                    // No keepalive state with --raw: nothing expects it.
                                    let ours = keep.get_mut(idx).is_some_and(|k| {
                                        k.on_response(
                                            &m,
                                            socks[idx],
                                            now,
                                            &mut scratch,
                                            &mut st.keepalive,
                                        )
                                    });
                                    if !ours {
                                        st.invalid += 1;
                                    }
                                    continue;
                                }
                                _ => None,
                            }
                        };
                        match payload.and_then(|p| read_payload_header(p, tag)) {
                            Some((alloc, _seq, ts)) if ts <= now => {
                                if alloc as usize != idx {
                                    st.misrouted += 1;
                                }
                                st.received += 1;
                                st.hist.record((now - ts) / 1000);
                            }
                            _ => st.invalid += 1,
                        }
                    }
                    if n < BATCH {
                        break;
                    }
                }
            }
        }
        Ok((st, keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_header_roundtrip() {
        let mut p = [0u8; 40];
        write_payload_header(&mut p, 0xfeed, 7, 123_456, 999);
        assert_eq!(read_payload_header(&p, 0xfeed), Some((7, 123_456, 999)));
        assert_eq!(read_payload_header(&p, 0xbeef), None);
        assert_eq!(read_payload_header(&p[..20], 0xfeed), None);
    }
}

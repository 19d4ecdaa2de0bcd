//! Batched UDP I/O with recvmmsg/sendmmsg: one syscall moves up to `BATCH` datagrams.
//! Not in std, mio or socket2, hence these thin unsafe wrappers.

use crate::sockaddr::{from_storage, to_storage};
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use switchboard_turn::{PEER_HEADROOM, PEER_TAILROOM};

/// Datagrams asked of one recvmmsg call.
pub const BATCH: usize = 32;
/// Receive slots per worker: several recvmmsg calls (from different relay sockets)
/// fill consecutive slots, so their outputs leave in one sendmmsg.
pub const SLOTS: usize = 128;
/// Bytes per receive slot: headroom for in-place TURN framing, the datagram, tailroom.
pub const SLOT: usize = 2048;
/// Largest datagram payload a slot holds.
pub const MAX_DATAGRAM: usize = SLOT - PEER_HEADROOM - PEER_TAILROOM;

pub struct RecvBatch {
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zero_ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        RecvBatch {
            bufs: vec![0u8; SLOTS * SLOT].into_boxed_slice(),
            names: vec![zero_ss; SLOTS].into_boxed_slice(),
            iovs: vec![zero_iov; SLOTS].into_boxed_slice(),
            hdrs: vec![zero_hdr; SLOTS].into_boxed_slice(),
        }
    }
}

impl RecvBatch {
    /// Receive up to `max` datagrams without blocking into slots `first..`, each
    /// placed at PEER_HEADROOM in its slot. Returns how many arrived (Err WouldBlock
    /// when none).
    pub fn recv(&mut self, fd: RawFd, first: usize, max: usize) -> io::Result<usize> {
        let max = max.min(SLOTS.saturating_sub(first));
        if max == 0 {
            return Ok(0);
        }
        let base = self.bufs.as_mut_ptr();
        for i in first..first + max {
            // SAFETY: i * SLOT + PEER_HEADROOM + MAX_DATAGRAM <= SLOTS * SLOT.
            self.iovs[i].iov_base = unsafe { base.add(i * SLOT + PEER_HEADROOM) } as *mut _;
            self.iovs[i].iov_len = MAX_DATAGRAM;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.names[i] as *mut _ as *mut _;
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: hdrs point at live buffers owned by self for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr().add(first),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i`: its source, its length, and its whole slot (payload at PEER_HEADROOM).
    /// Truncated datagrams (larger than MAX_DATAGRAM) are reported with length 0.
    pub fn slot(&mut self, i: usize) -> (Option<SocketAddr>, usize, &mut [u8]) {
        let truncated = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let len = if truncated {
            0
        } else {
            self.hdrs[i].msg_len as usize
        };
        let from = from_storage(&self.names[i]);
        (from, len, &mut self.bufs[i * SLOT..(i + 1) * SLOT])
    }
}

/// Outgoing datagrams queued for one sendmmsg per run of equal sockets. Consecutive
/// datagrams of one size from one socket to one destination (a burst of video packets
/// relayed to a client) leave as a single UDP GSO send (UDP_SEGMENT): one trip down
/// the stack for up to 64 datagrams.
pub struct SendQueue {
    fds: Vec<RawFd>,
    names: Box<[libc::sockaddr_storage]>,
    namelens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Per header: first queued datagram and how many it carries.
    groups: Vec<(usize, usize)>,
    /// Per header: room for one UDP_SEGMENT control message.
    cmsgs: Box<[[u64; 4]]>,
    gso: bool,
    gso_failures: u32,
    /// Datagrams the kernel refused (counted, never fatal).
    pub send_errors: u64,
    /// Datagrams that left inside GSO sends.
    pub gso_datagrams: u64,
}

/// Queue capacity: every receive slot yields at most one datagram.
pub const QUEUE: usize = SLOTS;
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 65000;

impl Default for SendQueue {
    fn default() -> Self {
        // SAFETY: all-zero is valid for these plain C structs.
        let zero_ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        SendQueue {
            fds: Vec::with_capacity(QUEUE),
            names: vec![zero_ss; QUEUE].into_boxed_slice(),
            namelens: Vec::with_capacity(QUEUE),
            iovs: Vec::with_capacity(QUEUE),
            hdrs: vec![zero_hdr; QUEUE].into_boxed_slice(),
            groups: Vec::with_capacity(QUEUE),
            cmsgs: vec![[0u64; 4]; QUEUE].into_boxed_slice(),
            gso: true,
            gso_failures: 0,
            send_errors: 0,
            gso_datagrams: 0,
        }
    }
}

impl SendQueue {
    pub fn is_full(&self) -> bool {
        self.fds.len() == QUEUE
    }

    /// Turn GSO off (for comparison runs, or where the kernel lacks it).
    pub fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    /// Queue `data` for `to` on socket `fd`.
    ///
    /// # Safety
    /// `data` must stay valid and unmodified until the next [`SendQueue::flush`].
    pub unsafe fn push(&mut self, fd: RawFd, to: &SocketAddr, data: &[u8]) {
        if self.is_full() {
            self.flush();
        }
        let i = self.fds.len();
        let len = to_storage(to, &mut self.names[i]);
        self.fds.push(fd);
        self.namelens.push(len);
        self.iovs.push(libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        });
    }

    fn same_destination(&self, a: usize, b: usize) -> bool {
        let len = self.namelens[a] as usize;
        if self.namelens[b] as usize != len || self.fds[a] != self.fds[b] {
            return false;
        }
        // SAFETY: both storages are at least `len` bytes long (len <= sizeof storage).
        unsafe {
            let pa = &self.names[a] as *const _ as *const u8;
            let pb = &self.names[b] as *const _ as *const u8;
            std::slice::from_raw_parts(pa, len) == std::slice::from_raw_parts(pb, len)
        }
    }

    /// How many datagrams from `i` on can go as one GSO send: same socket and
    /// destination, same size, except that the last may be shorter.
    fn gso_run(&self, i: usize) -> usize {
        let size = self.iovs[i].iov_len;
        if !self.gso || size == 0 {
            return 1;
        }
        let n = self.fds.len();
        let (mut k, mut bytes) = (1, size);
        while i + k < n && k < GSO_MAX_SEGMENTS && self.same_destination(i, i + k) {
            let len = self.iovs[i + k].iov_len;
            if len > size || len == 0 || bytes + len > GSO_MAX_BYTES {
                break;
            }
            k += 1;
            bytes += len;
            if len < size {
                break;
            }
        }
        k
    }

    /// Send everything queued. A datagram the kernel refuses (unreachable peer, full
    /// buffer) is dropped and counted; the rest still go out.
    pub fn flush(&mut self) {
        let n = self.fds.len();
        self.groups.clear();
        let mut i = 0;
        while i < n {
            let k = self.gso_run(i);
            let h = self.groups.len();
            let size = self.iovs[i].iov_len as u16;
            let hdr = &mut self.hdrs[h].msg_hdr;
            hdr.msg_name = &mut self.names[i] as *mut _ as *mut _;
            hdr.msg_namelen = self.namelens[i];
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = k as _;
            hdr.msg_flags = 0;
            if k > 1 {
                let buf = &mut self.cmsgs[h];
                hdr.msg_control = buf.as_mut_ptr() as *mut _;
                // SAFETY: CMSG_SPACE(2) is 24 bytes on Linux, within the 32-byte buffer.
                unsafe {
                    hdr.msg_controllen = libc::CMSG_SPACE(2) as _;
                    let c = libc::CMSG_FIRSTHDR(hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size);
                }
            } else {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            self.groups.push((i, k));
            i += k;
        }
        let headers = self.groups.len();
        let mut start = 0;
        while start < headers {
            let fd = self.fds[self.groups[start].0];
            let mut end = start + 1;
            while end < headers && self.fds[self.groups[end].0] == fd {
                end += 1;
            }
            let mut h = start;
            while h < end {
                // SAFETY: headers point at names/iovs/cmsgs owned by self; iovs point
                // at data the caller of push keeps alive until this flush.
                let sent = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs.as_mut_ptr().add(h),
                        (end - h) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if sent <= 0 {
                    self.send_failed(h);
                    h += 1;
                } else {
                    for g in &self.groups[h..h + sent as usize] {
                        if g.1 > 1 {
                            self.gso_datagrams += g.1 as u64;
                            self.gso_failures = 0;
                        }
                    }
                    h += sent as usize;
                }
            }
            start = end;
        }
        self.fds.clear();
        self.namelens.clear();
        self.iovs.clear();
    }

    /// Header `h` was refused. A single datagram is dropped; a GSO group is retried
    /// datagram by datagram (a kernel without GSO, or a size over the path MTU), and
    /// GSO is turned off after repeated failures.
    fn send_failed(&mut self, h: usize) {
        let (first, k) = self.groups[h];
        if k == 1 {
            self.send_errors += 1;
            return;
        }
        self.gso_failures += 1;
        if self.gso_failures >= 8 {
            tracing::warn!("UDP GSO keeps failing; sending datagrams one by one");
            self.gso = false;
        }
        for d in first..first + k {
            // SAFETY: as in flush; a one-datagram header without control data.
            let rc = unsafe {
                let mut m: libc::msghdr = mem::zeroed();
                m.msg_name = &mut self.names[d] as *mut _ as *mut _;
                m.msg_namelen = self.namelens[d];
                m.msg_iov = &mut self.iovs[d];
                m.msg_iovlen = 1;
                libc::sendmsg(self.fds[d], &m, libc::MSG_DONTWAIT)
            };
            if rc < 0 {
                self.send_errors += 1;
            }
        }
    }
}

// SAFETY: the raw pointers inside are scratch space re-pointed at buffers owned by the
// same struct before every syscall; nothing points across threads.
unsafe impl Send for RecvBatch {}
// SAFETY: as above; queued pointers are only valid until `flush`, which the owning
// thread calls before the data they point at changes.
unsafe impl Send for SendQueue {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn receiver() -> (UdpSocket, SocketAddr) {
        let r = UdpSocket::bind("127.0.0.1:0").expect("bind");
        r.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let a = r.local_addr().expect("addr");
        (r, a)
    }

    #[test]
    fn equal_sized_burst_leaves_as_gso_and_arrives_as_separate_datagrams() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (r1, a1) = receiver();
        let (r2, a2) = receiver();
        let payloads: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; 100])
            .chain([vec![0xEE; 40]]) // shorter tail joins the group
            .chain([vec![0xAA; 100]]) // after a short one: new group
            .collect();
        let other = vec![0x77u8; 100];
        let mut q = SendQueue::default();
        for p in &payloads {
            // SAFETY: payloads outlive the flush below.
            unsafe { q.push(tx.as_raw_fd(), &a1, p) };
        }
        // SAFETY: as above.
        unsafe { q.push(tx.as_raw_fd(), &a2, &other) };
        q.flush();
        assert_eq!(q.send_errors, 0);
        assert_eq!(
            q.gso_datagrams, 11,
            "ten equal datagrams and the short tail in one send"
        );
        let mut buf = [0u8; 2048];
        for p in &payloads {
            let n = r1.recv(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], &p[..]);
        }
        let n = r2.recv(&mut buf).expect("other destination");
        assert_eq!(&buf[..n], &other[..]);
    }

    #[test]
    fn without_gso_everything_still_arrives() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (r, a) = receiver();
        let data = [1u8; 64];
        let mut q = SendQueue::default();
        q.set_gso(false);
        for _ in 0..5 {
            // SAFETY: data outlives the flush.
            unsafe { q.push(tx.as_raw_fd(), &a, &data) };
        }
        q.flush();
        assert_eq!(q.gso_datagrams, 0);
        let mut buf = [0u8; 128];
        for _ in 0..5 {
            assert_eq!(r.recv(&mut buf).expect("datagram"), 64);
        }
    }
}

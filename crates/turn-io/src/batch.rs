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

/// Outgoing datagrams queued for one sendmmsg per run of equal sockets.
pub struct SendQueue {
    fds: Vec<RawFd>,
    names: Box<[libc::sockaddr_storage]>,
    namelens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Datagrams the kernel refused (counted, never fatal).
    pub send_errors: u64,
}

/// Queue capacity: every receive slot yields at most one datagram.
pub const QUEUE: usize = SLOTS;

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
            send_errors: 0,
        }
    }
}

impl SendQueue {
    pub fn is_full(&self) -> bool {
        self.fds.len() == QUEUE
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

    /// Send everything queued. A datagram the kernel refuses (unreachable peer, full
    /// buffer) is dropped and counted; the rest still go out.
    pub fn flush(&mut self) {
        let n = self.fds.len();
        for i in 0..n {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.names[i] as *mut _ as *mut _;
            h.msg_namelen = self.namelens[i];
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut start = 0;
        while start < n {
            let fd = self.fds[start];
            let mut end = start + 1;
            while end < n && self.fds[end] == fd {
                end += 1;
            }
            let mut i = start;
            while i < end {
                // SAFETY: headers point at names/iovs owned by self; iovs point at data
                // the caller of push keeps alive until this flush.
                let sent = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs.as_mut_ptr().add(i),
                        (end - i) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if sent <= 0 {
                    // The first datagram failed: drop it alone and go on.
                    self.send_errors += 1;
                    i += 1;
                } else {
                    i += sent as usize;
                }
            }
            start = end;
        }
        self.fds.clear();
        self.namelens.clear();
        self.iovs.clear();
    }
}

// SAFETY: the raw pointers inside are scratch space re-pointed at buffers owned by the
// same struct before every syscall; nothing points across threads.
unsafe impl Send for RecvBatch {}
// SAFETY: as above; queued pointers are only valid until `flush`, which the owning
// thread calls before the data they point at changes.
unsafe impl Send for SendQueue {}

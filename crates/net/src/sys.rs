//! The driver's only unsafe code: recvmmsg, sendmmsg and sendmsg, which neither std,
//! mio nor socket2 expose. Everything here borrows what it points at for the length of
//! one call (iovecs are std's `IoSlice`/`IoSliceMut`, guaranteed ABI-compatible with
//! `struct iovec`; addresses are socket2's), so no pointer outlives a syscall and the
//! callers need no `unsafe` and no contract about buffer lifetimes.

use socket2::{SockAddr, SockAddrStorage};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;

/// Most datagrams one [`recv_mmsg`] call takes (the header array lives on the stack).
pub const MAX_RECV: usize = 32;
/// Most messages one sendmmsg call carries (stack arrays; [`send_mmsg`] loops over more).
const MAX_SEND: usize = 64;

/// What the kernel reported for one received datagram.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecvMeta {
    /// Payload bytes; 0 when the datagram did not fit its buffer (truncated).
    pub len: usize,
    pub from: Option<SocketAddr>,
}

/// One message for [`send_mmsg`]: `iov` to `to`, as one datagram, or as UDP GSO
/// segments of `segment` bytes each (the last may be shorter) when set.
pub struct SendMsg<'a> {
    pub to: &'a SockAddr,
    pub iov: &'a [IoSlice<'a>],
    pub segment: Option<u16>,
}

/// Receive up to `bufs.len()` (at most [`MAX_RECV`]) datagrams from `fd` without
/// blocking, one per buffer. Returns how many arrived; `meta[i]` describes `bufs[i]`.
pub fn recv_mmsg(
    fd: RawFd,
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
) -> io::Result<usize> {
    let n = bufs.len().min(meta.len()).min(MAX_RECV);
    if n == 0 {
        return Ok(0);
    }
    let mut names: [SockAddrStorage; MAX_RECV] = std::array::from_fn(|_| SockAddrStorage::zeroed());
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; MAX_RECV] = unsafe { mem::zeroed() };
    for i in 0..n {
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut SockAddrStorage).cast();
        h.msg_namelen = names[i].size_of();
        h.msg_iov = (&mut bufs[i] as *mut IoSliceMut<'_>).cast::<libc::iovec>();
        h.msg_iovlen = 1;
    }
    // SAFETY: every header points at `names[i]` and `bufs[i]`, live and exclusively
    // borrowed for this call; the lengths given are theirs.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = rc as usize;
    for i in 0..got {
        let h = &hdrs[i];
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let namelen = h.msg_hdr.msg_namelen;
        let storage = mem::replace(&mut names[i], SockAddrStorage::zeroed());
        // SAFETY: the kernel wrote an address of its family and length `namelen`
        // (zeroed storage and length 0 decode as "no address").
        let addr = unsafe { SockAddr::new(storage, namelen) };
        meta[i] = RecvMeta {
            len: if truncated { 0 } else { h.msg_len as usize },
            from: addr.as_socket().map(unmap_v4),
        };
    }
    Ok(got)
}

/// IPv4-mapped IPv6 sources (dual-stack sockets) as plain IPv4.
fn unmap_v4(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

/// Room for one UDP_SEGMENT control message (CMSG_SPACE(2) is 24 bytes on Linux).
type CmsgBuf = [u64; 4];

/// Send `msgs` from `fd` with as few sendmmsg calls as possible. Returns how many
/// messages the kernel took, counting from the first; an error only when it took none.
pub fn send_mmsg(fd: RawFd, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
    let mut done = 0;
    while done < msgs.len() {
        let chunk = &msgs[done..msgs.len().min(done + MAX_SEND)];
        // SAFETY: all-zero is a valid mmsghdr.
        let mut hdrs: [libc::mmsghdr; MAX_SEND] = unsafe { mem::zeroed() };
        let mut cmsgs: [CmsgBuf; MAX_SEND] = [[0; 4]; MAX_SEND];
        for (i, m) in chunk.iter().enumerate() {
            fill_header(&mut hdrs[i].msg_hdr, m, &mut cmsgs[i]);
        }
        // SAFETY: the headers point at `msgs`' addresses and iovecs (borrowed for this
        // call) and at `cmsgs` (live on this frame).
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc <= 0 {
            return match done {
                0 => Err(io::Error::last_os_error()),
                _ => Ok(done),
            };
        }
        done += rc as usize;
        if (rc as usize) < chunk.len() {
            break;
        }
    }
    Ok(done)
}

/// Send one message (no GSO) from `fd`.
pub fn send_msg(fd: RawFd, to: &SockAddr, data: IoSlice<'_>) -> io::Result<usize> {
    let iov = [data];
    let msg = SendMsg {
        to,
        iov: &iov,
        segment: None,
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut h: libc::msghdr = unsafe { mem::zeroed() };
    let mut cmsg: CmsgBuf = [0; 4];
    fill_header(&mut h, &msg, &mut cmsg);
    // SAFETY: `h` points at `to` and `iov`, both borrowed for this call.
    let rc = unsafe { libc::sendmsg(fd, &h, libc::MSG_DONTWAIT) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

fn fill_header(h: &mut libc::msghdr, m: &SendMsg<'_>, cmsg: &mut CmsgBuf) {
    h.msg_name = m.to.as_ptr() as *mut libc::c_void;
    h.msg_namelen = m.to.len();
    h.msg_iov = m.iov.as_ptr() as *mut libc::iovec;
    h.msg_iovlen = m.iov.len() as _;
    h.msg_flags = 0;
    match m.segment {
        Some(size) if m.iov.len() > 1 => {
            h.msg_control = cmsg.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE(2) (24 bytes) fits the 32-byte, 8-aligned `cmsg`, which
            // `h` now points at; CMSG_FIRSTHDR is non-null for a buffer that large.
            unsafe {
                h.msg_controllen = libc::CMSG_SPACE(2) as _;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
            }
        }
        _ => {
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
    }
}

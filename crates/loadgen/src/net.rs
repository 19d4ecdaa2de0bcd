//! Socket plumbing: monotonic clock, UDP socket setup, batched `sendmmsg`/`recvmmsg`
//! over preallocated buffers, and a minimal level-triggered epoll wrapper.

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// CLOCK_MONOTONIC in nanoseconds; comparable across threads of this process.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleep until the monotonic time `deadline_ns` (returns at once if it has passed).
pub fn sleep_until(deadline_ns: u64) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(Duration::from_nanos(deadline_ns - now));
    }
}

/// Ask the kernel for 1 µs timer slack (default 50 µs) so paced sleeps are accurate.
pub fn tighten_timer_slack() {
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
}

/// Source address `k` of `n` for `--loopback-sources`: 127.0.1.1 + (k mod n), or
/// `None` (the kernel's choice) when `n` is 0.
pub fn loopback_source(k: usize, n: usize) -> Option<IpAddr> {
    (n > 0).then(|| {
        let base = u32::from(std::net::Ipv4Addr::new(127, 0, 1, 1));
        IpAddr::V4(std::net::Ipv4Addr::from(base + (k % n) as u32))
    })
}

/// CPU time (user + system, all threads) of process `pid` in seconds, from
/// /proc/PID/stat; `None` if it cannot be read.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, i.e. 11 and 12 after ") ".
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// CPU use of `--server-pid` over a load window, for the RESULT line.
pub struct ServerCpu {
    pid: Option<u32>,
    start_cpu: Option<f64>,
    start_ns: u64,
}

impl ServerCpu {
    /// Start the window now (no-op without a pid).
    pub fn start(pid: Option<u32>) -> Self {
        ServerCpu {
            pid,
            start_cpu: pid.and_then(process_cpu_s),
            start_ns: now_ns(),
        }
    }

    /// End the window: `{"server_cpu_s", "server_cpu_window_s", "server_cpu_pct"}`, with
    /// `per_cpu_s` = `count` / server CPU seconds under `key`; nulls without a pid.
    pub fn finish(&self, key: &str, count: u64) -> serde_json::Value {
        let end = self.pid.and_then(process_cpu_s);
        let window = (now_ns() - self.start_ns) as f64 / 1e9;
        let cpu = match (self.start_cpu, end) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let r3 = round3;
        serde_json::json!({
            "server_pid": self.pid,
            "server_cpu_s": cpu.map(r3),
            "server_cpu_window_s": r3(window),
            "server_cpu_pct": cpu.map(|c| r3(100.0 * c / window)),
            key: cpu.filter(|&c| c > 0.0).map(|c| r3(count as f64 / c)),
        })
    }
}

/// Add the fields of object `extra` to object `into`.
pub fn merge_json(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), extra) {
        a.extend(b);
    }
}

const SOCK_BUF: usize = 4 << 20;

/// A UDP socket with large kernel buffers, bound to the wildcard address (port 0)
/// of the server's family and connected to `server`. Blocking; receivers use MSG_DONTWAIT.
pub fn connected_udp(server: SocketAddr) -> Result<UdpSocket> {
    connected_udp_from(server, None)
}

/// Like [`connected_udp`], bound to source address `local` (port 0) when given.
pub fn connected_udp_from(server: SocketAddr, local: Option<IpAddr>) -> Result<UdpSocket> {
    let s = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .context("creating UDP socket")?;
    let _ = s.set_recv_buffer_size(SOCK_BUF);
    let _ = s.set_send_buffer_size(SOCK_BUF);
    let any: SocketAddr = match local {
        Some(ip) => SocketAddr::new(ip, 0),
        None if server.is_ipv4() => "0.0.0.0:0".parse().expect("literal"),
        None => "[::]:0".parse().expect("literal"),
    };
    s.bind(&any.into())
        .with_context(|| format!("binding UDP socket to {any}"))?;
    s.connect(&server.into())
        .with_context(|| format!("connecting UDP socket to {server}"))?;
    Ok(s.into())
}

/// An unconnected UDP socket with large buffers bound to `addr`.
pub fn bound_udp(addr: SocketAddr) -> Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .context("creating UDP socket")?;
    let _ = s.set_recv_buffer_size(SOCK_BUF);
    let _ = s.set_send_buffer_size(SOCK_BUF);
    s.bind(&addr.into())
        .with_context(|| format!("binding UDP socket to {addr}"))?;
    Ok(s.into())
}

/// Preallocated message batch for `sendmmsg`/`recvmmsg`: `slots` buffers of `slot`
/// bytes each, with iovecs, headers and (optionally) peer addresses wired up once.
/// The raw pointers point into the boxed slices, which never move or resize.
pub struct Batch {
    bufs: Box<[u8]>,
    slot: usize,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    addrs: Option<Box<[libc::sockaddr_storage]>>,
}

impl Batch {
    pub fn new(slots: usize, slot: usize, with_addrs: bool) -> Batch {
        let mut bufs = vec![0u8; slots * slot].into_boxed_slice();
        let mut iovs: Box<[libc::iovec]> = (0..slots)
            .map(|i| libc::iovec {
                // SAFETY: i * slot is within the allocation.
                iov_base: unsafe { bufs.as_mut_ptr().add(i * slot) } as *mut libc::c_void,
                iov_len: slot,
            })
            .collect();
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs; all-zero is valid.
        let mut addrs: Option<Box<[libc::sockaddr_storage]>> =
            with_addrs.then(|| (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect());
        let hdrs: Box<[libc::mmsghdr]> = (0..slots)
            .map(|i| {
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: i < slots, pointers into live boxed slices.
                h.msg_hdr.msg_iov = unsafe { iovs.as_mut_ptr().add(i) };
                h.msg_hdr.msg_iovlen = 1;
                if let Some(a) = addrs.as_mut() {
                    h.msg_hdr.msg_name = unsafe { a.as_mut_ptr().add(i) } as *mut libc::c_void;
                    h.msg_hdr.msg_namelen =
                        std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                }
                h
            })
            .collect();
        Batch {
            bufs,
            slot,
            iovs,
            hdrs,
            addrs,
        }
    }

    pub fn slots(&self) -> usize {
        self.hdrs.len()
    }

    /// The whole buffer of slot `i`, for filling before a send.
    #[inline]
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.slot..(i + 1) * self.slot]
    }

    /// Set the length of the datagram in slot `i` to send.
    #[inline]
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.iovs[i].iov_len = len.min(self.slot);
    }

    /// Received (or prepared) datagram `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(self.slot);
        &self.bufs[i * self.slot..i * self.slot + len]
    }

    /// Send slots `0..n` on `fd` (connected, or to the stored addresses). Retries
    /// partial sends; returns how many went out before an error, or the error if none did.
    pub fn send(&mut self, fd: RawFd, n: usize) -> io::Result<usize> {
        let n = n.min(self.slots());
        let mut done = 0;
        while done < n {
            // SAFETY: hdrs[done..n] are initialised and point into our live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            done += r as usize;
        }
        Ok(done)
    }

    /// Receive up to `slots` datagrams from `fd` with `flags` (e.g. MSG_DONTWAIT).
    /// Returns 0 on EAGAIN/timeout.
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        let n = self.slots();
        for i in 0..n {
            self.iovs[i].iov_len = self.slot;
            if self.addrs.is_some() {
                self.hdrs[i].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            self.hdrs[i].msg_len = 0;
        }
        loop {
            // SAFETY: headers point into our live buffers; timeout pointer may be null.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// After a receive into an address-carrying batch: make slots `0..n` ready to be
    /// sent back to where they came from, with their received lengths.
    pub fn echo_prepare(&mut self, n: usize) {
        for i in 0..n.min(self.slots()) {
            self.iovs[i].iov_len = (self.hdrs[i].msg_len as usize).min(self.slot);
        }
    }
}

/// Level-triggered epoll over a set of sockets, reporting the index they were added with.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(max_events: usize) -> Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("epoll_create1");
        }
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    pub fn add(&mut self, sock: &impl AsRawFd, token: u64) -> Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd and event pointer.
        let r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error()).context("epoll_ctl");
        }
        Ok(())
    }

    /// Wait up to `timeout_ms`; returns the ready tokens (borrowing internal storage).
    pub fn wait(&mut self, timeout_ms: i32) -> impl Iterator<Item = u64> + '_ {
        // SAFETY: events buffer is valid for its length.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        let n = n.max(0) as usize;
        self.events[..n].iter().map(|e| e.u64)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Three decimals, for the RESULT figures.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_echo_roundtrip() {
        let a = bound_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = connected_udp(a.local_addr().unwrap()).unwrap();
        let mut out = Batch::new(4, 64, false);
        for i in 0..3 {
            out.slot_mut(i)[..3].copy_from_slice(&[i as u8; 3]);
            out.set_len(i, 3);
        }
        assert_eq!(out.send(b.as_raw_fd(), 3).unwrap(), 3);
        let mut inb = Batch::new(8, 64, true);
        let mut got = 0;
        let deadline = now_ns() + 1_000_000_000;
        while got < 3 && now_ns() < deadline {
            let n = inb.recv(a.as_raw_fd(), libc::MSG_DONTWAIT).unwrap();
            if n > 0 {
                inb.echo_prepare(n);
                assert_eq!(inb.send(a.as_raw_fd(), n).unwrap(), n);
            }
            got += n;
        }
        assert_eq!(got, 3);
        let mut back = Batch::new(8, 64, false);
        let mut seen = 0;
        while seen < 3 && now_ns() < deadline {
            let n = back.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap();
            for i in 0..n {
                assert_eq!(back.get(i).len(), 3);
            }
            seen += n;
        }
        assert_eq!(seen, 3);
    }
}

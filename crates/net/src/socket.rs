//! Listening sockets for the workers: one SO_REUSEPORT group per address, one socket
//! per worker, so the kernel spreads clients over workers by 5-tuple.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// A non-blocking UDP socket bound to `addr` (IPv6 only for v6 addresses), with 4 MB
/// kernel buffers where the system allows.
pub fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s)
}

/// A non-blocking TCP socket bound to `addr`; listening when part of a group.
pub fn tcp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    if reuse_port {
        s.listen(1024)?;
    }
    Ok(s)
}

/// Bind `count` sockets to `addr` in one SO_REUSEPORT group. An exclusive probe bind
/// comes first: SO_REUSEPORT would otherwise let us join another process's group on
/// the same port (say, a coturn left running) and silently share its traffic. Port 0
/// is resolved by the probe. Returns the address bound and the sockets.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    make: fn(SocketAddr, bool) -> io::Result<Socket>,
) -> io::Result<(SocketAddr, Vec<Socket>)> {
    let probe = make(addr, false)?;
    let bound = probe.local_addr()?.as_socket().unwrap_or(addr);
    drop(probe);
    let mut all = Vec::with_capacity(count);
    for _ in 0..count {
        all.push(make(bound, true)?);
    }
    Ok((bound, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_shares_one_port_and_refuses_a_port_held_exclusively() {
        let (bound, socks) = bind_group("127.0.0.1:0".parse().unwrap(), 3, udp_socket).unwrap();
        assert_ne!(bound.port(), 0);
        assert_eq!(socks.len(), 3);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap().as_socket(), Some(bound));
        }
        let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap();
        assert!(bind_group(taken, 2, udp_socket).is_err());
    }
}

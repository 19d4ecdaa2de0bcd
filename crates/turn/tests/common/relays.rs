//! A fake `RelayPorts` that hands out addresses from a range and records opens and closes.

use super::ip;
use std::net::{IpAddr, SocketAddr};
use switchboard_turn::{AllocId, FiveTuple, RelayOpenError, RelayPorts};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    NoFamily,
    Exhausted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub alloc: AllocId,
    pub addr: SocketAddr,
    pub v6: bool,
    pub even_port: bool,
}

/// Hands out `v4_ip:50000..` / `v6_ip:50000..` and records what was opened and closed.
pub struct FakeRelays {
    pub v4_ip: IpAddr,
    pub v6_ip: IpAddr,
    pub next_port: u16,
    pub opened: Vec<Opened>,
    pub closed: Vec<(AllocId, SocketAddr)>,
    pub fail_v4: Option<Fail>,
    pub fail_v6: Option<Fail>,
    /// Reserved ports by token (EVEN-PORT with R), with their expiry.
    pub reserved: Vec<([u8; 8], SocketAddr, std::time::Instant)>,
    /// RFC 6062: TCP relay listeners opened, outgoing connections started
    /// (alloc, conn id, relay, peer), data connections bound and connections closed.
    pub tcp_opened: Vec<(AllocId, SocketAddr)>,
    pub tcp_connects: Vec<(AllocId, u32, SocketAddr, SocketAddr)>,
    pub tcp_binds: Vec<(u32, FiveTuple)>,
    pub tcp_closed: Vec<u32>,
    /// Make `tcp_connect` fail at once (no socket could be opened).
    pub tcp_connect_fails: bool,
}

impl Default for FakeRelays {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRelays {
    pub fn new() -> Self {
        FakeRelays {
            v4_ip: ip("198.51.100.1"),
            v6_ip: ip("2001:db8::100"),
            next_port: 50000,
            opened: Vec::new(),
            closed: Vec::new(),
            fail_v4: None,
            fail_v6: None,
            reserved: Vec::new(),
            tcp_opened: Vec::new(),
            tcp_connects: Vec::new(),
            tcp_binds: Vec::new(),
            tcp_closed: Vec::new(),
            tcp_connect_fails: false,
        }
    }

    /// Relays on the loopback addresses, for tests of the server's own relay addresses.
    pub fn loopback() -> Self {
        FakeRelays {
            v4_ip: ip("127.0.0.1"),
            v6_ip: ip("::1"),
            ..Self::new()
        }
    }

    pub fn is_open(&self, addr: SocketAddr) -> bool {
        self.opened.iter().any(|o| o.addr == addr) && !self.closed.iter().any(|c| c.1 == addr)
    }

    pub fn open_count(&self) -> usize {
        self.opened.len() - self.closed.len()
    }
}

impl RelayPorts for FakeRelays {
    fn open(
        &mut self,
        alloc: AllocId,
        v6: bool,
        even_port: bool,
    ) -> Result<SocketAddr, RelayOpenError> {
        if let Some(f) = if v6 { self.fail_v6 } else { self.fail_v4 } {
            return Err(match f {
                Fail::NoFamily => RelayOpenError::NoFamily,
                Fail::Exhausted => RelayOpenError::Exhausted,
            });
        }
        let mut port = self.next_port;
        if even_port && port % 2 == 1 {
            port += 1;
        }
        self.next_port = port + 1;
        let addr = SocketAddr::new(if v6 { self.v6_ip } else { self.v4_ip }, port);
        self.opened.push(Opened {
            alloc,
            addr,
            v6,
            even_port,
        });
        Ok(addr)
    }

    fn close(&mut self, alloc: AllocId, relay: SocketAddr) {
        self.closed.push((alloc, relay));
    }

    fn open_tcp(&mut self, alloc: AllocId, v6: bool) -> Result<SocketAddr, RelayOpenError> {
        let addr = self.open(alloc, v6, false)?;
        self.tcp_opened.push((alloc, addr));
        Ok(addr)
    }

    fn tcp_connect(
        &mut self,
        alloc: AllocId,
        conn_id: u32,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> Result<(), RelayOpenError> {
        if self.tcp_connect_fails {
            return Err(RelayOpenError::Exhausted);
        }
        self.tcp_connects.push((alloc, conn_id, relay, peer));
        Ok(())
    }

    fn tcp_bind(&mut self, conn_id: u32, data: FiveTuple) -> bool {
        if self.tcp_closed.contains(&conn_id) {
            return false;
        }
        self.tcp_binds.push((conn_id, data));
        true
    }

    fn tcp_close(&mut self, conn_id: u32) {
        self.tcp_closed.push(conn_id);
    }

    fn open_reserving(
        &mut self,
        alloc: AllocId,
        v6: bool,
        now: std::time::Instant,
    ) -> Result<(SocketAddr, [u8; 8]), RelayOpenError> {
        let even = self.open(alloc, v6, true)?;
        let next = SocketAddr::new(even.ip(), even.port() + 1);
        self.next_port = even.port() + 2;
        let token = [
            0x5b,
            0x0a,
            0,
            0,
            0,
            0,
            (next.port() >> 8) as u8,
            next.port() as u8,
        ];
        self.reserved.push((
            token,
            next,
            now + switchboard_turn::server::RESERVATION_LIFETIME,
        ));
        Ok((even, token))
    }

    fn claim(
        &mut self,
        alloc: AllocId,
        token: &[u8],
        now: std::time::Instant,
    ) -> Option<SocketAddr> {
        let i = self
            .reserved
            .iter()
            .position(|(t, _, exp)| t == token && *exp > now)?;
        let (_, addr, _) = self.reserved.remove(i);
        self.opened.push(Opened {
            alloc,
            addr,
            v6: addr.is_ipv6(),
            even_port: false,
        });
        Some(addr)
    }
}

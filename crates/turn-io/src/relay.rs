//! Relay sockets of one worker: the [`RelayPorts`] the core opens and closes.

use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use switchboard_turn::{AllocId, RelayOpenError, RelayPorts};

/// First mio token of relay sockets; below it are listeners and connections.
pub const RELAY_TOKEN_BASE: usize = 1 << 32;

/// A relay address: what the socket binds to and what clients are told (they differ
/// behind a 1:1 NAT, `--external-ip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayIp {
    pub bind: IpAddr,
    pub public: IpAddr,
}

pub struct RelaySocket {
    pub sock: mio::net::UdpSocket,
    pub alloc: AllocId,
}

pub struct Relays {
    pub sockets: Vec<Option<RelaySocket>>,
    free: Vec<usize>,
    by_public: HashMap<SocketAddr, usize, ahash::RandomState>,
    registry: Registry,
    v4: Option<RelayIp>,
    v6: Option<RelayIp>,
    min_port: u16,
    max_port: u16,
    rcvbuf: usize,
    /// Closed relay sockets kept open until queued datagrams are flushed, so a queued
    /// send never reaches a descriptor number reused by a newer socket.
    closed: Vec<mio::net::UdpSocket>,
}

impl Relays {
    pub fn new(
        registry: Registry,
        v4: Option<RelayIp>,
        v6: Option<RelayIp>,
        min_port: u16,
        max_port: u16,
    ) -> Self {
        Relays {
            sockets: Vec::new(),
            free: Vec::new(),
            by_public: HashMap::default(),
            registry,
            v4,
            v6,
            min_port,
            max_port,
            rcvbuf: 256 * 1024,
            closed: Vec::new(),
        }
    }

    /// The socket fd for relay address `public`.
    #[inline]
    pub fn fd_of(&self, public: &SocketAddr) -> Option<RawFd> {
        let i = *self.by_public.get(public)?;
        self.sockets[i].as_ref().map(|r| r.sock.as_raw_fd())
    }

    /// Really close the sockets closed since the last call (after a flush).
    pub fn reap(&mut self) {
        self.closed.clear();
    }

    pub fn get(&self, token: Token) -> Option<&RelaySocket> {
        self.sockets
            .get(token.0.checked_sub(RELAY_TOKEN_BASE)?)
            .and_then(Option::as_ref)
    }

    fn bind(&self, ip: IpAddr, port: u16) -> std::io::Result<Socket> {
        let domain = if ip.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if ip.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)?;
        let _ = s.set_recv_buffer_size(self.rcvbuf);
        s.bind(&SocketAddr::new(ip, port).into())?;
        Ok(s)
    }
}

impl RelayPorts for Relays {
    fn open(
        &mut self,
        alloc: AllocId,
        v6: bool,
        even_port: bool,
    ) -> Result<SocketAddr, RelayOpenError> {
        let ip = if v6 { self.v6 } else { self.v4 }.ok_or(RelayOpenError::NoFamily)?;
        let span = (self.max_port - self.min_port) as u32 + 1;
        let mut last_err = None;
        for _ in 0..64 {
            let mut port = self.min_port as u32 + rand::random::<u32>() % span;
            if even_port {
                port &= !1;
                if port < self.min_port as u32 {
                    port += 2;
                }
            }
            let port = port as u16;
            match self.bind(ip.bind, port) {
                Ok(s) => {
                    let idx = match self.free.pop() {
                        Some(i) => i,
                        None => {
                            self.sockets.push(None);
                            self.sockets.len() - 1
                        }
                    };
                    let mut sock = mio::net::UdpSocket::from_std(s.into());
                    if let Err(e) = self.registry.register(
                        &mut sock,
                        Token(RELAY_TOKEN_BASE + idx),
                        Interest::READABLE,
                    ) {
                        self.free.push(idx);
                        return Err(RelayOpenError::Io(e.to_string()));
                    }
                    let public = SocketAddr::new(ip.public, port);
                    self.by_public.insert(public, idx);
                    self.sockets[idx] = Some(RelaySocket { sock, alloc });
                    return Ok(public);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(RelayOpenError::Io(e.to_string())),
            }
        }
        tracing::warn!(error = ?last_err, "relay port range exhausted");
        Err(RelayOpenError::Exhausted)
    }

    fn close(&mut self, _alloc: AllocId, relay: SocketAddr) {
        if let Some(i) = self.by_public.remove(&relay) {
            if let Some(mut r) = self.sockets[i].take() {
                let _ = self.registry.deregister(&mut r.sock);
                self.closed.push(r.sock);
            }
            self.free.push(i);
        }
    }
}

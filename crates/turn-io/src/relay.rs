//! Relay sockets of one worker: the [`RelayPorts`] the core opens and closes.

use crate::relay_ip::RelayIp;
use crate::tcp_relay::TcpRelays;
use mio::{Interest, Registry};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use switchboard_net::{Kind, ServiceId, Tok};
use switchboard_turn::server::RESERVATION_LIFETIME;
use switchboard_turn::{AllocId, FiveTuple, RelayOpenError, RelayPorts};

/// A port held for a RESERVATION-TOKEN: bound, not registered with any worker until
/// an Allocate claims it (on whichever worker the kernel hands that client to).
pub struct Reserved {
    token: [u8; 8],
    sock: Socket,
    public: SocketAddr,
    expires: Instant,
}

/// Reservations shared by all workers.
pub type ReservationPool = Arc<Mutex<Vec<Reserved>>>;

pub struct RelaySocket {
    pub sock: mio::net::UdpSocket,
    pub alloc: AllocId,
}

impl RelaySocket {
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

pub struct Relays {
    pub sockets: Vec<Option<RelaySocket>>,
    free: Vec<usize>,
    by_public: HashMap<SocketAddr, usize, ahash::RandomState>,
    /// The worker's registry, for every socket of the TURN service.
    pub(crate) registry: Registry,
    /// The TURN service's id on its worker (its tokens carry it).
    service: ServiceId,
    v4: Option<RelayIp>,
    v6: Option<RelayIp>,
    min_port: u16,
    max_port: u16,
    rcvbuf: usize,
    /// Closed relay sockets kept open until queued datagrams are flushed, so a queued
    /// send never reaches a descriptor number reused by a newer socket.
    closed: Vec<mio::net::UdpSocket>,
    reserved: ReservationPool,
    /// RFC 6062 listeners and peer connections.
    pub tcp: TcpRelays,
}

impl Relays {
    pub fn new(
        registry: Registry,
        service: ServiceId,
        v4: Option<RelayIp>,
        v6: Option<RelayIp>,
        min_port: u16,
        max_port: u16,
        reserved: ReservationPool,
    ) -> Self {
        Relays {
            sockets: Vec::new(),
            free: Vec::new(),
            by_public: HashMap::default(),
            registry,
            service,
            v4,
            v6,
            min_port,
            max_port,
            rcvbuf: 256 * 1024,
            closed: Vec::new(),
            reserved,
            tcp: TcpRelays::new(service),
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

    /// Let lapsed reservations go.
    pub fn expire_reservations(&mut self, now: Instant) {
        if let Ok(mut pool) = self.reserved.lock() {
            pool.retain(|r| r.expires > now);
        }
    }

    pub fn get(&self, index: usize) -> Option<&RelaySocket> {
        self.sockets.get(index).and_then(Option::as_ref)
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

impl Relays {
    /// Register a bound socket for `alloc` and index it by its public address.
    fn insert(
        &mut self,
        s: Socket,
        alloc: AllocId,
        public: SocketAddr,
    ) -> Result<SocketAddr, RelayOpenError> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.sockets.push(None);
                self.sockets.len() - 1
            }
        };
        let mut sock = mio::net::UdpSocket::from_std(s.into());
        let token = Tok::new(self.service, Kind::Relay, idx).encode();
        if let Err(e) = self.registry.register(&mut sock, token, Interest::READABLE) {
            self.free.push(idx);
            return Err(RelayOpenError::Socket(e));
        }
        self.by_public.insert(public, idx);
        self.sockets[idx] = Some(RelaySocket { sock, alloc });
        Ok(public)
    }

    fn relay_ip(&self, v6: bool) -> Result<RelayIp, RelayOpenError> {
        if v6 { self.v6 } else { self.v4 }.ok_or(RelayOpenError::NoFamily)
    }
}

impl RelayPorts for Relays {
    fn open_reserving(
        &mut self,
        alloc: AllocId,
        v6: bool,
        now: Instant,
    ) -> Result<(SocketAddr, [u8; 8]), RelayOpenError> {
        let ip = self.relay_ip(v6)?;
        let first_even = (self.min_port as u32 + 1) & !1;
        if first_even + 1 > self.max_port as u32 {
            return Err(RelayOpenError::Exhausted);
        }
        let pairs = (self.max_port as u32 - first_even - 1) / 2 + 1;
        for _ in 0..64 {
            let even = (first_even + 2 * (rand::random::<u32>() % pairs)) as u16;
            let Ok(a) = self.bind(ip.bind, even) else {
                continue;
            };
            let Ok(b) = self.bind(ip.bind, even + 1) else {
                continue;
            };
            let first = self.insert(a, alloc, SocketAddr::new(ip.public, even))?;
            let token: [u8; 8] = rand::random();
            if let Ok(mut pool) = self.reserved.lock() {
                pool.retain(|r| r.expires > now);
                pool.push(Reserved {
                    token,
                    sock: b,
                    public: SocketAddr::new(ip.public, even + 1),
                    expires: now + RESERVATION_LIFETIME,
                });
            }
            return Ok((first, token));
        }
        Err(RelayOpenError::Exhausted)
    }

    fn claim(&mut self, alloc: AllocId, token: &[u8], now: Instant) -> Option<SocketAddr> {
        let r = {
            let mut pool = self.reserved.lock().ok()?;
            pool.retain(|r| r.expires > now);
            let i = pool.iter().position(|r| r.token == token)?;
            pool.swap_remove(i)
        };
        self.insert(r.sock, alloc, r.public).ok()
    }

    fn open(
        &mut self,
        alloc: AllocId,
        v6: bool,
        even_port: bool,
    ) -> Result<SocketAddr, RelayOpenError> {
        let ip = self.relay_ip(v6)?;
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
                Ok(s) => return self.insert(s, alloc, SocketAddr::new(ip.public, port)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(RelayOpenError::Socket(e)),
            }
        }
        tracing::warn!(error = ?last_err, "relay port range exhausted");
        Err(RelayOpenError::Exhausted)
    }

    fn close(&mut self, alloc: AllocId, relay: SocketAddr) {
        // A TCP relay may share its address with another allocation's UDP relay.
        let udp = self.by_public.get(&relay).copied();
        if let Some(i) = udp.filter(|&i| self.sockets[i].as_ref().is_some_and(|r| r.alloc == alloc))
        {
            self.by_public.remove(&relay);
            switchboard_util::shrink_sparse(&mut self.by_public);
            if let Some(mut r) = self.sockets[i].take() {
                let _ = self.registry.deregister(&mut r.sock);
                self.closed.push(r.sock);
            }
            self.free.push(i);
        } else {
            self.tcp.close_listener(&self.registry, alloc, relay);
        }
    }

    fn open_tcp(&mut self, alloc: AllocId, v6: bool) -> Result<SocketAddr, RelayOpenError> {
        let ip = self.relay_ip(v6)?;
        let range = (self.min_port, self.max_port);
        self.tcp.open_listener(&self.registry, alloc, ip, range)
    }

    fn tcp_connect(
        &mut self,
        alloc: AllocId,
        conn_id: u32,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> Result<(), RelayOpenError> {
        self.tcp
            .connect(&self.registry, alloc, conn_id, relay, peer)
    }

    fn tcp_bind(&mut self, conn_id: u32, data: FiveTuple) -> bool {
        self.tcp.bind(conn_id, data)
    }

    fn tcp_close(&mut self, conn_id: u32) {
        self.tcp.close(&self.registry, conn_id);
    }
}

//! RFC 6062 sockets of one worker: TCP relay listeners and peer connections
//! (outgoing from the relayed address, or accepted on it).
//!
//! A relay listener is bound exclusively first (so no other socket holds its port),
//! then gets SO_REUSEPORT so the outgoing connections of the same allocation can bind
//! to the same relayed address. A ConnectionBind arrives on a new client connection,
//! which the kernel may give to any worker; the connection id tells the owner
//! ([`switchboard_turn::connection_owner`]) and the connection moves there through
//! [`crate::handoff::Handoffs`].

use crate::relay_ip::RelayIp;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_net::{Kind, ServiceId, Tok};
use switchboard_turn::{AllocId, FiveTuple, RelayOpenError};
/// Bytes buffered towards one side of a pipe before the other side is no longer read.
pub const PIPE_LIMIT: usize = 256 * 1024;
/// How long a half-closed pipe may take to deliver what is buffered.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(10);
/// Reads per readiness event on one pipe before yielding to other sockets.
pub const PIPE_ROUNDS: usize = 16;

struct Listener {
    sock: TcpListener,
    alloc: AllocId,
    public: SocketAddr,
    bind: SocketAddr,
}

/// One peer connection.
pub struct Peer {
    pub stream: TcpStream,
    pub conn_id: u32,
    /// Outgoing connection still in progress.
    pub connecting: bool,
    /// The client data connection (worker connection index) once bound.
    pub data: Option<usize>,
    /// Bytes from the client not yet accepted by the peer.
    pub wbuf: Vec<u8>,
    /// The data connection is not read until `wbuf` drains.
    pub client_paused: bool,
    /// The peer is not read: unbound, or the data connection's output is over the limit.
    pub peer_paused: bool,
    /// Over the allocation's `max_bps`: neither side is read until the next tick.
    pub throttled: bool,
    /// The data connection is gone: deliver `wbuf`, then close (by this deadline).
    pub closing: Option<Instant>,
}

impl Peer {
    /// Write as much of `wbuf` as the socket takes. Err when the peer is gone.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queue `data` for the peer, writing directly when nothing is queued.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut sent = 0;
        while self.wbuf.is_empty() && sent < data.len() {
            match self.stream.write(&data[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.extend_from_slice(&data[sent..]);
        Ok(())
    }

    /// Outcome of an outgoing connection: Some(true) connected, Some(false) failed,
    /// None still in progress.
    pub fn connect_status(&self) -> Option<bool> {
        match self.stream.take_error() {
            Ok(Some(_)) | Err(_) => return Some(false),
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => Some(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(_) => Some(false),
        }
    }
}

pub struct TcpRelays {
    /// The TURN service's id on its worker (its tokens carry it).
    service: ServiceId,
    listeners: Vec<Option<Listener>>,
    free_listeners: Vec<usize>,
    pub peers: Vec<Option<Peer>>,
    free_peers: Vec<usize>,
    pub by_id: HashMap<u32, usize, ahash::RandomState>,
    /// Data connections to close now (worker connection index, connection id): their
    /// allocation or peer connection was closed by the core.
    pub kill: Vec<(usize, u32)>,
    /// ConnectionBinds the core accepted, for the worker to link: (connection id, data connection).
    pub binds: Vec<(u32, FiveTuple)>,
    /// Data connections flushing after their peer left: (index, connection id, deadline).
    pub lingering: Vec<(usize, u32, Instant)>,
    /// Peer reads land here.
    pub scratch: Vec<u8>,
    pub last_tick: Option<Instant>,
}

fn stream_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl TcpRelays {
    pub fn new(service: ServiceId) -> Self {
        TcpRelays {
            service,
            listeners: Vec::new(),
            free_listeners: Vec::new(),
            peers: Vec::new(),
            free_peers: Vec::new(),
            by_id: HashMap::default(),
            kill: Vec::new(),
            binds: Vec::new(),
            lingering: Vec::new(),
            scratch: Vec::new(),
            last_tick: None,
        }
    }

    pub fn peer_count(&self) -> usize {
        self.by_id.len()
    }

    pub fn listener_alloc(&self, i: usize) -> Option<AllocId> {
        self.listeners.get(i)?.as_ref().map(|l| l.alloc)
    }

    pub fn accept(&self, i: usize) -> Option<io::Result<(TcpStream, SocketAddr)>> {
        Some(self.listeners.get(i)?.as_ref()?.sock.accept())
    }

    /// Open a TCP relay listener on `ip` with a random port in `min..=max`.
    pub fn open_listener(
        &mut self,
        registry: &Registry,
        alloc: AllocId,
        ip: RelayIp,
        (min, max): (u16, u16),
    ) -> Result<SocketAddr, RelayOpenError> {
        let span = (max.saturating_sub(min)) as u32 + 1;
        for _ in 0..64 {
            let port = (min as u32 + rand::random::<u32>() % span) as u16;
            let bind = SocketAddr::new(ip.bind, port);
            let s = stream_socket(bind).map_err(RelayOpenError::Socket)?;
            match s.bind(&bind.into()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(RelayOpenError::Socket(e)),
            }
            s.listen(128)
                .and_then(|()| s.set_reuse_port(true))
                .map_err(RelayOpenError::Socket)?;
            let idx = self.free_listeners.pop().unwrap_or_else(|| {
                self.listeners.push(None);
                self.listeners.len() - 1
            });
            let mut sock = TcpListener::from_std(s.into());
            let token = Tok::new(self.service, Kind::RelayListener, idx).encode();
            if let Err(e) = registry.register(&mut sock, token, Interest::READABLE) {
                self.free_listeners.push(idx);
                return Err(RelayOpenError::Socket(e));
            }
            let public = SocketAddr::new(ip.public, port);
            self.listeners[idx] = Some(Listener {
                sock,
                alloc,
                public,
                bind,
            });
            return Ok(public);
        }
        tracing::warn!("relay port range exhausted (TCP)");
        Err(RelayOpenError::Exhausted)
    }

    /// Close the listener `public` of `alloc`; false when it is not one.
    pub fn close_listener(
        &mut self,
        registry: &Registry,
        alloc: AllocId,
        public: SocketAddr,
    ) -> bool {
        let found = self.listeners.iter().position(|l| {
            l.as_ref()
                .is_some_and(|l| l.alloc == alloc && l.public == public)
        });
        let Some(i) = found else {
            return false;
        };
        if let Some(mut l) = self.listeners[i].take() {
            let _ = registry.deregister(&mut l.sock);
        }
        self.free_listeners.push(i);
        true
    }

    fn insert_peer(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        conn_id: u32,
        connecting: bool,
    ) -> io::Result<()> {
        let idx = self.free_peers.pop().unwrap_or_else(|| {
            self.peers.push(None);
            self.peers.len() - 1
        });
        if let Err(e) = registry.register(
            &mut stream,
            Tok::new(self.service, Kind::Peer, idx).encode(),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free_peers.push(idx);
            return Err(e);
        }
        let _ = stream.set_nodelay(true);
        self.peers[idx] = Some(Peer {
            stream,
            conn_id,
            connecting,
            data: None,
            wbuf: Vec::new(),
            client_paused: false,
            peer_paused: true,
            throttled: false,
            closing: None,
        });
        self.by_id.insert(conn_id, idx);
        Ok(())
    }

    /// A peer connection accepted on a relay listener, unbound.
    pub fn add_accepted(
        &mut self,
        registry: &Registry,
        stream: TcpStream,
        conn_id: u32,
    ) -> io::Result<()> {
        self.insert_peer(registry, stream, conn_id, false)
    }

    /// Start connecting from relayed address `relay` of `alloc` to `peer`.
    pub fn connect(
        &mut self,
        registry: &Registry,
        alloc: AllocId,
        conn_id: u32,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> Result<(), RelayOpenError> {
        let io_err = RelayOpenError::Socket;
        let bind = self
            .listeners
            .iter()
            .flatten()
            .find(|l| l.alloc == alloc && l.public == relay)
            .map(|l| l.bind)
            .ok_or(RelayOpenError::NoFamily)?;
        let s = stream_socket(bind).map_err(io_err)?;
        s.set_reuse_port(true).map_err(io_err)?;
        s.bind(&bind.into()).map_err(io_err)?;
        match s.connect(&peer.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_err(e)),
        }
        let stream = TcpStream::from_std(s.into());
        self.insert_peer(registry, stream, conn_id, true)
            .map_err(io_err)
    }

    /// The core accepted a ConnectionBind for `conn_id`.
    pub fn bind(&mut self, conn_id: u32, data: FiveTuple) -> bool {
        let ok = self
            .by_id
            .get(&conn_id)
            .and_then(|&i| self.peers.get(i)?.as_ref())
            .is_some_and(|p| !p.connecting && p.data.is_none() && p.closing.is_none());
        if ok {
            self.binds.push((conn_id, data));
        }
        ok
    }

    pub fn peer_index(&self, conn_id: u32) -> Option<usize> {
        self.by_id.get(&conn_id).copied()
    }

    pub fn peer_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.peers.get_mut(i).and_then(Option::as_mut)
    }

    /// Close peer connection `conn_id` now; its data connection (if any) is queued in
    /// `kill`. Returns whether it existed.
    pub fn close(&mut self, registry: &Registry, conn_id: u32) -> bool {
        let Some(i) = self.by_id.remove(&conn_id) else {
            return false;
        };
        if let Some(mut p) = self.peers.get_mut(i).and_then(Option::take) {
            let _ = registry.deregister(&mut p.stream);
            if let Some(ci) = p.data {
                self.kill.push((ci, conn_id));
            }
        }
        self.free_peers.push(i);
        true
    }
}

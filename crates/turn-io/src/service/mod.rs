//! TURN as a service on the network driver: one per worker, it owns a sans-IO core
//! [`Server`], the relay sockets of the allocations it holds, its TCP and TLS client
//! connections and its RFC 6062 pipes. The driver hands it the datagrams of the TURN
//! ports (all of them while TURN is a port's only service), the events of its own
//! sockets, and its timers; the kernel hashes each client 5-tuple to one worker, so
//! allocation state is never shared and the packet path takes no lock.

use crate::relay::Relays;
use crate::stream::{Conn, ReadState};
use crate::{Shared, WorkerStats};
use mio::net::TcpListener;
use mio::{Interest, Token};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_net::batch::{BATCH, OUT_SLOT};
use switchboard_net::worker::ROUNDS;
use switchboard_net::{Flow, Io, Kind, PortInfo, Received, Service, ServiceId, Tok, Tx};
use switchboard_turn::{FiveTuple, Server, Transmit, Transport};

mod tcp_pipe;

/// How often counters are published and reload/drain/shutdown flags looked at.
const CONTROL_INTERVAL: Duration = Duration::from_millis(250);

/// One worker's TURN service.
pub struct TurnService {
    id: usize,
    /// This service's id on its worker (in its mio tokens).
    service: ServiceId,
    /// The worker's UDP ports: (local address, socket), for answers.
    udp_fds: Vec<(SocketAddr, RawFd)>,
    tcp: Vec<(TcpListener, SocketAddr, bool)>,
    conns: Vec<Option<Conn>>,
    conn_free: Vec<usize>,
    conn_by_tuple: HashMap<FiveTuple, usize, ahash::RandomState>,
    dirty_conns: Vec<usize>,
    /// Output counters of connections this worker closed (dropped, deferred, overflows).
    closed_stream: [u64; 3],
    relays: Relays,
    core: Server,
    shared: Arc<Shared>,
    /// Response scratch for stream clients (datagram answers use the batch's slots).
    out: Box<[u8]>,
    stream_out: Vec<u8>,
    /// Sources to handle again in the next pass (handed to the driver after each call).
    pending: Vec<Token>,
    config_generation: u64,
    next_control: Instant,
    /// Datagrams the kernel refused, as of the last control tick.
    send_errors: u64,
}

fn token(service: ServiceId, kind: Kind, index: usize) -> Token {
    Tok::new(service, kind, index).encode()
}

fn fd_for(list: &[(SocketAddr, RawFd)], local: &SocketAddr) -> Option<RawFd> {
    list.iter().find(|(a, _)| a == local).map(|(_, fd)| *fd)
}

impl TurnService {
    /// `service` is the id the worker gives this service (the relays' tokens carry it).
    pub fn new(
        id: usize,
        service: ServiceId,
        tcp: Vec<(TcpListener, SocketAddr, bool)>,
        relays: Relays,
        core: Server,
        shared: Arc<Shared>,
    ) -> Self {
        let config_generation = shared.generation.load(Ordering::Acquire);
        TurnService {
            id,
            service,
            udp_fds: Vec::new(),
            tcp,
            conns: Vec::new(),
            conn_free: Vec::new(),
            conn_by_tuple: HashMap::default(),
            dirty_conns: Vec::new(),
            closed_stream: [0; 3],
            relays,
            core,
            shared,
            out: vec![0u8; OUT_SLOT].into_boxed_slice(),
            stream_out: Vec::with_capacity(4096),
            pending: Vec::new(),
            config_generation,
            next_control: Instant::now(),
            send_errors: 0,
        }
    }

    fn hand_pending(&mut self, io: &mut Io) {
        for t in self.pending.drain(..) {
            io.again(t);
        }
    }
}

impl Service for TurnService {
    fn attach(&mut self, io: &mut Io) -> io::Result<()> {
        self.udp_fds = io.ports().iter().map(|p| (p.local, p.fd)).collect();
        for (i, (l, _, _)) in self.tcp.iter_mut().enumerate() {
            let token = token(self.service, Kind::Listener, i);
            io.registry().register(l, token, Interest::READABLE)?;
        }
        let waker = token(self.service, Kind::Waker, 0);
        self.shared.handoffs.install(self.id, io.registry(), waker)
    }

    fn on_datagram(&mut self, port: &PortInfo, d: Received<'_>, tx: &mut Tx<'_>, now: Instant) {
        self.client_datagram(port, d, tx, now);
    }

    fn on_event(&mut self, io: &mut Io, tok: Tok, readable: bool, writable: bool, now: Instant) {
        let token = tok.encode();
        let more = match tok.kind {
            Kind::Relay => readable && self.relay_readable(io, tok.index, now),
            Kind::Conn => {
                self.conn_event(io, tok.index, readable, writable, now);
                false
            }
            Kind::Listener => {
                self.accept(tok.index);
                false
            }
            Kind::Waker => {
                self.take_handoffs();
                false
            }
            Kind::RelayListener => {
                self.relay_accept(tok.index, now);
                false
            }
            Kind::Peer => {
                self.peer_event(tok.index, readable, writable, now);
                false
            }
            Kind::Port => false,
        };
        if more {
            self.pending.push(token);
        }
        self.hand_pending(io);
    }

    fn after_flush(&mut self, io: &mut Io, now: Instant) {
        // Sockets closed before the flush may have had datagrams queued.
        self.relays.reap();
        self.flush_dirty_conns();
        self.tcp_pass(now);
        self.hand_pending(io);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.core.poll_timeout() {
            Some(sweep) => Some(sweep.min(self.next_control)),
            None => Some(self.next_control),
        }
    }

    fn handle_timeout(&mut self, io: &mut Io, now: Instant) -> Flow {
        if self.core.poll_timeout().is_some_and(|d| d <= now) {
            self.core.handle_timeout(now, &mut self.relays);
            // 447s owed to timed-out Connects, pipes of expired allocations: now.
            self.tcp_pass(now);
        }
        if now >= self.next_control {
            self.next_control = now + CONTROL_INTERVAL;
            self.send_errors = io.batch.send_errors;
            self.relays.expire_reservations(now);
            self.publish();
            if self.control() {
                self.core.close_all(&mut self.relays);
                self.publish();
                return Flow::Stop;
            }
        }
        self.hand_pending(io);
        Flow::Continue
    }
}

impl TurnService {
    /// Apply reloads and drain/shutdown flags. True when the worker should stop.
    fn control(&mut self) -> bool {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.config_generation {
            self.config_generation = generation;
            if let Ok(cfg) = self.shared.core_config.read() {
                self.core.set_config(cfg.clone());
            }
        }
        self.core
            .set_draining(self.shared.draining.load(Ordering::Relaxed));
        self.shared.shutdown.load(Ordering::Relaxed)
    }

    fn publish(&mut self) {
        if let Ok(mut s) = self.shared.stats[self.id].lock() {
            *s = WorkerStats {
                core: self.core.stats,
                send_errors: self.send_errors,
                connections: self.conn_by_tuple.len() as u64,
                stream_dropped: self.closed_stream[0]
                    + self
                        .conns
                        .iter()
                        .flatten()
                        .map(|c| c.dropped_out)
                        .sum::<u64>(),
                stream_tls_deferred: self.closed_stream[1]
                    + self
                        .conns
                        .iter()
                        .flatten()
                        .map(|c| c.tls_deferred)
                        .sum::<u64>(),
                stream_overflows: self.closed_stream[2]
                    + self.conns.iter().flatten().filter(|c| c.overflowed).count() as u64,
                tcp_connections: self.relays.tcp.peer_count() as u64,
            };
        }
    }

    /// A datagram from a client on a TURN port.
    fn client_datagram(&mut self, port: &PortInfo, d: Received<'_>, tx: &mut Tx<'_>, now: Instant) {
        let Some(client) = d.from else {
            return;
        };
        let (h, len) = (d.headroom(), d.len);
        let Received { buf, out, .. } = d;
        let buf: &[u8] = buf;
        let tuple = FiveTuple {
            transport: Transport::Udp,
            client,
            server: port.local,
        };
        let data = &buf[h..h + len];
        match self
            .core
            .handle_client(now, tuple, data, out, &mut self.relays)
        {
            Transmit::Client { to, from, data } => {
                if let Some(fd) = fd_for(&self.udp_fds, &from) {
                    tx.send(fd, to.client, data);
                }
            }
            Transmit::Peer {
                relay, peer, data, ..
            } => {
                if let Some(fd) = self.relays.fd_of(&relay) {
                    tx.send(fd, peer, data);
                }
            }
            Transmit::None => {}
        }
    }

    /// Datagrams from peers on relay socket `index`. True when it may hold more.
    fn relay_readable(&mut self, io: &mut Io, index: usize, now: Instant) -> bool {
        let Some(r) = self.relays.get(index) else {
            return false;
        };
        let (fd, alloc) = (r.fd(), r.alloc);
        for _ in 0..ROUNDS {
            let slots = match io.batch.recv(fd) {
                Ok(slots) => slots,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors surface here as ECONNREFUSED etc.: never fatal.
                    tracing::trace!(error = %e, "recvmmsg on relay");
                    return true;
                }
            };
            let n = slots.len();
            for i in slots {
                let (d, mut tx) = io.batch.slot(i);
                let (Some(from), len) = (d.from, d.len) else {
                    continue;
                };
                if len == 0 {
                    continue;
                }
                if let Transmit::Client { to, from, data } =
                    self.core.handle_peer(now, alloc, from, d.buf, len)
                {
                    if to.transport == Transport::Udp {
                        if let Some(fd) = fd_for(&self.udp_fds, &from) {
                            tx.send(fd, to.client, data);
                        }
                    } else if let Some(&ci) = self.conn_by_tuple.get(&to) {
                        if let Some(c) = self.conns[ci].as_mut() {
                            c.queue(data, true);
                            self.dirty_conns.push(ci);
                        }
                    }
                }
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    fn accept(&mut self, li: usize) {
        loop {
            let Some((listener, local, tls)) = self.tcp.get(li) else {
                return;
            };
            let (tls, local) = (*tls, *local);
            let (mut stream, client) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = match local.ip().is_unspecified() {
                true => stream.local_addr().unwrap_or(local),
                false => local,
            };
            let session = if tls {
                let cfg = self.shared.tls.read().ok().and_then(|g| g.clone());
                let Some(cfg) = cfg else { continue };
                match rustls::ServerConnection::new(cfg) {
                    Ok(s) => Some(Box::new(s)),
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS session setup failed");
                        continue;
                    }
                }
            } else {
                None
            };
            let ci = self.conn_free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let token = token(self.service, Kind::Conn, ci);
            if self
                .relays
                .registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                self.conn_free.push(ci);
                continue;
            }
            let tuple = FiveTuple {
                transport: if tls { Transport::Tls } else { Transport::Tcp },
                client,
                server,
            };
            self.conn_by_tuple.insert(tuple, ci);
            self.conns[ci] = Some(Conn::new(stream, session, tuple));
        }
    }

    fn conn_event(&mut self, io: &mut Io, ci: usize, readable: bool, writable: bool, now: Instant) {
        let Some(mut conn) = self.conns.get_mut(ci).and_then(Option::take) else {
            return;
        };
        let mut alive = true;
        if conn.pipe.is_some() {
            alive = self.pipe_client_event(ci, &mut conn, readable, writable, now);
        } else {
            if readable {
                alive = self.conn_read(io, &mut conn, now);
            }
            if alive && (writable || readable) && conn.flush().is_err() {
                alive = false;
            }
        }
        if alive {
            self.conns[ci] = Some(conn);
        } else {
            self.close_conn(ci, conn);
        }
    }

    /// Read and handle frames. False when the connection must close.
    fn conn_read(&mut self, io: &mut Io, conn: &mut Conn, now: Instant) -> bool {
        loop {
            let state = match conn.read() {
                Ok(s) => s,
                Err(_) => return false,
            };
            self.stream_out.clear();
            loop {
                let (start, len) = match conn.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(_) => return false,
                };
                if self.tcp_handoff(conn, start, len) {
                    return false;
                }
                let frame = conn.frame(start, len);
                match self.core.handle_client(
                    now,
                    conn.tuple,
                    frame,
                    &mut self.out,
                    &mut self.relays,
                ) {
                    Transmit::Client { data, .. } => self.stream_out.extend_from_slice(data),
                    Transmit::Peer {
                        relay, peer, data, ..
                    } => {
                        if let Some(fd) = self.relays.fd_of(&relay) {
                            // Copied: the connection's buffer is read into again.
                            io.batch.tx().send(fd, peer, data);
                        }
                    }
                    Transmit::None => {}
                }
                if self.tcp_link(conn) {
                    break;
                }
            }
            if !self.stream_out.is_empty() {
                conn.queue(&self.stream_out, false);
            }
            if conn.pipe.is_some() {
                // ConnectionBind succeeded: what follows it is raw data for the peer.
                return self.client_to_peer(conn, now);
            }
            match state {
                ReadState::Open => return true,
                ReadState::Full => continue,
                ReadState::Closed => return false,
            }
        }
    }

    fn close_conn(&mut self, ci: usize, mut conn: Conn) {
        // A connection handed to another worker takes its counters along.
        if conn.handoff.is_none() {
            conn.close_notify();
            self.closed_stream[0] += conn.dropped_out;
            self.closed_stream[1] += conn.tls_deferred;
            self.closed_stream[2] += u64::from(conn.overflowed);
        }
        let _ = self.relays.registry.deregister(&mut conn.tcp);
        self.conn_by_tuple.remove(&conn.tuple);
        self.core.client_closed(&conn.tuple, &mut self.relays);
        self.conn_free.push(ci);
        self.tcp_conn_gone(conn);
    }

    fn flush_dirty_conns(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty_conns);
        dirty.sort_unstable();
        dirty.dedup();
        for ci in dirty.drain(..) {
            let failed = match self.conns[ci].as_mut() {
                Some(c) => c.flush().is_err(),
                None => false,
            };
            if failed {
                if let Some(c) = self.conns[ci].take() {
                    self.close_conn(ci, c);
                }
            }
        }
        self.dirty_conns = dirty;
    }
}

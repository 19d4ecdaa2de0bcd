//! One worker thread: a mio loop over its own SO_REUSEPORT listener sockets, its TCP
//! and TLS connections, and the relay sockets of the allocations it owns. The kernel
//! hashes each client 5-tuple to one worker, so allocation state is never shared and
//! the packet path takes no lock.

use crate::batch::{RecvBatch, SendQueue, BATCH, SLOTS};
use crate::relay::{Relays, RELAY_TOKEN_BASE};
use crate::stream::{Conn, ReadState};
use crate::{Shared, WorkerStats};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_turn::{FiveTuple, Server, Transmit, Transport, PEER_HEADROOM};

#[path = "tcp_pipe.rs"]
mod tcp_pipe;

const TCP_LISTENER_BASE: usize = 1 << 16;
const CONN_BASE: usize = 1 << 20;
/// Bytes reserved per response in a batch (responses are small).
const OUT_SLOT: usize = 1024;
/// Receive batches per readiness before yielding to other sockets (fairness).
const ROUNDS: usize = 8;

pub struct Listeners {
    pub udp: Vec<(UdpSocket, SocketAddr)>,
    pub tcp: Vec<(TcpListener, SocketAddr, bool)>,
}

pub struct Worker {
    id: usize,
    poll: Poll,
    udp: Vec<(UdpSocket, SocketAddr)>,
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
    rx: RecvBatch,
    /// Receive slots in use since the last flush of `tx` (whose queued datagrams
    /// point into them).
    rx_used: usize,
    tx: SendQueue,
    out: Box<[u8]>,
    stream_out: Vec<u8>,
    pending: Vec<Token>,
    ready: Vec<(Token, bool, bool)>,
    config_generation: u64,
}

fn fd_for(list: &[(SocketAddr, RawFd)], local: &SocketAddr) -> Option<RawFd> {
    list.iter().find(|(a, _)| a == local).map(|(_, fd)| *fd)
}

impl Worker {
    pub fn new(
        id: usize,
        listeners: Listeners,
        relays: impl FnOnce(mio::Registry) -> Relays,
        core: Server,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut udp = listeners.udp;
        let mut tcp = listeners.tcp;
        for (i, (s, _)) in udp.iter_mut().enumerate() {
            poll.registry().register(s, Token(i), Interest::READABLE)?;
        }
        for (i, (l, _, _)) in tcp.iter_mut().enumerate() {
            poll.registry()
                .register(l, Token(TCP_LISTENER_BASE + i), Interest::READABLE)?;
        }
        let udp_fds = udp.iter().map(|(s, a)| (*a, s.as_raw_fd())).collect();
        let relays = relays(poll.registry().try_clone()?);
        shared.handoffs.install(id, poll.registry())?;
        let config_generation = shared.generation.load(Ordering::Acquire);
        Ok(Worker {
            id,
            poll,
            udp,
            udp_fds,
            tcp,
            conns: Vec::new(),
            conn_free: Vec::new(),
            conn_by_tuple: HashMap::default(),
            dirty_conns: Vec::new(),
            closed_stream: [0; 3],
            relays,
            core,
            shared,
            rx: RecvBatch::default(),
            rx_used: 0,
            tx: SendQueue::default(),
            out: vec![0u8; SLOTS * OUT_SLOT].into_boxed_slice(),
            stream_out: Vec::with_capacity(4096),
            pending: Vec::new(),
            ready: Vec::new(),
            config_generation,
        })
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_timer = Instant::now();
        let mut last_publish = Instant::now();
        loop {
            let timeout = if self.pending.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.id, error = %e, "poll failed; worker stops");
                    return;
                }
            }
            let now = Instant::now();
            let mut ready = std::mem::take(&mut self.ready);
            ready.extend(self.pending.drain(..).map(|t| (t, true, false)));
            ready.extend(events.iter().map(|ev| {
                let readable = ev.is_readable() || ev.is_read_closed();
                (ev.token(), readable, ev.is_writable())
            }));
            for (token, readable, writable) in ready.drain(..) {
                self.dispatch(token, readable, writable, now);
            }
            self.ready = ready;
            self.flush_tx();
            self.flush_dirty_conns();
            if now.duration_since(last_timer) >= Duration::from_secs(1) {
                last_timer = now;
                self.core.handle_timeout(now, &mut self.relays);
                self.relays.expire_reservations(now);
                self.relays.reap();
            }
            self.tcp_pass(now);
            if now.duration_since(last_publish) >= Duration::from_millis(250) {
                last_publish = now;
                self.publish();
                if self.control(now) {
                    self.core.close_all(&mut self.relays);
                    self.publish();
                    return;
                }
            }
        }
    }

    /// Apply reloads and drain/shutdown flags. True when the worker should stop.
    fn control(&mut self, _now: Instant) -> bool {
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
                send_errors: self.tx.send_errors,
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

    fn dispatch(&mut self, token: Token, readable: bool, writable: bool, now: Instant) {
        let t = token.0;
        let more = if t >= tcp_pipe::TCP_TOKEN_BASE {
            self.tcp_event(token, readable, writable, now);
            false
        } else if t >= RELAY_TOKEN_BASE {
            readable && self.relay_readable(token, now)
        } else if t >= CONN_BASE {
            self.conn_event(t - CONN_BASE, readable, writable, now);
            false
        } else if t >= TCP_LISTENER_BASE {
            self.accept(t - TCP_LISTENER_BASE);
            false
        } else {
            readable && self.udp_readable(t, now)
        };
        if more {
            self.pending.push(token);
        }
    }

    /// Send everything queued; receive slots become free again.
    fn flush_tx(&mut self) {
        self.tx.flush();
        self.rx_used = 0;
        self.relays.reap();
    }

    /// First free receive slot with room for a whole batch, flushing if needed.
    fn rx_slots(&mut self) -> usize {
        if self.rx_used + BATCH > SLOTS {
            self.flush_tx();
        }
        self.rx_used
    }

    /// Receive a batch from `fd` into free slots: (first slot, datagrams).
    fn recv_batch(&mut self, fd: RawFd) -> io::Result<(usize, usize)> {
        let first = self.rx_slots();
        let n = self.rx.recv(fd, first, BATCH)?;
        self.rx_used += n;
        Ok((first, n))
    }

    /// Datagrams from clients. True when the socket may still hold more.
    fn udp_readable(&mut self, li: usize, now: Instant) -> bool {
        let Some((sock, local)) = self.udp.get(li) else {
            return false;
        };
        let (fd, local) = (sock.as_raw_fd(), *local);
        for _ in 0..ROUNDS {
            let (first, n) = match self.recv_batch(fd) {
                Ok(batch) => batch,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg on listener");
                    return false;
                }
            };
            let outs = self.out.chunks_mut(OUT_SLOT).skip(first).take(n);
            for (i, out) in (first..).zip(outs) {
                let (from, len, slot) = self.rx.slot(i);
                let Some(from) = from else { continue };
                let tuple = FiveTuple {
                    transport: Transport::Udp,
                    client: from,
                    server: local,
                };
                let data = &slot[PEER_HEADROOM..PEER_HEADROOM + len];
                match self
                    .core
                    .handle_client(now, tuple, data, out, &mut self.relays)
                {
                    Transmit::Client { to, from, data } => {
                        if let Some(fd) = fd_for(&self.udp_fds, &from) {
                            // SAFETY: `data` lives in self.out / self.rx, whose slots are reused only after
                            // flush_tx (see rx_slots).
                            unsafe { self.tx.push(fd, &to.client, data) };
                        }
                    }
                    Transmit::Peer {
                        relay, peer, data, ..
                    } => {
                        if let Some(fd) = self.relays.fd_of(&relay) {
                            // SAFETY: as above.
                            unsafe { self.tx.push(fd, &peer, data) };
                        }
                    }
                    Transmit::None => {}
                }
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    /// Datagrams from peers on a relay socket.
    fn relay_readable(&mut self, token: Token, now: Instant) -> bool {
        let Some(r) = self.relays.get(token) else {
            return false;
        };
        let (fd, alloc) = (r.sock.as_raw_fd(), r.alloc);
        for _ in 0..ROUNDS {
            let (first, n) = match self.recv_batch(fd) {
                Ok(batch) => batch,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors surface here as ECONNREFUSED etc.: never fatal.
                    tracing::trace!(error = %e, "recvmmsg on relay");
                    return true;
                }
            };
            for i in first..first + n {
                let (from, len, slot) = self.rx.slot(i);
                let Some(from) = from else { continue };
                if len == 0 {
                    continue;
                }
                if let Transmit::Client { to, from, data } =
                    self.core.handle_peer(now, alloc, from, slot, len)
                {
                    if to.transport == Transport::Udp {
                        if let Some(fd) = fd_for(&self.udp_fds, &from) {
                            // SAFETY: `data` lives in self.rx, whose slots are reused only after
                            // flush_tx (see rx_slots).
                            unsafe { self.tx.push(fd, &to.client, data) };
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
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(CONN_BASE + ci),
                    Interest::READABLE | Interest::WRITABLE,
                )
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

    fn conn_event(&mut self, ci: usize, readable: bool, writable: bool, now: Instant) {
        let Some(mut conn) = self.conns.get_mut(ci).and_then(Option::take) else {
            return;
        };
        let mut alive = true;
        if conn.pipe.is_some() {
            alive = self.pipe_client_event(ci, &mut conn, readable, writable, now);
        } else {
            if readable {
                alive = self.conn_read(&mut conn, now);
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
    fn conn_read(&mut self, conn: &mut Conn, now: Instant) -> bool {
        // Queued datagrams may point into receive slots or another connection's
        // buffer; send them before this connection's frames are handled.
        self.flush_tx();
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
                let out = &mut self.out[..OUT_SLOT];
                match self
                    .core
                    .handle_client(now, conn.tuple, frame, out, &mut self.relays)
                {
                    Transmit::Client { data, .. } => self.stream_out.extend_from_slice(data),
                    Transmit::Peer {
                        relay, peer, data, ..
                    } => {
                        if let Some(fd) = self.relays.fd_of(&relay) {
                            // SAFETY: `data` lives in conn's read buffer, which is not
                            // touched before the flush below.
                            unsafe { self.tx.push(fd, &peer, data) };
                        }
                    }
                    Transmit::None => {}
                }
                if self.tcp_link(conn) {
                    break;
                }
            }
            self.flush_tx();
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
        let _ = self.poll.registry().deregister(&mut conn.tcp);
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

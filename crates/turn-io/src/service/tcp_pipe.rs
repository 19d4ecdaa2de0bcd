//! The TURN service's side of RFC 6062 on its worker: peer connection events,
//! ConnectionAttempt on incoming connections, the byte pipe between a client data
//! connection and its peer connection (with backpressure both ways), and hand-over of
//! connections whose ConnectionBind belongs to another worker.
//!
//! Backpressure: a side is read only while the other side's output is under
//! [`PIPE_LIMIT`]. Output is always flushed until the socket would block, so a paused
//! side is resumed by the writable event of the other.

use super::{token, TurnService};
use crate::stream::{Conn, ReadState};
use crate::tcp_relay::{LINGER, PIPE_LIMIT, PIPE_ROUNDS};
use mio::Interest;
use std::collections::HashMap;
use std::io::{self, Read};
use std::time::{Duration, Instant};
use switchboard_net::Kind;
use switchboard_stun::{attr_type, Message};
use switchboard_turn::{connection_owner, FiveTuple, Transmit};

type ConnMap = HashMap<FiveTuple, usize, ahash::RandomState>;

/// Queue a message from the core for a client connection of this worker.
fn queue_to(
    conns: &mut [Option<Conn>],
    by_tuple: &ConnMap,
    dirty: &mut Vec<usize>,
    t: Transmit<'_>,
) {
    if let Transmit::Client { to, data, .. } = t {
        if let Some(&ci) = by_tuple.get(&to) {
            if let Some(c) = conns.get_mut(ci).and_then(Option::as_mut) {
                c.queue(data, false);
                dirty.push(ci);
            }
        }
    }
}

impl TurnService {
    /// Client connections other workers passed to this one.
    pub(super) fn take_handoffs(&mut self) {
        for mut conn in self.shared.handoffs.take(self.id) {
            conn.handoff = None;
            let ci = self.conn_free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let token = token(self.service, Kind::Conn, ci);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .relays
                .registry
                .register(&mut conn.tcp, token, interest)
                .is_err()
            {
                self.conn_free.push(ci);
                continue;
            }
            self.conn_by_tuple.insert(conn.tuple, ci);
            self.conns[ci] = Some(conn);
            // Its ConnectionBind is still in the read buffer.
            self.pending.push(token);
        }
    }

    /// Before a frame reaches the core: a ConnectionBind for a connection id another
    /// worker owns moves this connection there (it is then "closed" here without
    /// goodbye). True when the caller must stop handling the connection.
    pub(super) fn tcp_handoff(&mut self, conn: &mut Conn, start: usize, len: usize) -> bool {
        let workers = self.shared.stats.len();
        let frame = conn.frame(start, len);
        // ConnectionBind request: message type 0x000B.
        if workers < 2 || frame.len() < 20 || frame[..2] != [0x00, 0x0B] {
            return false;
        }
        let Some(conn_id) = Message::parse(frame)
            .ok()
            .and_then(|m| m.u32(attr_type::CONNECTION_ID))
        else {
            return false;
        };
        let owner = connection_owner(conn_id, workers as u32) as usize;
        if owner == self.id || self.core.allocation_for(&conn.tuple).is_some() {
            return false;
        }
        conn.unread(start);
        if !self.stream_out.is_empty() {
            conn.queue(&self.stream_out, false);
            self.stream_out.clear();
        }
        conn.handoff = Some(owner);
        tracing::trace!(
            from = self.id,
            to = owner,
            "ConnectionBind: connection handed to its worker"
        );
        true
    }

    /// After a frame was handled: when the core accepted a ConnectionBind on `conn`,
    /// link it to its peer connection. True when `conn` is now a pipe.
    pub(super) fn tcp_link(&mut self, conn: &mut Conn) -> bool {
        if self.relays.tcp.binds.is_empty() {
            return false;
        }
        for (conn_id, tuple) in std::mem::take(&mut self.relays.tcp.binds) {
            let ci = self.conn_by_tuple.get(&tuple).copied();
            let pi = self.relays.tcp.peer_index(conn_id);
            match (ci, pi) {
                (Some(ci), Some(pi)) if tuple == conn.tuple => {
                    if let Some(p) = self.relays.tcp.peer_mut(pi) {
                        p.data = Some(ci);
                        p.peer_paused = false;
                    }
                    conn.pipe = Some(conn_id);
                    // Read what the peer sent while unbound.
                    self.pending.push(token(self.service, Kind::Peer, pi));
                }
                _ => {
                    self.relays.tcp.close(&self.relays.registry, conn_id);
                    self.core.tcp_closed(conn_id);
                }
            }
        }
        conn.pipe.is_some()
    }

    /// A client connection left this worker: hand it over, or take its pipe down.
    pub(super) fn tcp_conn_gone(&mut self, conn: Conn) {
        if let Some(to) = conn.handoff {
            if !self.shared.handoffs.send(to, conn) {
                tracing::debug!(worker = to, "connection hand-over failed; closed");
            }
            return;
        }
        let (Some(conn_id), false) = (conn.pipe, conn.pipe_closed) else {
            return;
        };
        let Some(p) = self
            .relays
            .tcp
            .peer_index(conn_id)
            .and_then(|pi| self.relays.tcp.peer_mut(pi))
        else {
            return;
        };
        p.data = None;
        // The peer still gets what the client sent before it left.
        if p.flush().is_ok() && !p.wbuf.is_empty() {
            p.closing = Some(Instant::now() + LINGER);
        } else {
            self.drop_peer(conn_id);
        }
    }

    /// Close peer connection `conn_id` now, leaving its data connection alone.
    fn drop_peer(&mut self, conn_id: u32) {
        if let Some(p) = self
            .relays
            .tcp
            .peer_index(conn_id)
            .and_then(|pi| self.relays.tcp.peer_mut(pi))
        {
            p.data = None;
        }
        self.relays.tcp.close(&self.relays.registry, conn_id);
        self.core.tcp_closed(conn_id);
    }

    /// The peer side ended: close it; the data connection delivers what it holds, then closes.
    fn end_pipe(&mut self, conn_id: u32, now: Instant) {
        let data = self
            .relays
            .tcp
            .peer_index(conn_id)
            .and_then(|pi| self.relays.tcp.peer_mut(pi))
            .and_then(|p| p.data);
        self.drop_peer(conn_id);
        let Some(ci) = data else {
            return;
        };
        let Some(mut conn) = self.conns.get_mut(ci).and_then(Option::take) else {
            return;
        };
        conn.pipe_closed = true;
        if conn.flush().is_ok() && conn.pending_out() > 0 {
            self.conns[ci] = Some(conn);
            self.relays.tcp.lingering.push((ci, conn_id, now + LINGER));
        } else {
            self.close_conn(ci, conn);
        }
    }

    pub(super) fn relay_accept(&mut self, li: usize, now: Instant) {
        let Some(alloc) = self.relays.tcp.listener_alloc(li) else {
            return;
        };
        for _ in 0..64 {
            let (stream, peer) = match self.relays.tcp.accept(li) {
                Some(Ok(x)) => x,
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "accept on TCP relay failed");
                    return;
                }
                None => return,
            };
            let out = &mut self.out[..];
            // Refused (no permission): the stream is dropped, i.e. closed.
            if let Some((conn_id, t)) = self.core.tcp_peer_connected(now, alloc, peer, out) {
                queue_to(
                    &mut self.conns,
                    &self.conn_by_tuple,
                    &mut self.dirty_conns,
                    t,
                );
                let registry = &self.relays.registry;
                if self
                    .relays
                    .tcp
                    .add_accepted(registry, stream, conn_id)
                    .is_err()
                {
                    self.core.tcp_closed(conn_id);
                }
            }
        }
        self.pending
            .push(token(self.service, Kind::RelayListener, li));
    }

    pub(super) fn peer_event(&mut self, pi: usize, readable: bool, writable: bool, now: Instant) {
        let Some(p) = self.relays.tcp.peer_mut(pi) else {
            return;
        };
        let conn_id = p.conn_id;
        if p.connecting {
            let Some(ok) = p.connect_status() else {
                return;
            };
            p.connecting = !ok;
            let out = &mut self.out[..];
            let t = self
                .core
                .tcp_connect_result(now, conn_id, ok, out, &mut self.relays);
            queue_to(
                &mut self.conns,
                &self.conn_by_tuple,
                &mut self.dirty_conns,
                t,
            );
            return;
        }
        if writable || p.closing.is_some() {
            if p.flush().is_err() {
                self.end_pipe(conn_id, now);
                return;
            }
            if p.closing.is_some() {
                if p.wbuf.is_empty() {
                    self.drop_peer(conn_id);
                }
                return;
            }
            if p.client_paused && p.wbuf.len() < PIPE_LIMIT {
                p.client_paused = false;
                if let Some(ci) = p.data {
                    self.pending.push(token(self.service, Kind::Conn, ci));
                }
            }
        }
        if readable {
            self.peer_to_client(pi, now);
        }
    }

    /// Move bytes from peer `pi` to its data connection.
    fn peer_to_client(&mut self, pi: usize, now: Instant) {
        let tcp = &mut self.relays.tcp;
        if tcp.scratch.len() < 65536 {
            tcp.scratch.resize(65536, 0);
        }
        let Some(p) = tcp.peers.get_mut(pi).and_then(Option::as_mut) else {
            return;
        };
        let (conn_id, Some(ci)) = (p.conn_id, p.data) else {
            return;
        };
        if p.peer_paused || p.throttled || p.closing.is_some() {
            return;
        }
        let Some(conn) = self.conns.get_mut(ci).and_then(Option::as_mut) else {
            return;
        };
        let (mut ended, mut conn_failed) = (false, false);
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > PIPE_ROUNDS {
                self.pending.push(token(self.service, Kind::Peer, pi));
                break;
            }
            let n = match p.stream.read(&mut tcp.scratch) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    ended = true;
                    break;
                }
            };
            conn.queue(&tcp.scratch[..n], false);
            if conn.flush().is_err() {
                conn_failed = true;
                break;
            }
            if !self.core.tcp_relayed(now, conn_id, false, n) {
                p.throttled = true;
                break;
            }
            if conn.pending_out() >= PIPE_LIMIT {
                // Resumed by the data connection's writable event.
                p.peer_paused = true;
                break;
            }
        }
        if conn_failed {
            // The client's data connection is broken: take both down now.
            self.drop_peer(conn_id);
            if let Some(mut c) = self.conns.get_mut(ci).and_then(Option::take) {
                c.pipe_closed = true;
                self.close_conn(ci, c);
            }
        } else if ended {
            self.end_pipe(conn_id, now);
        }
    }

    /// An event on a data connection (taken out of its slot). False: close it.
    pub(super) fn pipe_client_event(
        &mut self,
        ci: usize,
        conn: &mut Conn,
        readable: bool,
        writable: bool,
        now: Instant,
    ) -> bool {
        let Some(conn_id) = conn.pipe else {
            return false;
        };
        if conn.flush().is_err() {
            return false;
        }
        if conn.pipe_closed {
            // Lingering after the peer left: done once everything is out.
            return conn.pending_out() > 0;
        }
        let Some(pi) = self.relays.tcp.peer_index(conn_id) else {
            return false;
        };
        if let Some(p) = self.relays.tcp.peer_mut(pi) {
            if p.peer_paused && p.data == Some(ci) && conn.pending_out() < PIPE_LIMIT {
                p.peer_paused = false;
                self.pending.push(token(self.service, Kind::Peer, pi));
            }
        }
        let _ = writable;
        if readable {
            return self.client_to_peer(conn, now);
        }
        true
    }

    /// Move bytes from a data connection to its peer. False: close the data connection.
    pub(super) fn client_to_peer(&mut self, conn: &mut Conn, now: Instant) -> bool {
        let Some(conn_id) = conn.pipe else {
            return false;
        };
        let Some(pi) = self.relays.tcp.peer_index(conn_id) else {
            return false;
        };
        for _ in 0..PIPE_ROUNDS {
            let Some(p) = self.relays.tcp.peer_mut(pi) else {
                return false;
            };
            if p.client_paused || p.throttled || p.closing.is_some() {
                return true;
            }
            let state = match conn.read() {
                Ok(s) => s,
                Err(_) => return false,
            };
            let data = conn.take_raw();
            if !data.is_empty() {
                if p.send(data).is_err() {
                    // The peer is gone: nothing more can be delivered either way.
                    self.drop_peer(conn_id);
                    return false;
                }
                // Resumed by the peer's writable event.
                p.client_paused = p.wbuf.len() >= PIPE_LIMIT;
                let n = data.len();
                if !self.core.tcp_relayed(now, conn_id, true, n) {
                    p.throttled = true;
                }
            }
            match state {
                ReadState::Open => return true,
                ReadState::Full => {}
                ReadState::Closed => return false,
            }
        }
        if let Some(&ci) = self.conn_by_tuple.get(&conn.tuple) {
            self.pending.push(token(self.service, Kind::Conn, ci));
        }
        true
    }

    /// Once per loop pass: answers the core owes, data connections whose allocation
    /// went away, and (once a second) lingering and throttled pipes.
    pub(super) fn tcp_pass(&mut self, now: Instant) {
        while let Some(t) = self.core.next_deferred(&mut self.out) {
            queue_to(
                &mut self.conns,
                &self.conn_by_tuple,
                &mut self.dirty_conns,
                t,
            );
        }
        for (ci, conn_id) in std::mem::take(&mut self.relays.tcp.kill) {
            let ours = self
                .conns
                .get(ci)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.pipe == Some(conn_id) && !c.pipe_closed);
            if let Some(mut c) = ours.then(|| self.conns[ci].take()).flatten() {
                c.pipe_closed = true;
                self.close_conn(ci, c);
            }
        }
        let tick = self
            .relays
            .tcp
            .last_tick
            .map_or(true, |t| now.duration_since(t) >= Duration::from_secs(1));
        if tick {
            self.relays.tcp.last_tick = Some(now);
            self.tcp_tick(now);
        }
        if !self.dirty_conns.is_empty() {
            self.flush_dirty_conns();
        }
    }

    fn tcp_tick(&mut self, now: Instant) {
        let mut lingering = std::mem::take(&mut self.relays.tcp.lingering);
        lingering.retain(|&(ci, conn_id, deadline)| {
            let ours = self
                .conns
                .get(ci)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.pipe == Some(conn_id) && c.pipe_closed);
            if ours && deadline <= now {
                if let Some(c) = self.conns[ci].take() {
                    self.close_conn(ci, c);
                }
                return false;
            }
            ours
        });
        self.relays.tcp.lingering.extend(lingering);
        let mut late = Vec::new();
        for (pi, p) in self.relays.tcp.peers.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            if p.closing.is_some_and(|d| d <= now) {
                late.push(p.conn_id);
            }
            if p.throttled {
                p.throttled = false;
                self.pending.push(token(self.service, Kind::Peer, pi));
                if let Some(ci) = p.data {
                    self.pending.push(token(self.service, Kind::Conn, ci));
                }
            }
        }
        for conn_id in late {
            self.drop_peer(conn_id);
        }
    }
}

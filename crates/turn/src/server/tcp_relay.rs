//! RFC 6062 TCP allocations, sans-IO: Connect, ConnectionBind, ConnectionAttempt and
//! the lifetimes of peer connections.
//!
//! The driver owns the sockets. It opens TCP relay listeners and outgoing connections
//! through [`RelayPorts`], reports what the network did ([`Server::tcp_connect_result`],
//! [`Server::tcp_peer_connected`], [`Server::tcp_closed`]) and, once ConnectionBind
//! succeeds, moves bytes between the client data connection and the peer connection
//! itself, counting them with [`Server::tcp_relayed`]. Answers that are owed after a
//! timeout (447 for a Connect that never completed) wait in a queue the driver drains
//! with [`Server::next_deferred`] after [`Server::handle_timeout`].

use super::{AllocId, Authed, FastMap, RelayPorts, Reply, Server, Transmit};
use crate::allocation::{FiveTuple, Transport};
use crate::auth::Integrity;
use crate::respond::{self, Seal};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_stun::{attr_type, Class, ErrorCode, Message, Method, TransactionId};

/// How long a Connect may take before it is answered with 447 (RFC 6062 §5.2: at least 30 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer connection waits for its ConnectionBind (RFC 6062 §5.2, §5.3).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// Peer connections (outgoing and incoming, any state) per allocation; a Connect over
/// it gets 508, an incoming connection over it is refused.
pub const MAX_CONNECTIONS_PER_ALLOCATION: usize = 64;

/// What is needed to answer a Connect once its outcome is known.
#[derive(Clone, Copy, Debug)]
struct Answer {
    tid: TransactionId,
    key: Integrity,
    fingerprint: bool,
}

#[derive(Debug)]
enum State {
    /// Outgoing connection in progress; the Connect is unanswered.
    Connecting { answer: Answer, deadline: Instant },
    /// Peer connection established, waiting for ConnectionBind.
    Unbound { deadline: Instant },
    /// Piped to a client data connection by the driver.
    Bound,
}

#[derive(Debug)]
struct PeerConn {
    alloc: AllocId,
    peer: SocketAddr,
    state: State,
}

/// The core's view of RFC 6062 peer connections.
#[derive(Default)]
pub(crate) struct TcpState {
    conns: FastMap<u32, PeerConn>,
    by_alloc: FastMap<AllocId, Vec<u32>>,
    /// 447 answers owed to Connects that timed out: (control connection, request).
    deferred: VecDeque<(FiveTuple, Answer)>,
    /// Connection ids are `offset + stride * k` (stride 0 counts as 1).
    stride: u32,
    offset: u32,
}

impl TcpState {
    fn count(&self, alloc: AllocId) -> usize {
        self.by_alloc.get(&alloc).map_or(0, Vec::len)
    }

    fn exists(&self, alloc: AllocId, peer: SocketAddr) -> bool {
        self.by_alloc.get(&alloc).is_some_and(|ids| {
            ids.iter()
                .any(|id| self.conns.get(id).is_some_and(|c| c.peer == peer))
        })
    }

    /// A fresh, unused connection id in this core's id space.
    fn new_id(&self) -> Option<u32> {
        let stride = self.stride.max(1);
        let span = u32::MAX / stride;
        for _ in 0..64 {
            let id = (rand::random::<u32>() % span) * stride + self.offset % stride;
            if id != 0 && !self.conns.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn insert(&mut self, id: u32, conn: PeerConn) {
        self.by_alloc.entry(conn.alloc).or_default().push(id);
        self.conns.insert(id, conn);
    }

    fn remove(&mut self, id: u32) -> Option<PeerConn> {
        let c = self.conns.remove(&id)?;
        if let Some(ids) = self.by_alloc.get_mut(&c.alloc) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_alloc.remove(&c.alloc);
            }
        }
        Some(c)
    }
}

/// RFC 6062 §5.1 checks of an Allocate with REQUESTED-TRANSPORT TCP: only over TCP or
/// TLS, and without DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN (400). Dual
/// allocations are not offered for TCP (400 too).
pub(crate) fn check_allocate(tuple: &FiveTuple, msg: &Message) -> Result<(), ErrorCode> {
    if tuple.transport == Transport::Udp {
        return Err(ErrorCode::BAD_REQUEST);
    }
    let refused = [
        attr_type::DONT_FRAGMENT,
        attr_type::EVEN_PORT,
        attr_type::RESERVATION_TOKEN,
        attr_type::ADDITIONAL_ADDRESS_FAMILY,
    ];
    if msg.attributes().any(|a| refused.contains(&a.typ)) {
        return Err(ErrorCode::BAD_REQUEST);
    }
    Ok(())
}

/// Which of `cores` owns connection id `conn_id` (see [`Server::set_connection_id_space`]).
pub fn connection_owner(conn_id: u32, cores: u32) -> u32 {
    conn_id % cores.max(1)
}

impl Server {
    /// Make this core hand out connection ids `offset + stride * k`, so that a driver
    /// running `stride` cores can tell the owner of a CONNECTION-ID with
    /// [`connection_owner`]: a ConnectionBind arrives on a new client connection,
    /// which may reach any core.
    pub fn set_connection_id_space(&mut self, stride: u32, offset: u32) {
        self.tcp.stride = stride.max(1);
        self.tcp.offset = offset % stride.max(1);
    }

    /// Live RFC 6062 peer connections (any state).
    pub fn tcp_connection_count(&self) -> usize {
        self.tcp.conns.len()
    }

    /// Connect (RFC 6062 §5.2): answered later, when the driver reports the outcome.
    pub(super) fn tcp_connect(
        &mut self,
        r: &Authed,
        out: &mut [u8],
        relays: &mut dyn RelayPorts,
    ) -> Reply {
        let (now, msg, key) = (r.now, r.msg, r.key);
        let id = match self.owned(r, out) {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        if !self.allocation(id).is_some_and(|a| a.tcp) {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        }
        let Some(peer) = msg.xor_address(attr_type::XOR_PEER_ADDRESS) else {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        };
        if let Err(code) = self.check_peer(id, peer) {
            return self.refuse(r, out, code);
        }
        if self.tcp.exists(id, peer) {
            return self.refuse(r, out, ErrorCode::CONNECTION_ALREADY_EXISTS);
        }
        if self.tcp.count(id) >= MAX_CONNECTIONS_PER_ALLOCATION {
            return self.refuse(r, out, ErrorCode::INSUFFICIENT_CAPACITY);
        }
        let Some(conn_id) = self.tcp.new_id() else {
            return self.refuse(r, out, ErrorCode::INSUFFICIENT_CAPACITY);
        };
        let own_only = !self.cfg.peer_filter.allows(peer.ip());
        let perm_expires = now + self.cfg.permission_lifetime;
        let Some(a) = self.alloc_mut(id) else {
            return self.refuse(r, out, ErrorCode::ALLOCATION_MISMATCH);
        };
        // Connect installs (or refreshes) a permission for the peer, so its data and
        // later connections from it are accepted.
        a.add_permission(peer.ip(), perm_expires, own_only);
        let Some(relay) = a.relay_for(&peer) else {
            return self.refuse(r, out, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
        };
        if relays.tcp_connect(id, conn_id, relay, peer).is_err() {
            return self.refuse(r, out, ErrorCode::CONNECTION_TIMEOUT_OR_FAILURE);
        }
        let answer = Answer {
            tid: msg.tid,
            key,
            fingerprint: msg.has_fingerprint(),
        };
        self.tcp.insert(
            conn_id,
            PeerConn {
                alloc: id,
                peer,
                state: State::Connecting {
                    answer,
                    deadline: now + CONNECT_TIMEOUT,
                },
            },
        );
        Reply::Deferred
    }

    /// The driver's report on the connection started for `conn_id`: the Connect's
    /// success response (with CONNECTION-ID) or 447, for the control connection.
    pub fn tcp_connect_result<'a>(
        &mut self,
        now: Instant,
        conn_id: u32,
        ok: bool,
        out: &'a mut [u8],
        relays: &mut dyn RelayPorts,
    ) -> Transmit<'a> {
        let Some(c) = self.tcp.conns.get(&conn_id) else {
            // Timed out or its allocation went away meanwhile.
            relays.tcp_close(conn_id);
            return Transmit::None;
        };
        let State::Connecting { answer, .. } = c.state else {
            return Transmit::None;
        };
        let to = match self.allocation(c.alloc) {
            Some(a) if a.expires > now => a.tuple,
            _ => {
                self.tcp.remove(conn_id);
                relays.tcp_close(conn_id);
                return Transmit::None;
            }
        };
        let result = if ok {
            if let Some(c) = self.tcp.conns.get_mut(&conn_id) {
                c.state = State::Unbound {
                    deadline: now + BIND_TIMEOUT,
                };
            }
            Ok(conn_id)
        } else {
            self.tcp.remove(conn_id);
            relays.tcp_close(conn_id);
            Err(ErrorCode::CONNECTION_TIMEOUT_OR_FAILURE)
        };
        self.connect_answer(out, to, answer, result)
    }

    fn connect_answer<'a>(
        &mut self,
        out: &'a mut [u8],
        to: FiveTuple,
        answer: Answer,
        result: Result<u32, ErrorCode>,
    ) -> Transmit<'a> {
        let seal = Seal {
            integrity: Some(&answer.key),
            fingerprint: answer.fingerprint,
        };
        let software = self.cfg.software.clone();
        let written = match result {
            Ok(conn_id) => respond::build_for(
                out,
                Method::CONNECT,
                answer.tid,
                Class::Success,
                seal,
                |w| {
                    w.u32(attr_type::CONNECTION_ID, conn_id)?;
                    if let Some(s) = &software {
                        w.attr(attr_type::SOFTWARE, s.as_bytes())?;
                    }
                    Ok(())
                },
            ),
            Err(code) => {
                self.stats.error_responses += 1;
                respond::build_for(out, Method::CONNECT, answer.tid, Class::Error, seal, |w| {
                    w.error_code(code.code(), code.reason())?;
                    Ok(())
                })
            }
        };
        match written {
            Ok(n) => Transmit::Client {
                to,
                from: to.server,
                data: &out[..n],
            },
            Err(_) => Transmit::None,
        }
    }

    /// A peer connected to the TCP relay address of `alloc`. With a permission for it,
    /// returns the new connection id and the ConnectionAttempt indication for the
    /// control connection; None means the driver closes the connection.
    pub fn tcp_peer_connected<'a>(
        &mut self,
        now: Instant,
        alloc: AllocId,
        peer: SocketAddr,
        out: &'a mut [u8],
    ) -> Option<(u32, Transmit<'a>)> {
        let ports = (self.cfg.min_port, self.cfg.max_port);
        let a = self.allocation(alloc)?;
        if !a.tcp || a.expires <= now || !a.permits(&peer, now, ports) {
            self.stats.dropped_no_permission += 1;
            return None;
        }
        let to = a.tuple;
        if self.tcp.count(alloc) >= MAX_CONNECTIONS_PER_ALLOCATION {
            return None;
        }
        let conn_id = self.tcp.new_id()?;
        self.tid_counter = self.tid_counter.wrapping_add(1);
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&conn_id.to_be_bytes());
        tid[4..].copy_from_slice(&self.tid_counter.to_be_bytes());
        let mut w = switchboard_stun::MessageWriter::new(
            out,
            Method::CONNECTION_ATTEMPT,
            Class::Indication,
            TransactionId(tid),
        )
        .ok()?;
        w.u32(attr_type::CONNECTION_ID, conn_id).ok()?;
        w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer).ok()?;
        let n = w.finish();
        self.tcp.insert(
            conn_id,
            PeerConn {
                alloc,
                peer,
                state: State::Unbound {
                    deadline: now + BIND_TIMEOUT,
                },
            },
        );
        Some((
            conn_id,
            Transmit::Client {
                to,
                from: to.server,
                data: &out[..n],
            },
        ))
    }

    /// ConnectionBind (RFC 6062 §5.4) on a new client connection: on success the
    /// driver turns that connection into a byte pipe to the peer connection.
    pub(super) fn connection_bind(
        &mut self,
        r: &Authed,
        out: &mut [u8],
        relays: &mut dyn RelayPorts,
    ) -> Reply {
        let (now, tuple, msg, username, key) = (r.now, r.tuple, r.msg, r.username, r.key);
        // Not over UDP, and not on a control connection (it would lose its allocation's
        // signalling to a pipe).
        if tuple.transport == Transport::Udp || self.by_tuple.contains_key(&tuple) {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        }
        let Some(conn_id) = msg.u32(attr_type::CONNECTION_ID) else {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        };
        let alloc = match self.tcp.conns.get(&conn_id) {
            Some(PeerConn {
                alloc,
                state: State::Unbound { deadline },
                ..
            }) if *deadline > now => *alloc,
            _ => return self.refuse(r, out, ErrorCode::BAD_REQUEST),
        };
        match self.allocation(alloc) {
            Some(a) if a.expires > now && &*a.username == username => {}
            Some(a) if a.expires > now => return self.refuse(r, out, ErrorCode::WRONG_CREDENTIALS),
            _ => return self.refuse(r, out, ErrorCode::BAD_REQUEST),
        }
        if !relays.tcp_bind(conn_id, tuple) {
            self.tcp.remove(conn_id);
            relays.tcp_close(conn_id);
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        }
        if let Some(c) = self.tcp.conns.get_mut(&conn_id) {
            c.state = State::Bound;
        }
        self.success(out, msg, &key, |_| Ok(()))
    }

    /// The driver closed peer connection `conn_id` (or its data connection).
    pub fn tcp_closed(&mut self, conn_id: u32) {
        self.tcp.remove(conn_id);
    }

    /// Count `bytes` moved on peer connection `conn_id` (`to_peer`: from the client)
    /// against the relayed-bytes counters and the allocation's `max_bps` budget. False
    /// when the budget is spent: the driver stops reading that side for a while.
    pub fn tcp_relayed(&mut self, now: Instant, conn_id: u32, to_peer: bool, bytes: usize) -> bool {
        if to_peer {
            self.stats.client_to_peer_bytes += bytes as u64;
        } else {
            self.stats.peer_to_client_bytes += bytes as u64;
        }
        let max_bps = self.cfg.max_bps;
        if max_bps == 0 {
            return true;
        }
        let Some(alloc) = self.tcp.conns.get(&conn_id).map(|c| c.alloc) else {
            return true;
        };
        let Some(a) = self.alloc_mut(alloc) else {
            return true;
        };
        // The bytes are already on their way (a stream cannot drop them): spend what
        // is left, and say stop when that was not enough.
        if a.charge(bytes, max_bps, now) {
            true
        } else {
            a.budget = 0;
            false
        }
    }

    /// The next answer owed without a request at hand (447 for a timed-out Connect);
    /// None when there is none. Drain after [`Server::handle_timeout`].
    pub fn next_deferred<'a>(&mut self, out: &'a mut [u8]) -> Option<Transmit<'a>> {
        let (to, answer) = self.tcp.deferred.pop_front()?;
        Some(self.connect_answer(
            out,
            to,
            answer,
            Err(ErrorCode::CONNECTION_TIMEOUT_OR_FAILURE),
        ))
    }

    /// The allocation `id` is going away: close all its peer connections.
    pub(super) fn tcp_release(&mut self, id: AllocId, relays: &mut dyn RelayPorts) {
        for conn_id in self.tcp.by_alloc.remove(&id).unwrap_or_default() {
            if self.tcp.conns.remove(&conn_id).is_some() {
                relays.tcp_close(conn_id);
            }
        }
    }

    /// Connects past [`CONNECT_TIMEOUT`] (447 queued), peer connections not bound
    /// within [`BIND_TIMEOUT`], and connections to peers a reloaded filter denies.
    pub(super) fn tcp_timeout(&mut self, now: Instant, relays: &mut dyn RelayPorts) {
        if self.tcp.conns.is_empty() {
            return;
        }
        let cfg = self.cfg.clone();
        let dead: Vec<u32> = self
            .tcp
            .conns
            .iter()
            .filter(|(_, c)| {
                let late = match c.state {
                    State::Connecting { deadline, .. } | State::Unbound { deadline } => {
                        deadline <= now
                    }
                    State::Bound => false,
                };
                late || !cfg.peer_allowed(c.peer)
            })
            .map(|(&id, _)| id)
            .collect();
        for conn_id in dead {
            let Some(c) = self.tcp.remove(conn_id) else {
                continue;
            };
            relays.tcp_close(conn_id);
            if let State::Connecting { answer, .. } = c.state {
                if let Some(a) = self.allocation(c.alloc) {
                    self.tcp.deferred.push_back((a.tuple, answer));
                }
            }
        }
    }
}

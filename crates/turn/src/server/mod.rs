//! The server state machine: STUN Binding, TURN requests, indications and ChannelData.

use crate::allocation::Allocation;
pub use crate::allocation::{FiveTuple, Transport};
use crate::auth::{authenticate, make_nonce, AuthResult, Integrity, UnauthLimiter};
use crate::config::ServerConfig;
use crate::quota::Quotas;
use crate::respond::{self, Seal};
use crate::stats::Stats;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_stun::{attr_type, Class, ErrorCode, Message, MessageWriter, Method, WriteError};

// Children that extend `Server` and see its private fields: the relayed data path,
// the TURN request handlers and RFC 6062 TCP allocations.
pub(crate) mod datapath;
mod methods;
pub mod tcp_relay;

/// Index of an allocation in its core; the driver tags relay sockets with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AllocId(pub u32);

#[derive(Debug, thiserror::Error)]
pub enum RelayOpenError {
    #[error("no relay address of the requested family")]
    NoFamily,
    #[error("no free port in the relay range")]
    Exhausted,
    /// The socket call failed; the `io::ErrorKind` is kept for the driver's logs and
    /// metrics.
    #[error("could not open a relay socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// Opens and closes relay sockets on behalf of the core.
pub trait RelayPorts {
    /// Open a relay socket for `alloc`; returns its public (XOR-RELAYED) address.
    fn open(
        &mut self,
        alloc: AllocId,
        v6: bool,
        even_port: bool,
    ) -> Result<SocketAddr, RelayOpenError>;
    fn close(&mut self, alloc: AllocId, relay: SocketAddr);

    /// Open an even port for `alloc` and reserve the next one (EVEN-PORT with the R
    /// bit, RFC 8656 §7.2); returns the even address and the RESERVATION-TOKEN. The
    /// reservation is process-wide (the claiming request may reach another worker)
    /// and lapses after [`RESERVATION_LIFETIME`].
    fn open_reserving(
        &mut self,
        _alloc: AllocId,
        _v6: bool,
        _now: Instant,
    ) -> Result<(SocketAddr, [u8; 8]), RelayOpenError> {
        Err(RelayOpenError::Exhausted)
    }

    /// Give the port reserved under `token` to `alloc`; None when unknown or lapsed.
    fn claim(&mut self, _alloc: AllocId, _token: &[u8], _now: Instant) -> Option<SocketAddr> {
        None
    }

    /// RFC 6062: open a TCP listening relay socket for `alloc`; `close` closes it.
    fn open_tcp(&mut self, _alloc: AllocId, _v6: bool) -> Result<SocketAddr, RelayOpenError> {
        Err(RelayOpenError::Exhausted)
    }

    /// Start a TCP connection from relay address `relay` of `alloc` to `peer`. The
    /// driver reports the outcome with [`Server::tcp_connect_result`].
    fn tcp_connect(
        &mut self,
        _alloc: AllocId,
        _conn_id: u32,
        _relay: SocketAddr,
        _peer: SocketAddr,
    ) -> Result<(), RelayOpenError> {
        Err(RelayOpenError::Exhausted)
    }

    /// ConnectionBind succeeded: from now on the client connection `data` is a raw
    /// byte pipe to peer connection `conn_id`. False when that connection is gone.
    fn tcp_bind(&mut self, _conn_id: u32, _data: FiveTuple) -> bool {
        false
    }

    /// Close peer connection `conn_id` and the client data connection bound to it.
    fn tcp_close(&mut self, _conn_id: u32) {}
}

/// How long a port reserved by EVEN-PORT(R) waits for its RESERVATION-TOKEN.
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// How often [`Server::handle_timeout`] sweeps while anything can expire.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What the driver should send as the result of one input.
#[derive(Debug, PartialEq, Eq)]
pub enum Transmit<'a> {
    None,
    /// To the client, from local address `from` (differs from `to.server` only for
    /// RFC 5780 CHANGE-REQUEST).
    Client {
        to: FiveTuple,
        from: SocketAddr,
        data: &'a [u8],
    },
    /// From relay address `relay` to `peer`.
    Peer {
        alloc: AllocId,
        relay: SocketAddr,
        peer: SocketAddr,
        data: &'a [u8],
    },
}

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

pub use switchboard_util::shrink_sparse;

pub struct Server {
    cfg: Arc<ServerConfig>,
    quotas: Arc<Quotas>,
    slots: Vec<Option<Allocation>>,
    free: Vec<u32>,
    by_tuple: FastMap<FiveTuple, AllocId>,
    limiter: UnauthLimiter,
    epoch: Instant,
    unix_at_epoch: u64,
    tid_counter: u64,
    draining: bool,
    /// RFC 6062 peer connections.
    tcp: tcp_relay::TcpState,
    /// When `handle_timeout` last swept (for [`Server::poll_timeout`]).
    last_sweep: Instant,
    pub stats: Stats,
}

/// An authenticated TURN request, as the method handlers see it.
pub(super) struct Authed<'r, 'a> {
    now: Instant,
    tuple: FiveTuple,
    msg: &'r Message<'a>,
    username: &'r [u8],
    identity: &'r [u8],
    key: Integrity,
}

/// What a request handler did with its request.
enum Reply {
    /// A response of this many bytes is in the output buffer.
    Sent(usize),
    /// Nothing to send: the response did not fit the output buffer, or the source is
    /// over its rate of unauthenticated answers.
    Drop,
    /// The answer comes later, when the driver reports an outcome (RFC 6062 Connect).
    Deferred,
}

impl Server {
    /// `unix_now` is the wall-clock time (seconds) matching `now`, for REST credential
    /// expiry and nonce timestamps.
    pub fn new(cfg: Arc<ServerConfig>, quotas: Arc<Quotas>, now: Instant, unix_now: u64) -> Self {
        Server {
            cfg,
            quotas,
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: FastMap::default(),
            limiter: UnauthLimiter::default(),
            epoch: now,
            unix_at_epoch: unix_now,
            tid_counter: rand::random(),
            draining: false,
            tcp: tcp_relay::TcpState::default(),
            last_sweep: now,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.cfg
    }

    /// Apply a reloaded configuration. Allocations stay; permissions and channels to
    /// peers the new filter denies are removed at once.
    pub fn set_config(&mut self, cfg: Arc<ServerConfig>) {
        self.cfg = cfg;
        let cfg = &self.cfg;
        for a in self.slots.iter_mut().flatten() {
            a.permissions.retain_mut(|p| {
                p.relay_ports_only = !cfg.peer_filter.allows(p.ip);
                !p.relay_ports_only || cfg.relay_ips.contains(&p.ip)
            });
            a.channels.retain(|c| cfg.peer_allowed(c.peer));
        }
    }

    /// Refuse new allocations (SIGTERM drain); existing ones keep relaying.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn allocation_count(&self) -> usize {
        self.by_tuple.len()
    }

    fn unix(&self, now: Instant) -> u64 {
        self.unix_at_epoch + now.saturating_duration_since(self.epoch).as_secs()
    }

    fn alloc_mut(&mut self, id: AllocId) -> Option<&mut Allocation> {
        self.slots.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    /// The allocation `id`, for inspection.
    pub fn allocation(&self, id: AllocId) -> Option<&Allocation> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }

    pub fn allocation_for(&self, tuple: &FiveTuple) -> Option<AllocId> {
        self.by_tuple.get(tuple).copied()
    }

    /// Handle bytes from a client: one UDP datagram, or one framed message from a stream.
    pub fn handle_client<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        data: &'a [u8],
        out: &'a mut [u8],
        relays: &mut dyn RelayPorts,
    ) -> Transmit<'a> {
        let Some(&first) = data.first() else {
            return Transmit::None;
        };
        if first & 0xC0 == 0x40 {
            return self.channel_data(now, tuple, data);
        }
        let Ok(msg) = Message::parse(data) else {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        };
        // A FINGERPRINT that is present must be right (RFC 8489 §7): otherwise this is
        // not STUN and is silently discarded.
        if msg.has_fingerprint() && !msg.verify_fingerprint() {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        }
        match msg.class {
            Class::Request => {
                let mut from = tuple.server;
                match self.request(now, tuple, &msg, out, relays, &mut from) {
                    Reply::Sent(n) => Transmit::Client {
                        to: tuple,
                        from,
                        data: &out[..n],
                    },
                    Reply::Drop | Reply::Deferred => Transmit::None,
                }
            }
            Class::Indication if msg.method == Method::SEND => {
                self.send_indication(now, tuple, &msg)
            }
            _ => Transmit::None,
        }
    }

    fn request(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message,
        out: &mut [u8],
        relays: &mut dyn RelayPorts,
        from: &mut SocketAddr,
    ) -> Reply {
        self.stats.requests += 1;
        let mut unknown = [0u16; 8];
        let n_unknown = respond::find_unknown(msg, self.cfg.rfc5780.is_some(), &mut unknown);
        if msg.method == Method::BINDING {
            if n_unknown > 0 {
                self.stats.error_responses += 1;
                return reply(respond::unknown_attributes(
                    out,
                    msg,
                    &unknown[..n_unknown],
                    None,
                ));
            }
            return self.binding(tuple, msg, out, from);
        }
        if !matches!(
            msg.method,
            Method::ALLOCATE
                | Method::REFRESH
                | Method::CREATE_PERMISSION
                | Method::CHANNEL_BIND
                | Method::CONNECT
                | Method::CONNECTION_BIND
        ) {
            return self.error(out, msg, ErrorCode::BAD_REQUEST, None);
        }
        let unix = self.unix(now);
        let cfg = self.cfg.clone();
        match authenticate(&cfg, msg, unix, tuple.client.ip()) {
            // RFC 8489 §6.3: authenticate first, so a 420 goes only to a client that
            // proved its credentials, and is signed.
            AuthResult::Ok { integrity, .. } if n_unknown > 0 => {
                self.stats.error_responses += 1;
                reply(respond::unknown_attributes(
                    out,
                    msg,
                    &unknown[..n_unknown],
                    Some(&integrity),
                ))
            }
            AuthResult::Ok {
                username,
                identity,
                integrity,
            } => {
                let r = Authed {
                    now,
                    tuple,
                    msg,
                    username,
                    identity,
                    key: integrity,
                };
                match msg.method {
                    Method::ALLOCATE => self.allocate(&r, out, relays),
                    Method::REFRESH => self.refresh(&r, out, relays),
                    Method::CREATE_PERMISSION => self.create_permission(&r, out),
                    Method::CONNECT => self.tcp_connect(&r, out, relays),
                    Method::CONNECTION_BIND => self.connection_bind(&r, out, relays),
                    _ => self.channel_bind(&r, out),
                }
            }
            AuthResult::BadRequest => self.error(out, msg, ErrorCode::BAD_REQUEST, None),
            result => {
                if msg.has_message_integrity() || msg.has_message_integrity_sha256() {
                    self.stats.auth_failures += 1;
                }
                let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
                if tuple.transport == Transport::Udp
                    && !self.limiter.allow(
                        tuple.client.ip(),
                        now_ms,
                        cfg.unauth_rate,
                        cfg.unauth_burst,
                    )
                {
                    self.stats.unauth_rate_limited += 1;
                    return Reply::Drop;
                }
                let code = if result == AuthResult::StaleNonce {
                    ErrorCode::STALE_NONCE
                } else {
                    ErrorCode::UNAUTHORIZED
                };
                let nonce = make_nonce(&cfg, unix, tuple.client.ip());
                self.stats.error_responses += 1;
                reply(respond::error(out, msg, code, Seal::of(msg, None), |w| {
                    w.attr(attr_type::REALM, cfg.realm.as_bytes())?;
                    w.attr(attr_type::NONCE, &nonce)?;
                    Ok(())
                }))
            }
        }
    }

    /// The caller's allocation, checking that the same credentials are used; else
    /// the error reply (437, 441) to send. Shared by the handlers of methods.rs and
    /// tcp_relay.rs.
    fn owned(&mut self, r: &Authed, out: &mut [u8]) -> Result<AllocId, Reply> {
        self.owned_alloc(&r.tuple, r.username, r.now)
            .map_err(|code| self.refuse(r, out, code))
    }

    fn owned_alloc(
        &self,
        tuple: &FiveTuple,
        username: &[u8],
        now: Instant,
    ) -> Result<AllocId, ErrorCode> {
        let id = *self
            .by_tuple
            .get(tuple)
            .ok_or(ErrorCode::ALLOCATION_MISMATCH)?;
        match self.allocation(id) {
            // Expired but not yet swept by handle_timeout: gone for the client.
            Some(a) if a.expires <= now => Err(ErrorCode::ALLOCATION_MISMATCH),
            Some(a) if &*a.username == username => Ok(id),
            Some(_) => Err(ErrorCode::WRONG_CREDENTIALS),
            None => Err(ErrorCode::ALLOCATION_MISMATCH),
        }
    }

    /// Check a peer for CreatePermission/ChannelBind: 443 on family mismatch, 403 when denied.
    fn check_peer(&mut self, id: AllocId, peer: SocketAddr) -> Result<(), ErrorCode> {
        let Some(a) = self.allocation(id) else {
            return Err(ErrorCode::ALLOCATION_MISMATCH);
        };
        if a.relay_for(&peer).is_none() {
            return Err(ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
        }
        if !self.cfg.peer_allowed(peer) {
            self.stats.peer_denied += 1;
            return Err(ErrorCode::FORBIDDEN);
        }
        Ok(())
    }

    /// An error response to an authenticated request, signed with its key.
    fn refuse(&mut self, r: &Authed, out: &mut [u8], code: ErrorCode) -> Reply {
        self.error(out, r.msg, code, Some(&r.key))
    }

    fn error(
        &mut self,
        out: &mut [u8],
        msg: &Message,
        code: ErrorCode,
        key: Option<&Integrity>,
    ) -> Reply {
        self.stats.error_responses += 1;
        reply(respond::error(out, msg, code, Seal::of(msg, key), |_| {
            Ok(())
        }))
    }

    fn binding(
        &mut self,
        tuple: FiveTuple,
        msg: &Message,
        out: &mut [u8],
        from: &mut SocketAddr,
    ) -> Reply {
        self.stats.binding_requests += 1;
        let rfc5780 = self.cfg.rfc5780;
        if let (Some(r), Some(flags)) = (rfc5780, msg.u32(attr_type::CHANGE_REQUEST)) {
            if tuple.transport != Transport::Udp {
                return self.error(out, msg, ErrorCode::BAD_REQUEST, None);
            }
            *from = r.other(tuple.server, flags & 0x4 != 0, flags & 0x2 != 0);
        }
        let origin = *from;
        // No SOFTWARE here: Binding requests are unauthenticated, so the answer stays
        // close to the request's size.
        reply(respond::build(
            out,
            msg,
            Class::Success,
            Seal::of(msg, None),
            |w| {
                w.xor_address(attr_type::XOR_MAPPED_ADDRESS, &tuple.client)?;
                if let Some(r) = rfc5780 {
                    w.address(attr_type::RESPONSE_ORIGIN, &origin)?;
                    w.address(attr_type::OTHER_ADDRESS, &r.other(tuple.server, true, true))?;
                }
                Ok(())
            },
        ))
    }

    fn success(
        &self,
        out: &mut [u8],
        msg: &Message,
        key: &Integrity,
        body: impl FnOnce(&mut MessageWriter) -> Result<(), WriteError>,
    ) -> Reply {
        let software = self.cfg.software.as_deref();
        reply(respond::build(
            out,
            msg,
            Class::Success,
            Seal::of(msg, Some(key)),
            |w| {
                body(w)?;
                if let Some(s) = software {
                    w.attr(attr_type::SOFTWARE, s.as_bytes())?;
                }
                Ok(())
            },
        ))
    }

    /// A stream connection closed: its allocation goes with it (RFC 8656 §3.1).
    pub fn client_closed(&mut self, tuple: &FiveTuple, relays: &mut dyn RelayPorts) {
        if let Some(id) = self.by_tuple.get(tuple).copied() {
            self.free_alloc(id, relays);
        }
    }

    fn free_alloc(&mut self, id: AllocId, relays: &mut dyn RelayPorts) {
        let Some(a) = self.slots.get_mut(id.0 as usize).and_then(Option::take) else {
            return;
        };
        self.by_tuple.remove(&a.tuple);
        shrink_sparse(&mut self.by_tuple);
        if a.tcp {
            self.tcp_release(id, relays);
        }
        for r in [a.relay_v4, a.relay_v6].into_iter().flatten() {
            relays.close(id, r);
        }
        self.quotas.release(&a.identity);
        self.free.push(id.0);
        self.stats.allocations -= 1;
    }

    /// When [`Server::handle_timeout`] is next due: a second after the last sweep
    /// while anything can expire (allocations, with their permissions, channels and
    /// RFC 6062 connections, or a slot table left large after a peak); None when
    /// nothing can. Lifetimes are whole seconds, so a sweep a second walks the table
    /// once instead of keeping a deadline per permission.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let anything = !self.by_tuple.is_empty() || self.slots.capacity() > 64;
        anything.then(|| self.last_sweep + SWEEP_INTERVAL)
    }

    /// Expire allocations, permissions and channels; due at [`Server::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant, relays: &mut dyn RelayPorts) {
        self.last_sweep = now;
        let mut expired = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(a) = slot {
                if a.expires <= now {
                    expired.push(AllocId(i as u32));
                } else {
                    a.prune(now);
                }
            }
        }
        for id in expired {
            self.stats.allocations_expired += 1;
            self.free_alloc(id, relays);
        }
        self.tcp_timeout(now, relays);
        self.compact_slots();
    }

    /// Hand the slot table back after a peak, as [`shrink_sparse`] does for maps: once
    /// fewer than a quarter of its slots are live, the free slots past the last live one
    /// go. Ids stay valid (a live allocation never moves); this runs with the once-a-second
    /// timer, which walks the table anyway.
    fn compact_slots(&mut self) {
        let live = self.stats.allocations as usize;
        if self.slots.capacity() <= 64 || live * 4 >= self.slots.capacity() {
            return;
        }
        let keep = self
            .slots
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        if keep < self.slots.len() {
            self.slots.truncate(keep);
            self.free.retain(|&i| (i as usize) < keep);
        }
        self.slots.shrink_to(live * 2);
        self.free.shrink_to(self.free.len() * 2);
    }

    /// Release every allocation (shutdown).
    pub fn close_all(&mut self, relays: &mut dyn RelayPorts) {
        let ids: Vec<AllocId> = self.by_tuple.values().copied().collect();
        for id in ids {
            self.free_alloc(id, relays);
        }
    }
}

fn reply(r: Result<usize, WriteError>) -> Reply {
    match r {
        Ok(n) => Reply::Sent(n),
        Err(_) => Reply::Drop,
    }
}

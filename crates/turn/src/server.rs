//! The server state machine: STUN Binding, TURN requests, indications and ChannelData.

use crate::allocation::Allocation;
pub use crate::allocation::{FiveTuple, Transport};
use crate::auth::{authenticate, make_nonce, AuthResult, Integrity, UnauthLimiter};
use crate::config::ServerConfig;
use crate::quota::Quotas;
use crate::respond::{self, Seal};
use crate::stats::Stats;
use crate::PEER_HEADROOM;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_stun::{
    attr_type, encode_address, message_type, xor_addr, ChannelData, Class, Message, MessageWriter,
    Method, TransactionId, WriteError, CHANNEL_MAX, CHANNEL_MIN, MAGIC_COOKIE,
};

/// RFC 6062 TCP allocations (a child module: it extends `Server`).
#[path = "tcp_relay.rs"]
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
    #[error("could not open a relay socket: {0}")]
    Io(String),
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
    pub stats: Stats,
}

enum Reply {
    Sent(usize),
    Drop,
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
                    Reply::Drop => Transmit::None,
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
            return self.error(out, msg, 400, None);
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
            } => match msg.method {
                Method::ALLOCATE => {
                    self.allocate(now, tuple, msg, out, relays, username, identity, integrity)
                }
                Method::REFRESH => self.refresh(now, tuple, msg, out, relays, username, integrity),
                Method::CREATE_PERMISSION => {
                    self.create_permission(now, tuple, msg, out, username, integrity)
                }
                Method::CONNECT => {
                    self.tcp_connect(now, tuple, msg, out, relays, username, integrity)
                }
                Method::CONNECTION_BIND => {
                    self.connection_bind(now, tuple, msg, out, relays, username, integrity)
                }
                _ => self.channel_bind(now, tuple, msg, out, username, integrity),
            },
            AuthResult::BadRequest => self.error(out, msg, 400, None),
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
                    438
                } else {
                    401
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

    fn error(
        &mut self,
        out: &mut [u8],
        msg: &Message,
        code: u16,
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
                return self.error(out, msg, 400, None);
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

    /// The allocation of `tuple`, checking that the same credentials are used (441).
    fn owned_alloc(
        &self,
        tuple: &FiveTuple,
        username: &[u8],
        now: Instant,
    ) -> Result<AllocId, u16> {
        let id = *self.by_tuple.get(tuple).ok_or(437u16)?;
        match self.allocation(id) {
            // Expired but not yet swept by handle_timeout: gone for the client.
            Some(a) if a.expires <= now => Err(437),
            Some(a) if &*a.username == username => Ok(id),
            Some(_) => Err(441),
            None => Err(437),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message,
        out: &mut [u8],
        relays: &mut dyn RelayPorts,
        username: &[u8],
        identity: &[u8],
        key: Integrity,
    ) -> Reply {
        if let Some(&id) = self.by_tuple.get(&tuple) {
            let Some(a) = self.allocation(id) else {
                return self.error(out, msg, 437, Some(&key));
            };
            if a.expires <= now {
                // Expired, not yet swept: free it and allocate afresh.
                self.stats.allocations_expired += 1;
                self.free_alloc(id, relays);
                return self.allocate(now, tuple, msg, out, relays, username, identity, key);
            }
            if a.allocate_tid == msg.tid && &*a.username == username {
                // A retransmitted Allocate: answer as the first time.
                let (v4, v6) = (a.relay_v4, a.relay_v6);
                let left = a.expires.saturating_duration_since(now).as_secs() as u32;
                return self.allocate_success(out, msg, &key, tuple, (v4, v6), left, None, None);
            }
            return self.error(out, msg, 437, Some(&key));
        }
        let tcp = match msg.get(attr_type::REQUESTED_TRANSPORT) {
            None => return self.error(out, msg, 400, Some(&key)),
            Some([17, ..]) => false,
            Some([6, ..]) => match tcp_relay::check_allocate(&tuple, msg) {
                Ok(()) => true,
                Err(code) => return self.error(out, msg, code, Some(&key)),
            },
            Some(_) => return self.error(out, msg, 442, Some(&key)),
        };
        let requested = msg.get(attr_type::REQUESTED_ADDRESS_FAMILY);
        let additional = msg.get(attr_type::ADDITIONAL_ADDRESS_FAMILY);
        let want_v6 = match (requested, additional) {
            (Some(_), Some(_)) => return self.error(out, msg, 400, Some(&key)),
            (None, Some([2, ..])) | (None, None) => false,
            (None, Some(_)) => return self.error(out, msg, 400, Some(&key)),
            (Some([1, ..]), None) => false,
            (Some([2, ..]), None) => true,
            (Some(_), None) => return self.error(out, msg, 440, Some(&key)),
        };
        let dual = additional.is_some();
        let even = msg.get(attr_type::EVEN_PORT);
        let token = msg.get(attr_type::RESERVATION_TOKEN);
        if token.is_some() && (even.is_some() || requested.is_some() || dual) {
            return self.error(out, msg, 400, Some(&key));
        }
        let reserve_next = matches!(even, Some([b, ..]) if b & 0x80 != 0) && !dual;
        if self.draining {
            return self.error(out, msg, 508, Some(&key));
        }
        let cfg = self.cfg.clone();
        if !self
            .quotas
            .acquire(identity, cfg.user_quota, cfg.total_quota)
        {
            self.stats.quota_rejections += 1;
            return self.error(out, msg, 486, Some(&key));
        }
        let id = AllocId(match self.free.last() {
            Some(&i) => i,
            None => self.slots.len() as u32,
        });
        let mut new_token = None;
        let opened = match token {
            Some(t) => relays
                .claim(id, t, now)
                .ok_or(crate::RelayOpenError::Exhausted),
            None if tcp => relays.open_tcp(id, want_v6),
            None if reserve_next => relays.open_reserving(id, want_v6, now).map(|(a, t)| {
                new_token = Some(t);
                a
            }),
            None => relays.open(id, want_v6, even.is_some()),
        };
        let primary = match opened {
            Ok(a) => a,
            Err(e) => {
                self.quotas.release(identity);
                let code = match e {
                    crate::RelayOpenError::NoFamily => 440,
                    _ => 508,
                };
                return self.error(out, msg, code, Some(&key));
            }
        };
        // The IPv6 half of a dual allocation may fail alone (RFC 8656 §7.2): the
        // allocation goes ahead and ADDRESS-ERROR-CODE says why.
        let (secondary, v6_error) = match dual.then(|| relays.open(id, true, false)) {
            None => (None, None),
            Some(Ok(a)) => (Some(a), None),
            Some(Err(crate::RelayOpenError::NoFamily)) => (None, Some(440)),
            Some(Err(_)) => (None, Some(508)),
        };
        let lifetime = msg
            .u32(attr_type::LIFETIME)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(cfg.default_lifetime)
            .min(cfg.max_lifetime)
            .max(cfg.default_lifetime.min(cfg.max_lifetime));
        let (v4, v6) = if want_v6 {
            (None, Some(primary))
        } else {
            (Some(primary), secondary)
        };
        let a = Allocation {
            tuple,
            username: username.into(),
            identity: identity.into(),
            integrity: key,
            relay_v4: v4,
            relay_v6: v6,
            expires: now + lifetime,
            allocate_tid: msg.tid,
            permissions: Vec::new(),
            channels: Vec::new(),
            budget: cfg.max_bps,
            budget_at: now,
            tcp,
        };
        match self.free.pop() {
            Some(i) => self.slots[i as usize] = Some(a),
            None => self.slots.push(Some(a)),
        }
        self.by_tuple.insert(tuple, id);
        self.stats.allocations_created += 1;
        self.stats.allocations += 1;
        self.allocate_success(
            out,
            msg,
            &key,
            tuple,
            (v4, v6),
            lifetime.as_secs() as u32,
            v6_error,
            new_token,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate_success(
        &self,
        out: &mut [u8],
        msg: &Message,
        key: &Integrity,
        tuple: FiveTuple,
        (v4, v6): (Option<SocketAddr>, Option<SocketAddr>),
        lifetime: u32,
        v6_error: Option<u16>,
        token: Option<[u8; 8]>,
    ) -> Reply {
        self.success(out, msg, key, |w| {
            for relay in [v4, v6].into_iter().flatten() {
                w.xor_address(attr_type::XOR_RELAYED_ADDRESS, &relay)?;
            }
            w.u32(attr_type::LIFETIME, lifetime)?;
            w.xor_address(attr_type::XOR_MAPPED_ADDRESS, &tuple.client)?;
            if let Some(t) = token {
                w.attr(attr_type::RESERVATION_TOKEN, &t)?;
            }
            if let Some(code) = v6_error {
                let reason = switchboard_stun::reason_phrase(code).as_bytes();
                let mut v = [0u8; 64];
                v[..4].copy_from_slice(&[2, 0, (code / 100) as u8, (code % 100) as u8]);
                v[4..4 + reason.len()].copy_from_slice(reason);
                w.attr(attr_type::ADDRESS_ERROR_CODE, &v[..4 + reason.len()])?;
            }
            Ok(())
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn refresh(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message,
        out: &mut [u8],
        relays: &mut dyn RelayPorts,
        username: &[u8],
        key: Integrity,
    ) -> Reply {
        let id = match self.owned_alloc(&tuple, username, now) {
            Ok(id) => id,
            Err(code) => return self.error(out, msg, code, Some(&key)),
        };
        let cfg = self.cfg.clone();
        let requested = msg.u32(attr_type::LIFETIME);
        let family = msg.get(attr_type::REQUESTED_ADDRESS_FAMILY);
        let Some(a) = self.alloc_mut(id) else {
            return self.error(out, msg, 437, Some(&key));
        };
        let family_v6 = match family {
            None => None,
            Some([1, ..]) if a.relay_v4.is_some() => Some(false),
            Some([2, ..]) if a.relay_v6.is_some() => Some(true),
            Some(_) => return self.error(out, msg, 443, Some(&key)),
        };
        if requested == Some(0) {
            let dual = a.relay_v4.is_some() && a.relay_v6.is_some();
            match family_v6 {
                Some(v6) if dual => {
                    // Delete one family of a dual allocation.
                    let relay = if v6 {
                        a.relay_v6.take()
                    } else {
                        a.relay_v4.take()
                    };
                    if let Some(r) = relay {
                        relays.close(id, r);
                    }
                }
                _ => self.free_alloc(id, relays),
            }
            return self.success(out, msg, &key, |w| {
                w.u32(attr_type::LIFETIME, 0)?;
                Ok(())
            });
        }
        // RFC 8656 §7.3: max(min(requested, maximum), default), as for Allocate.
        let lifetime = requested
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(cfg.default_lifetime)
            .min(cfg.max_lifetime)
            .max(cfg.default_lifetime.min(cfg.max_lifetime));
        a.expires = now + lifetime;
        self.success(out, msg, &key, |w| {
            w.u32(attr_type::LIFETIME, lifetime.as_secs() as u32)?;
            Ok(())
        })
    }

    /// Check a peer for CreatePermission/ChannelBind: 443 on family mismatch, 403 when denied.
    fn check_peer(&mut self, id: AllocId, peer: SocketAddr) -> Result<(), u16> {
        let Some(a) = self.allocation(id) else {
            return Err(437);
        };
        if a.relay_for(&peer).is_none() {
            return Err(443);
        }
        if !self.cfg.peer_allowed(peer) {
            self.stats.peer_denied += 1;
            return Err(403);
        }
        Ok(())
    }

    fn create_permission(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message,
        out: &mut [u8],
        username: &[u8],
        key: Integrity,
    ) -> Reply {
        let id = match self.owned_alloc(&tuple, username, now) {
            Ok(id) => id,
            Err(code) => return self.error(out, msg, code, Some(&key)),
        };
        let mut count = 0;
        for attr in msg
            .attributes()
            .filter(|a| a.typ == attr_type::XOR_PEER_ADDRESS)
        {
            let Some(peer) = switchboard_stun::decode_xor_address(attr.value, &msg.tid) else {
                return self.error(out, msg, 400, Some(&key));
            };
            if let Err(code) = self.check_peer(id, peer) {
                return self.error(out, msg, code, Some(&key));
            }
            count += 1;
        }
        if count == 0 {
            return self.error(out, msg, 400, Some(&key));
        }
        let expires = now + self.cfg.permission_lifetime;
        let cfg = self.cfg.clone();
        if let Some(a) = self.alloc_mut(id) {
            for attr in msg
                .attributes()
                .filter(|a| a.typ == attr_type::XOR_PEER_ADDRESS)
            {
                if let Some(peer) = switchboard_stun::decode_xor_address(attr.value, &msg.tid) {
                    let own_only = !cfg.peer_filter.allows(peer.ip());
                    a.add_permission(peer.ip(), expires, own_only);
                }
            }
        }
        self.success(out, msg, &key, |_| Ok(()))
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message,
        out: &mut [u8],
        username: &[u8],
        key: Integrity,
    ) -> Reply {
        let id = match self.owned_alloc(&tuple, username, now) {
            Ok(id) => id,
            Err(code) => return self.error(out, msg, code, Some(&key)),
        };
        let number = match msg.get(attr_type::CHANNEL_NUMBER) {
            Some([a, b, ..]) => u16::from_be_bytes([*a, *b]),
            _ => return self.error(out, msg, 400, Some(&key)),
        };
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&number) {
            return self.error(out, msg, 400, Some(&key));
        }
        let Some(peer) = msg.xor_address(attr_type::XOR_PEER_ADDRESS) else {
            return self.error(out, msg, 400, Some(&key));
        };
        // RFC 6062: no channels on TCP allocations.
        if self.allocation(id).is_some_and(|a| a.tcp) {
            return self.error(out, msg, 400, Some(&key));
        }
        if let Err(code) = self.check_peer(id, peer) {
            return self.error(out, msg, code, Some(&key));
        }
        let (chan_life, perm_life) = (self.cfg.channel_lifetime, self.cfg.permission_lifetime);
        let own_only = !self.cfg.peer_filter.allows(peer.ip());
        let Some(a) = self.alloc_mut(id) else {
            return self.error(out, msg, 437, Some(&key));
        };
        if a.bind_channel(number, peer, now + chan_life).is_err() {
            return self.error(out, msg, 400, Some(&key));
        }
        a.add_permission(peer.ip(), now + perm_life, own_only);
        self.success(out, msg, &key, |_| Ok(()))
    }

    fn send_indication<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'a>,
    ) -> Transmit<'a> {
        let mut unknown = [0u16; 8];
        if respond::find_unknown(msg, false, &mut unknown) > 0 {
            return Transmit::None;
        }
        let (Some(peer), Some(data)) = (
            msg.xor_address(attr_type::XOR_PEER_ADDRESS),
            msg.get(attr_type::DATA),
        ) else {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        };
        self.send_to_peer(now, tuple, peer, data)
    }

    #[inline]
    fn channel_data<'a>(&mut self, now: Instant, tuple: FiveTuple, data: &'a [u8]) -> Transmit<'a> {
        let Some(cd) = ChannelData::parse(data) else {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        };
        let Some(id) = self.by_tuple.get(&tuple).copied() else {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        };
        let peer = match self
            .allocation(id)
            .and_then(|a| a.channel_peer(cd.channel, now))
        {
            Some(p) => p,
            None => {
                self.stats.dropped_no_permission += 1;
                return Transmit::None;
            }
        };
        self.relay_out(now, id, peer, cd.payload)
    }

    fn send_to_peer<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        peer: SocketAddr,
        data: &'a [u8],
    ) -> Transmit<'a> {
        let Some(id) = self.by_tuple.get(&tuple).copied() else {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        };
        self.relay_out(now, id, peer, data)
    }

    #[inline]
    fn relay_out<'a>(
        &mut self,
        now: Instant,
        id: AllocId,
        peer: SocketAddr,
        data: &'a [u8],
    ) -> Transmit<'a> {
        let (max_bps, ports) = (self.cfg.max_bps, (self.cfg.min_port, self.cfg.max_port));
        let Some(a) = self.slots.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return Transmit::None;
        };
        // Permissions are per IP, but the own-relay exemption is per address: `permits`
        // keeps such a permission to relay-range ports.
        let live = a.expires > now && !a.tcp && a.permits(&peer, now, ports);
        let (Some(relay), true) = (a.relay_for(&peer), live) else {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        };
        if !a.charge(data.len(), max_bps, now) {
            self.stats.dropped_bandwidth += 1;
            return Transmit::None;
        }
        self.stats.client_to_peer_packets += 1;
        self.stats.client_to_peer_bytes += data.len() as u64;
        Transmit::Peer {
            alloc: id,
            relay,
            peer,
            data,
        }
    }

    /// Handle a datagram that arrived on relay address `relay` of allocation `alloc`
    /// from `peer`. The payload is `buf[PEER_HEADROOM..PEER_HEADROOM + len]`; `buf`
    /// must have `PEER_TAILROOM` more bytes after it. The ChannelData header or Data
    /// indication is written in place in front of the payload.
    #[inline]
    pub fn handle_peer<'a>(
        &mut self,
        now: Instant,
        alloc: AllocId,
        peer: SocketAddr,
        buf: &'a mut [u8],
        len: usize,
    ) -> Transmit<'a> {
        let (max_bps, ports) = (self.cfg.max_bps, (self.cfg.min_port, self.cfg.max_port));
        let Some(a) = self
            .slots
            .get_mut(alloc.0 as usize)
            .and_then(Option::as_mut)
        else {
            return Transmit::None;
        };
        if a.expires <= now || !a.permits(&peer, now, ports) {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        }
        if !a.charge(len, max_bps, now) {
            self.stats.dropped_bandwidth += 1;
            return Transmit::None;
        }
        let tuple = a.tuple;
        let stream = tuple.transport != Transport::Udp;
        let padded = (len + 3) & !3;
        if buf.len() < PEER_HEADROOM + padded || len > u16::MAX as usize - 64 {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        }
        self.stats.peer_to_client_packets += 1;
        self.stats.peer_to_client_bytes += len as u64;
        if let Some(channel) = a.channel_for_peer(&peer, now) {
            let start = PEER_HEADROOM - 4;
            let mut header = [0u8; 4];
            ChannelData::write_header(channel, len as u16, &mut header);
            buf[start..PEER_HEADROOM].copy_from_slice(&header);
            // Over streams ChannelData is padded to a multiple of 4 (RFC 8656 §12.5).
            let end = if stream {
                buf[PEER_HEADROOM + len..PEER_HEADROOM + padded].fill(0);
                PEER_HEADROOM + padded
            } else {
                PEER_HEADROOM + len
            };
            return Transmit::Client {
                to: tuple,
                from: tuple.server,
                data: &buf[start..end],
            };
        }
        // Data indication: header, XOR-PEER-ADDRESS, DATA header, payload, padding.
        let alen = if peer.is_ipv4() { 8 } else { 20 };
        let start = PEER_HEADROOM - (20 + 4 + alen + 4);
        self.tid_counter = self.tid_counter.wrapping_add(1);
        let mut tid = [0u8; 12];
        tid[4..].copy_from_slice(&self.tid_counter.to_be_bytes());
        let tid = TransactionId(tid);
        let body_len = (4 + alen + 4 + padded) as u16;
        let h = &mut buf[start..];
        h[0..2].copy_from_slice(&message_type(Method::DATA, Class::Indication).to_be_bytes());
        h[2..4].copy_from_slice(&body_len.to_be_bytes());
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[8..20].copy_from_slice(&tid.0);
        h[20..22].copy_from_slice(&attr_type::XOR_PEER_ADDRESS.to_be_bytes());
        h[22..24].copy_from_slice(&(alen as u16).to_be_bytes());
        encode_address(&xor_addr(peer, &tid), &mut h[24..24 + alen]);
        h[24 + alen..26 + alen].copy_from_slice(&attr_type::DATA.to_be_bytes());
        h[26 + alen..28 + alen].copy_from_slice(&(len as u16).to_be_bytes());
        buf[PEER_HEADROOM + len..PEER_HEADROOM + padded].fill(0);
        Transmit::Client {
            to: tuple,
            from: tuple.server,
            data: &buf[start..PEER_HEADROOM + padded],
        }
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

    /// Expire allocations, permissions and channels. Call about once a second.
    pub fn handle_timeout(&mut self, now: Instant, relays: &mut dyn RelayPorts) {
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

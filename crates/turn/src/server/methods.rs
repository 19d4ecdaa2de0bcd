//! TURN request handlers (RFC 8656 §7-§11): Allocate, Refresh, CreatePermission,
//! ChannelBind, once the request has authenticated.

use super::{AllocId, Authed, FiveTuple, RelayPorts, Reply, Server};
use crate::allocation::Allocation;
use crate::auth::Integrity;
use crate::config::ServerConfig;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_stun::{attr_type, ErrorCode, Message, CHANNEL_MAX, CHANNEL_MIN, FAMILY_IPV6};

impl Server {
    pub(super) fn allocate(
        &mut self,
        r: &Authed,
        out: &mut [u8],
        relays: &mut dyn RelayPorts,
    ) -> Reply {
        let (now, tuple, msg, username, key) = (r.now, r.tuple, r.msg, r.username, r.key);
        let identity = r.identity;
        if let Some(&id) = self.by_tuple.get(&tuple) {
            let Some(a) = self.allocation(id) else {
                return self.refuse(r, out, ErrorCode::ALLOCATION_MISMATCH);
            };
            if a.expires <= now {
                // Expired, not yet swept: free it and allocate afresh.
                self.stats.allocations_expired += 1;
                self.free_alloc(id, relays);
                return self.allocate(r, out, relays);
            }
            if a.allocate_tid == msg.tid && &*a.username == username {
                // A retransmitted Allocate: answer as the first time.
                let (v4, v6) = (a.relay_v4, a.relay_v6);
                let left = a.expires.saturating_duration_since(now).as_secs() as u32;
                return self.allocate_success(out, msg, &key, tuple, (v4, v6), left, None, None);
            }
            return self.refuse(r, out, ErrorCode::ALLOCATION_MISMATCH);
        }
        let tcp = match msg.get(attr_type::REQUESTED_TRANSPORT) {
            None => return self.refuse(r, out, ErrorCode::BAD_REQUEST),
            Some([17, ..]) => false,
            Some([6, ..]) => match super::tcp_relay::check_allocate(&tuple, msg) {
                Ok(()) => true,
                Err(code) => return self.refuse(r, out, code),
            },
            Some(_) => return self.refuse(r, out, ErrorCode::UNSUPPORTED_TRANSPORT_PROTOCOL),
        };
        let requested = msg.get(attr_type::REQUESTED_ADDRESS_FAMILY);
        let additional = msg.get(attr_type::ADDITIONAL_ADDRESS_FAMILY);
        let want_v6 = match (requested, additional) {
            (Some(_), Some(_)) => return self.refuse(r, out, ErrorCode::BAD_REQUEST),
            (None, Some([2, ..])) | (None, None) => false,
            (None, Some(_)) => return self.refuse(r, out, ErrorCode::BAD_REQUEST),
            (Some([1, ..]), None) => false,
            (Some([2, ..]), None) => true,
            (Some(_), None) => return self.refuse(r, out, ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED),
        };
        let dual = additional.is_some();
        let even = msg.get(attr_type::EVEN_PORT);
        let token = msg.get(attr_type::RESERVATION_TOKEN);
        if token.is_some() && (even.is_some() || requested.is_some() || dual) {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        }
        let reserve_next = matches!(even, Some([b, ..]) if b & 0x80 != 0) && !dual;
        if self.draining {
            return self.refuse(r, out, ErrorCode::INSUFFICIENT_CAPACITY);
        }
        let cfg = self.cfg.clone();
        if !self
            .quotas
            .acquire(identity, cfg.user_quota, cfg.total_quota)
        {
            self.stats.quota_rejections += 1;
            return self.refuse(r, out, ErrorCode::ALLOCATION_QUOTA_REACHED);
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
                    crate::RelayOpenError::NoFamily => ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED,
                    _ => ErrorCode::INSUFFICIENT_CAPACITY,
                };
                return self.refuse(r, out, code);
            }
        };
        // The IPv6 half of a dual allocation may fail alone (RFC 8656 §7.2): the
        // allocation goes ahead and ADDRESS-ERROR-CODE says why.
        let (secondary, v6_error) = match dual.then(|| relays.open(id, true, false)) {
            None => (None, None),
            Some(Ok(a)) => (Some(a), None),
            Some(Err(crate::RelayOpenError::NoFamily)) => {
                (None, Some(ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED))
            }
            Some(Err(_)) => (None, Some(ErrorCode::INSUFFICIENT_CAPACITY)),
        };
        let lifetime = allocation_lifetime(&cfg, msg.u32(attr_type::LIFETIME));
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
    pub(super) fn allocate_success(
        &self,
        out: &mut [u8],
        msg: &Message,
        key: &Integrity,
        tuple: FiveTuple,
        (v4, v6): (Option<SocketAddr>, Option<SocketAddr>),
        lifetime: u32,
        v6_error: Option<ErrorCode>,
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
                w.address_error_code(FAMILY_IPV6, code)?;
            }
            Ok(())
        })
    }

    pub(super) fn refresh(
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
        let cfg = self.cfg.clone();
        let requested = msg.u32(attr_type::LIFETIME);
        let family = msg.get(attr_type::REQUESTED_ADDRESS_FAMILY);
        let Some(a) = self.alloc_mut(id) else {
            return self.refuse(r, out, ErrorCode::ALLOCATION_MISMATCH);
        };
        let family_v6 = match family {
            None => None,
            Some([1, ..]) if a.relay_v4.is_some() => Some(false),
            Some([2, ..]) if a.relay_v6.is_some() => Some(true),
            Some(_) => return self.refuse(r, out, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH),
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
        let lifetime = allocation_lifetime(&cfg, requested);
        a.expires = now + lifetime;
        self.success(out, msg, &key, |w| {
            w.u32(attr_type::LIFETIME, lifetime.as_secs() as u32)?;
            Ok(())
        })
    }

    pub(super) fn create_permission(&mut self, r: &Authed, out: &mut [u8]) -> Reply {
        let (now, msg, key) = (r.now, r.msg, r.key);
        let id = match self.owned(r, out) {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let mut count = 0;
        for attr in msg
            .attributes()
            .filter(|a| a.typ == attr_type::XOR_PEER_ADDRESS)
        {
            let Some(peer) = switchboard_stun::decode_xor_address(attr.value, &msg.tid) else {
                return self.refuse(r, out, ErrorCode::BAD_REQUEST);
            };
            if let Err(code) = self.check_peer(id, peer) {
                return self.refuse(r, out, code);
            }
            count += 1;
        }
        if count == 0 {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
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

    pub(super) fn channel_bind(&mut self, r: &Authed, out: &mut [u8]) -> Reply {
        let (now, msg, key) = (r.now, r.msg, r.key);
        let id = match self.owned(r, out) {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let number = match msg.get(attr_type::CHANNEL_NUMBER) {
            Some([a, b, ..]) => u16::from_be_bytes([*a, *b]),
            _ => return self.refuse(r, out, ErrorCode::BAD_REQUEST),
        };
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&number) {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        }
        let Some(peer) = msg.xor_address(attr_type::XOR_PEER_ADDRESS) else {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        };
        // RFC 6062: no channels on TCP allocations.
        if self.allocation(id).is_some_and(|a| a.tcp) {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        }
        if let Err(code) = self.check_peer(id, peer) {
            return self.refuse(r, out, code);
        }
        let (chan_life, perm_life) = (self.cfg.channel_lifetime, self.cfg.permission_lifetime);
        let own_only = !self.cfg.peer_filter.allows(peer.ip());
        let Some(a) = self.alloc_mut(id) else {
            return self.refuse(r, out, ErrorCode::ALLOCATION_MISMATCH);
        };
        if a.bind_channel(number, peer, now + chan_life).is_err() {
            return self.refuse(r, out, ErrorCode::BAD_REQUEST);
        }
        a.add_permission(peer.ip(), now + perm_life, own_only);
        self.success(out, msg, &key, |_| Ok(()))
    }
}

/// The lifetime an Allocate or Refresh gets (RFC 8656 §7.2, §7.3): the requested one
/// (the default when absent) capped at the maximum, and never below the default.
fn allocation_lifetime(cfg: &ServerConfig, requested_secs: Option<u32>) -> Duration {
    let floor = cfg.default_lifetime.min(cfg.max_lifetime);
    requested_secs
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(cfg.default_lifetime)
        .min(cfg.max_lifetime)
        .max(floor)
}

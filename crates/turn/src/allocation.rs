//! One TURN allocation: relayed addresses, permissions, channel bindings, lifetimes.
//! Permission and channel lists are short (a WebRTC call uses a handful), so a linear
//! scan of a small Vec beats a map and keeps idle allocations small.

use crate::auth::Integrity;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use switchboard_stun::TransactionId;

/// How long a channel number and peer stay reserved after the binding expires (RFC 8656 §12).
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Permission {
    pub ip: IpAddr,
    pub expires: Instant,
    /// Granted only through the own-relay exemption (the IP itself is denied, e.g.
    /// loopback in a development setup): then only relay-range ports of it count.
    pub relay_ports_only: bool,
}

#[derive(Debug)]
pub struct Channel {
    pub number: u16,
    pub peer: SocketAddr,
    pub expires: Instant,
}

/// How a client reaches the server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// The client's 5-tuple: transport, client address, server address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FiveTuple {
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

#[derive(Debug)]
pub struct Allocation {
    pub tuple: FiveTuple,
    pub username: Box<[u8]>,
    pub identity: Box<[u8]>,
    pub integrity: Integrity,
    /// IPv4 and IPv6 relayed addresses (dual allocation has both).
    pub relay_v4: Option<SocketAddr>,
    pub relay_v6: Option<SocketAddr>,
    pub expires: Instant,
    /// Transaction id of the Allocate that created it, to answer retransmissions.
    pub allocate_tid: TransactionId,
    pub permissions: Vec<Permission>,
    pub channels: Vec<Channel>,
    /// Byte budget for `max_bps` (token bucket) and when it was last refilled.
    pub budget: u64,
    pub budget_at: Instant,
    /// RFC 6062 TCP allocation: the relayed address is a TCP listener, peers are
    /// reached by Connect and ConnectionBind, never by Send or channels.
    pub tcp: bool,
}

impl Allocation {
    pub fn relay_for(&self, peer: &SocketAddr) -> Option<SocketAddr> {
        if peer.is_ipv4() {
            self.relay_v4
        } else {
            self.relay_v6
        }
    }

    /// Whether traffic with `peer` is permitted now; `relay_ports` is this server's
    /// relay port range, the only ports an own-relay-only permission covers.
    #[inline]
    pub fn permits(&self, peer: &SocketAddr, now: Instant, relay_ports: (u16, u16)) -> bool {
        let ip = peer.ip();
        self.permissions.iter().any(|p| {
            p.ip == ip
                && p.expires > now
                && (!p.relay_ports_only || (relay_ports.0..=relay_ports.1).contains(&peer.port()))
        })
    }

    /// Whether any permission for `ip` is live (regardless of ports).
    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == ip && p.expires > now)
    }

    pub fn add_permission(&mut self, ip: IpAddr, expires: Instant, relay_ports_only: bool) {
        match self.permissions.iter_mut().find(|p| p.ip == ip) {
            Some(p) => {
                p.expires = expires;
                p.relay_ports_only &= relay_ports_only;
            }
            None => self.permissions.push(Permission {
                ip,
                expires,
                relay_ports_only,
            }),
        }
    }

    /// The live channel bound to `number`.
    #[inline]
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
            .map(|c| c.peer)
    }

    /// The live channel bound to `peer`.
    #[inline]
    pub fn channel_for_peer(&self, peer: &SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == *peer && c.expires > now)
            .map(|c| c.number)
    }

    /// Bind or refresh a channel. Err when the number or the peer is bound (or cooling
    /// down) to something else.
    #[allow(clippy::result_unit_err)]
    pub fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        expires: Instant,
    ) -> Result<(), ()> {
        for c in &mut self.channels {
            if c.number == number && c.peer == peer {
                c.expires = expires;
                return Ok(());
            }
            if c.number == number || c.peer == peer {
                return Err(());
            }
        }
        self.channels.push(Channel {
            number,
            peer,
            expires,
        });
        Ok(())
    }

    /// Drop expired permissions and channels past their cooldown.
    pub fn prune(&mut self, now: Instant) {
        self.permissions.retain(|p| p.expires > now);
        self.channels.retain(|c| c.expires + CHANNEL_COOLDOWN > now);
    }

    /// Charge `bytes` against the bandwidth budget; false when over it.
    #[inline]
    pub fn charge(&mut self, bytes: usize, max_bps: u64, now: Instant) -> bool {
        if max_bps == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.budget_at);
        if !elapsed.is_zero() {
            let refill = (elapsed.as_micros() as u64).saturating_mul(max_bps) / 1_000_000;
            if refill > 0 {
                self.budget = (self.budget + refill).min(max_bps);
                self.budget_at = now;
            }
        }
        if self.budget >= bytes as u64 {
            self.budget -= bytes as u64;
            true
        } else {
            false
        }
    }
}

//! Runtime configuration of the TURN/STUN core (what the sans-IO server needs to know;
//! listening sockets are the driver's business).

use crate::filter::PeerFilter;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use switchboard_stun::{long_term_key_md5, long_term_key_sha256};

/// Precomputed keys of one static user (`--user NAME:PASS`).
#[derive(Clone)]
pub struct StaticUser {
    pub md5_key: [u8; 16],
    pub sha256_key: [u8; 32],
}

/// RFC 5780 behaviour discovery: the server answers on two IPs times two ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc5780 {
    pub ips: [IpAddr; 2],
    pub ports: [u16; 2],
}

impl Rfc5780 {
    /// The address that differs from `local` in IP and/or port, as requested.
    pub fn other(&self, local: SocketAddr, change_ip: bool, change_port: bool) -> SocketAddr {
        let ip = if change_ip {
            if local.ip() == self.ips[0] {
                self.ips[1]
            } else {
                self.ips[0]
            }
        } else {
            local.ip()
        };
        let port = if change_port {
            if local.port() == self.ports[0] {
                self.ports[1]
            } else {
                self.ports[0]
            }
        } else {
            local.port()
        };
        SocketAddr::new(ip, port)
    }
}

#[derive(Clone)]
pub struct ServerConfig {
    pub realm: String,
    /// SOFTWARE attribute in success responses; None to omit.
    pub software: Option<String>,
    users: HashMap<String, StaticUser>,
    /// TURN REST API shared secrets: the first signs, all verify.
    pub secrets: Vec<Vec<u8>>,
    /// Keys the stateless nonces; random at start.
    pub nonce_key: [u8; 32],
    pub nonce_lifetime: Duration,
    pub peer_filter: PeerFilter,
    /// Relay addresses: these IPs with ports in `min_port..=max_port` are always
    /// allowed peers (two clients of this server reach each other).
    pub relay_ips: Vec<IpAddr>,
    pub min_port: u16,
    pub max_port: u16,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub permission_lifetime: Duration,
    pub channel_lifetime: Duration,
    /// Allocations per user (0 = unlimited).
    pub user_quota: u32,
    /// Allocations in total (0 = unlimited).
    pub total_quota: u32,
    /// Relayed bytes per second per allocation, both directions together (0 = unlimited).
    pub max_bps: u64,
    /// 401 responses per source IP: sustained rate per second and burst.
    pub unauth_rate: u32,
    pub unauth_burst: u32,
    /// Behaviour discovery (RFC 5780); None when off.
    pub rfc5780: Option<Rfc5780>,
}

impl ServerConfig {
    pub fn new(realm: impl Into<String>) -> Self {
        ServerConfig {
            realm: realm.into(),
            software: Some(concat!("Switchboard ", env!("CARGO_PKG_VERSION")).to_string()),
            users: HashMap::new(),
            secrets: Vec::new(),
            nonce_key: rand::random(),
            nonce_lifetime: Duration::from_secs(600),
            peer_filter: PeerFilter::default(),
            relay_ips: Vec::new(),
            min_port: 49152,
            max_port: 65535,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            user_quota: 0,
            total_quota: 0,
            max_bps: 0,
            unauth_rate: 20,
            unauth_burst: 40,
            rfc5780: None,
        }
    }

    /// Add a static long-term credential. Keys depend on the realm, so set it first.
    pub fn add_user(&mut self, name: &str, password: &str) {
        let md5_key =
            long_term_key_md5(name.as_bytes(), self.realm.as_bytes(), password.as_bytes());
        let sha256_key =
            long_term_key_sha256(name.as_bytes(), self.realm.as_bytes(), password.as_bytes());
        self.users.insert(
            name.to_string(),
            StaticUser {
                md5_key,
                sha256_key,
            },
        );
    }

    pub fn user(&self, name: &[u8]) -> Option<&StaticUser> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.users.get(n))
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// True when `peer` is one of this server's own relay addresses.
    pub fn is_own_relay(&self, peer: SocketAddr) -> bool {
        (self.min_port..=self.max_port).contains(&peer.port())
            && self.relay_ips.iter().any(|ip| same_ip(*ip, peer.ip()))
    }

    /// Whether a peer may be relayed to.
    pub fn peer_allowed(&self, peer: SocketAddr) -> bool {
        self.is_own_relay(peer) || self.peer_filter.allows(peer.ip())
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V6(b)) | (IpAddr::V6(b), IpAddr::V4(a)) => {
            crate::filter::embedded_ipv4(&b) == Some(a)
        }
        _ => a == b,
    }
}

//! The relay address type, shared by the UDP and the RFC 6062 relay sockets.

use std::net::IpAddr;

/// A relay address: what the socket binds to and what clients are told (they differ
/// behind a 1:1 NAT, `--external-ip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayIp {
    pub bind: IpAddr,
    pub public: IpAddr,
}

//! Sans-IO TURN (RFC 8656, RFC 6156) and STUN (RFC 8489, RFC 5780) server core.
//!
//! The [`Server`] is a pure state machine: the driver hands it datagrams (or framed
//! stream messages) with the current time and gets back at most one [`Transmit`] per
//! input, borrowing either the input (relayed payloads, zero copy) or the caller's
//! output buffer (responses). Relay sockets are opened and closed through the
//! [`RelayPorts`] trait so tests can run without sockets.

pub mod allocation;
pub mod auth;
pub mod client;
pub mod config;
pub mod filter;
pub mod quota;
mod respond;
pub mod server;
pub mod stats;

pub use config::{Rfc5780, ServerConfig};
pub use filter::{IpRange, PeerFilter};
pub use quota::Quotas;
pub use server::tcp_relay::connection_owner;
pub use server::{AllocId, FiveTuple, RelayOpenError, RelayPorts, Server, Transmit, Transport};
pub use stats::Stats;

/// Bytes a driver must leave free before a peer datagram so the core can prepend a
/// ChannelData header or a Data indication in place.
pub const PEER_HEADROOM: usize = 48;
/// Bytes a driver must leave free after a peer datagram (padding).
pub const PEER_TAILROOM: usize = 4;

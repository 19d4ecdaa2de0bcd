//! Sans-IO TURN (RFC 8656, RFC 6156) and STUN (RFC 8489, RFC 5780) server core.
//!
//! The [`Server`] is a pure state machine: the driver hands it datagrams (or framed
//! stream messages) with the current time and gets back at most one [`Transmit`] per
//! input, borrowing either the input (relayed payloads, zero copy) or the caller's
//! output buffer (responses). Relay sockets are opened and closed through the
//! [`RelayPorts`] trait so tests can run without sockets.

#![forbid(unsafe_code)]

mod allocation;
mod auth;
pub mod config;
pub mod filter;
mod quota;
mod respond;
pub mod rest;
pub mod server;
mod stats;

pub use allocation::{Allocation, Channel, Permission, CHANNEL_COOLDOWN};
pub use auth::{Integrity, NONCE_LEN};
pub use config::{Rfc5780, ServerConfig};
pub use filter::{IpRange, PeerFilter};
pub use quota::Quotas;
pub use server::datapath::{PEER_HEADROOM, PEER_TAILROOM};
pub use server::tcp_relay::connection_owner;
pub use server::{AllocId, FiveTuple, RelayOpenError, RelayPorts, Server, Transmit, Transport};
pub use stats::Stats;

//! The Rust clients of Switchboard: one implementation for the end-to-end tests, the
//! load generator and, later, the gateways, so that the long-term auth dance, STUN
//! framing on streams and the signaling handshake are written (and fixed) once.
//!
//! - [`ClientAuth`] is the sans-IO core of a TURN client: it learns realm and nonce
//!   from 401/438 answers (RFC 8489 §9.2), signs requests and classifies responses.
//!   The TURN server tests drive the sans-IO server with it directly.
//! - [`UdpClient`] and [`StreamClient`] (TCP or TLS) run request/response
//!   transactions on blocking std sockets through the [`Transact`] trait, which adds
//!   the TURN requests themselves (Allocate, Refresh, CreatePermission, ChannelBind,
//!   Connect, ConnectionBind).
//! - [`signal`] holds the signaling clients (WebSocket and EventSource) and the
//!   builders of the messages they send.
//! - `sfu` (feature `sfu`) holds `SfuClient`, a str0m-based participant of an SFU room.
//!
//! Everything returns [`ClientError`] rather than panicking: the test suites add
//! their assertions on top, the load generator counts failures.

#![forbid(unsafe_code)]

mod auth;
mod error;
mod request;
#[cfg(feature = "sfu")]
pub mod sfu;
pub mod signal;
mod stream;
mod tls;
mod transact;
mod udp;

pub use auth::{error_code, ClientAuth, Credentials, Learn};
pub use error::ClientError;
pub use request::{random_tid, Reply, Request, SuccessInfo};
pub use stream::{Stream, StreamClient, READ_TIMEOUT};
pub use tls::{fingerprint, tls_connect};
pub use transact::{Body, Response, Stats, Transact, MAX_AUTH_RETRIES};
pub use udp::{UdpClient, INITIAL_RTO, MAX_TRIES};

/// REQUESTED-TRANSPORT value for UDP (protocol 17 in the top byte, RFC 8656 §18.7).
pub const TRANSPORT_UDP: u32 = 17 << 24;
/// REQUESTED-TRANSPORT value for TCP (RFC 6062 §6.1).
pub const TRANSPORT_TCP: u32 = 6 << 24;

//! Switchboard's signaling core (protocol v1, docs/signaling.md), sans-IO.
//!
//! The [`Hub`] holds rooms, peers and resumable sessions. Drivers (WebSocket, EventSource +
//! POST) feed it connection events, client messages and time, and carry out the
//! [`Output`]s it returns; it never touches a socket or the clock, so every rule is tested
//! directly. Messages are routed by peer id within one room only.

mod hub;
mod limits;
mod membership;
pub mod protocol;
mod session;
pub mod token;

pub use hub::{ConnId, Hub, HubConfig, HubStats, Output};
pub use protocol::ErrorCode;
pub use token::{Claims, Grants, TokenError};

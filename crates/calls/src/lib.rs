//! Direct calls: people signed in to a server are addressable as `user@domain` and call
//! each other, ring, accept, decline, cancel and invite a third person
//! (docs/signaling.md, "Direct calls").
//!
//! A call is a small private mesh room (`call-<32 hex>`): media goes browser to browser
//! and a far party on another server later joins that same room as a service
//! participant. What is here is the [`CallBook`], the sans-IO state machine of every
//! call of one server: fed the lines going up and down (a line is the room `@user` a
//! signed-in device keeps open), call requests from the devices, the membership of the
//! call rooms, federation events and time; it returns [`Action`]s (events for devices,
//! rooms to open and close, federation actions). The driver (crates/switchboard,
//! `calls/`) carries them out over signaling; nothing here touches a socket or a clock.
#![forbid(unsafe_code)]

mod address;
mod book;
mod call;
mod wire;

pub use address::{valid_user, Address, AddressError, Route};
pub use book::{Action, CallBook, CallConfig, FederationAction, FederationInput};
pub use wire::{CallResult, EndReason, Event, Reference, Request, RequestError};

/// The peer id of one device (one session) in its line room.
pub type DeviceId = std::sync::Arc<str>;

#[cfg(test)]
mod tests;

//! The SFU and its HTTP ingest end to end (the real binary, str0m participants on
//! loopback). One test binary for all of them: each binary links str0m and the client
//! crate again.
//!
//! - `rooms`: an SFU room over UDP (publish, forward, chat, metrics, the threshold);
//! - `tcp`: the same over ICE-TCP on the SFU's port;
//! - `whip`: WHIP publishing and WHEP playing.

#[path = "../common/mod.rs"]
mod common;

mod rooms;
mod tcp;
mod whip;

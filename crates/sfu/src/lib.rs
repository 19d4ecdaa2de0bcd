//! The selective forwarding unit (SFU), sans-IO: one `str0m::Rtc` per participant, rooms
//! that forward every publisher's RTP to its subscribers, and the policies around it
//! (simulcast layer choice, keyframe-request coalescing, active speaker). Fed datagrams,
//! signaling messages and the time; returns datagrams, signaling messages and its next
//! deadline. The driver (sockets, threads, the signaling hub) is in the binary.
//!
//! One [`Sfu`] is the rooms of one worker thread. Each participant's `Rtc` is ICE-lite
//! (local ufrag `<SfuConfig::ufrag_prefix><random>`, so the driver can route STUN to the
//! worker), in RTP mode (packets are forwarded, not depacketized) with bandwidth
//! estimation on. The protocol with the browser is SFU-DESIGN §3: offers, answers and
//! `{"sfu":...}` messages relayed by the signaling hub, the SDK's negotiated data channel.
#![forbid(unsafe_code)]

mod adapt;
mod config;
mod data;
mod forward;
mod negotiate;
mod output;
mod participant;
mod sdp;
mod sfu;
mod wire;

pub mod keyframe;
pub mod layer;
pub mod message;
pub mod rewrite;
pub mod speaker;

pub use config::{Grants, Limits, SfuConfig, MAX_IDLE_TIMEOUT};
pub use output::{GoneReason, SfuError, SfuOutput, SfuStats, SignalIn, SignalKind};
pub use sfu::Sfu;

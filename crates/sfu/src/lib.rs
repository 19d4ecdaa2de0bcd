//! The selective forwarding unit (SFU), sans-IO: one `str0m::Rtc` per participant, rooms
//! that forward every publisher's RTP to its subscribers, and the policies around it
//! (simulcast layer choice, keyframe-request coalescing, active speaker). Fed datagrams,
//! signaling messages and the time; returns datagrams, signaling messages and its next
//! deadline. The driver (sockets, threads, the signaling hub) is in the binary.
//!
//! One [`Sfu`] is the rooms of one worker thread. Each participant's `Rtc` is ICE-lite
//! (local ufrag `<SfuConfig::ufrag_prefix><random>`, so the driver can route STUN to the
//! worker), in RTP mode (packets are forwarded, not depacketized) with bandwidth
//! estimation on; codecs Opus, VP8 and H264. The protocol with the browser is
//! docs/signaling.md "SFU rooms": offers, answers and `{"sfu":...}` messages relayed by
//! the signaling hub, and the SDK's negotiated data channel.
//!
//! The driver's loop: [`Sfu::add_participant`] when a browser of an SFU room shows up
//! (or [`Sfu::add_fixed_participant`] for a one-shot WHIP/WHEP exchange),
//! [`Sfu::handle_signal`] for its relays, [`Sfu::handle_datagram`] for every datagram
//! and [`Sfu::handle_tcp_frame`] for every RFC 4571 frame of a TCP connection to a
//! `SfuConfig::tcp_candidates` address (the receiving `Rtc` is drained before the call
//! returns: str0m keeps one received RTP packet until polled), [`Sfu::flush`] after each
//! batch of those (the packets they forwarded leave then: one drain of each subscriber
//! per batch, not per packet), [`Sfu::handle_timeout`] at [`Sfu::poll_timeout`], and
//! [`Sfu::poll_output`] until `None` after each of these.
//!
//! Where things are: `sfu.rs` (the participant table, timers, output), `drain.rs` (polling
//! the `Rtc`s, the per-batch flush of forwarded packets), `demux.rs`
//! (datagram to participant), `negotiate.rs` (offer/answer, `tracks`), `fixed.rs`
//! (one-shot participants), `forward.rs` (RTP, keyframes, speaker), `local.rs` (in-process
//! media of server-side participants), `adapt.rs` (layer
//! choice, what the estimator probes for), `data.rs` (data channel), `sdp.rs` (the bits of
//! SDP read before str0m), and the pure policies in the public modules below.
#![forbid(unsafe_code)]

mod adapt;
pub mod client;
mod config;
mod data;
mod demux;
mod drain;
mod fixed;
mod forward;
mod local;
mod negotiate;
mod output;
mod participant;
mod sdp;
mod sfu;
mod wire;

pub mod framing;
pub mod keyframe;
pub mod layer;
pub mod link;
pub mod message;
pub mod rewrite;
pub mod speaker;

pub use config::{Grants, Limits, SfuConfig, MAX_IDLE_TIMEOUT};
pub use output::{
    GoneReason, LocalRtp, SfuError, SfuOutput, SfuStats, SignalIn, SignalKind, Transport,
};
pub use sfu::Sfu;

//! The selective forwarding unit (SFU), sans-IO: one `str0m::Rtc` per participant, rooms
//! that forward every publisher's RTP to its subscribers, and the policies around it
//! (simulcast layer choice, keyframe-request coalescing, active speaker). Fed datagrams,
//! signaling messages and the time; returns datagrams, signaling messages and its next
//! deadline. The driver (sockets, threads, the signaling hub) is in the binary.
#![forbid(unsafe_code)]

pub mod keyframe;
pub mod layer;
pub mod message;
pub mod rewrite;
pub mod speaker;

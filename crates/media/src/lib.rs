//! Media primitives of the SIP leg (issue 12): what a gateway needs between a phone's RTP
//! and the room's Opus tracks, written sans-IO so the drivers stay thin and everything can be
//! fed packets and `Instant`s in tests.
//!
//! - [`rtp`] — RTP/RTCP headers parsed and written in place, RFC 5761 demux, and a rewriter
//!   that keeps one continuous stream when the SIP leg changes source.
//! - [`srtp`] — SDES-SRTP (RFC 3711 / RFC 4568), AES_CM_128_HMAC_SHA1_80 and _32.
//! - [`dtls`] — DTLS-SRTP (RFC 5764) over OpenSSL, sans-IO, keys into two [`srtp`] contexts;
//!   RFC 7983 demux of a DTLS-SRTP port.
//! - [`ice_lite`] — ICE-lite responder (RFC 8445 §2.5) for the same port.
//! - [`g711`] — PCMU/PCMA.
//! - [`mix`] — mix-minus.
//! - [`resample`] — 8 kHz ↔ 48 kHz polyphase FIR.
//! - [`jitter`] — adaptive jitter buffer for the decode/mix path.
//! - [`dtmf`] — RFC 4733 telephone events, sender and receiver.
//! - [`opus`] — libopus encoder/decoder for 48 kHz mono 20 ms frames, with PLC and FEC.
//! - [`level`] — RFC 6464 audio level and a voice flag.
//! - [`bridge`] — one call's media: phone leg ↔ room, transcoded and mixed.
//!
//! Hot paths work on the caller's buffers and allocate nothing per packet or frame; only the
//! constructors allocate. Errors from input are values, never panics.

#![forbid(unsafe_code)]

pub mod bridge;
pub mod dtls;
pub mod dtmf;
pub mod g711;
pub mod ice_lite;
pub mod jitter;
pub mod level;
pub mod mix;
pub mod opus;
pub mod resample;
pub mod rtp;
pub mod srtp;

//! The bridge's vocabulary: what the driver configures ([`PhoneConfig`]), feeds
//! ([`RoomAudio`], phone datagrams) and gets back ([`Tick`], [`PhoneArrival`],
//! [`RoomFrame`]), the counters and the errors. Kept apart from [`super::CallMedia`] so
//! that the call's logic reads on its own.

use crate::dtmf::DtmfError;
use crate::g711::Law;
use crate::jitter::JitterError;
use crate::mix::MixError;
use crate::opus::OpusError;
use crate::rtp::{RtpError, RTP_HEADER_LEN};
use crate::srtp::{SrtpError, SrtpProfile};
use std::time::Duration;
use thiserror::Error;

/// The codec of a room member's audio (what the SFU negotiated for its track): the same
/// codecs as the phone's, Opus or a G.711 law (a browser asked to send G.711).
pub type RoomCodec = PhoneCodec;

/// The tick: one frame on both sides.
pub const FRAME: Duration = Duration::from_millis(20);
/// Smallest `room_out` a tick takes: any 20 ms Opus frame fits (RFC 6716 §3.2.1: 1275 bytes
/// plus the TOC byte).
pub const MIN_ROOM_OUT: usize = 1276;
/// Smallest `phone_out` a tick takes: RTP header, the largest Opus frame, an SRTP tag.
pub const MIN_PHONE_OUT: usize = RTP_HEADER_LEN + MIN_ROOM_OUT + 10;

/// The phone leg's audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneCodec {
    /// PCMU or PCMA at 8 kHz.
    G711(Law),
    /// Opus at 48 kHz (mono on the wire from us; stereo from the phone is downmixed).
    Opus,
}

impl PhoneCodec {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            PhoneCodec::G711(_) => 8000,
            PhoneCodec::Opus => 48_000,
        }
    }

    /// RTP timestamp units per 20 ms frame.
    pub fn frame_ticks(self) -> u32 {
        self.clock_rate() / 50
    }
}

/// What the SIP leg negotiated (from the SDP offer/answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneConfig {
    /// Audio codec.
    pub codec: PhoneCodec,
    /// Its payload type, sent and accepted.
    pub pt: u8,
    /// RFC 4733 `telephone-event` payload type (clock rate = the codec's).
    pub telephone_event: Option<u8>,
    /// Our SSRC.
    pub ssrc: u32,
    /// SDES master key||salt (30 bytes each): ours (to protect what we send), theirs (to
    /// unprotect what we receive). `None`: plain RTP.
    pub srtp: Option<(Vec<u8>, Vec<u8>)>,
    /// The `a=crypto` suite of `srtp`.
    pub srtp_profile: SrtpProfile,
    /// The phone's `a=ptime` (ms), if stated. G.711 frames pass through unchanged only at
    /// 20 ms (the tick); at any other ptime they are transcoded.
    pub ptime: Option<u32>,
}

/// What a datagram from the phone was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneIn {
    /// Audio of the negotiated payload type.
    Audio,
    /// A telephone-event packet for this digit (each packet of a key press says so;
    /// [`super::CallMedia::poll_dtmf`] reports the press once).
    Dtmf(char),
    /// RTCP (authenticated, if SRTP).
    Rtcp,
    /// Valid RTP we do not use (another payload type, comfort noise, a non-DTMF event).
    Ignored,
}

/// A payload for the room (the phone's voice), written into the caller's `room_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFrame {
    /// Its bytes in `room_out` (0: nothing to send).
    pub len: usize,
    /// Its codec: Opus, or the phone's G.711 passed through.
    pub codec: RoomCodec,
    /// RFC 6464 level: 0 loudest … 127 silence (−dBov).
    pub level: u8,
    /// Whether it is voice (for the extension's V bit).
    pub voice: bool,
    /// Its sequence number on the room track (extended: the driver adds its base and
    /// takes the low 16 bits). Consecutive while the tick sends; a forwarded packet keeps
    /// the phone's gaps and order.
    pub seq: u64,
    /// Its place on the track's timeline, in 48 kHz samples since the call started: the
    /// RTP timestamp is a base plus this (Opus), or plus a sixth of it (G.711's 8 kHz).
    pub position: u64,
}

impl RoomFrame {
    pub(super) fn none() -> RoomFrame {
        RoomFrame {
            len: 0,
            codec: RoomCodec::Opus,
            level: crate::level::SILENCE,
            voice: false,
            seq: 0,
            position: 0,
        }
    }
}

/// One RTP packet of a room member's audio, as the driver received it.
#[derive(Debug, Clone, Copy)]
pub struct RoomAudio<'a> {
    /// Any id the driver picks per remote track.
    pub source: u64,
    /// What the SFU negotiated for the track.
    pub codec: RoomCodec,
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP payload.
    pub payload: &'a [u8],
}

/// What one tick produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Bytes of the packet for the phone in `phone_out` (0: nothing to send).
    pub phone_len: usize,
    /// The payload for the room in `room_out` (`len` 0: nothing to send).
    pub room: RoomFrame,
}

/// What a datagram from the phone was, and what of it goes to the room at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneArrival {
    /// What it was.
    pub kind: PhoneIn,
    /// Its G.711 payload forwarded to the room on arrival, in `room_out`.
    pub room: Option<RoomFrame>,
}

/// Counters since the call started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaStats {
    /// Datagrams from the phone accepted (RTP and RTCP).
    pub phone_packets_in: u64,
    /// Their bytes (as received).
    pub phone_bytes_in: u64,
    /// Datagrams from the phone refused (garbage, SRTP auth/replay failure).
    pub phone_rejected: u64,
    /// Packets written for the phone.
    pub phone_packets_out: u64,
    /// Their bytes.
    pub phone_bytes_out: u64,
    /// Phone frames lost, late, concealed (jitter buffer view).
    pub phone_lost: u64,
    /// Phone packets that came after their playout.
    pub phone_late: u64,
    /// Phone frames concealed (loss and underruns).
    pub phone_concealed: u64,
    /// Room Opus payloads taken.
    pub room_packets_in: u64,
    /// Their bytes.
    pub room_bytes_in: u64,
    /// Room payloads refused (too large, too many sources).
    pub room_rejected: u64,
    /// Room payloads produced (Opus or passed-through G.711).
    pub room_packets_out: u64,
    /// Their bytes.
    pub room_bytes_out: u64,
    /// Room frames lost (all sources, removed ones included).
    pub room_lost: u64,
    /// Room packets that came after their playout.
    pub room_late: u64,
    /// Room frames concealed by Opus PLC or FEC.
    pub room_concealed: u64,
    /// Opus frames (either side) rebuilt from the next packet's in-band FEC (counted in
    /// the concealed ones too).
    pub fec_recovered: u64,
    /// Opus payloads (either side) libopus could not decode.
    pub decode_errors: u64,
    /// Audio frames to the phone that are a room member's G.711 payload as it came.
    pub frames_to_phone_passed: u64,
    /// Audio frames to the phone we encoded (the mix, comfort silence).
    pub frames_to_phone_transcoded: u64,
    /// Frames to the room that are the phone's G.711 payload as it came.
    pub frames_to_room_passed: u64,
    /// Frames to the room we encoded (Opus; or G.711 coded from a concealed phone frame).
    pub frames_to_room_transcoded: u64,
    /// Digits received from the phone.
    pub dtmf_in: u64,
    /// Digits sent to the phone.
    pub dtmf_out: u64,
}

/// Why a packet, tick or command failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BridgeError {
    /// Not RTP or RTCP (STUN, DTLS, garbage).
    #[error("not an RTP or RTCP packet")]
    NotRtp,
    /// Malformed RTP/RTCP, or an output buffer too small for the header.
    #[error("RTP: {0}")]
    Rtp(#[from] RtpError),
    /// SRTP failure (authentication, replay, keys).
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
    /// libopus failure.
    #[error("Opus: {0}")]
    Opus(#[from] OpusError),
    /// Jitter buffer refused a packet or its configuration.
    #[error("jitter buffer: {0}")]
    Jitter(#[from] JitterError),
    /// Mixer failure (frame length mismatch).
    #[error("mixer: {0}")]
    Mix(#[from] MixError),
    /// DTMF sender/receiver failure.
    #[error("DTMF: {0}")]
    Dtmf(#[from] DtmfError),
    /// `send_dtmf` without a negotiated telephone-event payload type.
    #[error("no telephone-event payload type negotiated")]
    NoTelephoneEvent,
    /// Not one of `0-9 * # A-D`.
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(char),
    /// The configuration cannot work.
    #[error("bad phone configuration: {0}")]
    BadConfig(&'static str),
    /// An output buffer cannot hold the frame.
    #[error("output buffer too small")]
    BufferTooSmall,
}

//! The media core of one gateway call: a SIP phone leg bridged with a WebRTC room, sans-IO.
//!
//! The room side is a client of the SFU: it receives one stream per other member (Opus, or
//! G.711 from a browser asked to send it) and sends one stream, the phone's voice. The SFU
//! never sends the phone's own voice back, so the sum of everything received *is* the
//! phone's mix-minus. The phone side speaks whatever the SIP leg negotiated (PCMU/PCMA or
//! Opus, optional SDES-SRTP, RFC 4733 DTMF).
//!
//! ```text
//! phone RTP ─ SRTP⁻¹ ─ jitter ─ G.711⁻¹ + 8k→48k (or Opus⁻¹) ─ level ─ Opus ─▶ room
//! room ×N ─ jitter ─ Opus⁻¹/PLC (or G.711⁻¹) ─ Σ ─ 48k→8k + G.711 (or Opus) ─ RTP ─ SRTP ─▶ phone
//! ```
//!
//! Transcoding is skipped where it would change nothing but the quality (docs/sip.md):
//! - room → phone: when the only source in the mix sends the phone's G.711 law in 20 ms
//!   frames, its payload goes to the phone as it came (in our RTP header, under our SRTP);
//! - phone → room: when the phone sends G.711 in 20 ms frames and every source heard lately
//!   sends G.711, the phone's payload goes to the room as it came ([`Tick::room_codec`]
//!   says so; the level is still measured on the decoded frame).
//!
//! Either falls back to the mix or to Opus the tick the condition ends. Each direction's
//! frames are counted as passed through or transcoded ([`MediaStats`]).
//!
//! [`CallMedia`] is fed datagrams and `Instant`s and ticked every 20 ms; each tick writes at
//! most one packet for the phone and one payload for the room into the caller's
//! buffers. The driver owns sockets, timers and the str0m session (which adds the RFC 6464
//! level extension from [`Tick::room_level`]). The phone gets a packet every tick — comfort
//! silence when nobody in the room talks — so its NAT binding and RTP timeout stay alive.
//!
//! Buffers are allocated in the constructor (and once per new room source); ticks and
//! packets allocate nothing. Every input error is a value.

mod g711_frames;
mod phone;
mod room;

use crate::dtmf::DtmfError;
use crate::g711::Law;
use crate::jitter::{JitterBuffer, JitterError, Pop};
use crate::mix::MixError;
use crate::opus::{OpusDecoder, OpusError, VoiceBand, FRAME_SAMPLES};
use crate::rtp::{RtpError, RTP_HEADER_LEN};
use crate::srtp::{SrtpError, SrtpProfile};
use phone::{PhoneLeg, ToPhone};
use room::Room;
pub use room::{RoomCodec, MAX_MIXED, MAX_SOURCES, SOURCE_TIMEOUT};
use std::time::{Duration, Instant};
use thiserror::Error;

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
    /// [`CallMedia::poll_dtmf`] reports the press once).
    Dtmf(char),
    /// RTCP (authenticated, if SRTP).
    Rtcp,
    /// Valid RTP we do not use (another payload type, comfort noise, a non-DTMF event).
    Ignored,
}

/// What one tick produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Bytes of the packet for the phone in `phone_out` (0: nothing to send).
    pub phone_len: usize,
    /// Bytes of the payload for the room in `room_out` (0: nothing to send).
    pub room_len: usize,
    /// The codec of that payload: Opus, or the phone's G.711 passed through.
    pub room_codec: RoomCodec,
    /// RFC 6464 level of the room frame: 0 loudest … 127 silence (−dBov).
    pub room_level: u8,
    /// Whether the room frame is voice (for the extension's V bit).
    pub room_voice: bool,
    /// Samples the room frame covers at 48 kHz (advance the RTP timestamp by this, or by a
    /// sixth of it at G.711's 8 kHz clock).
    pub room_samples: u32,
}

/// What the room hears of a phone is coded no wider than the phone sends: G.711 ends at
/// 4 kHz.
fn band_of(cfg: &PhoneConfig) -> VoiceBand {
    match cfg.codec {
        PhoneCodec::G711(_) => VoiceBand::Narrow,
        PhoneCodec::Opus => VoiceBand::Full,
    }
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

/// One call's media: the phone leg, the room sources and the mix (see the module doc).
#[derive(Debug)]
pub struct CallMedia {
    phone: PhoneLeg,
    room: Room,
    held: bool,
    /// Whether the room side can carry each G.711 law (μ, A): what its WebRTC leg
    /// negotiated. Without it the phone's voice goes as Opus whatever the room speaks.
    room_takes: [bool; 2],
    /// The phone's voice at 48 kHz, this tick.
    phone_pcm: Vec<i16>,
}

impl CallMedia {
    /// The media of a call with the negotiated `cfg`.
    pub fn new(cfg: PhoneConfig, now: Instant) -> Result<CallMedia, BridgeError> {
        let mut room = Room::new()?;
        room.set_band(band_of(&cfg))?;
        Ok(CallMedia {
            phone: PhoneLeg::new(cfg, now)?,
            room,
            held: false,
            room_takes: [true; 2],
            phone_pcm: vec![0; FRAME_SAMPLES],
        })
    }

    /// A datagram from the phone's RTP port (RTP or RTCP; SRTP is unprotected in place). An
    /// error means garbage or an authentication failure: the driver latches the phone's
    /// address (symmetric RTP) only on `Ok(Audio | Dtmf | Rtcp)`.
    pub fn on_phone_packet(
        &mut self,
        now: Instant,
        packet: &mut [u8],
    ) -> Result<PhoneIn, BridgeError> {
        self.phone.on_packet(now, packet)
    }

    /// The RTP payload of room member `source` (any id the driver picks per remote track),
    /// in `codec`, with its RTP sequence number and timestamp.
    pub fn on_room_audio(
        &mut self,
        now: Instant,
        source: u64,
        codec: RoomCodec,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) {
        self.room
            .on_audio(now, source, codec, seq, timestamp, payload);
    }

    /// [`CallMedia::on_room_audio`] of an Opus payload.
    pub fn on_room_opus(
        &mut self,
        now: Instant,
        source: u64,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) {
        self.on_room_audio(now, source, RoomCodec::Opus, seq, timestamp, payload);
    }

    /// Forgets a room source (its track ended).
    pub fn remove_room_source(&mut self, source: u64) {
        self.room.remove(source);
    }

    /// Runs one 20 ms frame: pulls a frame from every jitter buffer (decoding or concealing
    /// it), mixes the room for the phone and encodes the phone for the room (or passes
    /// G.711 through, see the module doc). Writes the phone's packet (RTP header + payload,
    /// SRTP-protected) into `phone_out` and the room's payload (its codec in
    /// [`Tick::room_codec`]) into `room_out`; a length of 0 means nothing to send on that
    /// side.
    /// Outputs shorter than [`MIN_PHONE_OUT`] / [`MIN_ROOM_OUT`] are refused before anything
    /// happens, so that a tick either runs on both sides or not at all.
    pub fn tick(
        &mut self,
        now: Instant,
        phone_out: &mut [u8],
        room_out: &mut [u8],
    ) -> Result<Tick, BridgeError> {
        if phone_out.len() < MIN_PHONE_OUT || room_out.len() < MIN_ROOM_OUT {
            return Err(BridgeError::BufferTooSmall);
        }
        // Every stream is played (and discarded on hold too), so the buffers keep their
        // timing; the room first, as what goes to it depends on what it speaks.
        // Neither side's 48 kHz form is computed where a frame passes through as it came
        // (the resampler was a quarter of a passthrough call's CPU).
        let phone_law = self.phone.passthrough_law().filter(|_| !self.held);
        let mixed = self.room.mix(now, phone_law);
        // Phone → room: its G.711 as it came to a room that speaks G.711, else Opus.
        let passes_to_room =
            phone_law.is_some_and(|law| self.room.speaks_g711() && self.room_takes(law));
        self.phone.play(now, &mut self.phone_pcm, !passes_to_room);
        let mut room_codec = RoomCodec::Opus;
        let to_room = match self.phone.g711_frame() {
            _ if self.held => Ok((0, crate::level::SILENCE, false)),
            Some((law, frame)) if passes_to_room => {
                room_codec = RoomCodec::G711(law);
                self.room.g711_phone(law, frame, room_out)
            }
            _ => self.room.encode_phone(&self.phone_pcm, room_out),
        };
        // Room → phone, even if the room side failed: our stream's timing must not depend on
        // it. (With outputs of the minimum size neither side fails in practice.) The only
        // source's G.711 of the phone's law as it came, else the mix encoded.
        let to_phone = mixed.and_then(|()| {
            if self.held {
                self.phone.skip_frame();
                return Ok(0);
            }
            let frame = match (self.phone.passthrough_law(), self.room.single_g711()) {
                (Some(ours), Some((law, payload))) if ours == law => ToPhone::Payload(payload),
                _ => ToPhone::Mix(self.room.mixed()),
            };
            self.phone.send(now, frame, phone_out)
        });
        let (room_len, room_level, room_voice) = to_room?;
        let phone_len = to_phone?;
        Ok(Tick {
            phone_len,
            room_len,
            room_codec,
            room_level,
            room_voice,
            room_samples: FRAME_SAMPLES as u32,
        })
    }

    /// Sends `digit` to the phone as RFC 4733 events for `duration_ms` (needs a negotiated
    /// telephone-event payload type). Its packets come out of [`CallMedia::tick`] in place
    /// of audio.
    pub fn send_dtmf(
        &mut self,
        now: Instant,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), BridgeError> {
        self.phone.send_dtmf(now, digit, duration_ms)
    }

    /// The next digit received from the phone (each key press once).
    pub fn poll_dtmf(&mut self) -> Option<char> {
        self.phone.poll_dtmf()
    }

    /// Applies a changed negotiation (re-INVITE): codec, payload types, SSRC, keys. Our
    /// sequence numbers and timestamps continue; SRTP state is kept when the keys are.
    pub fn set_phone_codec(&mut self, cfg: PhoneConfig) -> Result<(), BridgeError> {
        self.room.set_band(band_of(&cfg))?;
        self.phone.reconfigure(cfg)
    }

    /// Which G.711 laws the room side can send (its WebRTC leg negotiated them; both by
    /// default). A law it cannot send is never passed through to the room.
    pub fn set_room_g711(&mut self, mu: bool, a: bool) {
        self.room_takes = [mu, a];
    }

    fn room_takes(&self, law: Law) -> bool {
        self.room_takes[usize::from(law == Law::A)]
    }

    /// Holds or resumes the call: while held nothing goes to the phone and the room gets no
    /// frames from it.
    pub fn set_hold(&mut self, held: bool) {
        self.held = held;
    }

    /// Room sources known (the live ones and those silent for a while).
    pub fn room_source_count(&self) -> usize {
        self.room.source_count()
    }

    /// Whether the call is held.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Counters since the call started.
    pub fn stats(&self) -> MediaStats {
        let mut stats = MediaStats::default();
        self.phone.add_stats(&mut stats);
        self.room.add_stats(&mut stats);
        stats
    }
}

/// How a tick's frame of one stream was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Played {
    /// Decoded from its packet.
    Frame,
    /// Rebuilt from the next packet's in-band FEC.
    Recovered,
    /// Rebuilt by PLC (or a bad packet concealed).
    Concealed,
    /// The stream is not playing: silence.
    Silent,
}

/// Plays one 20 ms frame of an Opus stream into `out` (FRAME_SAMPLES long): the packet due,
/// or its FEC rebuild from the next packet, or PLC; `scratch` takes a whole packet's decode
/// (up to 120 ms). `fec_done` remembers the timestamp last rebuilt from FEC, so that a frame
/// waited for over several ticks is rebuilt once and PLC continues it. Returns how, and
/// whether libopus refused a packet.
fn play_opus(
    jitter: &mut JitterBuffer,
    decoder: &mut OpusDecoder,
    fec_done: &mut Option<u32>,
    now: Instant,
    scratch: &mut [i16],
    out: &mut [i16],
) -> (Played, bool) {
    // What is missing: a corrupt packet (libopus refused it), or a frame not here (with the
    // timestamp it would have had).
    let missing = match jitter.pop(now) {
        Pop::Idle => {
            out.fill(0);
            return (Played::Silent, false);
        }
        Pop::Frame { payload, .. } => match decoder.decode(payload, scratch) {
            Ok(n) => {
                // A packet longer than the tick (40/60 ms ptime) keeps its first 20 ms.
                let n = n.min(out.len());
                out[..n].copy_from_slice(&scratch[..n]);
                out[n..].fill(0);
                return (Played::Frame, false);
            }
            Err(_) => None,
        },
        Pop::Conceal { timestamp } => Some(timestamp),
    };
    // A frame not here while the packet after it is: rebuild it from that packet's FEC, once.
    // Otherwise (a corrupt packet, nothing after it yet, rebuilt already) PLC.
    let fec_source = match missing {
        Some(timestamp) if *fec_done != Some(timestamp) => jitter.peek(),
        _ => None,
    };
    let (how, rebuilt) = match fec_source {
        Some(next) => {
            *fec_done = missing;
            (Played::Recovered, decoder.recover(next, out))
        }
        None => (Played::Concealed, decoder.conceal(out)),
    };
    if rebuilt.is_err() {
        out.fill(0);
        return (Played::Concealed, missing.is_none());
    }
    (how, missing.is_none())
}

#[cfg(test)]
mod tests;

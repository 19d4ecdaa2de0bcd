//! The media core of one gateway call: a SIP phone leg bridged with a WebRTC room, sans-IO.
//!
//! The room side is a client of the SFU: it receives one stream per other member (Opus, or
//! G.711 from a browser asked to send it) and sends one stream, the phone's voice. The SFU
//! never sends the phone's own voice back, so the sum of everything received *is* the
//! phone's mix-minus. The phone side speaks whatever the SIP leg negotiated (PCMU/PCMA or
//! Opus, optional SDES-SRTP, RFC 4733 DTMF).
//!
//! ```text
//! phone RTP ─ SRTP⁻¹ ─ jitter ─ G.711⁻¹ + 8k→48k (or Opus⁻¹) ─ level ─ Opus ─▶ room   (tick)
//! room ×N ─ jitter ─ Opus⁻¹/PLC (or G.711⁻¹) ─ Σ ─ 48k→8k + G.711 (or Opus) ─ RTP ─ SRTP ─▶ phone
//! passthrough: phone G.711 ─ level ─▶ room;  one member's G.711 ─ RTP ─ SRTP ─▶ phone (arrival)
//! ```
//!
//! Transcoding is skipped where it would change nothing but the quality (docs/sip.md):
//! - room → phone: when the only source in the mix sends the phone's G.711 law in 20 ms
//!   frames, its payload goes to the phone as it came (in our RTP header, under our SRTP);
//! - phone → room: when the phone sends G.711 in 20 ms frames and every source heard lately
//!   sends G.711, the phone's payload goes to the room as it came ([`RoomFrame::codec`]
//!   says so; the level is still measured on the decoded frame).
//!
//! A passed-through frame leaves when it arrives (bridge/forward.rs): once the tick has
//! passed one frame through, the next packets of that stream skip the jitter buffer and
//! the tick, and [`CallMedia::on_room_audio`] / [`CallMedia::on_phone_packet`] return them
//! ready to send, renumbered onto our stream. The jitter buffers and the tick remain for
//! the mix and transcoding. A passthrough adds no delay of ours this way (before: the
//! jitter buffer's 20 ms plus its jitter estimate, plus up to a tick, each way).
//!
//! Either direction falls back to the mix or to Opus at the tick the condition ends (or
//! the forwarded stream stays silent for 200 ms); the stream's sequence
//! numbers and timestamps go on from where forwarding left them, and the packets already
//! forwarded are not played again. Each direction's frames are counted as passed through
//! or transcoded ([`MediaStats`]).
//!
//! [`CallMedia`] is fed datagrams and `Instant`s and ticked every 20 ms; each input or
//! tick writes at most one packet for the phone and one payload for the room into the
//! caller's buffers, to be sent at once. The driver owns sockets, timers and the str0m
//! session (which adds the RFC 6464 level extension from [`RoomFrame::level`]). The phone
//! gets a packet every 20 ms — forwarded, or from the tick, comfort silence when nobody
//! in the room talks — so its NAT binding and RTP timeout stay alive.
//!
//! Buffers are allocated in the constructor (and once per new room source); ticks and
//! packets allocate nothing. Every input error is a value.

mod forward;
mod g711_frames;
mod phone;
mod room;
mod types;

use crate::g711::Law;
use crate::jitter::{JitterBuffer, Pop};
use crate::opus::{OpusDecoder, VoiceBand, FRAME_SAMPLES};
use forward::{too_soon, Forward};
use phone::{PhoneLeg, Taken, ToPhone};
use room::Room;
pub use room::{MAX_MIXED, MAX_SOURCES, SOURCE_TIMEOUT};
use std::time::Instant;
pub use types::*;

/// What the room hears of a phone is coded no wider than the phone sends: G.711 ends at
/// 4 kHz.
fn band_of(cfg: &PhoneConfig) -> VoiceBand {
    match cfg.codec {
        PhoneCodec::G711(_) => VoiceBand::Narrow,
        PhoneCodec::Opus => VoiceBand::Full,
    }
}

/// A room member's G.711 forwarded to the phone on arrival.
#[derive(Debug)]
struct ToPhoneForward {
    source: u64,
    law: Law,
    forward: Forward,
    /// A packet of the source could not be forwarded (not a whole frame, another codec):
    /// the next tick ends forwarding, and the jitter buffer has that packet.
    broken: bool,
}

/// The phone's G.711 forwarded to the room on arrival.
#[derive(Debug)]
struct ToRoomForward {
    law: Law,
    forward: Forward,
    broken: bool,
}

/// One call's media: the phone leg, the room sources and the mix (see the module doc).
#[derive(Debug)]
pub struct CallMedia {
    phone: PhoneLeg,
    room: Room,
    held: bool,
    to_phone: Option<ToPhoneForward>,
    to_room: Option<ToRoomForward>,
    /// When forwarding in that direction last sent, if it ended since the last tick (the
    /// next tick's packet waits for its own slot; see [`forward::too_soon`]).
    phone_forward_ended: Option<Instant>,
    room_forward_ended: Option<Instant>,
    /// The room track's line: the next frame's sequence number and 48 kHz position.
    room_seq: u64,
    room_position: u64,
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
            to_phone: None,
            to_room: None,
            phone_forward_ended: None,
            room_forward_ended: None,
            room_seq: 0,
            room_position: 0,
            room_takes: [true; 2],
            phone_pcm: vec![0; FRAME_SAMPLES],
        })
    }

    /// A datagram from the phone's RTP port (RTP or RTCP; SRTP is unprotected in place). An
    /// error means garbage or an authentication failure: the driver latches the phone's
    /// address (symmetric RTP) only on `Ok(Audio | Dtmf | Rtcp)`.
    ///
    /// While the phone's G.711 passes through to the room, its audio is written into
    /// `room_out` (at least [`MIN_ROOM_OUT`] long) and described in
    /// [`PhoneArrival::room`]: send it now.
    pub fn on_phone_packet(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        room_out: &mut [u8],
    ) -> Result<PhoneArrival, BridgeError> {
        // Only while the room side can still carry the law (the driver updates it).
        // Not after a packet went to the jitter buffer instead: it would play after later
        // ones forwarded.
        let take = !self.held
            && self
                .to_room
                .as_ref()
                .is_some_and(|f| !f.broken && self.room_takes(f.law));
        let (kind, taken) = self.phone.on_packet(now, packet, take)?;
        let room = match (taken, kind) {
            (Some(t), _) => self.forward_to_room(now, packet, t, room_out)?,
            (None, PhoneIn::Audio) => {
                // Audio that could not be forwarded went to the jitter buffer: the tick
                // takes over.
                if let Some(f) = self.to_room.as_mut() {
                    f.broken = true;
                }
                None
            }
            (None, _) => None,
        };
        Ok(PhoneArrival { kind, room })
    }

    fn forward_to_room(
        &mut self,
        now: Instant,
        packet: &[u8],
        taken: Taken,
        room_out: &mut [u8],
    ) -> Result<Option<RoomFrame>, BridgeError> {
        let Some(f) = self.to_room.as_mut() else {
            return Ok(None);
        };
        let Some(mapped) = f.forward.map(taken.seq, taken.timestamp, now) else {
            return Ok(None); // a duplicate, or from before forwarding began
        };
        let payload = &packet[taken.start..taken.end];
        let body = room_out
            .get_mut(..payload.len())
            .ok_or(BridgeError::BufferTooSmall)?;
        body.copy_from_slice(payload);
        // The level of the 8 kHz frame (RMS does not depend on the rate).
        let mut pcm8 = [0i16; g711_frames::G711_FRAME];
        for (s, &code) in pcm8.iter_mut().zip(payload) {
            *s = f.law.decode_sample(code);
        }
        let law = f.law;
        let (level, voice) = self.room.forwarded_phone(payload.len(), &pcm8);
        Ok(Some(RoomFrame {
            len: payload.len(),
            codec: RoomCodec::G711(law),
            level,
            voice,
            seq: mapped.seq,
            position: 6 * mapped.timestamp,
        }))
    }

    /// A room member's audio packet.
    ///
    /// While that member's G.711 passes through to the phone, the phone's packet is written
    /// into `phone_out` (at least [`MIN_PHONE_OUT`] long): send the returned length (0:
    /// nothing) now.
    pub fn on_room_audio(
        &mut self,
        now: Instant,
        audio: RoomAudio<'_>,
        phone_out: &mut [u8],
    ) -> Result<usize, BridgeError> {
        let RoomAudio {
            source,
            codec,
            seq,
            timestamp,
            payload,
        } = audio;
        let Some(f) = self.to_phone.as_mut().filter(|f| f.source == source) else {
            self.room
                .on_audio(now, source, codec, seq, timestamp, payload);
            return Ok(0);
        };
        let whole = payload.len() == g711_frames::G711_FRAME;
        let law_now = self.phone.passthrough_law();
        if f.broken
            || codec != RoomCodec::G711(f.law)
            || law_now != Some(f.law)
            || !whole
            || self.held
            || self.phone.dtmf_busy()
        {
            f.broken = true;
            self.room
                .on_audio(now, source, codec, seq, timestamp, payload);
            return Ok(0);
        }
        self.room.forwarded(now, seq, timestamp, payload.len());
        let Some(mapped) = f.forward.map(seq, timestamp, now) else {
            return Ok(0); // a duplicate, or from before forwarding began
        };
        self.phone.send_forwarded(
            payload,
            mapped.seq as u16,
            mapped.timestamp as u32,
            mapped.marker,
            phone_out,
        )
    }

    /// [`CallMedia::on_room_audio`] of an Opus payload (never forwarded: nothing to send).
    pub fn on_room_opus(
        &mut self,
        now: Instant,
        source: u64,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) {
        if let Some(f) = self.to_phone.as_mut().filter(|f| f.source == source) {
            f.broken = true;
        }
        self.room
            .on_audio(now, source, RoomCodec::Opus, seq, timestamp, payload);
    }

    /// Forgets a room source (its track ended).
    pub fn remove_room_source(&mut self, source: u64) {
        self.room.remove(source);
    }

    /// Runs one 20 ms frame: pulls a frame from every jitter buffer (decoding or concealing
    /// it), mixes the room for the phone and encodes the phone for the room (or passes
    /// G.711 through, see the module doc). Writes the phone's packet (RTP header + payload,
    /// SRTP-protected) into `phone_out` and the room's payload into `room_out`; a length
    /// of 0 means nothing to send on that side (also while that side is forwarded on
    /// arrival).
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
        if self.to_room.as_ref().is_some_and(|f| {
            f.broken
                || !passes_to_room
                || phone_law != Some(f.law)
                || f.forward.quiet_for(now) > forward::QUIET
        }) {
            self.end_room_forward(now);
        }
        self.phone.play(now, &mut self.phone_pcm, !passes_to_room);
        let room = self.room_tick(now, passes_to_room, room_out);
        // Room → phone, even if the room side failed: our stream's timing must not depend on
        // it. (With outputs of the minimum size neither side fails in practice.)
        let phone_len = mixed.and_then(|()| self.phone_tick(now, phone_law, phone_out));
        Ok(Tick {
            phone_len: phone_len?,
            room: room?,
        })
    }

    /// The tick's frame for the room (see [`CallMedia::tick`]).
    fn room_tick(
        &mut self,
        now: Instant,
        passes_to_room: bool,
        room_out: &mut [u8],
    ) -> Result<RoomFrame, BridgeError> {
        if self.held {
            // Time passes on the room's track too.
            self.room_position += FRAME_SAMPLES as u64;
            return Ok(RoomFrame::none());
        }
        if self.to_room.is_some() || too_soon(self.room_forward_ended.take(), now) {
            // Forwarded on arrival; or forwarding just sent this slot's frame.
            return Ok(RoomFrame::none());
        }
        let mut codec = RoomCodec::Opus;
        let passed = self.room.passed_to_room();
        let (len, level, voice) = match self.phone.g711_frame() {
            Some((law, frame)) if passes_to_room => {
                codec = RoomCodec::G711(law);
                self.room.g711_phone(law, frame, room_out)?
            }
            _ => self.room.encode_phone(&self.phone_pcm, room_out)?,
        };
        let frame = RoomFrame {
            len,
            codec,
            level,
            voice,
            seq: self.room_seq,
            position: self.room_position,
        };
        self.room_seq += 1;
        self.room_position += FRAME_SAMPLES as u64;
        // A frame passed through as it came: the phone's next ones go on arrival.
        if let (RoomCodec::G711(law), true) = (codec, self.room.passed_to_room() > passed) {
            if let Some((seq, ts)) = self.phone.begin_forward() {
                let forward = Forward::new(
                    seq,
                    ts,
                    self.room_seq,
                    self.room_position / 6,
                    PhoneCodec::G711(law).frame_ticks(),
                    now,
                );
                self.to_room = Some(ToRoomForward {
                    law,
                    forward,
                    broken: false,
                });
            }
        }
        Ok(frame)
    }

    /// Forwarding to the room ends: the tick's frames resume after the last one forwarded.
    fn end_room_forward(&mut self, now: Instant) {
        let Some(f) = self.to_room.take() else {
            return;
        };
        let (seq, ts) = f.forward.resume(now);
        self.room_seq = seq;
        self.room_position = 6 * ts;
        self.room_forward_ended = f.forward.last_sent();
        self.phone.end_forward(f.forward.newest_seq());
    }

    /// The tick's packet for the phone (see [`CallMedia::tick`]).
    fn phone_tick(
        &mut self,
        now: Instant,
        phone_law: Option<Law>,
        phone_out: &mut [u8],
    ) -> Result<usize, BridgeError> {
        if let Some(f) = &self.to_phone {
            let heard = matches!(
                self.room.forwarding(now),
                Some((id, RoomCodec::G711(law), true)) if id == f.source && law == f.law
            );
            let stays = heard
                && !f.broken
                && phone_law == Some(f.law)
                && self.room.live() == 0
                && !self.phone.dtmf_busy();
            if stays {
                return Ok(0);
            }
            self.end_phone_forward(now);
        }
        if self.held {
            self.phone.skip_frame();
            return Ok(0);
        }
        if too_soon(self.phone_forward_ended.take(), now) {
            // Forwarding just sent this slot's frame: the tick's next one takes the next.
            return Ok(0);
        }
        // The only source's G.711 of the phone's law as it came, else the mix encoded.
        let single = match (phone_law, self.room.single_g711()) {
            (Some(ours), Some((law, payload))) if ours == law => Some((law, payload)),
            _ => None,
        };
        let frame = match single {
            Some((_, payload)) => ToPhone::Payload(payload),
            None => ToPhone::Mix(self.room.mixed()),
        };
        let dtmf = self.phone.dtmf_busy();
        let len = self.phone.send(now, frame, phone_out)?;
        // A frame passed through as it came: the source's next ones go on arrival.
        if let (Some((law, _)), false) = (single, dtmf) {
            let source = self.room.single_source();
            if let Some((id, (seq, ts))) =
                source.and_then(|id| Some((id, self.room.begin_forward(id)?)))
            {
                let (next_seq, next_ts) = self.phone.line();
                let forward = Forward::new(
                    seq,
                    ts,
                    u64::from(next_seq),
                    u64::from(next_ts),
                    PhoneCodec::G711(law).frame_ticks(),
                    now,
                );
                self.to_phone = Some(ToPhoneForward {
                    source: id,
                    law,
                    forward,
                    broken: false,
                });
            }
        }
        Ok(len)
    }

    /// Forwarding to the phone ends: the tick's packets resume after the last one
    /// forwarded, and the room plays the source again from after it.
    fn end_phone_forward(&mut self, now: Instant) {
        let Some(f) = self.to_phone.take() else {
            return;
        };
        let (seq, ts) = f.forward.resume(now);
        self.phone.set_line(seq as u16, ts as u32);
        self.phone_forward_ended = f.forward.last_sent();
        self.room.end_forward(f.forward.newest_seq());
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
        // The digit starts on the tick's line: forwarding to the phone ends first.
        self.end_phone_forward(now);
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
        // Forwarding stops with the next packet; the next tick ends it.
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

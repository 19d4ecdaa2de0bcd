//! The room side of a call: one jitter buffer and decoder (Opus, or G.711 for a member
//! whose browser sends it) per remote track, their sum for the phone, and the Opus encoder
//! of the phone's voice for the room.
//!
//! Each tick also tells what needs no transcoding (docs/sip.md): the one G.711 frame of
//! the only live source (the phone can take it as it is, if it speaks that law), and
//! whether the room "speaks G.711" (every recently heard source sends it), in which case
//! the phone's own G.711 frame can go to the room as it came.
//!
//! While the one G.711 source of the phone's law is forwarded to the phone on arrival
//! (bridge/forward.rs), it bypasses its jitter buffer: the tick neither plays nor mixes it
//! but still counts it as heard, so that the rules above keep deciding when forwarding ends.
//!
//! A source silent for more than [`SOURCE_TIMEOUT`] leaves the mix until it sends again (a
//! muted browser stops sending; its buffer would otherwise conceal forever). At most
//! [`MAX_MIXED`] sources are summed, the loudest of the tick: beyond a handful of talkers a
//! mix is noise, and the bound keeps the per-tick work and stack use fixed.

use super::forward::QUIET;
use super::g711_frames::{G711Frames, G711_FRAME};
use super::{play_opus, BridgeError, MediaStats, Played, RoomCodec};
use crate::g711::Law;
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats};
use crate::level::{audio_level, VoiceActivity};
use crate::mix::MixMinus;
use crate::opus::{
    OpusDecoder, OpusEncoder, VoiceBand, FRAME_SAMPLES, MAX_PACKET, MAX_PACKET_SAMPLES, SAMPLE_RATE,
};
use crate::resample::Upsampler;
use std::time::{Duration, Instant};

/// Remote tracks one call takes; payloads of further ones are refused (counted).
pub const MAX_SOURCES: usize = 64;
/// Sources summed per tick (the loudest).
pub const MAX_MIXED: usize = 16;
/// Silence after which a source leaves the mix.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(1);

/// The jitter buffer of an Opus stream (room tracks, and an Opus phone leg).
pub(super) fn opus_jitter_config() -> JitterConfig {
    JitterConfig {
        clock_rate: SAMPLE_RATE,
        max_payload: MAX_PACKET,
        ..JitterConfig::default()
    }
}

fn jitter_for(codec: RoomCodec, now: Instant) -> Option<JitterBuffer> {
    let config = JitterConfig {
        clock_rate: codec.clock_rate(),
        ..opus_jitter_config()
    };
    JitterBuffer::new(config, now).ok()
}

#[derive(Debug)]
struct Source {
    id: u64,
    codec: RoomCodec,
    jitter: JitterBuffer,
    /// Made for the first Opus packet of the source.
    decoder: Option<OpusDecoder>,
    g711: G711Frames,
    upsampler: Upsampler,
    pcm: Vec<i16>,
    last_packet: Instant,
    /// Timestamp of the frame last rebuilt from FEC.
    fec_done: Option<u32>,
    /// Sum of squares of this tick's frame; `None` when the source is not in this tick's mix.
    energy: Option<u64>,
    /// The newest packet taken: sequence number and timestamp (where forwarding starts).
    newest: Option<(u16, u32)>,
    /// After forwarding on arrival ended: packets up to this sequence number went to the
    /// phone already, and are not played again.
    forwarded_through: Option<u16>,
}

#[derive(Debug)]
pub(super) struct Room {
    sources: Vec<Source>,
    encoder: OpusEncoder,
    voice: VoiceActivity,
    mixer: MixMinus,
    mixed: Vec<i16>,
    scratch: Vec<i16>,
    /// This tick: the only source in the mix, if it is G.711 and its frame came whole.
    single_g711: Option<usize>,
    /// This tick: every source heard within [`SOURCE_TIMEOUT`] sends G.711 (at least one).
    speaks_g711: bool,
    /// This tick: sources in the mix (played a frame or a concealment).
    live: usize,
    /// The source forwarded to the phone on arrival (not played by the tick).
    forwarding: Option<u64>,
    /// Payloads for the room that are the phone's G.711 as it came, and those encoded.
    passed_out: u64,
    transcoded_out: u64,
    packets_in: u64,
    bytes_in: u64,
    rejected: u64,
    packets_out: u64,
    bytes_out: u64,
    concealed: u64,
    fec_recovered: u64,
    decode_errors: u64,
    /// Lost and late counts of removed sources.
    retired_lost: u64,
    retired_late: u64,
}

impl Room {
    /// The widest band the phone's voice is coded in for the room.
    pub(super) fn set_band(&mut self, band: VoiceBand) -> Result<(), BridgeError> {
        Ok(self.encoder.set_band(band)?)
    }

    pub(super) fn new() -> Result<Room, BridgeError> {
        Ok(Room {
            sources: Vec::with_capacity(MAX_SOURCES),
            encoder: OpusEncoder::new()?,
            voice: VoiceActivity::new(),
            mixer: MixMinus::new(FRAME_SAMPLES),
            mixed: vec![0; FRAME_SAMPLES],
            scratch: vec![0; MAX_PACKET_SAMPLES],
            single_g711: None,
            speaks_g711: false,
            live: 0,
            forwarding: None,
            passed_out: 0,
            transcoded_out: 0,
            packets_in: 0,
            bytes_in: 0,
            rejected: 0,
            packets_out: 0,
            bytes_out: 0,
            concealed: 0,
            fec_recovered: 0,
            decode_errors: 0,
            retired_lost: 0,
            retired_late: 0,
        })
    }

    pub(super) fn on_audio(
        &mut self,
        now: Instant,
        id: u64,
        codec: RoomCodec,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) {
        let index = match self.sources.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => match self.add(id, codec, now) {
                Some(i) => i,
                None => {
                    self.rejected += 1;
                    return;
                }
            },
        };
        let source = &mut self.sources[index];
        if let Some(through) = source.forwarded_through {
            if (seq.wrapping_sub(through) as i16) <= 0 {
                // Forwarded already (a duplicate, or late): not played twice.
                self.packets_in += 1;
                self.bytes_in += payload.len() as u64;
                return;
            }
            source.forwarded_through = None;
        }
        if source.codec != codec {
            match source.switch_codec(codec, now) {
                Some(old) => {
                    self.retired_lost += old.lost;
                    self.retired_late += old.late;
                }
                None => {
                    self.rejected += 1;
                    return;
                }
            }
        }
        match source.jitter.push(seq, timestamp, payload, now) {
            Ok(_) => {
                source.last_packet = now;
                source.note_newest(seq, timestamp);
                self.packets_in += 1;
                self.bytes_in += payload.len() as u64;
            }
            Err(_) => self.rejected += 1,
        }
    }

    /// A new source (the one allocation of its life, unless it changes codec); `None`
    /// when full.
    fn add(&mut self, id: u64, codec: RoomCodec, now: Instant) -> Option<usize> {
        if self.sources.len() >= MAX_SOURCES {
            return None;
        }
        let jitter = jitter_for(codec, now)?;
        let decoder = match codec {
            RoomCodec::Opus => Some(OpusDecoder::new().ok()?),
            RoomCodec::G711(_) => None,
        };
        self.sources.push(Source {
            id,
            codec,
            jitter,
            decoder,
            g711: G711Frames::new(),
            upsampler: Upsampler::new(),
            pcm: vec![0; FRAME_SAMPLES],
            last_packet: now,
            fec_done: None,
            energy: None,
            newest: None,
            forwarded_through: None,
        });
        Some(self.sources.len() - 1)
    }

    pub(super) fn remove(&mut self, id: u64) {
        if let Some(i) = self.sources.iter().position(|s| s.id == id) {
            if self.forwarding == Some(id) {
                self.forwarding = None;
            }
            let gone = self.sources.swap_remove(i);
            let stats = gone.jitter.stats();
            self.retired_lost += stats.lost;
            self.retired_late += stats.late;
        }
    }

    /// Plays every live source for this tick and sums the loudest [`MAX_MIXED`] into
    /// [`Room::mixed`].
    ///
    /// `phone_law`: the law a phone can take as it comes (passthrough), if any. When the
    /// only source in the mix sends that law, nothing is upsampled or mixed: the phone gets
    /// the source's payload ([`Room::single_g711`]) and [`Room::mixed`] is not updated.
    pub(super) fn mix(&mut self, now: Instant, phone_law: Option<Law>) -> Result<(), BridgeError> {
        let mut heard = 0;
        let mut heard_g711 = 0;
        for source in &mut self.sources {
            source.energy = None;
            if now.saturating_duration_since(source.last_packet) > SOURCE_TIMEOUT {
                continue;
            }
            heard += 1;
            heard_g711 += usize::from(matches!(source.codec, RoomCodec::G711(_)));
            if self.forwarding == Some(source.id) {
                continue;
            }
            let (played, bad_packet) = source.play(now, &mut self.scratch);
            self.decode_errors += u64::from(bad_packet);
            match played {
                Played::Silent => continue,
                Played::Recovered => {
                    self.concealed += 1;
                    self.fec_recovered += 1;
                }
                Played::Concealed => self.concealed += 1,
                Played::Frame => {}
            }
            source.energy = Some(source.energy());
        }
        // The loudest live sources, on the stack.
        let mut live = [(0u64, 0usize); MAX_SOURCES];
        let mut count = 0;
        for (i, source) in self.sources.iter().enumerate() {
            if let (Some(energy), Some(slot)) = (source.energy, live.get_mut(count)) {
                *slot = (energy, i);
                count += 1;
            }
        }
        let live = &mut live[..count];
        self.live = count;
        self.speaks_g711 = heard > 0 && heard_g711 == heard;
        self.single_g711 = match live {
            [(_, i)] => {
                let source = &self.sources[*i];
                (matches!(source.codec, RoomCodec::G711(_))
                    && source.g711.whole_payload().is_some())
                .then_some(*i)
            }
            _ => None,
        };
        let passes = self.single_g711.is_some_and(
            |i| matches!(self.sources[i].codec, RoomCodec::G711(law) if Some(law) == phone_law),
        );
        for &(_, i) in live.iter() {
            self.sources[i].upsample_if(!passes);
        }
        if passes {
            return Ok(());
        }
        if live.len() > MAX_MIXED {
            live.sort_unstable_by_key(|&(energy, _)| std::cmp::Reverse(energy));
        }
        let mut inputs: [&[i16]; MAX_MIXED] = [&[]; MAX_MIXED];
        let mut mixed = 0;
        for (&(_, i), input) in live.iter().zip(inputs.iter_mut()) {
            *input = &self.sources[i].pcm;
            mixed += 1;
        }
        self.mixer.mix_all(&inputs[..mixed], &mut self.mixed)?;
        Ok(())
    }

    /// This tick's mix (48 kHz, one frame).
    pub(super) fn mixed(&self) -> &[i16] {
        &self.mixed
    }

    /// This tick's frame of the only source in the mix, as it came, when that source sends
    /// G.711 in 20 ms frames: `law` and payload.
    pub(super) fn single_g711(&self) -> Option<(Law, &[u8; G711_FRAME])> {
        let source = self.sources.get(self.single_g711?)?;
        match source.codec {
            RoomCodec::G711(law) => Some((law, source.g711.whole_payload()?)),
            RoomCodec::Opus => None,
        }
    }

    /// Sources in this tick's mix (the forwarded one is never among them).
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// Starts forwarding `id` on arrival: its buffered frames are dropped (they are older
    /// than what arrives next; sending them too would be a burst) and the tick no longer
    /// plays it. Returns the newest sequence number and timestamp it had sent.
    pub(super) fn begin_forward(&mut self, id: u64) -> Option<(u16, u32)> {
        let source = self.sources.iter_mut().find(|s| s.id == id)?;
        let newest = source.newest?;
        source.jitter.reset();
        source.forwarded_through = None;
        self.forwarding = Some(id);
        Some(newest)
    }

    /// Forwarding ends: the tick plays the source again, from after `through` (the newest
    /// sequence number forwarded).
    pub(super) fn end_forward(&mut self, through: u16) {
        let Some(id) = self.forwarding.take() else {
            return;
        };
        if let Some(source) = self.sources.iter_mut().find(|s| s.id == id) {
            source.forwarded_through = Some(through);
        }
    }

    /// The source being forwarded, and whether it was heard within [`QUIET`].
    pub(super) fn forwarding(&self, now: Instant) -> Option<(u64, RoomCodec, bool)> {
        let id = self.forwarding?;
        let source = self.sources.iter().find(|s| s.id == id)?;
        let quiet = now.saturating_duration_since(source.last_packet) > QUIET;
        Some((id, source.codec, !quiet))
    }

    /// A packet of the forwarded source went to the phone as it came: counted as taken,
    /// and the source as heard.
    pub(super) fn forwarded(&mut self, now: Instant, seq: u16, timestamp: u32, len: usize) {
        let Some(id) = self.forwarding else {
            return;
        };
        if let Some(source) = self.sources.iter_mut().find(|s| s.id == id) {
            source.last_packet = now;
            source.note_newest(seq, timestamp);
        }
        self.packets_in += 1;
        self.bytes_in += len as u64;
    }

    /// The id of this tick's only source in the mix when its G.711 frame came whole (see
    /// [`Room::single_g711`]).
    pub(super) fn single_source(&self) -> Option<u64> {
        Some(self.sources.get(self.single_g711?)?.id)
    }

    /// Payloads for the room that were the phone's G.711 as it came, so far.
    pub(super) fn passed_to_room(&self) -> u64 {
        self.passed_out
    }

    /// Whether every source heard lately sends G.711 (and there is one): then the
    /// phone's G.711 needs no Opus for the room.
    pub(super) fn speaks_g711(&self) -> bool {
        self.speaks_g711
    }

    /// The phone's G.711 payload forwarded to the room on arrival: counted, with the RFC
    /// 6464 level and voice flag of its 8 kHz samples `pcm8`.
    pub(super) fn forwarded_phone(&mut self, len: usize, pcm8: &[i16]) -> (u8, bool) {
        self.passed_out += 1;
        let (_, level, voice) = self.sent(len, pcm8);
        (level, voice)
    }

    /// Encodes the phone's frame for the room; returns the payload length, its RFC 6464
    /// level and voice flag.
    pub(super) fn encode_phone(
        &mut self,
        pcm: &[i16],
        out: &mut [u8],
    ) -> Result<(usize, u8, bool), BridgeError> {
        let len = self.encoder.encode(pcm, out)?;
        self.transcoded_out += 1;
        Ok(self.sent(len, pcm))
    }

    /// The phone's G.711 frame for a room that speaks G.711: as it came when it came
    /// whole, else its 8 kHz samples (concealment, or silence) coded in `law`. `pcm` is the
    /// frame at 48 kHz, for the level.
    pub(super) fn g711_phone(
        &mut self,
        law: Law,
        frame: &G711Frames,
        out: &mut [u8],
    ) -> Result<(usize, u8, bool), BridgeError> {
        let body = out
            .get_mut(..G711_FRAME)
            .ok_or(BridgeError::BufferTooSmall)?;
        match frame.whole_payload() {
            Some(payload) => {
                body.copy_from_slice(payload);
                self.passed_out += 1;
            }
            None => {
                law.encode(frame.pcm8(), body)
                    .map_err(|_| BridgeError::BufferTooSmall)?;
                self.transcoded_out += 1;
            }
        }
        // The level of the 8 kHz frame: RMS does not depend on the rate.
        Ok(self.sent(G711_FRAME, frame.pcm8()))
    }

    /// Counts a payload of `len` bytes for the room; its level and voice flag from `pcm`.
    fn sent(&mut self, len: usize, pcm: &[i16]) -> (usize, u8, bool) {
        let level = audio_level(pcm);
        let voice = self.voice.update(level);
        self.packets_out += 1;
        self.bytes_out += len as u64;
        (len, level, voice)
    }

    /// Sources currently known (live or not).
    pub(super) fn source_count(&self) -> usize {
        self.sources.len()
    }

    pub(super) fn add_stats(&self, stats: &mut MediaStats) {
        stats.room_packets_in = self.packets_in;
        stats.room_bytes_in = self.bytes_in;
        stats.room_rejected = self.rejected;
        stats.room_packets_out = self.packets_out;
        stats.room_bytes_out = self.bytes_out;
        stats.frames_to_room_passed = self.passed_out;
        stats.frames_to_room_transcoded = self.transcoded_out;
        stats.room_concealed = self.concealed;
        stats.decode_errors += self.decode_errors;
        stats.fec_recovered += self.fec_recovered;
        stats.room_lost = self.retired_lost;
        stats.room_late = self.retired_late;
        for source in &self.sources {
            let s = source.jitter.stats();
            stats.room_lost += s.lost;
            stats.room_late += s.late;
        }
    }
}

impl Source {
    /// Remembers the newest packet by sequence number (reordered ones do not count).
    fn note_newest(&mut self, seq: u16, timestamp: u32) {
        match self.newest {
            Some((s, _)) if (seq.wrapping_sub(s) as i16) <= 0 => {}
            _ => self.newest = Some((seq, timestamp)),
        }
    }

    /// A source that now sends `codec` (its track was renegotiated): a new buffer at the
    /// new clock rate. Returns the old buffer's counts; `None` if it cannot be made.
    fn switch_codec(&mut self, codec: RoomCodec, now: Instant) -> Option<JitterStats> {
        let jitter = jitter_for(codec, now)?;
        self.newest = None;
        if codec == RoomCodec::Opus && self.decoder.is_none() {
            self.decoder = Some(OpusDecoder::new().ok()?);
        }
        let old = std::mem::replace(&mut self.jitter, jitter);
        self.codec = codec;
        self.fec_done = None;
        Some(old.stats())
    }

    /// The energy of this tick's frame (what ranks the loudest sources), on the 48 kHz
    /// scale: a G.711 frame, still at 8 kHz, counts each sample 6 times.
    fn energy(&self) -> u64 {
        let sum = |pcm: &[i16]| -> u64 {
            pcm.iter()
                .map(|&s| (i64::from(s) * i64::from(s)) as u64)
                .sum()
        };
        match self.codec {
            RoomCodec::G711(_) => 6 * sum(self.g711.pcm8()),
            RoomCodec::Opus => sum(&self.pcm),
        }
    }

    /// A played G.711 frame into `pcm` at 48 kHz when `needed` (the mix runs), else into
    /// the upsampler's history only (the frame passes through as it came).
    fn upsample_if(&mut self, needed: bool) {
        if self.codec == RoomCodec::Opus {
            return;
        }
        if !needed {
            self.upsampler.skip(self.g711.pcm8());
        } else if self
            .upsampler
            .process(self.g711.pcm8(), &mut self.pcm)
            .is_err()
        {
            self.pcm.fill(0);
        }
    }

    /// Plays this tick's frame into `pcm` (48 kHz; a G.711 one at 8 kHz into `g711`, see
    /// [`Source::upsample_if`]): how, and whether a packet was bad.
    fn play(&mut self, now: Instant, scratch: &mut [i16]) -> (Played, bool) {
        match (self.codec, self.decoder.as_mut()) {
            (RoomCodec::Opus, Some(decoder)) => play_opus(
                &mut self.jitter,
                decoder,
                &mut self.fec_done,
                now,
                scratch,
                &mut self.pcm,
            ),
            // Decoded only: [`Source::upsample_if`] upsamples once the mix is known to need it.
            (RoomCodec::G711(law), _) => {
                let played = self.g711.play(law, &mut self.jitter, now);
                if played == Played::Silent {
                    self.pcm.fill(0);
                }
                (played, false)
            }
            (RoomCodec::Opus, None) => {
                self.pcm.fill(0);
                (Played::Silent, false)
            }
        }
    }
}

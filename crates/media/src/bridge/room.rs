//! The room side of a call: one jitter buffer and Opus decoder per remote track, their sum
//! for the phone, and the Opus encoder of the phone's voice for the room.
//!
//! A source silent for more than [`SOURCE_TIMEOUT`] leaves the mix until it sends again (a
//! muted browser stops sending; its buffer would otherwise conceal forever). At most
//! [`MAX_MIXED`] sources are summed, the loudest of the tick: beyond a handful of talkers a
//! mix is noise, and the bound keeps the per-tick work and stack use fixed.

use super::{play_opus, BridgeError, MediaStats, Played};
use crate::jitter::{JitterBuffer, JitterConfig};
use crate::level::{audio_level, VoiceActivity};
use crate::mix::MixMinus;
use crate::opus::{
    OpusDecoder, OpusEncoder, VoiceBand, FRAME_SAMPLES, MAX_PACKET, MAX_PACKET_SAMPLES, SAMPLE_RATE,
};
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

#[derive(Debug)]
struct Source {
    id: u64,
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    pcm: Vec<i16>,
    last_packet: Instant,
    /// Timestamp of the frame last rebuilt from FEC.
    fec_done: Option<u32>,
    /// Sum of squares of this tick's frame; `None` when the source is not in this tick's mix.
    energy: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Room {
    sources: Vec<Source>,
    encoder: OpusEncoder,
    voice: VoiceActivity,
    mixer: MixMinus,
    mixed: Vec<i16>,
    scratch: Vec<i16>,
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

    pub(super) fn on_opus(
        &mut self,
        now: Instant,
        id: u64,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) {
        let index = match self.sources.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => match self.add(id, now) {
                Some(i) => i,
                None => {
                    self.rejected += 1;
                    return;
                }
            },
        };
        let source = &mut self.sources[index];
        match source.jitter.push(seq, timestamp, payload, now) {
            Ok(_) => {
                source.last_packet = now;
                self.packets_in += 1;
                self.bytes_in += payload.len() as u64;
            }
            Err(_) => self.rejected += 1,
        }
    }

    /// A new source (the one allocation of its life); `None` when full.
    fn add(&mut self, id: u64, now: Instant) -> Option<usize> {
        if self.sources.len() >= MAX_SOURCES {
            return None;
        }
        let jitter = JitterBuffer::new(opus_jitter_config(), now).ok()?;
        let decoder = OpusDecoder::new().ok()?;
        self.sources.push(Source {
            id,
            jitter,
            decoder,
            pcm: vec![0; FRAME_SAMPLES],
            last_packet: now,
            fec_done: None,
            energy: None,
        });
        Some(self.sources.len() - 1)
    }

    pub(super) fn remove(&mut self, id: u64) {
        if let Some(i) = self.sources.iter().position(|s| s.id == id) {
            let gone = self.sources.swap_remove(i);
            let stats = gone.jitter.stats();
            self.retired_lost += stats.lost;
            self.retired_late += stats.late;
        }
    }

    /// Plays every live source for this tick and sums the loudest [`MAX_MIXED`] into
    /// [`Room::mixed`].
    pub(super) fn mix(&mut self, now: Instant) -> Result<(), BridgeError> {
        for source in &mut self.sources {
            source.energy = None;
            if now.saturating_duration_since(source.last_packet) > SOURCE_TIMEOUT {
                continue;
            }
            let (played, bad_packet) = play_opus(
                &mut source.jitter,
                &mut source.decoder,
                &mut source.fec_done,
                now,
                &mut self.scratch,
                &mut source.pcm,
            );
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
            let energy = source
                .pcm
                .iter()
                .map(|&s| (i64::from(s) * i64::from(s)) as u64)
                .sum();
            source.energy = Some(energy);
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

    /// Encodes the phone's frame for the room; returns the payload length, its RFC 6464
    /// level and voice flag.
    pub(super) fn encode_phone(
        &mut self,
        pcm: &[i16],
        out: &mut [u8],
    ) -> Result<(usize, u8, bool), BridgeError> {
        let level = audio_level(pcm);
        let voice = self.voice.update(level);
        let len = self.encoder.encode(pcm, out)?;
        self.packets_out += 1;
        self.bytes_out += len as u64;
        Ok((len, level, voice))
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

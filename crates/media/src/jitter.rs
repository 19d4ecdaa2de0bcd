//! An adaptive jitter buffer for the decode/mix path (room ← phone when the audio is decoded
//! and mixed; plain relaying needs none): packets go in as they arrive, one frame comes out
//! per 20 ms tick.
//!
//! - Reordering and duplicates: packets sit in a ring of slots indexed by extended sequence
//!   number; a duplicate is dropped, a packet older than the playout point is counted late.
//! - Loss: a missing frame at playout yields one [`Pop::Conceal`] (G.711: repeat/fade;
//!   Opus: the decoder's PLC) and playout moves on.
//! - Adaptation: the interarrival delay variation (RFC 3550 §6.4.1's D) feeds a peak-hold
//!   estimate that jumps up with a late packet and decays by 1/32 per packet (≈ 1 s to a
//!   fifth at 50 pps). The target delay is one frame plus that estimate, bounded by the
//!   configuration (default 20–200 ms). Playout follows the target: a missing frame while
//!   the buffer is at or below target is waited for (a concealed tick without advancing:
//!   the delay grows), above target it is declared lost; a buffer more than two frames above
//!   target drops its oldest frame (the delay shrinks).
//!
//! One packet is one frame (ptime = the tick; ptime 30 from some trunks needs the caller to
//! tick at 30 ms). Storage is allocated at construction; nothing allocates per packet.

use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum JitterError {
    /// Larger than the configured slot size.
    #[error("payload of {0} bytes exceeds the configured maximum")]
    PayloadTooLarge(usize),
    /// The configuration cannot work (zero clock rate, frame or capacity; min > max).
    #[error("invalid jitter buffer configuration: {0}")]
    BadConfig(&'static str),
}

/// Jitter buffer parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream.
    pub clock_rate: u32,
    /// Duration of one packet / frame (the tick).
    pub frame: Duration,
    /// Lower bound of the target delay.
    pub min_delay: Duration,
    /// Upper bound of the target delay.
    pub max_delay: Duration,
    /// Slots (frames) held; must exceed `max_delay / frame` by a few.
    pub capacity: usize,
    /// Largest payload stored (G.711 20 ms: 160; Opus: up to 1275).
    pub max_payload: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            clock_rate: 8000,
            frame: Duration::from_millis(20),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            capacity: 32,
            max_payload: 1500,
        }
    }
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored for playout.
    Stored,
    /// Already stored: dropped.
    Duplicate,
    /// Its playout time has passed: dropped.
    Late,
}

/// What to play for this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop<'a> {
    /// The next frame's payload.
    Frame {
        /// Payload bytes (valid until the next `push`/`pop`).
        payload: &'a [u8],
        /// Its RTP sequence number.
        sequence: u16,
        /// Its RTP timestamp.
        timestamp: u32,
    },
    /// No data for this tick while the stream is running: conceal (repeat/fade, or PLC).
    Conceal {
        /// Timestamp the missing frame would have had.
        timestamp: u32,
    },
    /// Not playing (no stream yet, still filling, or stopped): play silence.
    Idle,
}

/// Counters since construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterStats {
    /// Packets pushed (including duplicates and late ones).
    pub received: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets that arrived after their playout point.
    pub late: u64,
    /// Frames never received by their playout (concealed, playout moved on).
    pub lost: u64,
    /// Ticks concealed while playout waited for a frame (buffer empty or below target):
    /// this is how the delay grows.
    pub underruns: u64,
    /// Frames dropped to bring the delay down to the target.
    pub discarded: u64,
    /// Restarts after a sequence jump or a stopped stream.
    pub resyncs: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    filled: bool,
    seq: u64,
    timestamp: u32,
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Filling,
    Playing,
}

/// The jitter buffer (see the module doc).
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    frame_ticks: u32,
    slots: Vec<Slot>,
    data: Vec<u8>,
    state: State,
    /// Extended sequence number to play next.
    next_seq: u64,
    highest_seq: u64,
    next_timestamp: u32,
    /// Arrival (in ticks since `epoch`) and timestamp of the previous packet.
    previous: Option<(f64, u32)>,
    epoch: Instant,
    jitter_ticks: f64,
    empty_ticks: u32,
    /// The sequence number an underrun already concealed: if it turns out lost (later
    /// packets arrive, it does not), that conceal stands for it rather than a second one.
    concealed_seq: Option<u64>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer with `config`; `now` anchors its clock.
    pub fn new(config: JitterConfig, now: Instant) -> Result<JitterBuffer, JitterError> {
        if config.clock_rate == 0 || config.frame.is_zero() || config.capacity == 0 {
            return Err(JitterError::BadConfig("zero clock rate, frame or capacity"));
        }
        if config.min_delay > config.max_delay {
            return Err(JitterError::BadConfig("min_delay above max_delay"));
        }
        let storage = config
            .capacity
            .checked_mul(config.max_payload)
            .ok_or(JitterError::BadConfig("capacity × max_payload overflows"))?;
        let frame_ticks = ticks(config.frame, config.clock_rate).max(1);
        Ok(JitterBuffer {
            config,
            frame_ticks,
            slots: vec![Slot::default(); config.capacity],
            data: vec![0; storage],
            state: State::Idle,
            next_seq: 0,
            highest_seq: 0,
            next_timestamp: 0,
            previous: None,
            epoch: now,
            jitter_ticks: 0.0,
            empty_ticks: 0,
            concealed_seq: None,
            stats: JitterStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The delay playout currently aims for.
    pub fn target_delay(&self) -> Duration {
        let ticks = f64::from(self.frame_ticks) + self.jitter_ticks;
        Duration::from_secs_f64(ticks / f64::from(self.config.clock_rate))
            .clamp(self.config.min_delay, self.config.max_delay)
    }

    /// Frames between the playout point and the newest packet (the buffered delay).
    pub fn buffered_frames(&self) -> u64 {
        if self.state == State::Idle || self.highest_seq < self.next_seq {
            0
        } else {
            self.highest_seq - self.next_seq + 1
        }
    }

    fn target_frames(&self) -> u64 {
        let frames = self.target_delay().as_secs_f64() / self.config.frame.as_secs_f64();
        (frames.round() as u64).max(1)
    }

    /// Forgets every buffered packet and the arrival history: the next packet starts the
    /// stream afresh (counters are kept). For a stream that was forwarded on arrival
    /// meanwhile (docs/sip.md), whose buffered frames are stale.
    pub fn reset(&mut self) {
        self.clear();
        self.state = State::Idle;
        self.previous = None;
        self.jitter_ticks = 0.0;
        self.empty_ticks = 0;
        self.concealed_seq = None;
    }

    fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| s.filled = false);
    }

    fn restart(&mut self, seq: u64, timestamp: u32) {
        self.clear();
        self.state = State::Filling;
        self.next_seq = seq;
        self.highest_seq = seq;
        self.next_timestamp = timestamp;
        self.empty_ticks = 0;
    }

    fn update_jitter(&mut self, timestamp: u32, now: Instant) {
        let arrival = now.saturating_duration_since(self.epoch).as_secs_f64()
            * f64::from(self.config.clock_rate);
        if let Some((prev_arrival, prev_ts)) = self.previous {
            let d = ((arrival - prev_arrival) - f64::from(timestamp.wrapping_sub(prev_ts) as i32))
                .abs();
            let cap = ticks(self.config.max_delay, self.config.clock_rate) as f64;
            let d = d.min(cap);
            if d > self.jitter_ticks {
                self.jitter_ticks = d;
            } else {
                self.jitter_ticks += (d - self.jitter_ticks) / 32.0;
            }
        }
        self.previous = Some((arrival, timestamp));
    }

    /// Takes a packet (its RTP sequence number, timestamp and payload) arriving at `now`.
    pub fn push(
        &mut self,
        sequence: u16,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> Result<Pushed, JitterError> {
        if payload.len() > self.config.max_payload {
            return Err(JitterError::PayloadTooLarge(payload.len()));
        }
        self.stats.received += 1;
        self.update_jitter(timestamp, now);
        if self.state == State::Idle {
            // Start far from zero so that extended numbers below the first stay positive.
            let seq = (1 << 32) + u64::from(sequence);
            self.restart(seq, timestamp);
        }
        let delta = sequence.wrapping_sub(self.highest_seq as u16) as i16;
        let seq = self.highest_seq.wrapping_add_signed(i64::from(delta));
        if seq < self.next_seq {
            self.stats.late += 1;
            return Ok(Pushed::Late);
        }
        if seq >= self.next_seq + self.slots.len() as u64 {
            // A jump beyond the ring (sender restart, long outage): start over from here.
            self.stats.resyncs += 1;
            self.restart(seq, timestamp);
        }
        let index = (seq % self.slots.len() as u64) as usize;
        let slot = &mut self.slots[index];
        if slot.filled && slot.seq == seq {
            self.stats.duplicates += 1;
            return Ok(Pushed::Duplicate);
        }
        *slot = Slot {
            filled: true,
            seq,
            timestamp,
            len: payload.len(),
        };
        let start = index * self.config.max_payload;
        self.data[start..start + payload.len()].copy_from_slice(payload);
        self.highest_seq = self.highest_seq.max(seq);
        Ok(Pushed::Stored)
    }

    /// The frame to play for the tick at `now`. Call once per frame duration. (Playout is
    /// driven by the ticks themselves, so `now` is not read yet; it keeps the sans-IO shape
    /// for a later time-based policy, e.g. clock drift correction.)
    pub fn pop(&mut self, _now: Instant) -> Pop<'_> {
        match self.state {
            State::Idle => return Pop::Idle,
            State::Filling => {
                if self.buffered_frames() < self.target_frames() {
                    return Pop::Idle;
                }
                self.state = State::Playing;
            }
            State::Playing => {}
        }
        let level = self.buffered_frames();
        if level == 0 {
            self.stats.underruns += 1;
            self.empty_ticks += 1;
            let give_up = self.config.max_delay.as_secs_f64() / self.config.frame.as_secs_f64();
            if f64::from(self.empty_ticks) > give_up {
                // The stream stopped (hold, end of talk spurt without DTX signalling).
                self.state = State::Idle;
                self.previous = None;
                self.stats.resyncs += 1;
                return Pop::Idle;
            }
            self.concealed_seq = Some(self.next_seq);
            return Pop::Conceal {
                timestamp: self.next_timestamp,
            };
        }
        self.empty_ticks = 0;
        if level > self.target_frames() + 2 {
            if self.is_buffered(self.next_seq) {
                let index = self.slot_index(self.next_seq);
                self.slots[index].filled = false;
                self.stats.discarded += 1;
            }
            self.skip();
        }
        if !self.is_buffered(self.next_seq)
            && self.concealed_seq == Some(self.next_seq)
            && self.buffered_frames() > self.target_frames()
        {
            // Waited for it with a conceal already; it is lost: that conceal stands for it.
            self.stats.lost += 1;
            self.skip();
        }
        let seq = self.next_seq;
        if !self.is_buffered(seq) {
            let timestamp = self.next_timestamp;
            if self.buffered_frames() <= self.target_frames() {
                // Below target: wait for it (maybe late, not lost), which grows the delay.
                self.stats.underruns += 1;
                self.concealed_seq = Some(seq);
            } else {
                self.stats.lost += 1;
                self.skip();
            }
            return Pop::Conceal { timestamp };
        }
        self.next_seq += 1;
        let index = self.slot_index(seq);
        let slot = self.slots[index];
        self.slots[index].filled = false;
        self.next_timestamp = slot.timestamp.wrapping_add(self.frame_ticks);
        let start = index * self.config.max_payload;
        Pop::Frame {
            payload: &self.data[start..start + slot.len],
            sequence: seq as u16,
            timestamp: slot.timestamp,
        }
    }

    /// The packet after the frame the last [`Pop::Conceal`] stood for, if it is already here
    /// (without taking it): its Opus in-band FEC rebuilds the missing frame. After a conceal
    /// that gave the frame up that is the next one to play; after one that waits for it, the
    /// one after (should the missing packet still come, it plays late once).
    pub fn peek(&self) -> Option<&[u8]> {
        if self.state != State::Playing {
            return None;
        }
        let seq = if self.concealed_seq == Some(self.next_seq) {
            self.next_seq + 1
        } else {
            self.next_seq
        };
        if !self.is_buffered(seq) {
            return None;
        }
        let index = self.slot_index(seq);
        let start = index * self.config.max_payload;
        Some(&self.data[start..start + self.slots[index].len])
    }

    /// Moves playout one frame on without playing it.
    fn skip(&mut self) {
        self.next_seq += 1;
        self.next_timestamp = self.next_timestamp.wrapping_add(self.frame_ticks);
    }

    fn is_buffered(&self, seq: u64) -> bool {
        let slot = self.slots[self.slot_index(seq)];
        slot.filled && slot.seq == seq
    }

    fn slot_index(&self, seq: u64) -> usize {
        (seq % self.slots.len() as u64) as usize
    }
}

fn ticks(d: Duration, clock_rate: u32) -> u32 {
    (d.as_micros() * u128::from(clock_rate) / 1_000_000).min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests;

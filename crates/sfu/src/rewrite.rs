//! One subscriber's outgoing video (or audio) stream, fed from whichever simulcast layer
//! of the publisher is selected for it.
//!
//! Each simulcast layer is its own RTP stream (own SSRC, sequence numbers, timestamps,
//! VP8 PictureIDs), but the subscriber's decoder must see ONE stream: sequence numbers
//! that count up by one, timestamps that never go back, PictureIDs and TL0PICIDX that
//! continue. [`Rewriter`] maps each forwarded packet into that one space with per-layer
//! offsets that change only at a switch, and switches only at a keyframe of the new
//! layer (until then the old layer keeps flowing, so the picture never freezes). Packets
//! of the old layer that arrive after the switch, of the new layer from before its
//! keyframe, and of any other layer are dropped.
//!
//! Outgoing sequence numbers are extended (u64, as str0m's `SeqNo`) and start below
//! 2^16, which str0m needs for a new stream (its SRTP rollover counter starts at 0); this
//! is also why even a single-layer stream (audio, screen share) goes through a
//! `Rewriter`: a subscriber joining late must not inherit the publisher's rollover count.
//! Per packet: no allocation, a few integer operations.

use std::time::Instant;

pub mod vp8;

pub use vp8::is_keyframe as vp8_is_keyframe;

/// The smallest media-time step at a switch, as a fraction of the clock rate (10 ms):
/// the new layer's first frame must come after the old layer's last one.
const MIN_SWITCH_GAP_DIV: u32 = 100;

/// One incoming RTP packet as the rewriter needs it (plain values, so it is testable
/// without str0m).
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    /// The simulcast layer it belongs to (the caller's index, e.g. 0 = `q`, 1 = `h`,
    /// 2 = `f`; 0 for a single-layer stream).
    pub layer: u8,
    /// Extended sequence number in that layer's stream (str0m's `SeqNo`).
    pub seq: u64,
    /// RTP timestamp in that layer's stream.
    pub timestamp: u32,
    /// A packet a decoder can start from (VP8: [`vp8::Descriptor::keyframe`]; audio:
    /// always true).
    pub keyframe: bool,
    /// The VP8 descriptor, when the payload is VP8 (its ids are renumbered).
    pub vp8: Option<vp8::Descriptor>,
    /// When it arrived (sets the media-time gap at a switch).
    pub arrival: Instant,
}

/// Where a forwarded packet goes in the subscriber's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// Extended outgoing sequence number (str0m `SeqNo::from`).
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub timestamp: u32,
    /// New VP8 ids to write into the payload descriptor (str0m `Vp8PatchBuilder` or
    /// [`vp8::Descriptor::write`]); `None` for non-VP8 packets.
    pub vp8: Option<vp8::Ids>,
    /// This packet starts a new layer (or the stream): count a switch, tell the
    /// subscriber (`layers` message).
    pub switched: bool,
}

/// The offsets of the layer being forwarded, fixed from its first (key) packet on.
#[derive(Clone, Copy, Debug)]
struct Epoch {
    layer: u8,
    /// Incoming seq of the keyframe that started it: anything older is dropped.
    first_seq: u64,
    seq_offset: u64,
    ts_offset: u32,
    picture_id_offset: u16,
    tl0_offset: u8,
}

/// The last forwarded packet (highest outgoing seq), which the next epoch continues.
#[derive(Clone, Copy, Debug)]
struct Last {
    seq: u64,
    timestamp: u32,
    arrival: Instant,
    picture_id: Option<u16>,
    tl0_pic_idx: Option<u8>,
}

/// Rewrites one subscriber's outgoing stream across layer switches. See the module doc.
#[derive(Clone, Debug)]
pub struct Rewriter {
    clock_rate: u32,
    first_seq: u16,
    target: Option<u8>,
    epoch: Option<Epoch>,
    last: Option<Last>,
    switches: u64,
    dropped: u64,
}

impl Rewriter {
    /// A stream of media clock `clock_rate` (90 000 for video, 48 000 for Opus) whose
    /// first outgoing packet gets sequence number `first_seq`, paused until
    /// [`Rewriter::set_target`].
    pub fn new(clock_rate: u32, first_seq: u16) -> Rewriter {
        Rewriter {
            clock_rate,
            first_seq,
            target: None,
            epoch: None,
            last: None,
            switches: 0,
            dropped: 0,
        }
    }

    /// Selects the layer to forward (`None`: pause at once). A different layer is taken
    /// at its next keyframe (ask the publisher for one: [`Rewriter::wants_keyframe`]);
    /// the current one flows until then.
    pub fn set_target(&mut self, layer: Option<u8>) {
        self.target = layer;
        if layer.is_none() {
            self.epoch = None;
        }
    }

    /// The layer selected.
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// The layer being forwarded now (`None`: paused or waiting for the first keyframe).
    pub fn current(&self) -> Option<u8> {
        self.epoch.map(|e| e.layer)
    }

    /// The layer whose keyframe the rewriter is waiting for, if any: the caller asks
    /// the publisher for one (through the keyframe coalescer).
    pub fn wants_keyframe(&self) -> Option<u8> {
        self.target.filter(|t| self.current() != Some(*t))
    }

    /// Layer changes (and starts) done so far.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Packets handed to [`Rewriter::rewrite`] and not forwarded.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Where `p` goes in the subscriber's stream, or `None`: do not forward it.
    pub fn rewrite(&mut self, p: &Packet) -> Option<Rewritten> {
        let Some(target) = self.target else {
            return self.drop();
        };
        let mut switched = false;
        if p.layer == target && p.keyframe && self.current() != Some(target) {
            self.start_epoch(p);
            switched = true;
        }
        let Some(e) = self.epoch else {
            return self.drop();
        };
        if p.layer != e.layer || p.seq < e.first_seq {
            return self.drop();
        }
        let seq = p.seq.wrapping_add(e.seq_offset);
        let timestamp = p.timestamp.wrapping_add(e.ts_offset);
        let vp8 = p.vp8.map(|d| vp8::Ids {
            picture_id: d
                .picture_id
                .map(|id| id.wrapping_add(e.picture_id_offset) & d.picture_id_mask()),
            tl0_pic_idx: d.tl0_pic_idx.map(|t| t.wrapping_add(e.tl0_offset)),
        });
        if self.last.is_none_or(|l| seq > l.seq) {
            let prev = self.last;
            self.last = Some(Last {
                seq,
                timestamp,
                arrival: p.arrival,
                // Packets without the field keep the last value to continue from.
                picture_id: vp8
                    .and_then(|v| v.picture_id)
                    .or(prev.and_then(|l| l.picture_id)),
                tl0_pic_idx: vp8
                    .and_then(|v| v.tl0_pic_idx)
                    .or(prev.and_then(|l| l.tl0_pic_idx)),
            });
        }
        Some(Rewritten {
            seq,
            timestamp,
            vp8,
            switched,
        })
    }

    fn drop(&mut self) -> Option<Rewritten> {
        self.dropped += 1;
        None
    }

    /// Offsets that put the keyframe `p` right after the last forwarded packet.
    fn start_epoch(&mut self, p: &Packet) {
        let (out_seq, out_ts, out_pid, out_tl0) = match self.last {
            None => (
                u64::from(self.first_seq),
                p.timestamp,
                p.vp8.and_then(|d| d.picture_id),
                p.vp8.and_then(|d| d.tl0_pic_idx),
            ),
            Some(l) => {
                let elapsed = p.arrival.saturating_duration_since(l.arrival);
                let ticks = elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000;
                let min = (self.clock_rate / MIN_SWITCH_GAP_DIV).max(1);
                // Media time cannot be more than ~13 h at 90 kHz in u32 anyway.
                let gap = u32::try_from(ticks).unwrap_or(u32::MAX / 2).max(min);
                (
                    l.seq + 1,
                    l.timestamp.wrapping_add(gap),
                    l.picture_id.map(|id| id.wrapping_add(1)),
                    l.tl0_pic_idx.map(|t| t.wrapping_add(1)),
                )
            }
        };
        let in_pid = p.vp8.and_then(|d| d.picture_id);
        let in_tl0 = p.vp8.and_then(|d| d.tl0_pic_idx);
        self.epoch = Some(Epoch {
            layer: p.layer,
            first_seq: p.seq,
            seq_offset: out_seq.wrapping_sub(p.seq),
            ts_offset: out_ts.wrapping_sub(p.timestamp),
            picture_id_offset: match (out_pid, in_pid) {
                (Some(o), Some(i)) => o.wrapping_sub(i),
                _ => 0,
            },
            tl0_offset: match (out_tl0, in_tl0) {
                (Some(o), Some(i)) => o.wrapping_sub(i),
                _ => 0,
            },
        });
        self.switches += 1;
    }
}

#[cfg(test)]
mod tests;

//! Forwarding on arrival: a G.711 stream that passes through unchanged (docs/sip.md "When
//! calls are not transcoded") leaves when it arrives instead of waiting in a jitter buffer
//! for the 20 ms tick. The receiver's jitter buffer does the reordering; ours only adds
//! delay.
//!
//! [`Forward`] rewrites the source's sequence numbers and timestamps onto our stream by a
//! fixed offset, so reordering and loss stay what they were (a lost packet is a sequence
//! gap, a reordered one keeps its place) while our stream stays one line across the
//! switches between forwarding and the tick: forwarding starts right after the last frame
//! the tick sent, and the tick resumes right after the last frame forwarded, as many
//! frames later as the time that passed. A packet that would land on or before the
//! frame the switch started from (a late one from before it), or a duplicate, is dropped:
//! our rewriting never makes the stream go backwards.
//!
//! Sequence numbers and timestamps are extended to 64 bits here (source and ours), so
//! that comparisons do not care about wrapping; the caller takes the low 16/32 bits.

use std::time::{Duration, Instant};

use super::FRAME;

/// A jump of more sequence numbers than this (either way) is a restarted sender, not
/// reordering: forwarding re-anchors on it.
const MAX_JUMP: i64 = 100;
/// Sequence numbers behind the newest that duplicates are checked for.
const WINDOW: i64 = 64;
/// Extended numbers start here, so that ones below the first stay positive.
const BASE: i64 = 1 << 40;

/// Where a forwarded packet goes on our stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mapped {
    /// Our extended sequence number.
    pub seq: u64,
    /// Our extended timestamp (the stream's clock).
    pub timestamp: u64,
    /// First packet after a switch or a silence gap (RTP marker: talkspurt start).
    pub marker: bool,
}

/// One source forwarded onto our stream (see the module doc).
#[derive(Debug, Clone)]
pub(super) struct Forward {
    /// The source's newest packet: its 16/32-bit numbers and their extended forms.
    high_seq: u16,
    high_ts: u32,
    high_seq_ext: i64,
    high_ts_ext: i64,
    /// Extended source sequence numbers below this are dropped (from before the switch),
    /// and the timestamp that packet would have: nothing forwarded goes below it.
    floor: i64,
    floor_ts: i64,
    /// Ours = the source's extended number + offset.
    seq_offset: i64,
    ts_offset: i64,
    /// Bit i: source sequence `high_seq_ext - i` was forwarded.
    seen: u64,
    /// Our newest packet so far (extended), and when it left.
    last_out: Option<(u64, u64, Instant)>,
    /// Timestamp units of one frame.
    frame_ticks: u32,
    marker: bool,
    /// When forwarding (re)started.
    started: Instant,
}

impl Forward {
    /// Forwarding of a source whose newest packet so far had `last_seq`/`last_ts` (the
    /// tick path had it): its next packet becomes our `next_seq`/`next_ts`, the slot right
    /// after the last frame the tick sent.
    pub(super) fn new(
        last_seq: u16,
        last_ts: u32,
        next_seq: u64,
        next_ts: u64,
        frame_ticks: u32,
        now: Instant,
    ) -> Forward {
        Forward {
            high_seq: last_seq,
            high_ts: last_ts,
            high_seq_ext: BASE,
            high_ts_ext: BASE,
            floor: BASE + 1,
            floor_ts: BASE + i64::from(frame_ticks),
            seq_offset: next_seq as i64 - (BASE + 1),
            ts_offset: next_ts as i64 - (BASE + i64::from(frame_ticks)),
            seen: 0,
            last_out: None,
            frame_ticks,
            marker: true,
            started: now,
        }
    }

    /// Maps a packet of the source (sequence number, timestamp) arriving at `now` onto
    /// our stream; `None`: drop it (a duplicate, or from before the switch).
    pub(super) fn map(&mut self, seq: u16, ts: u32, now: Instant) -> Option<Mapped> {
        let d = i64::from(seq.wrapping_sub(self.high_seq) as i16);
        if !(-MAX_JUMP..=MAX_JUMP).contains(&d) {
            self.reanchor(seq, ts, now);
        }
        let d = i64::from(seq.wrapping_sub(self.high_seq) as i16);
        let ext = self.high_seq_ext + d;
        let ts_ext = self.high_ts_ext + i64::from(ts.wrapping_sub(self.high_ts) as i32);
        if ext < self.floor {
            return None;
        }
        let mut marker = std::mem::take(&mut self.marker);
        if d > 0 {
            // A silence gap (the sender stopped between talkspurts): the timestamp moved
            // more than the sequence number says.
            marker |= ts_ext - self.high_ts_ext > d * i64::from(self.frame_ticks);
            self.seen = if d >= 64 { 0 } else { self.seen << d };
            self.seen |= 1;
            self.high_seq = seq;
            self.high_ts = ts;
            self.high_seq_ext = ext;
            self.high_ts_ext = ts_ext;
        } else {
            let behind = -d;
            if behind >= WINDOW || self.seen & (1 << behind) != 0 {
                return None;
            }
            self.seen |= 1 << behind;
        }
        let out_seq = (ext + self.seq_offset) as u64;
        let out_ts = (ts_ext + self.ts_offset) as u64;
        if ts_ext < self.floor_ts {
            // A sender whose timestamps went backwards: not ours to make worse.
            return None;
        }
        let newest = match self.last_out {
            Some((s, t, at)) if s >= out_seq => (s, t.max(out_ts), at),
            _ => (out_seq, out_ts, now),
        };
        self.last_out = Some(newest);
        Some(Mapped {
            seq: out_seq,
            timestamp: out_ts,
            marker,
        })
    }

    /// A restarted sender (a jump in its numbers): its packet becomes the slot after our
    /// newest one, as many frames later as the time since it left.
    fn reanchor(&mut self, seq: u16, ts: u32, now: Instant) {
        let (next_seq, next_ts) = self.resume(now);
        *self = Forward::new(
            seq.wrapping_sub(1),
            ts.wrapping_sub(self.frame_ticks),
            next_seq,
            next_ts,
            self.frame_ticks,
            now,
        );
    }

    /// Where the tick's stream resumes when forwarding ends at `now`: the sequence number
    /// after our newest packet, and its timestamp one frame on, or as many frames as the
    /// time since it left; nothing forwarded yet: the slot forwarding started at.
    pub(super) fn resume(&self, now: Instant) -> (u64, u64) {
        match self.last_out {
            Some((seq, ts, at)) => {
                let frames = frames_since(at, now);
                (seq + 1, ts + u64::from(self.frame_ticks) * frames)
            }
            None => (
                (self.floor + self.seq_offset) as u64,
                (self.floor_ts + self.ts_offset) as u64,
            ),
        }
    }

    /// How long since the last packet was forwarded (or forwarding began).
    pub(super) fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_sent().unwrap_or(self.started))
    }

    /// When our newest forwarded packet left.
    pub(super) fn last_sent(&self) -> Option<Instant> {
        self.last_out.map(|(_, _, at)| at)
    }

    /// The source's newest sequence number (what a buffer taking over must start after).
    pub(super) fn newest_seq(&self) -> u16 {
        self.high_seq
    }
}

/// Whole frames between `at` and `now`, rounded, at least one.
fn frames_since(at: Instant, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(at) + FRAME / 2;
    (elapsed.as_micros() / FRAME.as_micros()).max(1) as u64
}

/// Whether forwarding that last sent at `last` should hold the tick's next packet back:
/// the tick comes less than half a frame after it, so that packet's slot is the next
/// tick's (two packets in a row would be a burst).
pub(super) fn too_soon(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|at| now.saturating_duration_since(at) < FRAME / 2)
}

/// How long a forwarded source may stay silent before the tick takes over again (comfort
/// silence for the phone, the mix): the jitter buffer's own give-up time.
pub(super) const QUIET: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests;

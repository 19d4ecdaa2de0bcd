//! One G.711 stream played a 20 ms frame per tick (the phone's, or a room member's that
//! sends PCMU/PCMA): its jitter buffer's frame decoded, or the loss concealed by repeating
//! the last frame at half the level each tick, three times, then silence.
//!
//! The frame's payload is kept when it was exactly one 20 ms frame: that is what a
//! passthrough forwards unchanged (docs/sip.md "When calls are not transcoded"). Other
//! ptimes are cut or padded to the tick and always transcoded.

use super::Played;
use crate::g711::Law;
use crate::jitter::{JitterBuffer, Pop};
use std::time::Instant;

/// Samples (and bytes) in a 20 ms G.711 frame.
pub(super) const G711_FRAME: usize = 160;
/// Concealment repeats the last frame this many times before going silent.
const CONCEAL_FRAMES: u8 = 3;

#[derive(Debug)]
pub(super) struct G711Frames {
    pcm8: [i16; G711_FRAME],
    last8: [i16; G711_FRAME],
    conceal_run: u8,
    /// This tick's payload, if it came as one whole 20 ms frame.
    payload: [u8; G711_FRAME],
    whole: bool,
}

impl G711Frames {
    pub(super) fn new() -> G711Frames {
        G711Frames {
            pcm8: [0; G711_FRAME],
            last8: [0; G711_FRAME],
            conceal_run: 0,
            payload: [0; G711_FRAME],
            whole: false,
        }
    }

    /// Plays the next frame of `jitter` (coded in `law`) into [`G711Frames::pcm8`].
    pub(super) fn play(&mut self, law: Law, jitter: &mut JitterBuffer, now: Instant) -> Played {
        self.whole = false;
        match jitter.pop(now) {
            Pop::Frame { payload, .. } => {
                let n = payload.len().min(G711_FRAME);
                for (s, &code) in self.pcm8.iter_mut().zip(&payload[..n]) {
                    *s = law.decode_sample(code);
                }
                self.pcm8[n..].fill(0);
                if payload.len() == G711_FRAME {
                    self.payload.copy_from_slice(payload);
                    self.whole = true;
                }
                self.last8 = self.pcm8;
                self.conceal_run = 0;
                Played::Frame
            }
            Pop::Conceal { .. } => {
                self.conceal_run = self.conceal_run.saturating_add(1);
                if self.conceal_run <= CONCEAL_FRAMES {
                    self.last8.iter_mut().for_each(|s| *s /= 2);
                    self.pcm8 = self.last8;
                } else {
                    self.pcm8.fill(0);
                }
                Played::Concealed
            }
            Pop::Idle => {
                self.pcm8.fill(0);
                Played::Silent
            }
        }
    }

    /// This tick's samples at 8 kHz.
    pub(super) fn pcm8(&self) -> &[i16; G711_FRAME] {
        &self.pcm8
    }

    /// This tick's payload, when it was one whole 20 ms frame from the wire.
    pub(super) fn whole_payload(&self) -> Option<&[u8; G711_FRAME]> {
        self.whole.then_some(&self.payload)
    }
}

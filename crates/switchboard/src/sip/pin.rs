//! Asking a caller for a PIN (`--sip-route CALLED=@pin`, `--sip-pin PIN=ROOM`): the call
//! is answered without a room, the caller hears two short beeps, types the PIN on the
//! keypad (RFC 4733 events or SIP INFO) and ends it with `#`; a PIN of `--sip-pin` opens
//! its room, a wrong one gets a low tone and another try. Three wrong PINs, or 30 s
//! without one, end the call.
//!
//! The prompts are Opus frames fed to the call's bridge as if a room member spoke them
//! (source [`PROMPT_SOURCE`]), so they reach the phone through the same jitter buffer,
//! decoder and G.711 encoder as the room's voices: no second audio path.

use std::time::{Duration, Instant};
use switchboard_media::opus::{OpusEncoder, FRAME_SAMPLES, SAMPLE_RATE};

/// The bridge source number of the prompts (no room track gets it).
pub const PROMPT_SOURCE: u64 = u64::MAX;
/// How long a caller has to enter a PIN.
pub const PIN_WAIT: Duration = Duration::from_secs(30);
/// Wrong PINs before the call ends.
pub const MAX_TRIES: u32 = 3;
/// Longest PIN taken (`--sip-pin` allows 16 digits).
const MAX_DIGITS: usize = 16;

/// A prompt: 20 ms Opus frames with their RTP sequence number and timestamp.
pub struct Prompt {
    frames: Vec<Vec<u8>>,
    next: usize,
    seq: u16,
    ts: u32,
}

/// `(hz, ms)` pieces (0 Hz: silence) as Opus frames.
fn encode(pattern: &[(f64, u32)]) -> Result<Vec<Vec<u8>>, String> {
    let mut enc = OpusEncoder::new().map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    let mut phase = 0.0f64;
    let mut pcm = vec![0i16; FRAME_SAMPLES];
    let mut out = vec![0u8; 400];
    for &(hz, ms) in pattern {
        for _ in 0..ms / 20 {
            for s in pcm.iter_mut() {
                phase += 2.0 * std::f64::consts::PI * hz / f64::from(SAMPLE_RATE);
                *s = if hz > 0.0 {
                    (phase.sin() * 6000.0) as i16
                } else {
                    0
                };
            }
            let n = enc.encode(&pcm, &mut out).map_err(|e| e.to_string())?;
            frames.push(out[..n].to_vec());
        }
    }
    Ok(frames)
}

impl Prompt {
    fn of(pattern: &[(f64, u32)], seq: u16, ts: u32) -> Result<Prompt, String> {
        Ok(Prompt {
            frames: encode(pattern)?,
            next: 0,
            seq,
            ts,
        })
    }

    /// Two short beeps: "enter the PIN".
    pub fn welcome() -> Result<Prompt, String> {
        Prompt::of(
            &[
                (0.0, 200),
                (660.0, 160),
                (0.0, 100),
                (660.0, 160),
                (0.0, 200),
            ],
            0,
            0,
        )
    }

    /// A low tone: "wrong PIN, again". Continues `after`'s numbering, so the bridge's
    /// jitter buffer sees one stream.
    pub fn wrong(after: &Prompt) -> Result<Prompt, String> {
        Prompt::of(&[(300.0, 500), (0.0, 200)], after.seq, after.ts)
    }

    /// The next frame, each 20 ms, as (sequence number, timestamp, payload).
    pub fn next_frame(&mut self) -> Option<(u16, u32, &[u8])> {
        let frame = self.frames.get(self.next)?;
        self.next += 1;
        let out = (self.seq, self.ts, frame.as_slice());
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
        Some(out)
    }
}

/// What the keys typed so far come to.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// More keys needed.
    Typing,
    /// `#` ended this PIN.
    Done(String),
}

/// The keys of one PIN entry.
pub struct PinEntry {
    digits: String,
    pub tries: u32,
    pub deadline: Instant,
}

impl PinEntry {
    pub fn new(now: Instant) -> PinEntry {
        PinEntry {
            digits: String::new(),
            tries: 0,
            deadline: now + PIN_WAIT,
        }
    }

    /// A key: digits collect, `#` ends the PIN, `*` starts over.
    pub fn key(&mut self, key: char) -> Entry {
        match key {
            '#' => Entry::Done(std::mem::take(&mut self.digits)),
            '*' => {
                self.digits.clear();
                Entry::Typing
            }
            d if d.is_ascii_digit() && self.digits.len() < MAX_DIGITS => {
                self.digits.push(d);
                Entry::Typing
            }
            _ => Entry::Typing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_make_a_pin() {
        let mut e = PinEntry::new(Instant::now());
        for k in ['1', '2', '*', '4', '2', 'A'] {
            assert_eq!(e.key(k), Entry::Typing);
        }
        assert_eq!(e.key('#'), Entry::Done("42".into()));
        assert_eq!(e.key('#'), Entry::Done(String::new()));
    }

    #[test]
    fn prompts_are_continuous_opus_streams() {
        let mut w = Prompt::welcome().unwrap();
        let mut n = 0;
        let mut last = None;
        while let Some((seq, ts, payload)) = w.next_frame() {
            assert!(!payload.is_empty());
            if let Some((s, t)) = last {
                assert_eq!(seq, u16::wrapping_add(s, 1));
                assert_eq!(ts, u32::wrapping_add(t, 960));
            }
            last = Some((seq, ts));
            n += 1;
        }
        assert_eq!(n, 41, "820 ms of pattern in 20 ms frames");
        let mut wrong = Prompt::wrong(&w).unwrap();
        let (seq, _, _) = wrong.next_frame().unwrap();
        assert_eq!(Some(seq), last.map(|(s, _)| s.wrapping_add(1)));
    }
}

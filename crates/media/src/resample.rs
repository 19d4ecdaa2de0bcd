//! 8 kHz ↔ 48 kHz sample-rate conversion (ratio 6) for the bridge between G.711 (8 kHz) and
//! the room's Opus (48 kHz): a windowed-sinc low-pass FIR split into 6 polyphase branches.
//!
//! Why not a crate: rubato needs Rust 1.87 (the workspace is 1.80) and works on owned
//! `Vec<Vec<f32>>` frames; the ratio here is a fixed integer, where a polyphase FIR is a
//! few lines, exact, and allocation-free per frame. Streaming: each converter keeps the last
//! taps' worth of input, so 20 ms chunks give exactly the samples one long call gives.
//!
//! Filter: 288 taps (48 per phase), cutoff 3.7 kHz, Kaiser window β = 7 (about −70 dB
//! stopband, transition ≈ 3.35–4.05 kHz): the telephone band passes, anything that would
//! alias above 4 kHz is removed. Delay: 143.5 samples at 48 kHz (≈ 3 ms).

use thiserror::Error;

/// Rate ratio between the two sides.
pub const RATIO: usize = 6;
/// FIR taps per polyphase branch.
pub const TAPS_PER_PHASE: usize = 48;
/// FIR length at 48 kHz.
pub const TAPS: usize = RATIO * TAPS_PER_PHASE;
const CUTOFF_HZ: f64 = 3700.0;
const HIGH_RATE_HZ: f64 = 48_000.0;
const KAISER_BETA: f64 = 7.0;

/// Why a chunk could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ResampleError {
    /// The output slice cannot hold what this input produces.
    #[error("output holds {got} samples, {needed} needed")]
    OutputTooShort {
        /// Samples this call produces.
        needed: usize,
        /// Output length given.
        got: usize,
    },
}

/// Modified Bessel function of the first kind, order 0 (series; converges fast for β ≤ 10).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, half) = (1.0, 1.0, x / 2.0);
    for k in 1..50 {
        term *= half / f64::from(k);
        sum += term * term;
        if term * term < sum * 1e-16 {
            break;
        }
    }
    sum
}

/// The prototype low-pass at 48 kHz, unity DC gain.
fn design_lowpass() -> [f64; TAPS] {
    let mut h = [0.0; TAPS];
    let middle = (TAPS - 1) as f64 / 2.0;
    let fc = CUTOFF_HZ / HIGH_RATE_HZ;
    for (n, tap) in h.iter_mut().enumerate() {
        let t = n as f64 - middle;
        let sinc = if t == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
        };
        let r = t / middle;
        let window =
            bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(KAISER_BETA);
        *tap = sinc * window;
    }
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|x| *x /= sum);
    h
}

/// The last `N` input samples, kept twice over so that they are always one contiguous slice
/// (oldest first) without shifting.
#[derive(Debug, Clone)]
struct History {
    buf: Vec<f32>,
    len: usize,
    pos: usize,
}

impl History {
    fn new(len: usize) -> History {
        History {
            buf: vec![0.0; 2 * len],
            len,
            pos: 0,
        }
    }

    fn push(&mut self, x: f32) {
        self.buf[self.pos] = x;
        self.buf[self.pos + self.len] = x;
        self.pos = (self.pos + 1) % self.len;
    }

    fn window(&self) -> &[f32] {
        &self.buf[self.pos..self.pos + self.len]
    }
}

/// Dot product with 8 independent partial sums, which lets the compiler vectorise it (a
/// single running sum is a serial chain of float additions it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn to_i16(x: f32) -> i16 {
    x.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// 8 kHz → 48 kHz: each input sample yields 6 output samples.
#[derive(Debug, Clone)]
pub struct Upsampler {
    /// `phases[p]` = branch p's taps (gain 6), reversed to run over the history oldest first.
    phases: Vec<[f32; TAPS_PER_PHASE]>,
    history: History,
}

impl Default for Upsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Upsampler {
    /// A converter with silent history.
    pub fn new() -> Upsampler {
        let h = design_lowpass();
        let phases = (0..RATIO)
            .map(|p| {
                let mut taps = [0f32; TAPS_PER_PHASE];
                for (i, tap) in taps.iter_mut().enumerate() {
                    *tap = (RATIO as f64 * h[RATIO * (TAPS_PER_PHASE - 1 - i) + p]) as f32;
                }
                taps
            })
            .collect();
        Upsampler {
            phases,
            history: History::new(TAPS_PER_PHASE),
        }
    }

    /// Converts `input` (8 kHz) into the first `6 × input.len()` samples of `output`
    /// (48 kHz); returns that count.
    /// Takes `input` into the filter's history without computing output: a stream whose
    /// 48 kHz form is not needed this time (G.711 passed through as it came) stays
    /// continuous for when it is needed again, at the cost of a copy.
    pub fn skip(&mut self, input: &[i16]) {
        // Only the newest `len` samples stay in the history: pushing the older ones of a
        // 160-sample frame was wasted work on every passthrough tick.
        let keep = input.len().saturating_sub(self.history.len);
        for &x in &input[keep..] {
            self.history.push(f32::from(x));
        }
    }

    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, ResampleError> {
        let needed = input.len() * RATIO;
        let got = output.len();
        let output = output
            .get_mut(..needed)
            .ok_or(ResampleError::OutputTooShort { needed, got })?;
        for (&x, out) in input.iter().zip(output.chunks_exact_mut(RATIO)) {
            self.history.push(f32::from(x));
            let window = self.history.window();
            for (o, taps) in out.iter_mut().zip(&self.phases) {
                *o = to_i16(dot(taps, window));
            }
        }
        Ok(needed)
    }
}

/// 48 kHz → 8 kHz: low-pass, then keep every 6th sample. Input need not be a multiple of 6
/// long: the phase carries over to the next call.
#[derive(Debug, Clone)]
pub struct Downsampler {
    /// The taps, reversed to run over the history oldest first.
    taps: Vec<f32>,
    history: History,
    /// Inputs taken since the last output (0..6).
    phase: usize,
}

impl Default for Downsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Downsampler {
    /// A converter with silent history.
    pub fn new() -> Downsampler {
        let h = design_lowpass();
        Downsampler {
            taps: h.iter().rev().map(|&x| x as f32).collect(),
            history: History::new(TAPS),
            phase: 0,
        }
    }

    /// How many output samples `input_len` more input samples produce.
    pub fn output_len(&self, input_len: usize) -> usize {
        (self.phase + input_len) / RATIO
    }

    /// Converts `input` (48 kHz) into the start of `output` (8 kHz); returns the count
    /// written ([`Downsampler::output_len`]).
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, ResampleError> {
        let needed = self.output_len(input.len());
        if output.len() < needed {
            return Err(ResampleError::OutputTooShort {
                needed,
                got: output.len(),
            });
        }
        let mut written = 0;
        for &x in input {
            self.history.push(f32::from(x));
            self.phase += 1;
            if self.phase == RATIO {
                self.phase = 0;
                output[written] = to_i16(dot(&self.taps, self.history.window()));
                written += 1;
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests;

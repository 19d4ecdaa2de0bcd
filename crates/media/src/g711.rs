//! G.711 (ITU-T G.711) µ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8).
//!
//! Written by hand: the codec is a few lines of bit math (segment + mantissa), the crates that
//! offer it bring allocation-per-call APIs, and the gateway's hot path converts slices in place.
//! Decoding goes through 256-entry tables built at compile time; encoding is bit math.
//! Linear samples are 16-bit; µ-law uses its 14 significant bits, A-law its 13.

use thiserror::Error;

/// What went wrong converting a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum G711Error {
    /// The output slice is shorter than the input.
    #[error("output holds {output} samples, input has {input}")]
    OutputTooShort {
        /// Input length.
        input: usize,
        /// Output length.
        output: usize,
    },
}

/// The two G.711 companding laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law, PCMU, static payload type 0 (North America, Japan).
    Mu,
    /// A-law, PCMA, static payload type 8 (rest of the world).
    A,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    /// The law of a static payload type, if it is one.
    pub fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }

    /// Encodes one sample.
    pub fn encode_sample(self, pcm: i16) -> u8 {
        match self {
            Law::Mu => ulaw_encode(pcm),
            Law::A => alaw_encode(pcm),
        }
    }

    /// Decodes one code.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Law::Mu => ULAW_DECODE[code as usize],
            Law::A => ALAW_DECODE[code as usize],
        }
    }

    /// Encodes `pcm` into the first `pcm.len()` bytes of `out`.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> Result<(), G711Error> {
        let out = fit(pcm.len(), out)?;
        match self {
            Law::Mu => out
                .iter_mut()
                .zip(pcm)
                .for_each(|(o, &s)| *o = ulaw_encode(s)),
            Law::A => out
                .iter_mut()
                .zip(pcm)
                .for_each(|(o, &s)| *o = alaw_encode(s)),
        }
        Ok(())
    }

    /// Decodes `codes` into the first `codes.len()` samples of `out`.
    pub fn decode(self, codes: &[u8], out: &mut [i16]) -> Result<(), G711Error> {
        let out = fit(codes.len(), out)?;
        let table = match self {
            Law::Mu => &ULAW_DECODE,
            Law::A => &ALAW_DECODE,
        };
        out.iter_mut()
            .zip(codes)
            .for_each(|(o, &c)| *o = table[c as usize]);
        Ok(())
    }
}

fn fit<T>(input: usize, out: &mut [T]) -> Result<&mut [T], G711Error> {
    let output = out.len();
    out.get_mut(..input)
        .ok_or(G711Error::OutputTooShort { input, output })
}

const ULAW_BIAS: i32 = 0x84;

/// µ-law encode: 14-bit magnitude, bias 33 (0x84 >> 2), 8 segments, bits inverted on the wire.
pub fn ulaw_encode(pcm: i16) -> u8 {
    let mut value = i32::from(pcm) >> 2;
    let mask: u8 = if value < 0 {
        value = -value;
        0x7F
    } else {
        0xFF
    };
    value = value.min(8159) + (ULAW_BIAS >> 2);
    // Segment = position of the highest set bit above bit 5.
    let segment = (31 - (value as u32 | 0x3F).leading_zeros()) as i32 - 5;
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let code = ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) as u8;
    code ^ mask
}

/// µ-law decode (16-bit output, range ±32124).
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

const fn ulaw_decode_bits(code: u8) -> i16 {
    let u = !code as i32;
    let mut t = ((u & 0x0F) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

/// A-law encode: 13-bit magnitude, 8 segments, even bits inverted (XOR 0x55) on the wire.
pub fn alaw_encode(pcm: i16) -> u8 {
    let mut value = i32::from(pcm) >> 3;
    let mask: u8 = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    if value > 0xFFF {
        return 0x7F ^ mask;
    }
    let segment = (31 - (value as u32 | 0x1F).leading_zeros()) as i32 - 4;
    let mantissa = if segment < 2 {
        (value >> 1) & 0x0F
    } else {
        (value >> segment) & 0x0F
    };
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// A-law decode (16-bit output, range ±32256).
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

const fn alaw_decode_bits(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (segment - 1),
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn table(mu: bool) -> [i16; 256] {
    let mut out = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = if mu {
            ulaw_decode_bits(i as u8)
        } else {
            alaw_decode_bits(i as u8)
        };
        i += 1;
    }
    out
}

static ULAW_DECODE: [i16; 256] = table(true);
static ALAW_DECODE: [i16; 256] = table(false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ulaw_code_survives_decode_encode() {
        for code in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(code));
            // 0x7F is µ-law's "negative zero": it decodes to 0, which encodes as 0xFF.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, expected, "code {code:#04x}");
        }
    }

    #[test]
    fn every_alaw_code_survives_decode_encode() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "code {code:#04x}");
        }
    }

    #[test]
    fn reference_values() {
        // G.711 tables: µ-law 0x00/0x80 are the extremes (±8031 in 14-bit units, ×4 = ±32124),
        // 0xFF is +0; A-law 0xD5/0x55 are ±1 in 13-bit units (±8 here), 0xAA/0x2A the extremes
        // (±4032 in 13-bit units, ×8 = ±32256).
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xF0), 120);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn decoding_is_monotonic_and_encoding_is_nearest_step() {
        // Every 16-bit sample encodes to a code whose decoded value is within one
        // quantization step of it (the step doubles per segment; the last one is 1024 / 1024).
        for law in [Law::Mu, Law::A] {
            for pcm in (i16::MIN..=i16::MAX).step_by(7) {
                let back = law.decode_sample(law.encode_sample(pcm));
                let error = (i32::from(pcm) - i32::from(back)).abs();
                let bound = (i32::from(pcm).abs() / 16).max(16) + 64;
                assert!(error <= bound, "{law:?} {pcm} -> {back}");
            }
        }
    }

    #[test]
    fn slices_and_short_output() {
        let pcm = [0i16, 1000, -1000, 32000];
        let mut codes = [0u8; 4];
        Law::A.encode(&pcm, &mut codes).unwrap();
        let mut back = [0i16; 4];
        Law::A.decode(&codes, &mut back).unwrap();
        assert_eq!(back[0], 8);
        assert!((back[1] - 1000).abs() < 40 && (back[2] + 1000).abs() < 40);
        assert_eq!(
            Law::Mu.encode(&pcm, &mut [0u8; 3]),
            Err(G711Error::OutputTooShort {
                input: 4,
                output: 3
            })
        );
        assert_eq!(Law::from_payload_type(8), Some(Law::A));
        assert_eq!(Law::Mu.payload_type(), 0);
    }
}

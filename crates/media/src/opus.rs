//! Opus for the gateway's transcoding: 48 kHz mono, 20 ms frames, through libopus.
//!
//! Why libopus (the `opus` crate, linking Debian's `libopus-dev` via pkg-config): issue 12
//! asks for it, and no pure-Rust Opus *encoder* is mature enough to put on a phone call
//! (decoders exist, encoders are partial or experimental). libopus is what every browser and
//! softphone runs, so the room hears exactly the codec it negotiated.
//!
//! The encoder is set for speech: `Application::Voip`, ~32 kbit/s, in-band FEC on (with a
//! nominal 10 % expected loss, which is what makes libopus spend bits on it). The decoder is
//! mono: stereo packets from browsers are downmixed by libopus itself. A lost frame is
//! concealed with the decoder's PLC ([`OpusDecoder::conceal`]) or, when the packet after it
//! is already there, recovered from that packet's FEC data ([`OpusDecoder::recover`]).
//!
//! All buffers are the caller's; nothing allocates per frame.

use thiserror::Error;

/// Sample rate of everything Opus here.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz mono.
pub const FRAME_SAMPLES: usize = 960;
/// Largest Opus packet taken or produced (a 20 ms frame is at most 1275 bytes, RFC 6716 §3.2.1;
/// nothing larger fits a datagram of the RTP path anyway).
pub const MAX_PACKET: usize = 1500;
/// Most samples one packet can carry (120 ms at 48 kHz).
pub const MAX_PACKET_SAMPLES: usize = 5760;
/// Encoder bitrate: wideband speech with room for FEC.
pub const BITRATE: i32 = 32_000;
/// Loss the encoder plans FEC for, in percent.
const EXPECTED_LOSS_PERCENT: i32 = 10;

/// What went wrong in libopus or with the buffers handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpusError {
    /// Creating or configuring the encoder/decoder failed.
    #[error("opus setup failed in {function}: {message}")]
    Setup {
        /// The libopus function.
        function: &'static str,
        /// libopus' description.
        message: &'static str,
    },
    /// libopus refused to encode (buffer too small, internal error).
    #[error("opus encode failed: {0}")]
    Encode(&'static str),
    /// The packet is corrupt or does not fit the output.
    #[error("opus decode failed: {0}")]
    Decode(&'static str),
    /// The input is not one 20 ms frame, or an output buffer is too short.
    #[error("expected {expected} samples, got {got}")]
    FrameLength {
        /// Samples required.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// Longer than any valid Opus packet.
    #[error("opus packet of {0} bytes is too large")]
    PacketTooLarge(usize),
}

fn setup(e: ::opus::Error) -> OpusError {
    OpusError::Setup {
        function: e.function(),
        message: e.description(),
    }
}

/// The widest audio an encoder codes. A G.711 phone's voice ends at 4 kHz: coded
/// narrowband (SILK NB) it costs a fraction of fullband's CPU and loses nothing the
/// phone sent; an Opus phone's voice keeps the full band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceBand {
    /// Up to 4 kHz.
    Narrow,
    /// Up to 20 kHz.
    Full,
}

/// A 48 kHz mono speech encoder producing one packet per 20 ms frame.
#[derive(Debug)]
pub struct OpusEncoder {
    inner: ::opus::Encoder,
}

impl OpusEncoder {
    /// An encoder configured for speech (see the module doc).
    pub fn new() -> Result<OpusEncoder, OpusError> {
        let mut inner = ::opus::Encoder::new(
            SAMPLE_RATE,
            ::opus::Channels::Mono,
            ::opus::Application::Voip,
        )
        .map_err(setup)?;
        inner
            .set_bitrate(::opus::Bitrate::Bits(BITRATE))
            .map_err(setup)?;
        inner.set_inband_fec(true).map_err(setup)?;
        inner
            .set_packet_loss_perc(EXPECTED_LOSS_PERCENT)
            .map_err(setup)?;
        Ok(OpusEncoder { inner })
    }

    /// Codes at most `band` from now on (see [`VoiceBand`]).
    pub fn set_band(&mut self, band: VoiceBand) -> Result<(), OpusError> {
        // Narrowband speech needs no search effort libopus's default (9) spends: at 5 a
        // frame costs about a third, measured with examples/transcode_costs.rs.
        let (b, complexity) = match band {
            VoiceBand::Narrow => (::opus::Bandwidth::Narrowband, 5),
            VoiceBand::Full => (::opus::Bandwidth::Fullband, 9),
        };
        self.inner.set_max_bandwidth(b).map_err(setup)?;
        self.inner.set_complexity(complexity).map_err(setup)?;
        self.inner.set_signal(::opus::Signal::Voice).map_err(setup)
    }

    /// Encodes one frame of [`FRAME_SAMPLES`] samples into `out`; returns the packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(OpusError::FrameLength {
                expected: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        // libopus takes an i32 length: bound it (a bigger buffer gains nothing).
        let out_len = out.len().min(MAX_PACKET);
        self.inner
            .encode(pcm, &mut out[..out_len])
            .map_err(|e| OpusError::Encode(e.code().description()))
    }
}

/// A 48 kHz mono decoder (stereo packets are downmixed) with loss concealment.
#[derive(Debug)]
pub struct OpusDecoder {
    inner: ::opus::Decoder,
}

impl OpusDecoder {
    /// A fresh decoder.
    pub fn new() -> Result<OpusDecoder, OpusError> {
        let inner = ::opus::Decoder::new(SAMPLE_RATE, ::opus::Channels::Mono).map_err(setup)?;
        Ok(OpusDecoder { inner })
    }

    /// Decodes `packet` into `out` (which should hold [`MAX_PACKET_SAMPLES`] to take any
    /// valid packet); returns the samples written. An empty packet is a lost frame: it is
    /// concealed, one [`FRAME_SAMPLES`] frame.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return self.conceal(out);
        }
        if packet.len() > MAX_PACKET {
            return Err(OpusError::PacketTooLarge(packet.len()));
        }
        let out_len = out.len().min(MAX_PACKET_SAMPLES);
        self.inner
            .decode(packet, &mut out[..out_len], false)
            .map_err(|e| OpusError::Decode(e.code().description()))
    }

    /// Conceals one lost 20 ms frame (PLC) into `out[..FRAME_SAMPLES]`.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, OpusError> {
        let frame = frame_of(out)?;
        self.inner
            .decode(&[], frame, false)
            .map_err(|e| OpusError::Decode(e.code().description()))
    }

    /// Rebuilds one lost 20 ms frame into `out[..FRAME_SAMPLES]` from the in-band FEC data of
    /// `next_packet` (the packet after the lost one); libopus falls back to PLC when that
    /// packet carries no FEC. `next_packet` is then decoded normally on its own turn.
    pub fn recover(&mut self, next_packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if next_packet.is_empty() {
            return self.conceal(out);
        }
        if next_packet.len() > MAX_PACKET {
            return Err(OpusError::PacketTooLarge(next_packet.len()));
        }
        let frame = frame_of(out)?;
        self.inner
            .decode(next_packet, frame, true)
            .map_err(|e| OpusError::Decode(e.code().description()))
    }
}

fn frame_of(out: &mut [i16]) -> Result<&mut [i16], OpusError> {
    let got = out.len();
    out.get_mut(..FRAME_SAMPLES).ok_or(OpusError::FrameLength {
        expected: FRAME_SAMPLES,
        got,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, amplitude: f64, start: usize, out: &mut [i16]) {
        for (i, s) in out.iter_mut().enumerate() {
            let t = (start + i) as f64 / f64::from(SAMPLE_RATE);
            *s = (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        }
    }

    fn energy(pcm: &[i16]) -> f64 {
        pcm.iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / pcm.len() as f64
    }

    #[test]
    fn round_trip_keeps_a_tone_and_conceals_loss() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut packet = [0u8; MAX_PACKET];
        let mut out = vec![0i16; MAX_PACKET_SAMPLES];
        let mut last_packet = Vec::new();
        for frame in 0..20 {
            tone(440.0, 8000.0, frame * FRAME_SAMPLES, &mut pcm);
            let n = enc.encode(&pcm, &mut packet).unwrap();
            assert!(
                n > 0 && n < 400,
                "32 kbit/s is ~80 bytes per frame, got {n}"
            );
            let got = dec.decode(&packet[..n], &mut out).unwrap();
            assert_eq!(got, FRAME_SAMPLES);
            last_packet = packet[..n].to_vec();
        }
        let sent = energy(&pcm);
        let received = energy(&out[..FRAME_SAMPLES]);
        assert!(
            (received / sent - 1.0).abs() < 0.3,
            "energy {received} vs {sent}"
        );
        // A lost frame is concealed with something like the tone, not silence.
        assert_eq!(dec.conceal(&mut out).unwrap(), FRAME_SAMPLES);
        assert!(energy(&out[..FRAME_SAMPLES]) > sent / 10.0);
        assert_eq!(dec.recover(&last_packet, &mut out).unwrap(), FRAME_SAMPLES);
        assert_eq!(dec.decode(&[], &mut out).unwrap(), FRAME_SAMPLES);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut packet = [0u8; MAX_PACKET];
        assert!(matches!(
            enc.encode(&[0; 100], &mut packet),
            Err(OpusError::FrameLength { .. })
        ));
        let mut out = vec![0i16; MAX_PACKET_SAMPLES];
        assert!(matches!(
            dec.decode(&[0u8; 4000], &mut out),
            Err(OpusError::PacketTooLarge(4000))
        ));
        assert!(matches!(
            dec.conceal(&mut [0i16; 10]),
            Err(OpusError::FrameLength { .. })
        ));
        // Code 3 packet claiming 63 frames but carrying nothing.
        assert!(dec.decode(&[0xFB, 0xFF], &mut out).is_err());
        // Random bytes never panic.
        let mut x = 0x1234_5678u32;
        for len in 1..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = dec.decode(&bytes, &mut out);
            let _ = dec.recover(&bytes, &mut out);
        }
    }

    #[test]
    fn stereo_packets_decode_to_mono() {
        let mut enc = ::opus::Encoder::new(
            SAMPLE_RATE,
            ::opus::Channels::Stereo,
            ::opus::Application::Audio,
        )
        .unwrap();
        let mut pcm = [0i16; 2 * FRAME_SAMPLES];
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (i / 2) as f64 / f64::from(SAMPLE_RATE);
            *s = (8000.0 * (2.0 * std::f64::consts::PI * 600.0 * t).sin()) as i16;
        }
        let mut packet = [0u8; MAX_PACKET];
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = vec![0i16; MAX_PACKET_SAMPLES];
        let mut got = 0;
        for _ in 0..5 {
            let n = enc.encode(&pcm, &mut packet).unwrap();
            got = dec.decode(&packet[..n], &mut out).unwrap();
        }
        assert_eq!(got, FRAME_SAMPLES);
        assert!(energy(&out[..FRAME_SAMPLES]) > 1e6);
    }
}

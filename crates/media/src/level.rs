//! The audio level of a frame as RFC 6464 carries it (the `ssrc-audio-level` header
//! extension), and a voice flag with hangover.
//!
//! The gateway sends the phone's voice into the room as one Opus track; the SFU's speaker
//! detector reads only this header extension (it never decodes audio), so the phone shows
//! up as speaking only if the level is set the way browsers set it: the frame's RMS in
//! −dBov, 0 (loudest) to 127 (silence), where 0 dBov is the overload point. A full-scale
//! sine then reads 3 (its RMS is 1/√2 of the peak).

/// RFC 6464 level of silence (and of anything quieter than −127 dBov).
pub const SILENCE: u8 = 127;
/// A level at or below this counts as voice: −50 dBov, above a phone line's noise floor
/// and a little louder than the SFU's default speech threshold (55) so that line noise
/// never lights the speaker indicator.
pub const VOICE_LEVEL: u8 = 50;
/// Frames the voice flag stays on after the level drops (200 ms of 20 ms frames): speech
/// has short pauses between syllables.
pub const HANGOVER_FRAMES: u8 = 10;

/// The RFC 6464 level (−dBov, 0..=127) of `pcm`: its RMS relative to full scale.
pub fn audio_level(pcm: &[i16]) -> u8 {
    if pcm.is_empty() {
        return SILENCE;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / pcm.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return SILENCE;
    }
    let dbov = -20.0 * rms.log10();
    dbov.round().clamp(0.0, f64::from(SILENCE)) as u8
}

/// Voice activity from the level: on at [`VOICE_LEVEL`] or louder, off after
/// [`HANGOVER_FRAMES`] quieter frames.
#[derive(Debug, Clone, Default)]
pub struct VoiceActivity {
    hangover: u8,
}

impl VoiceActivity {
    /// A detector that has heard nothing yet.
    pub fn new() -> VoiceActivity {
        VoiceActivity::default()
    }

    /// Feeds one frame's level; returns whether the frame counts as voice.
    pub fn update(&mut self, level: u8) -> bool {
        if level <= VOICE_LEVEL {
            self.hangover = HANGOVER_FRAMES;
            return true;
        }
        if self.hangover > 0 {
            self.hangover -= 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f64) -> Vec<i16> {
        (0..960)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn silence_full_scale_and_in_between() {
        assert_eq!(audio_level(&[0; 960]), 127);
        assert_eq!(audio_level(&[]), 127);
        assert_eq!(audio_level(&sine(32767.0)), 3);
        // A full-scale square wave is the overload point itself.
        let square: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 32767 } else { -32768 })
            .collect();
        assert_eq!(audio_level(&square), 0);
        // Each 10x down in amplitude is 20 dB.
        assert_eq!(audio_level(&sine(3276.7)), 23);
        assert_eq!(audio_level(&sine(327.67)), 43);
        // One LSB of noise is about −90 dBov, still a level.
        assert_eq!(audio_level(&[1; 960]), 90);
    }

    #[test]
    fn voice_flag_has_hangover() {
        let mut vad = VoiceActivity::new();
        assert!(!vad.update(127));
        assert!(vad.update(20));
        for _ in 0..HANGOVER_FRAMES {
            assert!(vad.update(127));
        }
        assert!(!vad.update(127));
        assert!(!vad.update(VOICE_LEVEL + 1));
        assert!(vad.update(VOICE_LEVEL));
    }
}

use super::*;

fn sine(freq: f64, rate: f64, amplitude: f64, len: usize) -> Vec<i16> {
    (0..len)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()).round() as i16
        })
        .collect()
}

/// Amplitude of the `freq` component of `x` (Goertzel over the whole slice).
fn goertzel_amplitude(x: &[i16], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

fn zero_crossings(x: &[i16]) -> usize {
    x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.log10()
}

fn up(input: &[i16]) -> Vec<i16> {
    let mut out = vec![0; input.len() * RATIO];
    Upsampler::new().process(input, &mut out).unwrap();
    out
}

fn down(input: &[i16]) -> Vec<i16> {
    let mut d = Downsampler::new();
    let mut out = vec![0; d.output_len(input.len())];
    let n = d.process(input, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

#[test]
fn sine_440_keeps_frequency_and_level_up() {
    let input = sine(440.0, 8000.0, 10_000.0, 12_000); // 1.5 s
    let out = up(&input);
    let steady = &out[12_000..60_000]; // 1 s after 0.25 s of warm-up
    let gain = db(goertzel_amplitude(steady, 440.0, 48_000.0) / 10_000.0);
    assert!(gain.abs() < 1.0, "level changed by {gain:.2} dB");
    let crossings = zero_crossings(steady);
    assert!(
        (878..=882).contains(&crossings),
        "{crossings} zero crossings in 1 s"
    );
    // The first image (8000 − 440 Hz) is filtered out.
    let image = db(goertzel_amplitude(steady, 7560.0, 48_000.0) / 10_000.0);
    eprintln!("up 440 Hz: {gain:.3} dB, {crossings} crossings, image {image:.1} dB");
    assert!(image < -40.0, "image at 7560 Hz: {image:.1} dB");
}

#[test]
fn sine_440_keeps_frequency_and_level_down() {
    let input = sine(440.0, 48_000.0, 10_000.0, 72_000);
    let out = down(&input);
    let steady = &out[2000..10_000];
    let gain = db(goertzel_amplitude(steady, 440.0, 8000.0) / 10_000.0);
    assert!(gain.abs() < 1.0, "level changed by {gain:.2} dB");
    let crossings = zero_crossings(steady);
    assert!(
        (878..=882).contains(&crossings),
        "{crossings} zero crossings in 1 s"
    );
}

#[test]
fn tones_above_4k_do_not_alias_down() {
    // A tone above the 8 kHz Nyquist frequency would fold back to 8000 − f; the anti-alias
    // filter must remove it (≥ 40 dB below the input level).
    for freq in [4300.0, 4500.0, 5000.0, 7000.0, 11_000.0] {
        let out = down(&sine(freq, 48_000.0, 10_000.0, 72_000));
        let level = db(rms(&out[2000..10_000]) * 2f64.sqrt() / 10_000.0);
        eprintln!("down {freq} Hz: {level:.1} dB");
        assert!(level < -40.0, "{freq} Hz comes out at {level:.1} dB");
    }
    // Telephone band passes (3.3 kHz within 1 dB).
    let out = down(&sine(3300.0, 48_000.0, 10_000.0, 72_000));
    let level = db(rms(&out[2000..10_000]) * 2f64.sqrt() / 10_000.0);
    eprintln!("down 3300 Hz: {level:.2} dB");
    assert!(level.abs() < 1.0, "3300 Hz at {level:.2} dB");
}

#[test]
fn streaming_in_20ms_chunks_equals_one_shot() {
    let input8: Vec<i16> = (0..8000)
        .map(|i| ((i * 7919) % 20_001 - 10_000) as i16)
        .collect();
    let mut stream = Upsampler::new();
    let mut streamed = Vec::new();
    let mut frame = [0i16; 960];
    for chunk in input8.chunks(160) {
        let n = stream.process(chunk, &mut frame).unwrap();
        streamed.extend_from_slice(&frame[..n]);
    }
    assert_eq!(streamed, up(&input8));

    let input48: Vec<i16> = (0..48_000)
        .map(|i: i64| ((i * 104_729) % 30_001 - 15_000) as i16)
        .collect();
    let mut stream = Downsampler::new();
    let mut streamed = Vec::new();
    let mut frame = [0i16; 160];
    for chunk in input48.chunks(960) {
        let n = stream.process(chunk, &mut frame).unwrap();
        assert_eq!(n, 160);
        streamed.extend_from_slice(&frame[..n]);
    }
    assert_eq!(streamed, down(&input48));
    // Odd chunk sizes carry the phase over.
    let mut stream = Downsampler::new();
    let mut odd = Vec::new();
    for chunk in input48.chunks(7) {
        let n = stream.process(chunk, &mut frame).unwrap();
        odd.extend_from_slice(&frame[..n]);
    }
    assert_eq!(odd, streamed);
}

#[test]
fn short_output_is_an_error_and_loud_input_saturates() {
    let mut u = Upsampler::new();
    assert_eq!(
        u.process(&[0; 160], &mut [0; 959]),
        Err(ResampleError::OutputTooShort {
            needed: 960,
            got: 959
        })
    );
    let mut d = Downsampler::new();
    assert!(d.process(&[0; 960], &mut [0; 159]).is_err());
    // Full-scale square wave: the filter's overshoot is clamped, not wrapped.
    let square: Vec<i16> = (0..800)
        .map(|i| {
            if (i / 20) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            }
        })
        .collect();
    let out = up(&square);
    assert!(out.iter().any(|&x| x == i16::MAX || x == i16::MIN));
    assert!(bessel_i0(0.0) == 1.0 && (bessel_i0(1.0) - 1.266_065_877_752_008).abs() < 1e-12);
}

#[test]
fn skipping_a_frame_leaves_the_filter_as_processing_it_would() {
    let first = sine(440.0, 8000.0, 8000.0, 160);
    let second = sine(697.0, 8000.0, 8000.0, 160);
    let mut processed = Upsampler::new();
    let mut discard = vec![0i16; 160 * 6];
    processed.process(&first, &mut discard).unwrap();
    let mut skipped = Upsampler::new();
    skipped.skip(&first);
    let (mut a, mut b) = (vec![0i16; 160 * 6], vec![0i16; 160 * 6]);
    processed.process(&second, &mut a).unwrap();
    skipped.process(&second, &mut b).unwrap();
    assert_eq!(a, b);
    // A frame shorter than the filter's history is taken whole.
    let mut short = Upsampler::new();
    short.skip(&first[..3]);
    let mut short_processed = Upsampler::new();
    short_processed.process(&first[..3], &mut discard).unwrap();
    let (mut c, mut d) = (vec![0i16; 160 * 6], vec![0i16; 160 * 6]);
    short.process(&second, &mut c).unwrap();
    short_processed.process(&second, &mut d).unwrap();
    assert_eq!(c, d);
}

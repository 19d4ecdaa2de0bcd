//! CallMedia with real codecs end to end: tones in, tones measured out.

use super::*;
use crate::opus::{OpusEncoder, MAX_PACKET, MAX_PACKET_SAMPLES};
use crate::rtp::{write_rtp_header, RtpHeader};
use crate::srtp::SrtpProfile;
use std::f64::consts::PI;
use std::time::Duration;

mod arrival;
mod dtmf;
mod passthrough;
mod robustness;

const PCMU: u8 = 0;
const OPUS_PT: u8 = 111;
const TE: u8 = 101;

fn cfg(codec: PhoneCodec) -> PhoneConfig {
    PhoneConfig {
        codec,
        pt: match codec {
            PhoneCodec::G711(law) => law.payload_type(),
            PhoneCodec::Opus => OPUS_PT,
        },
        telephone_event: Some(TE),
        ssrc: 0x5157_0001,
        srtp: None,
        srtp_profile: SrtpProfile::AesCm128HmacSha1_80,
        ptime: None,
    }
}

fn pcmu() -> PhoneConfig {
    cfg(PhoneCodec::G711(Law::Mu))
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// `n` samples of a sine at `rate`, starting at sample `start`.
fn tone(freq: f64, amplitude: f64, rate: u32, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
        .collect()
}

/// Amplitude of the `freq` component of `pcm` (Goertzel, Hann window).
fn amplitude_at(pcm: &[i16], rate: u32, freq: f64) -> f64 {
    let n = pcm.len() as f64;
    let coeff = 2.0 * (2.0 * PI * freq / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for (i, &x) in pcm.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / n).cos();
        let s0 = f64::from(x) * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // Hann window: coherent gain 0.5.
    2.0 * power.max(0.0).sqrt() / (0.5 * n)
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
}

/// Dominant frequency by interpolated zero crossings (rising edges).
fn frequency(pcm: &[i16], rate: u32) -> f64 {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0;
    for i in 1..pcm.len() {
        let (a, b) = (f64::from(pcm[i - 1]), f64::from(pcm[i]));
        if a < 0.0 && b >= 0.0 {
            let t = (i - 1) as f64 + a / (a - b);
            if first.is_none() {
                first = Some(t);
            } else {
                count += 1;
            }
            last = t;
        }
    }
    let first = first.expect("no zero crossing");
    f64::from(count) * f64::from(rate) / (last - first)
}

fn g711_packet(law: Law, seq: u16, ts: u32, ssrc: u32, pcm8: &[i16]) -> Vec<u8> {
    let mut p = vec![0u8; 12 + pcm8.len()];
    write_rtp_header(&mut p, seq == 0, law.payload_type(), seq, ts, ssrc).unwrap();
    law.encode(pcm8, &mut p[12..]).unwrap();
    p
}

fn opus_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 12 + payload.len()];
    write_rtp_header(&mut p, false, pt, seq, ts, ssrc).unwrap();
    p[12..].copy_from_slice(payload);
    p
}

/// A room member sending a tone as Opus.
struct RoomTone {
    freq: f64,
    amplitude: f64,
    encoder: OpusEncoder,
    frame: usize,
}

impl RoomTone {
    fn new(freq: f64) -> RoomTone {
        RoomTone::with_amplitude(freq, 8000.0)
    }

    fn with_amplitude(freq: f64, amplitude: f64) -> RoomTone {
        RoomTone {
            freq,
            amplitude,
            encoder: OpusEncoder::new().unwrap(),
            frame: 0,
        }
    }

    fn send(&mut self, cm: &mut CallMedia, now: Instant, source: u64) {
        let pcm = tone(self.freq, self.amplitude, 48_000, self.frame * 960, 960);
        let mut out = [0u8; MAX_PACKET];
        let n = self.encoder.encode(&pcm, &mut out).unwrap();
        let seq = 1000 + self.frame as u16;
        cm.on_room_opus(now, source, seq, 960 * self.frame as u32, &out[..n]);
        self.frame += 1;
    }
}

/// What a call sent, one entry per 20 ms on each side: the packet or payload forwarded
/// on arrival, else the tick's (an empty one when the tick sent nothing).
struct Outputs {
    phone: Vec<Vec<u8>>,
    room: Vec<Vec<u8>>,
    /// The room frames' descriptions, with `room`.
    ticks: Vec<RoomFrame>,
    /// Packets forwarded on arrival since the last tick: to the phone, to the room.
    arrived: (usize, usize),
}

fn tick(cm: &mut CallMedia, now: Instant, outs: &mut Outputs) {
    let mut phone = [0u8; 1500];
    let mut room = [0u8; 1500];
    let t = cm.tick(now, &mut phone, &mut room).unwrap();
    if t.phone_len > 0 || outs.arrived.0 == 0 {
        outs.phone.push(phone[..t.phone_len].to_vec());
    }
    if t.room.len > 0 || outs.arrived.1 == 0 {
        outs.room.push(room[..t.room.len].to_vec());
        outs.ticks.push(t.room);
    }
    outs.arrived = (0, 0);
}

fn outputs() -> Outputs {
    Outputs {
        phone: Vec::new(),
        room: Vec::new(),
        ticks: Vec::new(),
        arrived: (0, 0),
    }
}

/// A datagram from the phone; what goes to the room on arrival is recorded in `outs`.
fn phone_in(
    cm: &mut CallMedia,
    now: Instant,
    packet: &mut [u8],
    outs: &mut Outputs,
) -> Result<PhoneIn, BridgeError> {
    let mut room = [0u8; 1500];
    let arrival = cm.on_phone_packet(now, packet, &mut room)?;
    if let Some(frame) = arrival.room {
        assert!(frame.len > 0);
        outs.room.push(room[..frame.len].to_vec());
        outs.ticks.push(frame);
        outs.arrived.1 += 1;
    }
    Ok(arrival.kind)
}

fn audio(source: u64, codec: RoomCodec, seq: u16, timestamp: u32, payload: &[u8]) -> RoomAudio<'_> {
    RoomAudio {
        source,
        codec,
        seq,
        timestamp,
        payload,
    }
}

/// A room member's payload; what goes to the phone on arrival is recorded in `outs`.
#[allow(clippy::too_many_arguments)]
fn room_in(
    cm: &mut CallMedia,
    now: Instant,
    source: u64,
    codec: RoomCodec,
    seq: u16,
    ts: u32,
    payload: &[u8],
    outs: &mut Outputs,
) {
    let mut phone = [0u8; 1500];
    let n = cm
        .on_room_audio(now, audio(source, codec, seq, ts, payload), &mut phone)
        .unwrap();
    if n > 0 {
        outs.phone.push(phone[..n].to_vec());
        outs.arrived.0 += 1;
    }
}

/// Decodes the G.711 audio packets (payload type `pt`) of `packets` to 8 kHz PCM.
fn decode_phone_g711(packets: &[Vec<u8>], law: Law) -> Vec<i16> {
    let mut pcm = Vec::new();
    for p in packets.iter().filter(|p| !p.is_empty()) {
        let h = RtpHeader::parse(p).unwrap();
        if h.payload_type != law.payload_type() {
            continue;
        }
        for &c in &p[h.payload_start..h.payload_end] {
            pcm.push(law.decode_sample(c));
        }
    }
    pcm
}

fn decode_opus(payloads: &[Vec<u8>]) -> Vec<i16> {
    let mut dec = OpusDecoder::new().unwrap();
    let mut buf = vec![0i16; MAX_PACKET_SAMPLES];
    let mut pcm = Vec::new();
    for p in payloads {
        let n = dec.decode(p, &mut buf).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    pcm
}

/// Feeds the phone a 440 Hz G.711 tone for `frames` ticks (dropping `lost`, swapping the
/// pairs starting at `swapped`).
fn run_phone_tone(
    cm: &mut CallMedia,
    t0: Instant,
    frames: usize,
    amplitude: f64,
    lost: &[usize],
    swapped: &[usize],
) -> Outputs {
    let mut outs = outputs();
    let mut held_back: Option<Vec<u8>> = None;
    for k in 0..frames {
        let now = at(t0, 20 * k as u64);
        let pcm = tone(440.0, amplitude, 8000, k * 160, 160);
        let mut p = g711_packet(Law::Mu, k as u16, 160 * k as u32, 0xAAAA, &pcm);
        if swapped.contains(&k) {
            held_back = Some(p);
        } else if !lost.contains(&k) {
            assert_eq!(phone_in(cm, now, &mut p, &mut outs), Ok(PhoneIn::Audio));
            if let Some(mut late) = held_back.take() {
                assert_eq!(phone_in(cm, now, &mut late, &mut outs), Ok(PhoneIn::Audio));
            }
        }
        tick(cm, now + Duration::from_millis(1), &mut outs);
    }
    outs
}

#[test]
fn phone_tone_reaches_the_room_at_its_pitch_and_level() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let outs = run_phone_tone(&mut cm, t0, 150, 10_000.0, &[], &[]);
    assert!(outs.room.iter().all(|p| !p.is_empty()));
    // One frame each 20 ms on the room track's line.
    assert!(outs
        .ticks
        .windows(2)
        .all(|w| w[1].position == w[0].position + 960 && w[1].seq == w[0].seq + 1));
    let pcm = decode_opus(&outs.room);
    let steady = &pcm[50 * 960..];
    let f = frequency(steady, 48_000);
    assert!((f - 440.0).abs() < 2.0, "frequency {f}");
    // Level: sent at 10000 peak (−13.3 dBov RMS); within 2 dB after the codecs.
    let sent_db = 20.0 * (10_000.0 / 2f64.sqrt()).log10();
    let got_db = 20.0 * rms(steady).log10();
    assert!(
        (got_db - sent_db).abs() < 2.0,
        "{got_db} dB vs {sent_db} dB"
    );
    let t = outs.ticks[100];
    assert!((12..=15).contains(&t.level), "level {}", t.level);
    assert!(t.voice);
    let stats = cm.stats();
    assert_eq!(stats.phone_packets_in, 150);
    assert_eq!(stats.room_packets_out, 150);
    assert_eq!(stats.phone_lost, 0);
}

#[test]
fn level_of_silence_and_full_scale() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let outs = run_phone_tone(&mut cm, t0, 20, 0.0, &[], &[]);
    assert!(outs.ticks.iter().all(|t| t.level == 127 && !t.voice));
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let outs = run_phone_tone(&mut cm, t0, 30, 32_767.0, &[], &[]);
    // µ-law peaks at 32124 (−0.2 dB): a full-scale sine reads 3, maybe 4 after resampling.
    let level = outs.ticks[25].level;
    assert!((3..=4).contains(&level), "level {level}");
    // Nothing from the phone yet: silence.
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut outs = outputs();
    tick(&mut cm, t0, &mut outs);
    assert_eq!(outs.ticks[0].level, 127);
}

#[test]
fn two_room_sources_are_both_heard_by_the_phone() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut a = RoomTone::new(700.0);
    let mut b = RoomTone::new(1100.0);
    let mut outs = outputs();
    for k in 0..100u64 {
        let now = at(t0, 20 * k);
        a.send(&mut cm, now, 1);
        b.send(&mut cm, now, 2);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    assert_eq!(cm.room_source_count(), 2);
    // Every tick sent one PCMU packet: our SSRC, consecutive sequence, +160 timestamp,
    // marker only on the first.
    let headers: Vec<RtpHeader> = outs
        .phone
        .iter()
        .map(|p| RtpHeader::parse(p).unwrap())
        .collect();
    assert_eq!(headers.len(), 100);
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h.payload_type, PCMU);
        assert_eq!(h.ssrc, 0x5157_0001);
        assert_eq!(h.marker, i == 0);
        assert_eq!(h.payload_end - h.payload_start, 160);
        if i > 0 {
            assert_eq!(h.sequence, headers[i - 1].sequence.wrapping_add(1));
            assert_eq!(h.timestamp, headers[i - 1].timestamp.wrapping_add(160));
        }
    }
    let pcm = decode_phone_g711(&outs.phone, Law::Mu);
    let steady = &pcm[40 * 160..];
    let total = rms(steady) * 2f64.sqrt();
    let rel = |f: f64| 20.0 * (amplitude_at(steady, 8000, f) / total).log10();
    assert!(rel(700.0) > -20.0, "700 Hz at {} dB", rel(700.0));
    assert!(rel(1100.0) > -20.0, "1100 Hz at {} dB", rel(1100.0));
    assert!(rel(1900.0) < -40.0, "1900 Hz at {} dB", rel(1900.0));
    // Each tone arrives at about its own level (8000 peak), not attenuated by the mix.
    for f in [700.0, 1100.0] {
        let amp = amplitude_at(steady, 8000, f);
        assert!((amp / 8000.0 - 1.0).abs() < 0.1, "{f} Hz amplitude {amp}");
    }

    // Source 2 stops: within a second it is out of the mix, source 1 stays.
    let mut outs = outputs();
    for k in 100..200u64 {
        let now = at(t0, 20 * k);
        a.send(&mut cm, now, 1);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let pcm = decode_phone_g711(&outs.phone[60..], Law::Mu);
    let total = rms(&pcm) * 2f64.sqrt();
    assert!(amplitude_at(&pcm, 8000, 700.0) / total > 0.5);
    assert!(
        amplitude_at(&pcm, 8000, 1100.0) / total < 0.01,
        "the stopped source still plays"
    );
    cm.remove_room_source(2);
    assert_eq!(cm.room_source_count(), 1);
    cm.remove_room_source(99);
    assert_eq!(cm.room_source_count(), 1);
}

#[test]
fn an_empty_room_gives_the_phone_comfort_silence() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut outs = outputs();
    for k in 0..10 {
        tick(&mut cm, at(t0, 20 * k), &mut outs);
    }
    for p in &outs.phone {
        let h = RtpHeader::parse(p).unwrap();
        // µ-law silence is 0xFF (or 0x7F, −0).
        assert!(p[h.payload_start..h.payload_end]
            .iter()
            .all(|&c| c & 0x7F == 0x7F));
    }
    assert_eq!(cm.stats().phone_packets_out, 10);
}

#[test]
fn phone_loss_and_reordering_are_concealed() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let lost = [30, 31, 60, 90, 120];
    let swapped = [40, 70, 100];
    let outs = run_phone_tone(&mut cm, t0, 150, 10_000.0, &lost, &swapped);
    let stats = cm.stats();
    assert_eq!(stats.phone_packets_in, 150 - lost.len() as u64);
    assert!(stats.phone_lost >= 4, "{stats:?}");
    assert!(stats.phone_concealed >= 4, "{stats:?}");
    // Still the tone overall.
    let pcm = decode_opus(&outs.room);
    let steady = &pcm[50 * 960..];
    assert!(amplitude_at(steady, 48_000, 440.0) > 0.5 * 10_000.0);
}

#[test]
fn sdes_srtp_round_trip_between_two_calls() {
    let t0 = Instant::now();
    let ours: Vec<u8> = (0..30).collect();
    let theirs: Vec<u8> = (100..130).collect();
    let mut a_cfg = pcmu();
    a_cfg.srtp = Some((ours.clone(), theirs.clone()));
    let mut b_cfg = pcmu();
    b_cfg.ssrc = 0xB0B0;
    b_cfg.srtp = Some((theirs, ours));
    let mut a = CallMedia::new(a_cfg, t0).unwrap();
    let mut b = CallMedia::new(b_cfg, t0).unwrap();
    let mut source = RoomTone::new(700.0);
    let mut b_outs = outputs();
    for k in 0..100u64 {
        let now = at(t0, 20 * k);
        source.send(&mut a, now, 7);
        let mut a_outs = outputs();
        tick(&mut a, now, &mut a_outs);
        let mut packet = a_outs.phone.pop().unwrap();
        // Encrypted: our 12-byte header, 160 bytes, 10-byte tag.
        assert_eq!(packet.len(), 12 + 160 + 10);
        if k == 50 {
            let mut tampered = packet.clone();
            tampered[40] ^= 1;
            assert!(matches!(
                phone_in(&mut b, now, &mut tampered, &mut b_outs),
                Err(BridgeError::Srtp(_))
            ));
        }
        assert_eq!(
            phone_in(&mut b, now, &mut packet, &mut b_outs),
            Ok(PhoneIn::Audio)
        );
        tick(&mut b, now + Duration::from_millis(1), &mut b_outs);
    }
    let pcm = decode_opus(&b_outs.room);
    let steady = &pcm[40 * 960..];
    let f = frequency(steady, 48_000);
    assert!((f - 700.0).abs() < 2.0, "frequency {f}");
    assert_eq!(b.stats().phone_rejected, 1);
    // Plain RTP into an SRTP leg is refused.
    let mut plain = g711_packet(Law::Mu, 5, 800, 1, &[0; 160]);
    assert!(phone_in(&mut b, t0, &mut plain, &mut outputs()).is_err());
    // Keys of the wrong length are a configuration error.
    let mut bad = pcmu();
    bad.srtp = Some((vec![1; 10], vec![2; 30]));
    assert!(matches!(CallMedia::new(bad, t0), Err(BridgeError::Srtp(_))));
}

#[test]
fn opus_phone_leg_both_ways() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(cfg(PhoneCodec::Opus), t0).unwrap();
    let mut phone_encoder = OpusEncoder::new().unwrap();
    let mut room = RoomTone::new(700.0);
    let mut outs = outputs();
    for k in 0..100usize {
        let now = at(t0, 20 * k as u64);
        let pcm = tone(440.0, 10_000.0, 48_000, k * 960, 960);
        let mut payload = [0u8; MAX_PACKET];
        let n = phone_encoder.encode(&pcm, &mut payload).unwrap();
        let mut p = opus_packet(OPUS_PT, k as u16, 960 * k as u32, 0xCC, &payload[..n]);
        assert_eq!(
            phone_in(&mut cm, now, &mut p, &mut outs),
            Ok(PhoneIn::Audio)
        );
        room.send(&mut cm, now, 3);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let to_room = decode_opus(&outs.room);
    let f = frequency(&to_room[40 * 960..], 48_000);
    assert!((f - 440.0).abs() < 2.0, "phone → room {f}");
    let mut payloads = Vec::new();
    let mut previous: Option<RtpHeader> = None;
    for p in &outs.phone {
        let h = RtpHeader::parse(p).unwrap();
        assert_eq!(h.payload_type, OPUS_PT);
        if let Some(prev) = previous {
            assert_eq!(h.timestamp, prev.timestamp.wrapping_add(960));
        }
        previous = Some(h);
        payloads.push(p[h.payload_start..h.payload_end].to_vec());
    }
    let to_phone = decode_opus(&payloads);
    let f = frequency(&to_phone[40 * 960..], 48_000);
    assert!((f - 700.0).abs() < 2.0, "room → phone {f}");
}

#[test]
fn codec_change_keeps_our_stream_continuous() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut outs = outputs();
    for k in 0..5u64 {
        tick(&mut cm, at(t0, 20 * k), &mut outs);
    }
    cm.set_phone_codec(cfg(PhoneCodec::Opus)).unwrap();
    for k in 5..10u64 {
        tick(&mut cm, at(t0, 20 * k), &mut outs);
    }
    let h: Vec<RtpHeader> = outs
        .phone
        .iter()
        .map(|p| RtpHeader::parse(p).unwrap())
        .collect();
    assert_eq!(h[4].payload_type, PCMU);
    assert_eq!(h[5].payload_type, OPUS_PT);
    assert_eq!(h[5].sequence, h[4].sequence.wrapping_add(1));
    assert_eq!(h[5].timestamp, h[4].timestamp.wrapping_add(160));
    assert_eq!(h[6].timestamp, h[5].timestamp.wrapping_add(960));
    assert!(h[5].marker && !h[6].marker);
    // Bad configurations are refused and leave the call as it was.
    let mut bad = pcmu();
    bad.telephone_event = Some(bad.pt);
    assert!(matches!(
        cm.set_phone_codec(bad),
        Err(BridgeError::BadConfig(_))
    ));
    let mut bad = pcmu();
    bad.pt = 200;
    assert!(matches!(
        CallMedia::new(bad, t0),
        Err(BridgeError::BadConfig(_))
    ));
}

#[test]
fn hold_sends_nothing_and_resumes_with_a_marker() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let outs = run_phone_tone(&mut cm, t0, 10, 10_000.0, &[], &[]);
    cm.set_hold(true);
    assert!(cm.is_held());
    let held = run_phone_tone(&mut cm, at(t0, 200), 10, 10_000.0, &[], &[]);
    assert!(held.phone.iter().all(Vec::is_empty));
    assert!(held.room.iter().all(Vec::is_empty));
    cm.set_hold(false);
    let mut resumed = outputs();
    tick(&mut cm, at(t0, 400), &mut resumed);
    let before = RtpHeader::parse(outs.phone.last().unwrap()).unwrap();
    let after = RtpHeader::parse(&resumed.phone[0]).unwrap();
    assert!(after.marker);
    assert_eq!(after.sequence, before.sequence.wrapping_add(1));
    assert_eq!(after.timestamp, before.timestamp.wrapping_add(11 * 160));
    assert!(!resumed.room[0].is_empty());
}

#[test]
fn too_many_room_sources_are_refused() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut enc = OpusEncoder::new().unwrap();
    let mut payload = [0u8; MAX_PACKET];
    let n = enc.encode(&[0; 960], &mut payload).unwrap();
    for id in 0..70u64 {
        cm.on_room_opus(t0, id, 1, 960, &payload[..n]);
    }
    assert_eq!(cm.room_source_count(), room::MAX_SOURCES);
    assert_eq!(cm.stats().room_rejected, 70 - room::MAX_SOURCES as u64);
    let mut outs = outputs();
    tick(&mut cm, t0, &mut outs);
}

/// The phone hears the 16 loudest sources: a quiet 17th is left out, a quiet 16th is not.
#[test]
fn the_mix_takes_the_loudest_sources() {
    for loud in [15u64, 16] {
        let t0 = Instant::now();
        let mut cm = CallMedia::new(pcmu(), t0).unwrap();
        let mut sources: Vec<RoomTone> = (0..loud)
            .map(|_| RoomTone::with_amplitude(700.0, 1000.0))
            .collect();
        sources.push(RoomTone::with_amplitude(1100.0, 300.0));
        let mut outs = outputs();
        for k in 0..60u64 {
            let now = at(t0, 20 * k);
            for (id, source) in sources.iter_mut().enumerate() {
                source.send(&mut cm, now, id as u64);
            }
            tick(&mut cm, now + Duration::from_millis(1), &mut outs);
        }
        let pcm = decode_phone_g711(&outs.phone[30..], Law::Mu);
        let quiet = amplitude_at(&pcm, 8000, 1100.0);
        let loud_sum = amplitude_at(&pcm, 8000, 700.0);
        assert!(loud_sum > 0.8 * 1000.0 * loud as f64, "{loud}: {loud_sum}");
        if (loud as usize) < room::MAX_MIXED {
            assert!(
                quiet > 200.0,
                "{loud} loud: the quiet one is mixed ({quiet})"
            );
        } else {
            assert!(
                quiet < 30.0,
                "{loud} loud: the quiet one is left out ({quiet})"
            );
        }
    }
}

#[test]
fn short_outputs_are_refused_before_anything_happens() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut outs = outputs();
    tick(&mut cm, t0, &mut outs);
    let mut phone = vec![0u8; MIN_PHONE_OUT];
    let mut room = vec![0u8; MIN_ROOM_OUT];
    assert_eq!(
        cm.tick(at(t0, 20), &mut phone[..MIN_PHONE_OUT - 1], &mut room),
        Err(BridgeError::BufferTooSmall)
    );
    assert_eq!(
        cm.tick(at(t0, 20), &mut phone, &mut room[..MIN_ROOM_OUT - 1]),
        Err(BridgeError::BufferTooSmall)
    );
    let t = cm.tick(at(t0, 20), &mut phone, &mut room).unwrap();
    let first = RtpHeader::parse(&outs.phone[0]).unwrap();
    let next = RtpHeader::parse(&phone[..t.phone_len]).unwrap();
    assert_eq!(next.sequence, first.sequence.wrapping_add(1));
    assert_eq!(next.timestamp, first.timestamp.wrapping_add(160));
    assert_eq!(cm.stats().phone_packets_out, 2);
}

#[test]
fn a_lost_opus_frame_is_rebuilt_from_fec_when_the_next_one_is_buffered() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut encoder = OpusEncoder::new().unwrap();
    // Odd packets arrive 35 ms late (after the next one), and one is lost: playout waits
    // for it while the packets after it are here, and rebuilds it from their FEC.
    let packets: Vec<(u64, u16, Vec<u8>)> = (0..100usize)
        .map(|k| {
            let pcm = tone(700.0, 8000.0, 48_000, k * 960, 960);
            let mut out = [0u8; MAX_PACKET];
            let n = encoder.encode(&pcm, &mut out).unwrap();
            let arrival = 20 * k as u64 + if k % 2 == 1 { 35 } else { 0 };
            (arrival, k as u16, out[..n].to_vec())
        })
        .filter(|p| p.1 != 60)
        .collect();
    let mut next = 0;
    let mut outs = outputs();
    for k in 0..100u64 {
        let now = at(t0, 20 * k + 1);
        while next < packets.len() && packets[next].0 <= 20 * k + 1 {
            let (arrival, seq, payload) = &packets[next];
            cm.on_room_opus(at(t0, *arrival), 1, *seq, 960 * u32::from(*seq), payload);
            next += 1;
        }
        tick(&mut cm, now, &mut outs);
    }
    let stats = cm.stats();
    assert_eq!(stats.room_lost, 1, "{stats:?}");
    assert!(stats.fec_recovered >= 1, "{stats:?}");
    // The tone goes on through the loss: around it, a few concealed frames (while playout
    // waited for the lost one and grew its delay), the tone before and after.
    let pcm = decode_phone_g711(&outs.phone[50..80], Law::Mu);
    let amplitudes: Vec<f64> = pcm
        .chunks(160)
        .map(|f| amplitude_at(f, 8000, 700.0))
        .collect();
    assert!(
        amplitudes[..10].iter().all(|&a| a > 7000.0),
        "{amplitudes:?}"
    );
    assert!(
        amplitudes[20..].iter().all(|&a| a > 7000.0),
        "{amplitudes:?}"
    );
    assert!(
        amplitudes.iter().filter(|&&a| a < 4000.0).count() <= 4,
        "{amplitudes:?}"
    );
}

//! G.711 without transcoding: a room member's PCMU/PCMA reaches a phone of the same law as
//! it came while it is alone in the mix, and the phone's G.711 reaches a room that speaks
//! G.711 as it came; anything else is mixed and encoded as before.

use super::*;
use crate::srtp::SrtpContext;

/// A room member whose browser sends a tone as G.711 in 20 ms frames.
pub(super) struct G711Member {
    law: Law,
    freq: f64,
    frame: usize,
    /// Every payload sent, in order.
    pub(super) sent: Vec<Vec<u8>>,
}

impl G711Member {
    pub(super) fn new(law: Law, freq: f64) -> G711Member {
        G711Member {
            law,
            freq,
            frame: 0,
            sent: Vec::new(),
        }
    }

    /// The next frame's sequence number, timestamp and payload (kept in `sent`).
    pub(super) fn next_packet(&mut self) -> (u16, u32, Vec<u8>) {
        let pcm = tone(self.freq, 8000.0, 8000, self.frame * 160, 160);
        let mut payload = vec![0u8; 160];
        self.law.encode(&pcm, &mut payload).unwrap();
        // The frame number in the first three samples, as μ-law codes within ±120 of
        // zero: every payload differs (a tone alone repeats), and they stay inaudible.
        if self.law == Law::Mu {
            for (i, b) in payload[..3].iter_mut().enumerate() {
                *b = 0xF0 | ((self.frame >> (4 * i)) & 0xF) as u8;
            }
        }
        let seq = 7000 + self.frame as u16;
        let ts = 160 * self.frame as u32;
        self.sent.push(payload.clone());
        self.frame += 1;
        (seq, ts, payload)
    }

    pub(super) fn send(
        &mut self,
        cm: &mut CallMedia,
        now: Instant,
        source: u64,
        outs: &mut Outputs,
    ) {
        let (seq, ts, payload) = self.next_packet();
        let codec = RoomCodec::G711(self.law);
        room_in(cm, now, source, codec, seq, ts, &payload, outs);
    }
}

/// `pcm` (8 kHz) is mostly a tone at `freq` of about the member's level (8000 peak).
fn assert_hears(pcm: &[i16], freq: f64) {
    let amp = amplitude_at(pcm, 8000, freq);
    let total = rms(pcm) * 2f64.sqrt();
    assert!(amp / total > 0.9, "{freq} Hz: {amp} of {total}");
    assert!(
        (amp / 8000.0 - 1.0).abs() < 0.1,
        "{freq} Hz amplitude {amp}"
    );
}

pub(super) fn payload(packet: &[u8]) -> &[u8] {
    let h = RtpHeader::parse(packet).unwrap();
    &packet[h.payload_start..h.payload_end]
}

/// Index in `sent` of the first phone packet's payload found there, and the index of that
/// packet: where the passthrough begins.
fn first_passed(phone: &[Vec<u8>], sent: &[Vec<u8>]) -> Option<(usize, usize)> {
    phone.iter().enumerate().find_map(|(i, p)| {
        let body = payload(p);
        sent.iter().position(|s| s == body).map(|j| (i, j))
    })
}

#[test]
fn one_g711_source_of_the_phones_law_reaches_the_phone_bit_exact() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut outs = outputs();
    for k in 0..100u64 {
        let now = at(t0, 20 * k);
        member.send(&mut cm, now, 1, &mut outs);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let (start, first) = first_passed(&outs.phone, &member.sent).expect("nothing passed through");
    assert!(start < 10, "passthrough began at tick {start}");
    // Not before the member's first frame could have been played.
    assert!(first <= start, "frame {first} at tick {start}");
    // From there on every packet is the member's next payload, in our header.
    let headers: Vec<RtpHeader> = outs
        .phone
        .iter()
        .map(|p| RtpHeader::parse(p).unwrap())
        .collect();
    for (n, i) in (start..100).enumerate() {
        assert_eq!(
            payload(&outs.phone[i]),
            &member.sent[first + n][..],
            "packet {i}"
        );
        let h = &headers[i];
        assert_eq!((h.payload_type, h.ssrc), (PCMU, 0x5157_0001));
        if i > 0 {
            assert_eq!(h.sequence, headers[i - 1].sequence.wrapping_add(1));
            assert_eq!(h.timestamp, headers[i - 1].timestamp.wrapping_add(160));
        }
    }
    let stats = cm.stats();
    assert_eq!(stats.frames_to_phone_passed, (100 - start) as u64);
    // Before it: comfort silence while the member's buffer filled.
    assert_eq!(stats.frames_to_phone_transcoded, start as u64);

    // A second member (Opus) joins: the mix resumes and the phone hears both.
    let mut other = RoomTone::new(1100.0);
    let mut outs = outputs();
    for k in 100..200u64 {
        let now = at(t0, 20 * k);
        member.send(&mut cm, now, 1, &mut outs);
        other.send(&mut cm, now, 2);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let passed = cm.stats().frames_to_phone_passed - stats.frames_to_phone_passed;
    assert!(
        passed < 10,
        "{passed} frames passed through with two members"
    );
    assert!(first_passed(&outs.phone[20..], &member.sent).is_none());
    let pcm = decode_phone_g711(&outs.phone[40..], Law::Mu);
    let total = rms(&pcm) * 2f64.sqrt();
    for f in [700.0, 1100.0] {
        let rel = 20.0 * (amplitude_at(&pcm, 8000, f) / total).log10();
        assert!(rel > -20.0, "{f} Hz at {rel} dB in the mix");
    }

    // The Opus member stops: after SOURCE_TIMEOUT the G.711 member is alone again.
    let mut outs = outputs();
    for k in 200..300u64 {
        let now = at(t0, 20 * k);
        member.send(&mut cm, now, 1, &mut outs);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let (again, _) = first_passed(&outs.phone, &member.sent).expect("no passthrough after");
    assert!(again <= 60, "passthrough resumed only at tick {again}");
}

#[test]
fn passthrough_keeps_srtp_dtmf_and_hold() {
    let t0 = Instant::now();
    let mut srtp = pcmu();
    let ours: Vec<u8> = (0..30).collect();
    srtp.srtp = Some((ours.clone(), (30..60).collect()));
    let mut cm = CallMedia::new(srtp, t0).unwrap();
    let mut phone_side = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &ours).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut outs = outputs();
    for k in 0..60u64 {
        let now = at(t0, 20 * k);
        // The digit and the hold come before the member's packet of the tick (the phone
        // gets nothing of it: it is forwarded on arrival otherwise).
        if k == 40 {
            cm.send_dtmf(now, '5', 100).unwrap();
        }
        if k == 50 {
            cm.set_hold(true);
        }
        member.send(&mut cm, now, 1, &mut outs);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let mut plain = Vec::new();
    for p in outs.phone.iter().filter(|p| !p.is_empty()) {
        let mut p = p.clone();
        let n = phone_side.unprotect_rtp(&mut p).unwrap();
        p.truncate(n);
        plain.push(p);
    }
    let (start, first) = first_passed(&plain, &member.sent).expect("nothing passed through");
    assert!(start < 10);
    // The digit's events replace audio from tick 40; after them the passthrough goes on.
    let kinds: Vec<u8> = plain
        .iter()
        .map(|p| RtpHeader::parse(p).unwrap().payload_type)
        .collect();
    assert_eq!(kinds[40], TE, "{kinds:?}");
    let after = kinds[40..].iter().position(|&pt| pt == PCMU).unwrap() + 40;
    let body = payload(&plain[after]);
    let j = member
        .sent
        .iter()
        .position(|s| s == body)
        .expect("audio after the digit passed");
    assert!(j > first);
    // On hold from tick 50: nothing more.
    assert_eq!(outs.phone[50..].iter().filter(|p| !p.is_empty()).count(), 0);
}

#[test]
fn a_g711_source_of_the_other_law_is_transcoded() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(cfg(PhoneCodec::G711(Law::A)), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut outs = outputs();
    for k in 0..100u64 {
        let now = at(t0, 20 * k);
        member.send(&mut cm, now, 1, &mut outs);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let stats = cm.stats();
    assert_eq!(stats.frames_to_phone_passed, 0);
    assert_eq!(stats.frames_to_phone_transcoded, 100);
    // The phone hears the member (decoded, resampled, coded in A-law).
    let pcm = decode_phone_g711(&outs.phone[20..], Law::A);
    assert_hears(&pcm, 700.0);
}

#[test]
fn the_phones_g711_reaches_a_g711_room_bit_exact_and_opus_otherwise() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut sent = Vec::new();
    let mut outs = outputs();
    for k in 0..100usize {
        let now = at(t0, 20 * k as u64);
        let pcm = tone(440.0, 10_000.0, 8000, k * 160, 160);
        let mut p = g711_packet(Law::Mu, k as u16, 160 * k as u32, 0xAAAA, &pcm);
        sent.push(p[12..].to_vec());
        phone_in(&mut cm, now, &mut p, &mut outs).unwrap();
        member.send(&mut cm, now, 1, &mut outs);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    // Once the member is heard, the room gets the phone's payloads as they came.
    let start = outs
        .ticks
        .iter()
        .position(|t| t.codec == RoomCodec::G711(Law::Mu))
        .expect("never G.711 to the room");
    assert!(start < 10, "G.711 to the room from tick {start}");
    let first = sent
        .iter()
        .position(|s| *s == outs.room[start + 5])
        .expect("not the phone's bytes");
    for (n, i) in (start + 5..100).enumerate() {
        assert_eq!(outs.ticks[i].codec, RoomCodec::G711(Law::Mu));
        assert_eq!(outs.room[i], sent[first + n], "tick {i}");
    }
    // The level is still the phone's (a 10000-peak tone: 12-15 −dBov).
    let t = outs.ticks[80];
    assert!((12..=15).contains(&t.level) && t.voice, "{t:?}");
    let stats = cm.stats();
    assert!(
        stats.frames_to_room_passed >= (95 - start) as u64,
        "{stats:?}"
    );
    assert!(
        stats.frames_to_room_transcoded <= start as u64 + 5,
        "{stats:?}"
    );

    // A room leg that cannot send PCMU (its SFU did not take it): Opus.
    cm.set_room_g711(false, true);
    let mut outs2 = outputs();
    for k in 100..110usize {
        let now = at(t0, 20 * k as u64);
        let pcm = tone(440.0, 10_000.0, 8000, k * 160, 160);
        let mut p = g711_packet(Law::Mu, k as u16, 160 * k as u32, 0xAAAA, &pcm);
        phone_in(&mut cm, now, &mut p, &mut outs2).unwrap();
        member.send(&mut cm, now, 1, &mut outs2);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs2);
    }
    assert_eq!(outs2.ticks.len(), 10);
    assert!(outs2.ticks.iter().all(|t| t.codec == RoomCodec::Opus));
    cm.set_room_g711(true, true);

    // An Opus member joins: the room gets Opus again (it decodes to the phone's tone).
    let mut other = RoomTone::new(1100.0);
    let mut outs = outputs();
    for k in 110..200usize {
        let now = at(t0, 20 * k as u64);
        let pcm = tone(440.0, 10_000.0, 8000, k * 160, 160);
        let mut p = g711_packet(Law::Mu, k as u16, 160 * k as u32, 0xAAAA, &pcm);
        phone_in(&mut cm, now, &mut p, &mut outs).unwrap();
        member.send(&mut cm, now, 1, &mut outs);
        other.send(&mut cm, now, 2);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    assert!(outs.ticks.iter().all(|t| t.codec == RoomCodec::Opus));
    let pcm = decode_opus(&outs.room);
    let f = frequency(&pcm[20 * 960..], 48_000);
    assert!((f - 440.0).abs() < 2.0, "frequency {f}");
}

#[test]
fn a_room_of_opus_or_no_one_gets_opus() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut outs = run_phone_tone(&mut cm, t0, 50, 10_000.0, &[], &[]);
    let mut other = RoomTone::new(1100.0);
    for k in 50..100u64 {
        let now = at(t0, 20 * k);
        other.send(&mut cm, now, 2);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    assert!(outs.ticks.iter().all(|t| t.codec == RoomCodec::Opus));
    let stats = cm.stats();
    assert_eq!(stats.frames_to_room_passed, 0);
    assert_eq!(stats.frames_to_room_transcoded, 100);
    assert_eq!(stats.frames_to_phone_passed, 0);
}

#[test]
fn a_phone_at_another_ptime_is_transcoded_both_ways() {
    let t0 = Instant::now();
    let mut c = pcmu();
    c.ptime = Some(30);
    let mut cm = CallMedia::new(c, t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut outs = outputs();
    for k in 0..100usize {
        let now = at(t0, 20 * k as u64);
        let pcm = tone(440.0, 10_000.0, 8000, k * 160, 160);
        let mut p = g711_packet(Law::Mu, k as u16, 160 * k as u32, 0xAAAA, &pcm);
        phone_in(&mut cm, now, &mut p, &mut outs).unwrap();
        member.send(&mut cm, now, 1, &mut outs);
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    let stats = cm.stats();
    assert_eq!(
        (stats.frames_to_phone_passed, stats.frames_to_room_passed),
        (0, 0)
    );
    assert!(outs.ticks.iter().all(|t| t.codec == RoomCodec::Opus));
    // Still heard: the member's tone at the phone.
    let pcm = decode_phone_g711(&outs.phone[20..], Law::Mu);
    assert_hears(&pcm, 700.0);
}

#[test]
fn a_source_that_switches_from_opus_to_g711_is_heard_and_then_passed() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut opus = RoomTone::new(1100.0);
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut outs = outputs();
    for k in 0..150u64 {
        let now = at(t0, 20 * k);
        if k < 50 {
            opus.send(&mut cm, now, 1);
        } else {
            member.send(&mut cm, now, 1, &mut outs);
        }
        tick(&mut cm, now + Duration::from_millis(1), &mut outs);
    }
    assert_eq!(cm.room_source_count(), 1);
    let pcm = decode_phone_g711(&outs.phone[20..50], Law::Mu);
    assert!(
        amplitude_at(&pcm, 8000, 1100.0) > 4000.0,
        "the Opus part not heard"
    );
    let (start, _) = first_passed(&outs.phone[50..], &member.sent).expect("never passed");
    assert!(start < 10, "passthrough {start} ticks after the switch");
    assert!(cm.stats().frames_to_phone_passed >= 90);
}

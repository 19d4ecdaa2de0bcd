//! Passthrough on arrival: a passed-through packet leaves in the call that brings it, and
//! the streams stay one line across the switches to and from the mix (sequence numbers
//! +1, timestamps +1 frame, no burst, no frame twice).

use super::passthrough::{payload, G711Member};
use super::*;

/// Every packet sent each way, with when it was sent.
#[derive(Default)]
struct Wire {
    phone: Vec<(Instant, Vec<u8>)>,
    room: Vec<(Instant, RoomFrame, Vec<u8>)>,
}

impl Wire {
    /// A room member's payload; returns whether a phone packet left at once.
    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        cm: &mut CallMedia,
        now: Instant,
        source: u64,
        codec: RoomCodec,
        seq: u16,
        ts: u32,
        body: &[u8],
    ) -> bool {
        let mut out = [0u8; 1500];
        let n = cm
            .on_room_audio(now, audio(source, codec, seq, ts, body), &mut out)
            .unwrap();
        if n > 0 {
            self.phone.push((now, out[..n].to_vec()));
        }
        n > 0
    }

    fn g711(&mut self, cm: &mut CallMedia, now: Instant, member: &mut G711Member) -> bool {
        let (seq, ts, body) = member.next_packet();
        self.member(cm, now, 1, RoomCodec::G711(Law::Mu), seq, ts, &body)
    }

    /// A packet from the phone; returns whether a room payload left at once.
    fn phone(&mut self, cm: &mut CallMedia, now: Instant, packet: &mut [u8]) -> bool {
        let mut out = [0u8; 1500];
        let arrival = cm.on_phone_packet(now, packet, &mut out).unwrap();
        assert_eq!(arrival.kind, PhoneIn::Audio);
        if let Some(f) = arrival.room {
            self.room.push((now, f, out[..f.len].to_vec()));
        }
        arrival.room.is_some()
    }

    fn tick(&mut self, cm: &mut CallMedia, now: Instant) -> Tick {
        let mut phone = [0u8; 1500];
        let mut room = [0u8; 1500];
        let t = cm.tick(now, &mut phone, &mut room).unwrap();
        if t.phone_len > 0 {
            self.phone.push((now, phone[..t.phone_len].to_vec()));
        }
        if t.room.len > 0 {
            self.room.push((now, t.room, room[..t.room.len].to_vec()));
        }
        t
    }
}

/// The phone's stream is one line: each packet the next sequence number and the next
/// 20 ms of timestamp, none sooner than half a frame after the one before (no burst).
fn assert_phone_line(wire: &[(Instant, Vec<u8>)]) {
    for (i, pair) in wire.windows(2).enumerate() {
        let (a, b) = (
            RtpHeader::parse(&pair[0].1).unwrap(),
            RtpHeader::parse(&pair[1].1).unwrap(),
        );
        assert_eq!(b.sequence, a.sequence.wrapping_add(1), "packet {}", i + 1);
        assert_eq!(
            b.timestamp,
            a.timestamp.wrapping_add(160),
            "packet {}",
            i + 1
        );
        let gap = pair[1].0.saturating_duration_since(pair[0].0);
        assert!(
            gap >= FRAME / 2,
            "packet {}: {gap:?} after the previous",
            i + 1
        );
    }
}

/// No payload of `sent` reached the phone twice.
fn assert_no_frame_twice(wire: &[(Instant, Vec<u8>)], sent: &[Vec<u8>]) {
    for s in sent {
        let copies = wire.iter().filter(|(_, p)| payload(p) == &s[..]).count();
        assert!(copies <= 1, "a frame went to the phone {copies} times");
    }
}

#[test]
fn a_passed_through_packet_leaves_in_the_call_that_brings_it() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut wire = Wire::default();
    for k in 0..100u64 {
        let now = at(t0, 20 * k);
        let left = wire.g711(&mut cm, now, &mut member);
        let t = wire.tick(&mut cm, now + Duration::from_millis(1));
        // The first frame passes through at the tick (from the jitter buffer); every
        // later one on arrival, and the tick sends nothing.
        assert_eq!(left, k > 0, "packet {k}");
        assert_eq!(t.phone_len > 0, k == 0, "tick {k}");
        let last = &wire.phone.last().unwrap().1;
        assert_eq!(payload(last), &member.sent[k as usize][..], "packet {k}");
    }
    assert_eq!(wire.phone.len(), 100);
    assert_phone_line(&wire.phone);
    let h: Vec<RtpHeader> = wire
        .phone
        .iter()
        .map(|(_, p)| RtpHeader::parse(p).unwrap())
        .collect();
    assert!(h
        .iter()
        .all(|h| (h.payload_type, h.ssrc) == (PCMU, 0x5157_0001)));
    // The marker: the stream's start and the first packet forwarded, no other.
    assert!(h[0].marker && h[1].marker && h[2..].iter().all(|h| !h.marker));
    let stats = cm.stats();
    assert_eq!(stats.frames_to_phone_passed, 100);
    assert_eq!(stats.frames_to_phone_transcoded, 0);
    assert_eq!(stats.room_packets_in, 100);
}

#[test]
fn switching_to_the_mix_and_back_keeps_the_phones_stream_one_line() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut other = RoomTone::new(1100.0);
    let mut wire = Wire::default();
    let mut forwarded = Vec::new();
    for k in 0..250u64 {
        let now = at(t0, 20 * k);
        forwarded.push(wire.g711(&mut cm, now, &mut member));
        // An Opus member talks from 1 s to 2 s: the mix, then the passthrough again.
        if (50..100).contains(&k) {
            other.send(&mut cm, now, 2);
        }
        wire.tick(&mut cm, now + Duration::from_millis(1));
    }
    assert_eq!(wire.phone.len(), 250);
    assert_phone_line(&wire.phone);
    assert_no_frame_twice(&wire.phone, &member.sent);
    // Forwarded before the other member, not while it is heard, again after it.
    assert!(forwarded[1..50].iter().all(|&f| f));
    assert!(forwarded[51..100].iter().all(|&f| !f));
    let again = forwarded[100..]
        .iter()
        .position(|&f| f)
        .expect("never forwarded again");
    assert!(
        again < 30,
        "forwarded again {again} ticks after the other stopped"
    );
    assert!(forwarded[100 + again..].iter().all(|&f| f));
    // The mix in between has both.
    let mixed: Vec<Vec<u8>> = wire.phone[60..100].iter().map(|(_, p)| p.clone()).collect();
    let pcm = decode_phone_g711(&mixed, Law::Mu);
    for f in [700.0, 1100.0] {
        assert!(
            amplitude_at(&pcm, 8000, f) > 4000.0,
            "{f} Hz not in the mix"
        );
    }
}

#[test]
fn reordered_duplicated_and_late_packets_are_forwarded_as_they_come_never_backwards() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut wire = Wire::default();
    let mut held_back = None;
    for k in 0..60u64 {
        let now = at(t0, 20 * k);
        let (seq, ts, body) = member.next_packet();
        let g711 = RoomCodec::G711(Law::Mu);
        match k {
            // 20 comes after 21.
            20 => held_back = Some((seq, ts, body)),
            21 => {
                assert!(wire.member(&mut cm, now, 1, g711, seq, ts, &body));
                let (s, t, b) = held_back.take().unwrap();
                assert!(wire.member(&mut cm, now, 1, g711, s, t, &b));
            }
            30 => {
                assert!(wire.member(&mut cm, now, 1, g711, seq, ts, &body));
                assert!(
                    !wire.member(&mut cm, now, 1, g711, seq, ts, &body),
                    "duplicate"
                );
            }
            _ => {
                wire.member(&mut cm, now, 1, g711, seq, ts, &body);
            }
        }
        if k == 40 {
            // Frame 0 again: the tick sent it, before forwarding began.
            let first = member.sent[0].clone();
            assert!(!wire.member(&mut cm, now, 1, g711, 7000, 0, &first), "late");
        }
        wire.tick(&mut cm, now + Duration::from_millis(1));
    }
    // Every frame once, each under our sequence number and timestamp at the same offset
    // from its own: the receiver puts 20 back before 21.
    assert_eq!(wire.phone.len(), 60);
    let mut offsets = Vec::new();
    for (_, p) in &wire.phone {
        let h = RtpHeader::parse(p).unwrap();
        let k = member.sent.iter().position(|s| s == payload(p)).unwrap();
        offsets.push((
            h.sequence.wrapping_sub(7000 + k as u16),
            h.timestamp.wrapping_sub(160 * k as u32),
        ));
    }
    assert!(offsets.iter().all(|&o| o == offsets[0]), "{offsets:?}");
    assert_no_frame_twice(&wire.phone, &member.sent);
    let order: Vec<usize> = wire
        .phone
        .iter()
        .map(|(_, p)| member.sent.iter().position(|s| s == payload(p)).unwrap())
        .collect();
    assert_eq!(&order[19..23], &[19, 21, 20, 22]);
}

#[test]
fn the_phones_g711_leaves_for_the_room_on_arrival_and_opus_takes_over_in_line() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut other = RoomTone::new(1100.0);
    let mut wire = Wire::default();
    let mut sent = Vec::new();
    let mut forwarded = Vec::new();
    for k in 0..250usize {
        let now = at(t0, 20 * k as u64);
        let pcm = tone(440.0, 10_000.0, 8000, k * 160, 160);
        let mut p = g711_packet(Law::Mu, k as u16, 160 * k as u32, 0xAAAA, &pcm);
        // The frame number in the first three samples, inaudibly (the tone's frames
        // repeat every fifth).
        for (i, b) in p[12..15].iter_mut().enumerate() {
            *b = 0xF0 | ((k >> (4 * i)) & 0xF) as u8;
        }
        sent.push(p[12..].to_vec());
        forwarded.push(wire.phone(&mut cm, now, &mut p));
        wire.g711(&mut cm, now, &mut member);
        // An Opus member from 1 s to 2 s: the room no longer speaks only G.711.
        if (50..100).contains(&k) {
            other.send(&mut cm, now, 2);
        }
        wire.tick(&mut cm, now + Duration::from_millis(1));
    }
    assert!(forwarded[1..50].iter().all(|&f| f), "{forwarded:?}");
    assert!(forwarded[51..100].iter().all(|&f| !f));
    // The member is heard for a second more (SOURCE_TIMEOUT) after it stopped.
    let again = forwarded[100..]
        .iter()
        .position(|&f| f)
        .expect("never forwarded again");
    assert!(again < 70, "forwarded again {again} ticks after");
    // One frame per 20 ms on one line: seq +1, position +960, no burst.
    assert_eq!(wire.room.len(), 250);
    for (i, pair) in wire.room.windows(2).enumerate() {
        let ((ta, a, _), (tb, b, _)) = (&pair[0], &pair[1]);
        assert_eq!(b.seq, a.seq + 1, "frame {}", i + 1);
        assert_eq!(b.position, a.position + 960, "frame {}", i + 1);
        assert!(
            tb.saturating_duration_since(*ta) >= FRAME / 2,
            "frame {}",
            i + 1
        );
    }
    // Forwarded frames are the phone's bytes with its level; none twice.
    for (_, f, body) in wire
        .room
        .iter()
        .filter(|(_, f, _)| f.codec != RoomCodec::Opus)
    {
        assert_eq!(f.codec, RoomCodec::G711(Law::Mu));
        assert!(sent.contains(body));
        assert!((12..=15).contains(&f.level) && f.voice, "{f:?}");
    }
    for s in &sent {
        assert!(wire.room.iter().filter(|(_, _, b)| b == s).count() <= 1);
    }
    // Opus while the other member talked, and it decodes to the phone's tone.
    let opus: Vec<Vec<u8>> = wire.room[55..100]
        .iter()
        .map(|(_, _, b)| b.clone())
        .collect();
    assert!(wire.room[55..100]
        .iter()
        .all(|(_, f, _)| f.codec == RoomCodec::Opus));
    let pcm = decode_opus(&opus);
    // (Its frame numbers make a click a frame, so the amplitude, not zero crossings.)
    let amp = amplitude_at(&pcm[10 * 960..], 48_000, 440.0);
    assert!(amp > 0.7 * 10_000.0, "440 Hz at {amp}");
}

#[test]
fn a_forwarded_member_that_stops_gets_comfort_silence_with_time_passed_on_the_timestamps() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut member = G711Member::new(Law::Mu, 700.0);
    let mut wire = Wire::default();
    for k in 0..120u64 {
        let now = at(t0, 20 * k);
        // Talks, pauses 600 ms (a muted browser sends nothing), talks again.
        if !(50..80).contains(&k) {
            wire.g711(&mut cm, now, &mut member);
        }
        wire.tick(&mut cm, now + Duration::from_millis(1));
    }
    // Nothing for the 200 ms the member may only be late, then a packet every tick.
    let sent_at: Vec<u64> = wire
        .phone
        .iter()
        .map(|(t, _)| t.duration_since(t0).as_millis() as u64)
        .collect();
    let silent = sent_at
        .windows(2)
        .position(|w| w[1] - w[0] > 30)
        .expect("no pause");
    let pause = sent_at[silent + 1] - sent_at[silent];
    assert!((200..=230).contains(&pause), "{pause} ms without a packet");
    // One line: sequence +1; the timestamp as many frames on as the time that passed,
    // with a marker after the pause and at each switch back to forwarding.
    for (i, pair) in wire.phone.windows(2).enumerate() {
        let (a, b) = (
            RtpHeader::parse(&pair[0].1).unwrap(),
            RtpHeader::parse(&pair[1].1).unwrap(),
        );
        let ms = pair[1].0.duration_since(pair[0].0).as_millis() as u32;
        let frames = ((ms + 10) / 20).max(1);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1), "packet {}", i + 1);
        assert_eq!(
            b.timestamp,
            a.timestamp.wrapping_add(160 * frames),
            "packet {}",
            i + 1
        );
        if i == silent {
            assert!(b.marker, "no marker after the pause");
        }
    }
    // Comfort silence in the pause, the member again after it (forwarded on arrival).
    let h = RtpHeader::parse(&wire.phone[silent + 1].1).unwrap();
    let body = &wire.phone[silent + 1].1[h.payload_start..h.payload_end];
    assert!(body.iter().all(|&c| c & 0x7F == 0x7F), "not silence");
    let last = &wire.phone.last().unwrap().1;
    assert_eq!(payload(last), &member.sent.last().unwrap()[..]);
    assert_no_frame_twice(&wire.phone, &member.sent);
}

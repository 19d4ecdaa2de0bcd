//! RFC 4733 digits both ways through CallMedia.

use super::*;
use crate::dtmf::TelephoneEvent;

fn event_packet(seq: u16, ts: u32, event: u8, end: bool, duration: u16) -> Vec<u8> {
    let payload = TelephoneEvent {
        event,
        end,
        volume: 10,
        duration,
    }
    .to_bytes()
    .unwrap();
    let mut p = vec![0u8; 16];
    write_rtp_header(&mut p, !end && duration == 0, TE, seq, ts, 0xAAAA).unwrap();
    p[12..].copy_from_slice(&payload);
    p
}

#[test]
fn dtmf_from_the_phone_is_reported_once_per_key() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut seq = 0;
    for (i, (event, digit)) in [(5u8, '5'), (11, '#'), (5, '5')].into_iter().enumerate() {
        let ts = 8000 * i as u32;
        for d in [0u16, 400, 800] {
            let mut p = event_packet(seq, ts, event, false, d);
            seq += 1;
            assert_eq!(
                phone_in(&mut cm, t0, &mut p, &mut outputs()),
                Ok(PhoneIn::Dtmf(digit))
            );
        }
        for _ in 0..3 {
            let mut p = event_packet(seq, ts, event, true, 960);
            seq += 1;
            assert_eq!(
                phone_in(&mut cm, t0, &mut p, &mut outputs()),
                Ok(PhoneIn::Dtmf(digit))
            );
        }
    }
    assert_eq!(cm.poll_dtmf(), Some('5'));
    assert_eq!(cm.poll_dtmf(), Some('#'));
    assert_eq!(cm.poll_dtmf(), Some('5'));
    assert_eq!(cm.poll_dtmf(), None);
    // All end packets lost: reported once the events stop.
    let mut p = event_packet(seq, 99_000, 1, false, 0);
    phone_in(&mut cm, t0, &mut p, &mut outputs()).unwrap();
    let mut outs = outputs();
    tick(&mut cm, at(t0, 100), &mut outs);
    assert_eq!(cm.poll_dtmf(), None);
    tick(&mut cm, at(t0, 400), &mut outs);
    assert_eq!(cm.poll_dtmf(), Some('1'));
    assert_eq!(cm.stats().dtmf_in, 4);
    // A non-DTMF event (flash) is valid but no digit.
    let mut p = event_packet(seq + 1, 120_000, 16, true, 800);
    assert_eq!(
        phone_in(&mut cm, t0, &mut p, &mut outputs()),
        Ok(PhoneIn::Ignored)
    );
}

#[test]
fn dtmf_to_the_phone_replaces_audio_and_decodes_on_the_far_side() {
    let t0 = Instant::now();
    let mut cm = CallMedia::new(pcmu(), t0).unwrap();
    let mut far = CallMedia::new(pcmu(), t0).unwrap();
    let mut outs = outputs();
    for k in 0..5u64 {
        tick(&mut cm, at(t0, 20 * k), &mut outs);
    }
    cm.send_dtmf(at(t0, 100), '7', 100).unwrap();
    assert!(matches!(
        cm.send_dtmf(at(t0, 100), '8', 100),
        Err(BridgeError::Dtmf(_))
    ));
    for k in 5..30u64 {
        tick(&mut cm, at(t0, 20 * k), &mut outs);
    }
    let mut events = Vec::new();
    let mut audio_after = None;
    for (i, p) in outs.phone.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
        let h = RtpHeader::parse(p).unwrap();
        let mut copy = p.clone();
        phone_in(&mut far, at(t0, 20 * i as u64), &mut copy, &mut outputs()).unwrap();
        if h.payload_type == TE {
            let ev = TelephoneEvent::parse(&p[h.payload_start..h.payload_end]).unwrap();
            assert_eq!(ev.event, 7);
            events.push((i, h, ev));
        } else if !events.is_empty() && audio_after.is_none() {
            audio_after = Some(h);
        }
    }
    assert!(events.len() >= 4, "{events:?}");
    assert!(events[0].1.marker, "first event packet has the marker");
    assert!(events
        .iter()
        .all(|e| e.1.timestamp == events[0].1.timestamp));
    assert_eq!(events.iter().filter(|e| e.2.end).count(), 3);
    assert_eq!(events.last().unwrap().2.duration, 800, "100 ms at 8 kHz");
    // No audio while the digit plays; audio resumes with the marker.
    let first = events[0].0;
    let last = events.last().unwrap().0;
    assert!(outs.phone[first..=last]
        .iter()
        .all(|p| p.is_empty() || RtpHeader::parse(p).unwrap().payload_type == TE));
    assert!(audio_after.unwrap().marker);
    assert_eq!(far.poll_dtmf(), Some('7'));
    assert_eq!(far.poll_dtmf(), None);
    assert_eq!(cm.stats().dtmf_out, 1);
    // Errors: not a digit; no telephone-event negotiated.
    assert_eq!(cm.send_dtmf(t0, 'x', 100), Err(BridgeError::BadDigit('x')));
    let mut no_te = pcmu();
    no_te.telephone_event = None;
    let mut cm = CallMedia::new(no_te, t0).unwrap();
    assert_eq!(
        cm.send_dtmf(t0, '1', 100),
        Err(BridgeError::NoTelephoneEvent)
    );
}

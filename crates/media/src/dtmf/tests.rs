use super::*;

/// Runs a sender for one digit, polling every 5 ms; returns the packets with their send times.
fn send_digit(clock_rate: u32, event: u8, ms: u64, ts: u32) -> Vec<(Duration, DtmfPacket)> {
    let t0 = Instant::now();
    let mut tx = DtmfSender::new(clock_rate).unwrap();
    tx.start(event, 10, Duration::from_millis(ms), ts, t0)
        .unwrap();
    assert_eq!(
        tx.start(1, 10, Duration::from_millis(10), 0, t0),
        Err(DtmfError::Busy)
    );
    let mut out = Vec::new();
    let mut now = t0;
    while tx.is_busy() {
        assert!(tx.poll_timeout().unwrap() <= now + Duration::from_millis(50));
        while let Some(p) = tx.poll(now) {
            out.push((now - t0, p));
        }
        now += Duration::from_millis(5);
        assert!(now - t0 < Duration::from_secs(5), "sender never finished");
    }
    assert_eq!(tx.poll_timeout(), None);
    out
}

#[test]
fn digit_is_received_once_with_its_duration_at_8k_and_48k() {
    for clock_rate in [8000u32, 48000] {
        let packets = send_digit(clock_rate, 5, 160, 123_456);
        let events: Vec<TelephoneEvent> = packets
            .iter()
            .map(|(_, p)| TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        // Start at 0, updates at 50, 100, 150 ms, then three ends at 160 ms.
        let times: Vec<u64> = packets.iter().map(|(t, _)| t.as_millis() as u64).collect();
        assert_eq!(times, [0, 50, 100, 150, 160, 160, 160], "{clock_rate}");
        assert!(packets[0].1.marker);
        assert!(packets[1..].iter().all(|(_, p)| !p.marker));
        assert!(packets.iter().all(|(_, p)| p.timestamp == 123_456));
        let durations: Vec<u16> = events.iter().map(|e| e.duration).collect();
        let per_ms = (clock_rate / 1000) as u16;
        assert_eq!(
            durations,
            [0, 50, 100, 150, 160, 160, 160].map(|ms| ms * per_ms),
            "{clock_rate}"
        );
        assert_eq!(events.iter().filter(|e| e.end).count(), 3);
        assert!(events.iter().all(|e| e.event == 5 && e.volume == 10));

        let mut rx = DtmfReceiver::new(clock_rate).unwrap();
        let mut digits = Vec::new();
        // Every packet twice (network duplication) on top of the three ends.
        for (_, p) in packets.iter().flat_map(|x| [x, x]) {
            rx.receive(p.timestamp, &p.payload).unwrap();
            digits.extend(std::iter::from_fn(|| rx.poll_digit()));
        }
        rx.flush();
        assert_eq!(rx.poll_digit(), None);
        assert_eq!(
            digits,
            [DtmfDigit {
                event: 5,
                duration: Duration::from_millis(160),
                timestamp: 123_456
            }],
            "{clock_rate}"
        );
    }
}

#[test]
fn lost_end_packets_report_on_next_digit_or_flush() {
    let mut rx = DtmfReceiver::new(8000).unwrap();
    let start = |d: u16| encode(1, false, 10, d);
    rx.receive(1000, &start(0)).unwrap();
    rx.receive(1000, &start(400)).unwrap();
    assert_eq!(rx.poll_digit(), None, "not ended yet");
    // Next digit begins and ends in its first packet: both come out, in order.
    rx.receive(5000, &encode(2, true, 10, 800)).unwrap();
    let first = rx.poll_digit().unwrap();
    assert_eq!(
        (first.event, first.duration),
        (1, Duration::from_millis(50))
    );
    let second = rx.poll_digit().unwrap();
    assert_eq!(
        (second.event, second.duration),
        (2, Duration::from_millis(100))
    );
    // A late end of the first digit is not a new digit.
    rx.receive(1000, &encode(1, true, 10, 800)).unwrap();
    rx.receive(9000, &start(80)).unwrap();
    rx.flush();
    assert_eq!(rx.poll_digit().map(|d| d.event), Some(1));
    assert_eq!(rx.poll_digit(), None);
    rx.flush();
    assert_eq!(rx.poll_digit(), None, "flush reports once");
}

#[test]
fn payload_codec_and_limits() {
    let ev = TelephoneEvent {
        event: 11,
        end: true,
        volume: 63,
        duration: 0xBEEF,
    };
    let bytes = ev.to_bytes().unwrap();
    assert_eq!(bytes, [11, 0xBF, 0xBE, 0xEF]);
    assert_eq!(TelephoneEvent::parse(&bytes), Ok(ev));
    assert_eq!(
        TelephoneEvent::parse(&bytes[..3]),
        Err(DtmfError::Truncated)
    );
    assert_eq!(
        TelephoneEvent { volume: 64, ..ev }.to_bytes(),
        Err(DtmfError::BadVolume(64))
    );
    let mut tx = DtmfSender::new(48000).unwrap();
    let now = Instant::now();
    assert_eq!(
        tx.start(1, 10, Duration::from_secs(2), 0, now),
        Err(DtmfError::DurationTooLong)
    );
    assert!(DtmfSender::new(0).is_err() && DtmfReceiver::new(0).is_err());
    assert!(tx.start(1, 10, Duration::from_secs(1), 0, now).is_ok());
}

#[test]
fn characters_and_rescaling() {
    for (c, e) in [
        ('0', 0),
        ('9', 9),
        ('*', 10),
        ('#', 11),
        ('A', 12),
        ('D', 15),
    ] {
        assert_eq!(char_to_event(c), Some(e));
        assert_eq!(event_to_char(e), Some(c));
    }
    assert_eq!(char_to_event('d'), Some(15));
    assert_eq!(char_to_event('x'), None);
    assert_eq!(event_to_char(16), None);
    assert_eq!(rescale_ticks(1280, 8000, 48000), 7680);
    assert_eq!(rescale_ticks(7680, 48000, 8000), 1280);
    assert_eq!(rescale_ticks(5, 0, 8000), 0);
}

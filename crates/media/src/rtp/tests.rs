use super::*;
use std::time::Duration;

fn packet(seq: u16, ts: u32, ssrc: u32) -> [u8; 16] {
    let mut p = [0u8; 16];
    write_rtp_header(&mut p, false, 0, seq, ts, ssrc).unwrap();
    p[12..].copy_from_slice(&[1, 2, 3, 4]);
    p
}

#[test]
fn header_round_trip() {
    let mut buf = [0u8; 20];
    let n = write_rtp_header(&mut buf, true, 96, 0xABCD, 0x1234_5678, 0xDEAD_BEEF).unwrap();
    let h = RtpHeader::parse(&buf).unwrap();
    assert_eq!(n, 12);
    assert!(h.marker);
    assert_eq!(
        (h.payload_type, h.sequence, h.timestamp, h.ssrc),
        (96, 0xABCD, 0x1234_5678, 0xDEAD_BEEF)
    );
    assert_eq!((h.payload_start, h.payload_end), (12, 20));
    assert_eq!(
        write_rtp_header(&mut buf, false, 128, 0, 0, 0),
        Err(RtpError::OutOfRange)
    );
    assert_eq!(
        write_rtp_header(&mut buf[..11], false, 0, 0, 0, 0),
        Err(RtpError::BufferTooSmall)
    );
}

#[test]
fn csrc_extension_and_padding_are_skipped() {
    // V=2 P=1 X=1 CC=1, one CSRC, a one-word extension, 2 payload bytes, 2 padding bytes.
    let mut p = vec![0xB1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    p.extend_from_slice(&[9, 9, 9, 9]); // CSRC
    p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]); // extension header + 1 word
    p.extend_from_slice(&[0xAA, 0xBB, 0, 2]);
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.csrc_count, 1);
    assert!(h.has_extension);
    assert_eq!(&p[h.payload_start..h.payload_end], &[0xAA, 0xBB]);
    assert_eq!(h.header_len(), 24);
}

#[test]
fn malformed_headers_are_errors() {
    assert_eq!(RtpHeader::parse(&[0x80; 11]), Err(RtpError::Truncated));
    assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
    // CSRC count says 15 but the packet ends.
    assert_eq!(RtpHeader::parse(&[0x8F; 20]), Err(RtpError::Truncated));
    // Padding count 0, then padding larger than the payload.
    let mut p = [0u8; 14];
    p[0] = 0xA0;
    assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding));
    p[13] = 3;
    assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding));
    // Extension longer than the packet.
    let mut p = [0u8; 16];
    p[0] = 0x90;
    p[15] = 5;
    assert_eq!(RtpHeader::parse(&p), Err(RtpError::Truncated));
}

#[test]
fn rfc5761_demux() {
    let rtp = packet(1, 2, 3);
    assert_eq!(demux(&rtp), PacketKind::Rtp);
    let mut rr = [0u8; 8];
    write_receiver_report(&mut rr, 7, &[]).unwrap();
    assert_eq!(demux(&rr), PacketKind::Rtcp);
    // RTP with the marker bit and PT 72..=95 would collide; RFC 5761 forbids those PTs.
    assert_eq!(demux(&[0x80, 0x80, 0, 0, 0, 0, 0, 0]), PacketKind::Rtp);
    assert_eq!(demux(&[0x00, 0x01, 0, 0, 0, 0, 0, 0]), PacketKind::Other); // STUN
    assert_eq!(demux(&[22, 254, 0, 0, 0, 0, 0, 0]), PacketKind::Other); // DTLS
    assert_eq!(demux(&[0x80]), PacketKind::Other);
}

#[test]
fn compound_rtcp_round_trip() {
    let block = ReportBlock {
        ssrc: 0x1111,
        fraction_lost: 25,
        cumulative_lost: -3,
        highest_sequence: 70_000,
        jitter: 42,
        last_sr: 0xAABB_CCDD,
        delay_since_last_sr: 65536,
    };
    let info = SenderInfo {
        ntp_timestamp: 0x0102_0304_0506_0708,
        rtp_timestamp: 160,
        packet_count: 50,
        octet_count: 8000,
    };
    let mut buf = [0u8; 200];
    let mut n = write_sender_report(&mut buf, 0x2222, &info, &[block]).unwrap();
    n += write_sdes_cname(&mut buf[n..], 0x2222, b"gw@switchboard").unwrap();
    n += write_receiver_report(&mut buf[n..], 0x2222, &[block, block]).unwrap();
    n += write_bye(&mut buf[n..], 0x2222).unwrap();
    let packets: Vec<_> = rtcp_packets(&buf[..n]).map(|p| p.unwrap()).collect();
    let types: Vec<u8> = packets.iter().map(|p| p.packet_type).collect();
    assert_eq!(types, [200, 202, 201, 203]);
    assert_eq!(packets[0].sender_ssrc(), Some(0x2222));
    assert_eq!(packets[0].sender_info(), Some(info));
    assert_eq!(packets[0].report_blocks().collect::<Vec<_>>(), [block]);
    assert_eq!(
        packets[2].report_blocks().collect::<Vec<_>>(),
        [block, block]
    );
    assert_eq!(packets[1].bytes.len() % 4, 0);
    assert_eq!(&packets[1].bytes[10..24], b"gw@switchboard");
    assert_eq!(packets[3].sender_ssrc(), Some(0x2222));
}

#[test]
fn truncated_compound_stops_with_one_error() {
    let mut buf = [0u8; 64];
    let n = write_receiver_report(&mut buf, 1, &[ReportBlock::default()]).unwrap();
    let mut it = rtcp_packets(&buf[..n - 4]);
    assert_eq!(it.next(), Some(Err(RtpError::Truncated)));
    assert_eq!(it.next(), None);
    // A count larger than the packet yields no blocks rather than reading past the end.
    buf[0] = 0x80 | 5;
    let p = rtcp_packets(&buf[..n]).next().unwrap().unwrap();
    assert_eq!(p.report_blocks().count(), 0);
}

fn fields(p: &[u8]) -> (u16, u32, u32) {
    let h = RtpHeader::parse(p).unwrap();
    (h.sequence, h.timestamp, h.ssrc)
}

#[test]
fn rewriter_keeps_one_continuous_stream_across_sources() {
    let t0 = Instant::now();
    let mut rw = StreamRewriter::new(0x5555, 8000, 160);
    for i in 0..3u16 {
        let mut p = packet(1000 + i, 50_000 + 160 * u32::from(i), 0xAAAA);
        rw.rewrite(&mut p, t0 + Duration::from_millis(20 * u64::from(i)))
            .unwrap();
        assert_eq!(fields(&p), (1000 + i, 50_000 + 160 * u32::from(i), 0x5555));
        assert_eq!(&p[12..], &[1, 2, 3, 4], "payload untouched");
    }
    // Early media ends, the final dialog's source starts 100 ms later somewhere else.
    let mut p = packet(7, 900_000, 0xBBBB);
    rw.rewrite(&mut p, t0 + Duration::from_millis(140)).unwrap();
    assert_eq!(fields(&p), (1003, 50_320 + 800, 0x5555));
    let mut p = packet(8, 900_160, 0xBBBB);
    rw.rewrite(&mut p, t0 + Duration::from_millis(160)).unwrap();
    assert_eq!(fields(&p), (1004, 51_280, 0x5555));
    // Reordered old packet of the same source: mapped with the same offsets.
    let mut p = packet(6, 899_840, 0xBBBB);
    rw.rewrite(&mut p, t0 + Duration::from_millis(161)).unwrap();
    assert_eq!(fields(&p), (1002, 50_960, 0x5555));
    // Same SSRC restarting its sequence after a re-INVITE, switch forced, no time passed:
    // the timestamp still advances by one frame.
    rw.source_changed();
    let mut p = packet(0, 0, 0xBBBB);
    rw.rewrite(&mut p, t0 + Duration::from_millis(160)).unwrap();
    assert_eq!(fields(&p), (1005, 51_440, 0x5555));
}

#[test]
fn rewriter_wraps_sequence() {
    let t0 = Instant::now();
    let mut rw = StreamRewriter::new(1, 8000, 160);
    let mut p = packet(65535, u32::MAX - 100, 9);
    rw.rewrite(&mut p, t0).unwrap();
    let mut p = packet(3, 5, 10);
    rw.rewrite(&mut p, t0 + Duration::from_millis(20)).unwrap();
    assert_eq!(fields(&p), (0, (u32::MAX - 100).wrapping_add(160), 1));
    assert_eq!(rw.rewrite(&mut [0u8; 4], t0), Err(RtpError::Truncated));
}

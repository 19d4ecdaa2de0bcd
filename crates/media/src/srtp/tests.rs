use super::*;
use crate::rtp::write_rtp_header;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const MASTER: &str = "E1F97A0D3E018BE0D64FA32C06DE4139 0EC675AD498AFEEBB6960B3AABE6";

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
    let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
    let mut stream = vec![0u8; 0xFF02 * 16];
    aes_cm_apply(&key, &iv, &mut stream);
    let block = |i: usize| &stream[i * 16..i * 16 + 16];
    assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

#[test]
fn rfc3711_b3_key_derivation() {
    let master = hex(MASTER);
    let key: [u8; 16] = master[..16].try_into().unwrap();
    let salt: [u8; 14] = master[16..].try_into().unwrap();
    let keys = derive_session_keys(&key, &salt, false);
    assert_eq!(
        keys.cipher_key.to_vec(),
        hex("C61E7A93744F39EE10734AFE3FF7A087")
    );
    assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(
        keys.auth_key.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
    // SRTCP uses labels 3-5: different keys from the same master.
    let rtcp = derive_session_keys(&key, &salt, true);
    assert_ne!(rtcp.cipher_key, keys.cipher_key);
    assert_ne!(rtcp.salt, keys.salt);
}

fn rtp_packet(buf: &mut [u8], seq: u16, ssrc: u32, payload: &[u8]) -> usize {
    let n = write_rtp_header(buf, false, 0, seq, u32::from(seq) * 160, ssrc).unwrap();
    buf[n..n + payload.len()].copy_from_slice(payload);
    n + payload.len()
}

fn pair(profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
    let master = hex(MASTER);
    (
        SrtpContext::new(profile, &master).unwrap(),
        SrtpContext::new(profile, &master).unwrap(),
    )
}

#[test]
fn rtp_round_trip_both_suites() {
    for (profile, tag) in [
        (SrtpProfile::AesCm128HmacSha1_80, 10),
        (SrtpProfile::AesCm128HmacSha1_32, 4),
    ] {
        let (mut tx, mut rx) = pair(profile);
        let payload = [0x55u8; 160];
        for seq in 100..110u16 {
            let mut buf = [0u8; 200];
            let len = rtp_packet(&mut buf, seq, 0x1234, &payload);
            let plain = buf[..len].to_vec();
            let n = tx.protect_rtp(&mut buf, len).unwrap();
            assert_eq!(n, len + tag);
            assert_eq!(buf[..12], plain[..12], "header stays in clear");
            assert_ne!(buf[12..len], plain[12..], "payload encrypted");
            let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
            assert_eq!(&buf[..m], &plain[..]);
        }
    }
}

#[test]
fn tampered_and_replayed_packets_are_rejected() {
    tampered_and_replayed(SrtpProfile::AesCm128HmacSha1_80);
    tampered_and_replayed(SrtpProfile::AesCm128HmacSha1_32);
}

fn tampered_and_replayed(profile: SrtpProfile) {
    let (mut tx, mut rx) = pair(profile);
    let mut buf = [0u8; 64];
    let len = rtp_packet(&mut buf, 7, 1, b"hello world");
    let n = tx.protect_rtp(&mut buf, len).unwrap();
    let protected = buf[..n].to_vec();
    for i in [1, 3, 12, n - 1] {
        let mut bad = protected.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            rx.unprotect_rtp(&mut bad),
            Err(SrtpError::AuthFailed),
            "byte {i}"
        );
    }
    let mut ok = protected.clone();
    assert_eq!(rx.unprotect_rtp(&mut ok), Ok(len));
    let mut again = protected.clone();
    assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
    // Wrong key: authentication fails.
    let mut other = SrtpContext::new(profile, &[7u8; 30]).unwrap();
    let mut copy = protected.clone();
    assert_eq!(other.unprotect_rtp(&mut copy), Err(SrtpError::AuthFailed));
    assert_eq!(rx.unprotect_rtp(&mut [0u8; 5]), Err(SrtpError::Truncated));
    assert!(matches!(
        SrtpContext::new(SrtpProfile::AesCm128HmacSha1_32, &[0; 29]),
        Err(SrtpError::BadKeyLength(29))
    ));
    assert_eq!(
        tx.protect_rtp(&mut buf[..len + 3], len),
        Err(SrtpError::BufferTooSmall)
    );
    assert_eq!(tx.profile(), profile);
}

#[test]
fn replay_window_accepts_reordering_within_64() {
    let (mut tx, mut rx) = pair(SrtpProfile::AesCm128HmacSha1_32);
    let packets: Vec<Vec<u8>> = (0..100u16)
        .map(|seq| {
            let mut buf = [0u8; 40];
            let len = rtp_packet(&mut buf, seq, 9, &[seq as u8; 8]);
            let n = tx.protect_rtp(&mut buf, len).unwrap();
            buf[..n].to_vec()
        })
        .collect();
    let mut recv = |i: usize| rx.unprotect_rtp(&mut packets[i].clone());
    assert!(recv(0).is_ok());
    assert!(recv(99).is_ok());
    assert!(recv(50).is_ok(), "49 behind: inside the window");
    assert_eq!(recv(50), Err(SrtpError::Replayed));
    assert_eq!(recv(35), Err(SrtpError::Replayed), "64 behind: too old");
    assert!(recv(36).is_ok(), "63 behind: still inside");
}

#[test]
fn roc_follows_a_sequence_wrap() {
    let (mut tx, mut rx) = pair(SrtpProfile::AesCm128HmacSha1_80);
    for k in 0..20u32 {
        let seq = (65530 + k) as u16;
        let mut buf = [0u8; 40];
        let len = rtp_packet(&mut buf, seq, 5, &k.to_be_bytes());
        let n = tx.protect_rtp(&mut buf, len).unwrap();
        let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
        assert_eq!(&buf[12..m], &k.to_be_bytes(), "packet {k} (seq {seq})");
    }
    assert_eq!(tx.streams[0].roc, 1);
    assert_eq!(rx.streams[0].roc, 1);
    // A late packet from before the wrap (ROC 0) arriving after the wrap (ROC 1) is
    // still decrypted with ROC 0.
    let (mut tx2, mut rx2) = pair(SrtpProfile::AesCm128HmacSha1_80);
    let mut protect = |seq: u16, payload: &[u8]| {
        let mut buf = [0u8; 40];
        let len = rtp_packet(&mut buf, seq, 5, payload);
        let n = tx2.protect_rtp(&mut buf, len).unwrap();
        buf[..n].to_vec()
    };
    let mut first = protect(65534, b"old!");
    let mut late = protect(65535, b"late");
    let mut wrapped = protect(2, b"next");
    let mut recv = |p: &mut Vec<u8>| {
        let m = rx2.unprotect_rtp(p).unwrap();
        p[12..m].to_vec()
    };
    assert_eq!(recv(&mut first), b"old!");
    assert_eq!(recv(&mut wrapped), b"next");
    assert_eq!(recv(&mut late), b"late");
    assert_eq!(rx2.streams[0].roc, 1);
    assert_eq!(rx2.streams[0].highest_seq, 2);
}

#[test]
fn srtcp_round_trip_tamper_and_replay() {
    for profile in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
    ] {
        let (mut tx, mut rx) = pair(profile);
        let mut first = Vec::new();
        for round in 0..3 {
            let mut buf = [0u8; 100];
            let len = crate::rtp::write_receiver_report(
                &mut buf,
                0xCAFE,
                &[crate::rtp::ReportBlock {
                    ssrc: 1,
                    jitter: round,
                    ..Default::default()
                }],
            )
            .unwrap();
            let plain = buf[..len].to_vec();
            let n = tx.protect_rtcp(&mut buf, len).unwrap();
            assert_eq!(n, len + SRTCP_TRAILER_LEN);
            assert_eq!(
                u32::from_be_bytes(buf[len..len + 4].try_into().unwrap()),
                0x8000_0000 | round
            );
            assert_ne!(buf[8..len], plain[8..]);
            if round == 0 {
                first = buf[..n].to_vec();
            }
            let mut tampered = buf[..n].to_vec();
            tampered[10] ^= 0x80;
            assert_eq!(rx.unprotect_rtcp(&mut tampered), Err(SrtpError::AuthFailed));
            let m = rx.unprotect_rtcp(&mut buf[..n]).unwrap();
            assert_eq!(&buf[..m], &plain[..]);
        }
        assert_eq!(rx.unprotect_rtcp(&mut first), Err(SrtpError::Replayed));
    }
}

#[test]
fn sdes_names() {
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
    ] {
        assert_eq!(SrtpProfile::from_sdes_name(p.sdes_name()), Some(p));
    }
    assert_eq!(SrtpProfile::from_sdes_name("AEAD_AES_128_GCM"), None);
}

#[test]
fn too_many_streams_is_an_error_not_growth() {
    let (mut tx, _) = pair(SrtpProfile::AesCm128HmacSha1_80);
    let mut buf = [0u8; 40];
    for ssrc in 0..MAX_STREAMS as u32 {
        let len = rtp_packet(&mut buf, 1, ssrc, b"x");
        tx.protect_rtp(&mut buf, len).unwrap();
    }
    let len = rtp_packet(&mut buf, 1, 999, b"x");
    assert_eq!(
        tx.protect_rtp(&mut buf, len),
        Err(SrtpError::TooManyStreams)
    );
}

mod interop;

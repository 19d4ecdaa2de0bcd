use super::*;
use crate::rtp::write_rtp_header;

/// A pair of associations over a lossless in-memory link; the server checks the client's
/// fingerprint against `client_fp_seen_by_server`.
fn pair(
    client_cert: &DtlsCertificate,
    server_cert: &DtlsCertificate,
    client_fp_seen_by_server: Fingerprint,
) -> (Dtls, Dtls) {
    let now = Instant::now();
    let client = Dtls::new(
        DtlsRole::Client,
        client_cert,
        server_cert.fingerprint().unwrap(),
        now,
    )
    .unwrap();
    let server = Dtls::new(DtlsRole::Server, server_cert, client_fp_seen_by_server, now).unwrap();
    (client, server)
}

/// Moves datagrams both ways until neither side has anything to say; the first error of
/// each side is returned.
fn run(client: &mut Dtls, server: &mut Dtls) -> (Result<(), DtlsError>, Result<(), DtlsError>) {
    let (mut client_result, mut server_result) = (Ok(()), Ok(()));
    for _ in 0..50 {
        let mut moved = false;
        while let Some(d) = client.poll_datagram() {
            moved = true;
            assert!(matches!(demux(&d), Demux::Dtls), "{d:?}");
            if let Err(e) = server.handle_datagram(&d, Instant::now()) {
                server_result = server_result.and(Err(e));
            }
        }
        while let Some(d) = server.poll_datagram() {
            moved = true;
            if let Err(e) = client.handle_datagram(&d, Instant::now()) {
                client_result = client_result.and(Err(e));
            }
        }
        if !moved {
            break;
        }
    }
    (client_result, server_result)
}

fn rtp(seq: u16, payload: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 12 + payload.len() + 16];
    let h = write_rtp_header(&mut buf, false, 0, seq, 160 * u32::from(seq), 0x1234_5678).unwrap();
    buf[h..h + payload.len()].copy_from_slice(payload);
    (buf, h + payload.len())
}

/// Protects on one side, unprotects on the other, both ways.
fn keys_agree(client: &mut SrtpPair, server: &mut SrtpPair) {
    assert_eq!(client.profile, server.profile);
    for (seq, (from, to)) in [
        (&mut client.outbound, &mut server.inbound),
        (&mut server.outbound, &mut client.inbound),
    ]
    .into_iter()
    .enumerate()
    {
        let payload = [0x5a; 160];
        let (mut buf, len) = rtp(seq as u16 + 1, &payload);
        let plain = buf[..len].to_vec();
        let srtp_len = from.protect_rtp(&mut buf, len).unwrap();
        assert_ne!(&buf[..len], &plain[..], "not encrypted");
        let back = to.unprotect_rtp(&mut buf[..srtp_len]).unwrap();
        assert_eq!(&buf[..back], &plain[..]);
    }
}

fn handshake_with_client_cert(client_cert: DtlsCertificate) {
    let server_cert = DtlsCertificate::new_ecdsa().unwrap();
    let (mut client, mut server) = pair(
        &client_cert,
        &server_cert,
        client_cert.fingerprint().unwrap(),
    );
    assert!(!client.is_connected() && !server.is_connected());
    assert!(client.poll_timeout().is_some());
    let (c, s) = run(&mut client, &mut server);
    c.unwrap();
    s.unwrap();
    assert!(client.is_connected() && server.is_connected());
    assert_eq!(client.poll_timeout(), None);
    let mut ck = client.take_srtp().unwrap();
    let mut sk = server.take_srtp().unwrap();
    assert!(client.take_srtp().is_none());
    assert_eq!(ck.profile, SrtpProfile::AesCm128HmacSha1_80);
    keys_agree(&mut ck, &mut sk);
}

#[test]
fn an_rsa_client_certificate_is_accepted_and_keys_agree() {
    handshake_with_client_cert(DtlsCertificate::new_rsa(2048).unwrap());
}

#[test]
fn an_ecdsa_client_certificate_is_accepted_and_keys_agree() {
    handshake_with_client_cert(DtlsCertificate::new_ecdsa().unwrap());
}

#[test]
fn a_sha1_fingerprint_is_checked_too() {
    let client_cert = DtlsCertificate::new_rsa(2048).unwrap();
    let server_cert = DtlsCertificate::new_ecdsa().unwrap();
    let sha1 = Fingerprint::of(&client_cert.x509, FingerprintAlgorithm::Sha1).unwrap();
    assert_eq!(sha1.bytes.len(), 20);
    let (mut client, mut server) = pair(&client_cert, &server_cert, sha1);
    let (c, s) = run(&mut client, &mut server);
    c.unwrap();
    s.unwrap();
    assert!(server.is_connected());
    // The same hash of another certificate is refused.
    let other = DtlsCertificate::new_rsa(2048).unwrap();
    let wrong = Fingerprint::of(&other.x509, FingerprintAlgorithm::Sha1).unwrap();
    let (mut client, mut server) = pair(&client_cert, &server_cert, wrong);
    let (_, s) = run(&mut client, &mut server);
    assert!(matches!(s, Err(DtlsError::FingerprintMismatch)), "{s:?}");
}

#[test]
fn a_certificate_that_does_not_match_the_fingerprint_is_refused() {
    let client_cert = DtlsCertificate::new_rsa(2048).unwrap();
    let server_cert = DtlsCertificate::new_ecdsa().unwrap();
    let other = DtlsCertificate::new_ecdsa().unwrap().fingerprint().unwrap();
    let (mut client, mut server) = pair(&client_cert, &server_cert, other);
    let (_, s) = run(&mut client, &mut server);
    assert!(matches!(s, Err(DtlsError::FingerprintMismatch)), "{s:?}");
    assert!(!server.is_connected());
    assert!(server.take_srtp().is_none());
    assert!(matches!(
        server.handle_datagram(&[22, 254, 253], Instant::now()),
        Err(DtlsError::Closed)
    ));
}

#[test]
fn a_lost_flight_is_retransmitted_after_its_timer() {
    let client_cert = DtlsCertificate::new_ecdsa().unwrap();
    let server_cert = DtlsCertificate::new_ecdsa().unwrap();
    let (mut client, mut server) = pair(
        &client_cert,
        &server_cert,
        client_cert.fingerprint().unwrap(),
    );
    // The ClientHello is lost.
    let lost: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_datagram()).collect();
    assert!(!lost.is_empty());
    // OpenSSL's first timer is 1 s; nothing is resent before it.
    let at = client.poll_timeout().unwrap();
    client.handle_timeout(at).unwrap();
    assert!(client.poll_datagram().is_none());
    std::thread::sleep(Duration::from_millis(1100));
    let now = Instant::now();
    client.handle_timeout(now).unwrap();
    let resent = client.poll_datagram().expect("ClientHello not resent");
    assert_eq!(resent[0], lost[0][0]);
    server.handle_datagram(&resent, now).unwrap();
    let (c, s) = run(&mut client, &mut server);
    c.unwrap();
    s.unwrap();
    assert!(client.is_connected() && server.is_connected());
}

#[test]
fn garbage_fails_the_handshake_cleanly() {
    let cert = DtlsCertificate::new_ecdsa().unwrap();
    let fp = DtlsCertificate::new_ecdsa().unwrap().fingerprint().unwrap();
    let mut server = Dtls::new(DtlsRole::Server, &cert, fp, Instant::now()).unwrap();
    // A record header claiming a handshake, with nonsense inside: refused or ignored, no panic.
    let _ = server.handle_datagram(
        &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
        Instant::now(),
    );
    assert!(!server.is_connected());
}

#[test]
fn fingerprints_parse_and_print_as_sdp_does() {
    let cert = DtlsCertificate::new_rsa(2048).unwrap();
    let fp = cert.fingerprint().unwrap();
    let text = fp.to_string();
    assert!(text.starts_with("sha-256 "), "{text}");
    assert_eq!(text.len(), "sha-256 ".len() + 32 * 3 - 1);
    assert_eq!(Fingerprint::parse(&text), Some(fp.clone()));
    assert_eq!(
        Fingerprint::parse(&text.to_lowercase().replace("sha-256", "SHA-256")),
        Some(fp)
    );
    let baresip = "SHA-256 C0:96:3C:A9:EC:45:3E:2F:32:CF:E8:AB:52:BE:29:15:85:5E:FD:57:FE:21:ED:EC:A0:D0:68:38:32:84:98:42";
    let parsed = Fingerprint::parse(baresip).unwrap();
    assert_eq!(parsed.algorithm, FingerprintAlgorithm::Sha256);
    assert_eq!(parsed.bytes[..2], [0xC0, 0x96]);
    assert_eq!(Fingerprint::parse("md5 00:11"), None);
    assert_eq!(Fingerprint::parse("sha-256 C0:96"), None);
    assert_eq!(Fingerprint::parse("sha-256 zz:96"), None);
    let sha1 = Fingerprint::parse(&format!("sha-1 {}", ["AB"; 20].join(":"))).unwrap();
    assert_eq!(sha1.algorithm, FingerprintAlgorithm::Sha1);
}

#[test]
fn demux_follows_rfc7983() {
    assert_eq!(demux(&[0, 1]), Demux::Stun);
    assert_eq!(demux(&[22, 254]), Demux::Dtls);
    assert_eq!(demux(&[0x80, 0]), Demux::Rtp);
    assert_eq!(demux(&[0xbf]), Demux::Rtp);
    assert_eq!(demux(&[64]), Demux::Other);
    assert_eq!(demux(&[]), Demux::Other);
}

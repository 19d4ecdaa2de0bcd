use super::*;

/// baresip 1.0's offer with `mediaenc=dtls_srtp;medianat=ice` and `rtcp_mux yes`.
const BARESIP: &str = "v=0\r\no=- 2147232625 375661264 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:baresip 1.0.0\r\na=ice-ufrag:eryolq7\r\na=ice-pwd:0n1lbJ72ER95KIL0pHgKjN4WQ1aHg6Z\r\na=setup:actpass\r\na=fingerprint:SHA-256 C0:96:3C:A9:EC:45:3E:2F:32:CF:E8:AB:52:BE:29:15:85:5E:FD:57:FE:21:ED:EC:A0:D0:68:38:32:84:98:42\r\nm=audio 47176 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\na=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\na=ssrc:3838291339 cname:sip:alice@127.0.0.1:47060\r\na=minptime:20\r\na=ptime:20\r\na=candidate:c0000202 1 UDP 2113929471 127.0.0.1 47176 typ host\r\n";

use switchboard_media::dtls::{DtlsRole, Fingerprint};
use switchboard_media::rtp::write_rtp_header;
use switchboard_sip::sdp::Codec as SipCodec;
use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method, TransactionId};

const LOCAL: &str = "127.0.0.1:40000";

fn attr<'a>(sdp: &'a str, name: &str) -> &'a str {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("a={name}:")))
        .unwrap_or_else(|| panic!("a={name} missing in\n{sdp}"))
}

#[test]
fn a_baresip_dtls_offer_is_answered_with_pcmu_ice_lite_and_dtls() {
    assert!(is_dtls_offer(BARESIP));
    let (leg, answer, n) = DtlsLeg::answer(BARESIP, LOCAL.parse().unwrap()).unwrap();
    assert_eq!(
        (n.codec, n.rtcp_mux, n.remote_rtp),
        (SipCodec::Pcmu, true, None)
    );
    assert_eq!(n.pt, 0);
    assert_eq!(n.telephone_event, Some(101));
    assert!(!leg.connected());
    for needle in [
        "m=audio 40000 UDP/TLS/RTP/SAVPF 0 101\r\n",
        "c=IN IP4 127.0.0.1\r\n",
        "a=ice-lite\r\n",
        "a=setup:passive\r\n",
        "a=rtcp-mux\r\n",
        "a=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:101 telephone-event/8000\r\n",
        "a=fmtp:101 0-15\r\n",
        "a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\n",
        "a=sendrecv\r\n",
    ] {
        assert!(answer.contains(needle), "{needle:?} missing in\n{answer}");
    }
    assert!(attr(&answer, "ice-ufrag").len() >= 4);
    assert!(attr(&answer, "ice-pwd").len() >= 22);
    let fp = Fingerprint::parse(attr(&answer, "fingerprint")).unwrap();
    assert!(attr(&answer, "fingerprint").starts_with("sha-256 "));
    assert_eq!(fp.bytes.len(), 32);
    // The answer is one the SIP stack reads back (the agent parses it).
    let parsed = switchboard_sip::sdp::SessionDescription::parse(answer.as_bytes()).unwrap();
    assert_eq!(parsed.media.len(), 1);
    // Each leg has its own credentials and certificate.
    let (_, again, _) = DtlsLeg::answer(BARESIP, LOCAL.parse().unwrap()).unwrap();
    assert_ne!(attr(&again, "ice-pwd"), attr(&answer, "ice-pwd"));
    assert_ne!(attr(&again, "fingerprint"), attr(&answer, "fingerprint"));
}

#[test]
fn roles_codecs_and_telephone_events_follow_the_offer() {
    let local = LOCAL.parse().unwrap();
    let passive = BARESIP.replace("a=setup:actpass", "a=setup:passive");
    let (_, answer, _) = DtlsLeg::answer(&passive, local).unwrap();
    assert!(answer.contains("a=setup:active\r\n"), "{answer}");
    let active = BARESIP.replace("a=setup:actpass", "a=setup:active");
    let (_, answer, _) = DtlsLeg::answer(&active, local).unwrap();
    assert!(answer.contains("a=setup:passive\r\n"), "{answer}");
    // The offer's first codec we have: PCMA before PCMU here, no telephone-event.
    let pcma = BARESIP.replace("SAVPF 0 101", "SAVPF 8 0").replace(
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        "",
    );
    let (_, answer, n) = DtlsLeg::answer(&pcma, local).unwrap();
    assert_eq!(
        (n.codec, n.pt, n.telephone_event),
        (SipCodec::Pcma, 8, None)
    );
    assert!(answer.contains("UDP/TLS/RTP/SAVPF 8\r\n"), "{answer}");
    assert!(!answer.contains("telephone-event"), "{answer}");
    let opus = BARESIP
        .replace("SAVPF 0 101", "SAVPF 111 101")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:111 opus/48000/2");
    let (_, answer, n) = DtlsLeg::answer(&opus, local).unwrap();
    // telephone-event/8000 does not go with Opus's 48 kHz clock.
    assert_eq!(
        (n.codec, n.pt, n.telephone_event),
        (SipCodec::Opus, 111, None)
    );
    assert!(answer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{answer}");
}

#[test]
fn offers_we_cannot_serve_are_refused() {
    let local: SocketAddr = LOCAL.parse().unwrap();
    let no_mux = BARESIP.replace("a=rtcp-mux\r\n", "");
    assert!(DtlsLeg::answer(&no_mux, local).is_err());
    let g729 = BARESIP
        .replace("SAVPF 0 101", "SAVPF 18")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    assert!(DtlsLeg::answer(&g729, local).is_err());
    let no_fingerprint: String = BARESIP
        .lines()
        .filter(|l| !l.starts_with("a=fingerprint"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    assert!(DtlsLeg::answer(&no_fingerprint, local).is_err());
    let md5 = BARESIP.replace("a=fingerprint:SHA-256", "a=fingerprint:MD5");
    assert!(DtlsLeg::answer(&md5, local).is_err());
    let holdconn = BARESIP.replace("a=setup:actpass", "a=setup:holdconn");
    assert!(DtlsLeg::answer(&holdconn, local).is_err());
    assert!(!is_dtls_offer(
        &BARESIP.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP")
    ));
}

/// The phone side of the in-memory call: its ICE check, its DTLS client, its SRTP.
fn binding_request(username: &str, pwd: &str, tid: u8) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = MessageWriter::new(
        &mut buf,
        Method::BINDING,
        Class::Request,
        TransactionId([tid; 12]),
    )
    .unwrap();
    w.attr(attr_type::USERNAME, username.as_bytes()).unwrap();
    w.attr(attr_type::USE_CANDIDATE, &[]).unwrap();
    w.message_integrity(pwd.as_bytes()).unwrap();
    w.fingerprint().unwrap();
    let len = w.finish();
    buf[..len].to_vec()
}

fn drain(leg: &mut DtlsLeg, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    leg.poll_transmit(now, &mut out).unwrap();
    out
}

#[test]
fn an_rsa_phone_completes_ice_and_dtls_and_media_flows_both_ways() {
    let phone: SocketAddr = "127.0.0.1:47176".parse().unwrap();
    let phone_cert = DtlsCertificate::new_rsa(2048).unwrap();
    let offer = BARESIP.replace(
        "SHA-256 C0:96:3C:A9:EC:45:3E:2F:32:CF:E8:AB:52:BE:29:15:85:5E:FD:57:FE:21:ED:EC:A0:D0:68:38:32:84:98:42",
        &phone_cert.fingerprint().unwrap().to_string(),
    );
    let (mut leg, answer, _) = DtlsLeg::answer(&offer, LOCAL.parse().unwrap()).unwrap();
    let now = Instant::now();

    // DTLS before any ICE check is not taken.
    let gw_fp = Fingerprint::parse(attr(&answer, "fingerprint")).unwrap();
    let mut client = Dtls::new(DtlsRole::Client, &phone_cert, gw_fp, now).unwrap();
    let hello = client.poll_datagram().unwrap();
    leg.on_datagram(phone, &mut hello.clone());
    assert!(drain(&mut leg, now).is_empty());

    // A check with the wrong password: 401, no address selected.
    let user = format!("{}:eryolq7", attr(&answer, "ice-ufrag"));
    leg.on_datagram(
        phone,
        &mut binding_request(&user, "not the password at all", 1),
    );
    let out = drain(&mut leg, now);
    assert_eq!(Message::parse(&out[0].1).unwrap().class, Class::Error);
    assert_eq!(leg.remote(), None);
    // The right one: a signed success to the phone.
    leg.on_datagram(
        phone,
        &mut binding_request(&user, attr(&answer, "ice-pwd"), 2),
    );
    let out = drain(&mut leg, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, phone);
    let resp = Message::parse(&out[0].1).unwrap();
    assert_eq!(resp.class, Class::Success);
    assert!(resp.verify_integrity(attr(&answer, "ice-pwd").as_bytes()));

    // The handshake (the phone's ClientHello again: the first one was dropped).
    leg.on_datagram(phone, &mut hello.clone());
    for _ in 0..20 {
        let mut moved = false;
        for (to, d) in drain(&mut leg, Instant::now()) {
            assert_eq!(to, phone);
            client.handle_datagram(&d, Instant::now()).unwrap();
            moved = true;
        }
        while let Some(d) = client.poll_datagram() {
            leg.on_datagram(phone, &mut d.clone());
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(client.is_connected());
    assert!(leg.connected());
    let mut keys = client.take_srtp().unwrap();

    // Phone → gateway: SRTP in, plain RTP out to the bridge.
    let mut buf = vec![0u8; 12 + 160 + 16];
    let h = write_rtp_header(&mut buf, false, 0, 7, 1120, 0xabcd).unwrap();
    buf[h..h + 160].fill(0x7f);
    let plain = buf[..h + 160].to_vec();
    let n = keys.outbound.protect_rtp(&mut buf, h + 160).unwrap();
    let mut datagram = buf[..n].to_vec();
    let got = leg
        .on_datagram(phone, &mut datagram)
        .map(|len| datagram[..len].to_vec());
    assert_eq!(got, Some(plain.clone()));
    // A tampered packet is refused.
    buf[20] ^= 1;
    assert_eq!(leg.on_datagram(phone, &mut buf[..n]), None);

    // Gateway → phone: plain RTP in, SRTP to the ICE-selected address.
    leg.send_rtp(&plain);
    let out = drain(&mut leg, Instant::now());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, phone);
    let mut srtp = out[0].1.clone();
    assert_ne!(srtp[..plain.len()], plain[..]);
    let len = keys.inbound.unprotect_rtp(&mut srtp).unwrap();
    assert_eq!(&srtp[..len], &plain[..]);
}

#[test]
fn a_phone_whose_certificate_does_not_match_its_fingerprint_ends_the_leg() {
    let phone: SocketAddr = "127.0.0.1:47176".parse().unwrap();
    // BARESIP's fingerprint is not this certificate's.
    let phone_cert = DtlsCertificate::new_rsa(2048).unwrap();
    let (mut leg, answer, _) = DtlsLeg::answer(BARESIP, LOCAL.parse().unwrap()).unwrap();
    let user = format!("{}:eryolq7", attr(&answer, "ice-ufrag"));
    leg.on_datagram(
        phone,
        &mut binding_request(&user, attr(&answer, "ice-pwd"), 3),
    );
    let gw_fp = Fingerprint::parse(attr(&answer, "fingerprint")).unwrap();
    let mut client = Dtls::new(DtlsRole::Client, &phone_cert, gw_fp, Instant::now()).unwrap();
    let mut result = Ok(Instant::now());
    for _ in 0..20 {
        while let Some(d) = client.poll_datagram() {
            leg.on_datagram(phone, &mut d.clone());
        }
        let mut out = Vec::new();
        result = leg.poll_transmit(Instant::now(), &mut out);
        if result.is_err() {
            break;
        }
        for (_, d) in out {
            let _ = client.handle_datagram(&d, Instant::now());
        }
    }
    let err = result.unwrap_err();
    assert!(err.contains("fingerprint"), "{err}");
    assert!(!leg.connected());
}

/// baresip's answer to our offer, with `setup` and the certificate `fp`.
fn phone_answer(setup: &str, fp: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=ice-ufrag:eryolq7\r\na=ice-pwd:0n1lbJ72ER95KIL0pHgKjN4WQ1aHg6Z\r\na=setup:{setup}\r\na=fingerprint:{fp}\r\nm=audio 47176 UDP/TLS/RTP/SAVPF 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\na=sendrecv\r\na=candidate:c0000202 1 UDP 2113929471 127.0.0.1 47176 typ host\r\n"
    )
}

const SOME_FP: &str = "sha-256 C0:96:3C:A9:EC:45:3E:2F:32:CF:E8:AB:52:BE:29:15:85:5E:FD:57:FE:21:ED:EC:A0:D0:68:38:32:84:98:42";

#[test]
fn our_offer_is_dtls_srtp_with_ice_lite_and_every_codec() {
    let (leg, ours, offer) = DtlsLeg::offer(LOCAL.parse().unwrap()).unwrap();
    assert!(is_dtls_offer(&offer));
    assert!(!leg.connected());
    for needle in [
        "m=audio 40000 UDP/TLS/RTP/SAVPF 0 8 111 101 110\r\n",
        "c=IN IP4 127.0.0.1\r\n",
        "a=ice-lite\r\n",
        "a=setup:actpass\r\n",
        "a=rtcp-mux\r\n",
        "a=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:8 PCMA/8000\r\n",
        "a=rtpmap:111 opus/48000/2\r\n",
        "a=rtpmap:101 telephone-event/8000\r\n",
        "a=rtpmap:110 telephone-event/48000\r\n",
        "a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\n",
    ] {
        assert!(offer.contains(needle), "{needle:?} missing in\n{offer}");
    }
    assert_eq!(attr(&offer, "ice-ufrag"), ours.ufrag);
    assert_eq!(attr(&offer, "ice-pwd"), ours.pwd);
    assert_eq!(attr(&offer, "fingerprint"), ours.fingerprint.to_string());
    // The offer reads back as one we would answer ourselves.
    let (_, answer, n) = DtlsLeg::answer(&offer, "127.0.0.1:40002".parse().unwrap()).unwrap();
    assert_eq!(
        (n.codec, n.rtcp_mux, n.remote_rtp),
        (SipCodec::Pcmu, true, None)
    );
    assert!(answer.contains("a=setup:passive\r\n"), "{answer}");
}

#[test]
fn answers_to_our_offer_settle_the_role_or_are_refused() {
    let active = read_answer(&phone_answer("active", SOME_FP)).unwrap();
    assert_eq!(
        (active.role, active.codec, active.pt),
        (DtlsRole::Server, SipCodec::Pcma, 8)
    );
    assert_eq!(active.telephone_event, Some((101, "0-15".to_owned())));
    assert_eq!(active.remote_ufrag.as_deref(), Some("eryolq7"));
    assert_eq!(
        read_answer(&phone_answer("passive", SOME_FP)).unwrap().role,
        DtlsRole::Client
    );
    // Re-offers are answered with the settled role, never actpass.
    let (_, ours, _) = DtlsLeg::offer(LOCAL.parse().unwrap()).unwrap();
    let again = write_answer(&active, &ours);
    assert!(again.contains("a=setup:passive\r\n"), "{again}");
    assert!(again.contains("UDP/TLS/RTP/SAVPF 8 101\r\n"), "{again}");
    // actpass is for offers; plain RTP or SDES is no DTLS-SRTP answer.
    let err = read_answer(&phone_answer("actpass", SOME_FP)).unwrap_err();
    assert!(err.contains("actpass"), "{err}");
    let plain = phone_answer("active", SOME_FP).replace("UDP/TLS/RTP/SAVPF", "RTP/AVP");
    let err = read_answer(&plain).unwrap_err();
    assert!(err.contains("not DTLS-SRTP"), "{err}");
    let sdes = phone_answer("active", SOME_FP).replace("UDP/TLS/RTP/SAVPF", "RTP/SAVP");
    assert!(read_answer(&sdes).is_err());
    let no_mux = phone_answer("active", SOME_FP).replace("a=rtcp-mux\r\n", "");
    assert!(read_answer(&no_mux).is_err());
}

/// Calls out: our leg offers, the phone answers `passive` (we are the DTLS client), checks
/// come in; our ClientHello goes only once ICE chose the phone's address.
#[test]
fn an_offering_leg_becomes_the_dtls_client_of_a_passive_phone() {
    let phone: SocketAddr = "127.0.0.1:47176".parse().unwrap();
    let phone_cert = DtlsCertificate::new_rsa(2048).unwrap();
    let (mut leg, ours, offer) = DtlsLeg::offer(LOCAL.parse().unwrap()).unwrap();
    // A check before the answer is answered already (the far end may be quick).
    let user = format!("{}:eryolq7", ours.ufrag);
    leg.on_datagram(phone, &mut binding_request(&user, &ours.pwd, 1));
    let out = drain(&mut leg, Instant::now());
    assert_eq!(out.len(), 1);
    assert_eq!(Message::parse(&out[0].1).unwrap().class, Class::Success);

    let answer = phone_answer("passive", &phone_cert.fingerprint().unwrap().to_string());
    let terms = read_answer(&answer).unwrap();
    leg.on_answer(&terms).unwrap();
    let n = negotiated(&terms);
    assert_eq!(
        (n.codec, n.pt, n.telephone_event),
        (SipCodec::Pcma, 8, Some(101))
    );
    // From now on checks must name the answer's ufrag.
    leg.on_datagram(
        phone,
        &mut binding_request(&format!("{}:other", ours.ufrag), &ours.pwd, 2),
    );
    let hello: Vec<_> = drain(&mut leg, Instant::now());
    assert!(
        hello.iter().all(|(_, d)| Message::parse(d).is_err()),
        "a check with another ufrag was answered"
    );
    assert!(!hello.is_empty(), "no ClientHello to the checked address");
    let gw_fp = Fingerprint::parse(attr(&offer, "fingerprint")).unwrap();
    let mut server = Dtls::new(DtlsRole::Server, &phone_cert, gw_fp, Instant::now()).unwrap();
    let mut pending = hello;
    for _ in 0..20 {
        for (to, d) in pending.drain(..) {
            assert_eq!(to, phone);
            server.handle_datagram(&d, Instant::now()).unwrap();
        }
        while let Some(d) = server.poll_datagram() {
            leg.on_datagram(phone, &mut d.clone());
        }
        pending = drain(&mut leg, Instant::now());
        if pending.is_empty() && leg.connected() {
            break;
        }
    }
    assert!(server.is_connected() && leg.connected());
    // A second answer (early media, then 200) changes nothing.
    leg.on_answer(&terms).unwrap();
    assert!(leg.connected());
    let mut keys = server.take_srtp().unwrap();
    let mut buf = vec![0u8; 12 + 160 + 16];
    let h = write_rtp_header(&mut buf, false, 8, 7, 1120, 0xabcd).unwrap();
    buf[h..h + 160].fill(0xd5);
    let plain = buf[..h + 160].to_vec();
    leg.send_rtp(&plain);
    let out = drain(&mut leg, Instant::now());
    assert_eq!(out.len(), 1);
    let mut srtp = out[0].1.clone();
    let len = keys.inbound.unprotect_rtp(&mut srtp).unwrap();
    assert_eq!(&srtp[..len], &plain[..]);
    let n = keys.outbound.protect_rtp(&mut buf, h + 160).unwrap();
    assert_eq!(leg.on_datagram(phone, &mut buf[..n]), Some(plain.len()));
}

use super::*;
use std::net::Ipv4Addr;

const BARESIP_PLAIN: &[u8] = include_bytes!("../../testdata/baresip_plain.sdp");
const BARESIP_SDES: &[u8] = include_bytes!("../../testdata/baresip_sdes.sdp");
const BARESIP_DTLS: &[u8] = include_bytes!("../../testdata/baresip_dtls.sdp");
const CHROMIUM: &[u8] = include_bytes!("../../testdata/chromium_audio.sdp");
const SAMPLES: [&[u8]; 8] = [
    BARESIP_PLAIN,
    BARESIP_SDES,
    BARESIP_DTLS,
    CHROMIUM,
    include_bytes!("../../testdata/rfc3264_offer.sdp"),
    include_bytes!("../../testdata/rfc4566_example.sdp"),
    include_bytes!("../../testdata/rfc4568_sdes.sdp"),
    include_bytes!("../../testdata/sipp_pcma.sdp"),
];

fn local(codecs: Vec<Codec>) -> LocalAudio {
    LocalAudio {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        port: 40000,
        codecs,
        direction: Direction::SendRecv,
        srtp_key: None,
        rtcp_mux: true,
        ptime: 20,
    }
}

#[test]
fn samples_round_trip_byte_for_byte() {
    for s in SAMPLES {
        let sd = SessionDescription::parse(s).unwrap();
        assert_eq!(
            sd.to_string_crlf().as_bytes(),
            s,
            "{}",
            String::from_utf8_lossy(s)
        );
    }
}

#[test]
fn baresip_plain_offer() {
    let sd = SessionDescription::parse(BARESIP_PLAIN).unwrap();
    let m = &sd.media[0];
    assert_eq!((m.port, m.proto.as_str()), (10128, "RTP/AVP"));
    assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![8, 0, 101]);
    assert_eq!(m.rtpmap(101).unwrap().clock, 8000);
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(sd.direction(m), Direction::SendRecv);
    assert!(!m.rtcp_mux());
    assert_eq!(
        sd.connection(m).unwrap().ip(),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
}

#[test]
fn sdes_offers_parse_their_keys() {
    let sd = SessionDescription::parse(BARESIP_SDES).unwrap();
    let crypto = sd.media[0].crypto().unwrap();
    assert_eq!(crypto.len(), 2);
    assert_eq!(crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(crypto[1].tag, 2);
    assert!(crypto.iter().all(|c| c.key_salt.len() == 30));
    let sd = SessionDescription::parse(SAMPLES[6]).unwrap();
    let c = &sd.media[0].crypto().unwrap()[0];
    assert_eq!(c.lifetime.as_deref(), Some("2^20"));
    assert_eq!(c.mki.as_deref(), Some("1:4"));
    assert_eq!(Crypto::parse(&c.to_string()).unwrap(), *c);
    assert!(Crypto::parse("1 AES_CM_128_HMAC_SHA1_80 inline:!!!").is_err());
    assert!(Crypto::parse("x AES_CM_128_HMAC_SHA1_80 inline:QUJD").is_err());
}

#[test]
fn dtls_and_chromium_offers_keep_ice_and_fingerprint() {
    let sd = SessionDescription::parse(BARESIP_DTLS).unwrap();
    let m = &sd.media[0];
    assert_eq!(m.proto, "UDP/TLS/RTP/SAVPF");
    assert!(sd
        .media_or_session_attr(m, "fingerprint")
        .unwrap()
        .starts_with("SHA-256 4B:"));
    assert_eq!(sd.media_or_session_attr(m, "setup"), Some("actpass"));
    assert_eq!(sd.media_or_session_attr(m, "ice-ufrag"), Some("Xk3p"));
    assert_eq!(m.attrs("candidate").count(), 1);
    assert!(m.rtcp_mux());
    assert_eq!(m.attr("mid"), None);

    let sd = SessionDescription::parse(CHROMIUM).unwrap();
    let m = &sd.media[0];
    assert_eq!(
        m.payload_types().collect::<Vec<_>>(),
        vec![111, 63, 9, 0, 8, 13, 110, 126]
    );
    assert_eq!(m.rtpmap(111).unwrap().channels, Some(2));
    assert_eq!(m.rtpmap(110).unwrap().clock, 48000);
    assert_eq!(m.fmtp(111), Some("minptime=10;useinbandfec=1"));
    assert_eq!(m.rtcp(), Some((9, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))));
    assert_eq!(
        sd.media_or_session_attr(m, "ice-pwd"),
        Some("0L5s3kaVnmDq2iOUMi7P8EX9")
    );
    // A DTLS-SRTP stream is not served on the SIP leg (yet): refused, so 488.
    let mut session = SdpSession::new(7, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(
        session.answer(&sd, &local(vec![Codec::Opus])).unwrap_err(),
        SdpError::NoAcceptableAudio
    );
}

#[test]
fn answer_picks_our_preferred_codec_with_matching_telephone_event() {
    let offer = SessionDescription::parse(BARESIP_PLAIN).unwrap();
    let mut session = SdpSession::new(42, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let (answer, n) = session
        .answer(&offer, &local(vec![Codec::Pcmu, Codec::Pcma]))
        .unwrap();
    // Our preference wins over the offer's order (PCMA first there).
    assert_eq!(
        (n.codec, n.pt, n.telephone_event),
        (Codec::Pcmu, 0, Some(101))
    );
    assert_eq!(n.remote_rtp, Some("127.0.0.1:10128".parse().unwrap()));
    // baresip does not offer rtcp-mux: RTCP on port + 1.
    assert_eq!(n.remote_rtcp, Some("127.0.0.1:10129".parse().unwrap()));
    assert!(!n.rtcp_mux);
    let text = answer.to_string_crlf();
    assert!(text.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"));
    assert!(text.contains("a=sendrecv\r\n"));
    assert!(!text.contains("rtcp-mux"));
    assert_eq!(SessionDescription::parse(text.as_bytes()).unwrap(), answer);

    // Opus first: telephone-event must be the 48 kHz one.
    let offer = SessionDescription::parse(
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0 96 101 102\r\na=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\na=rtpmap:102 telephone-event/48000\r\na=rtcp-mux\r\n\
a=mid:0\r\na=msid:x y\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n",
    )
    .unwrap();
    let (answer, n) = session
        .answer(&offer, &local(vec![Codec::Opus, Codec::Pcmu]))
        .unwrap();
    assert_eq!(
        (n.codec, n.pt, n.telephone_event),
        (Codec::Opus, 96, Some(102))
    );
    assert!(n.rtcp_mux);
    assert_eq!(n.remote_rtcp, n.remote_rtp);
    let text = answer.to_string_crlf();
    assert!(text.contains("m=audio 40000 RTP/AVP 96 102\r\n"), "{text}");
    // Nothing of the peer's own attributes is copied.
    for copied in ["mid", "msid", "extmap"] {
        assert!(!text.contains(&format!("a={copied}")), "{text}");
    }
    // G.711 preferred, but only telephone-event/48000 offered with it: no DTMF PT.
    let offer = SessionDescription::parse(
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 8 102\r\na=rtpmap:102 telephone-event/48000\r\n",
    )
    .unwrap();
    let (_, n) = session
        .answer(&offer, &local(vec![Codec::Pcmu, Codec::Pcma]))
        .unwrap();
    assert_eq!((n.codec, n.telephone_event), (Codec::Pcma, None));
}

#[test]
fn sdes_offer_is_answered_with_our_key_and_their_tag() {
    let offer = SessionDescription::parse(BARESIP_SDES).unwrap();
    let mut session = SdpSession::new(1, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let mut us = local(vec![Codec::Pcma]);
    // Without a key of ours an RTP/SAVP stream cannot be served.
    assert_eq!(
        session.answer(&offer, &us).unwrap_err(),
        SdpError::NoAcceptableAudio
    );
    us.srtp_key = Some([7; 30]);
    let (answer, n) = session.answer(&offer, &us).unwrap();
    let keys = n.srtp.unwrap();
    assert_eq!(keys.suite, "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(keys.local_key_salt, vec![7; 30]);
    assert_eq!(
        keys.remote_key_salt,
        offer.media[0].crypto().unwrap()[0].key_salt
    );
    let m = &answer.media[0];
    assert_eq!(m.proto, "RTP/SAVP");
    let ours = m.crypto().unwrap();
    assert_eq!((ours.len(), ours[0].tag), (1, 1));
}

#[test]
fn hold_and_resume() {
    let mut session = SdpSession::new(9, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let us = local(vec![Codec::Pcmu]);
    let mut offer = SessionDescription::parse(BARESIP_PLAIN).unwrap();
    let (_, n) = session.answer(&offer, &us).unwrap();
    assert_eq!(n.direction, Direction::SendRecv);
    // The peer holds: sendonly is answered recvonly.
    offer.media[0].attributes.retain(|a| a.name != "sendrecv");
    offer.media[0]
        .attributes
        .push(Attribute::new("sendonly", None));
    let (answer, n) = session.answer(&offer, &us).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(answer.media[0].direction(), Some(Direction::RecvOnly));
    // RFC 2543 hold (c=0.0.0.0): no address to send to, and we only receive.
    let mut old_hold = SessionDescription::parse(BARESIP_PLAIN).unwrap();
    old_hold.connection = Some(Connection::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    let (_, n) = session.answer(&old_hold, &us).unwrap();
    assert_eq!((n.direction, n.remote_rtp), (Direction::RecvOnly, None));
    // We hold: our offer says sendonly, the peer's recvonly answer gives us sendonly.
    let held = LocalAudio {
        direction: Direction::SendOnly,
        ..us.clone()
    };
    let our_offer = session.offer(&held);
    assert_eq!(our_offer.media[0].direction(), Some(Direction::SendOnly));
    let mut reply = SessionDescription::parse(BARESIP_PLAIN).unwrap();
    reply.media[0].formats = vec!["0".into()];
    reply.media[0].attributes = vec![Attribute::new("recvonly", None)];
    let n = session.accept_answer(&our_offer, &reply, &held).unwrap();
    assert_eq!((n.codec, n.direction), (Codec::Pcmu, Direction::SendOnly));
}

#[test]
fn other_streams_are_refused_with_port_zero() {
    let offer = SessionDescription::parse(SAMPLES[4]).unwrap(); // RFC 3264 audio + video
    let mut session = SdpSession::new(3, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let (answer, n) = session
        .answer(&offer, &local(vec![Codec::Pcma, Codec::Pcmu]))
        .unwrap();
    assert_eq!(answer.media.len(), 2);
    assert_eq!((n.codec, n.pt, n.telephone_event), (Codec::Pcma, 8, None));
    // host name in c=: no address to send to until resolved by the caller.
    assert_eq!(n.remote_rtp, None);
    let video = &answer.media[1];
    assert_eq!((video.media.as_str(), video.port), ("video", 0));
    assert!(video.is_rejected());
    assert!(answer.to_string_crlf().contains("m=video 0 RTP/AVP 31\r\n"));
    // Only codecs we do not have: nothing to answer.
    let offer = SessionDescription::parse(
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5004 RTP/AVP 9 18\r\n",
    )
    .unwrap();
    assert_eq!(
        session
            .answer(&offer, &local(vec![Codec::Pcmu]))
            .unwrap_err(),
        SdpError::NoAcceptableAudio
    );
}

#[test]
fn origin_version_moves_only_when_the_description_changes() {
    let mut session = SdpSession::new(1000, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let us = local(vec![Codec::Pcmu, Codec::Opus]);
    let first = session.offer(&us);
    assert_eq!(
        (first.origin.session_id, first.origin.version),
        (1000, 1000)
    );
    // Offered opus with both telephone-event clocks.
    assert_eq!(first.media[0].formats, vec!["0", "111", "101", "110"]);
    let same = session.offer(&us);
    assert_eq!(same.origin.version, 1000);
    let held = LocalAudio {
        direction: Direction::SendOnly,
        ..us.clone()
    };
    let reoffer = session.offer(&held);
    assert_eq!(reoffer.origin.version, 1001);
    assert_eq!(reoffer.origin.session_id, 1000);
    let resumed = session.offer(&us);
    assert_eq!(resumed.origin.version, 1002);
    assert_eq!(session.version(), 1002);
}

#[test]
fn accept_answer_checks_it_matches_the_offer() {
    let mut session = SdpSession::new(5, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let mut us = local(vec![Codec::Pcmu, Codec::Pcma]);
    us.srtp_key = Some([1; 30]);
    let offer = session.offer(&us);
    assert!(offer
        .to_string_crlf()
        .contains("m=audio 40000 RTP/SAVP 0 8 101\r\n"));
    let mut reply = SessionDescription::parse(BARESIP_SDES).unwrap();
    reply.media[0].formats = vec!["8".into(), "101".into()];
    reply.media[0].attributes.retain(|a| {
        !(a.name == "crypto" && a.value.as_deref().is_some_and(|v| v.starts_with('2')))
    });
    let n = session.accept_answer(&offer, &reply, &us).unwrap();
    assert_eq!((n.codec, n.telephone_event), (Codec::Pcma, Some(101)));
    let keys = n.srtp.unwrap();
    assert_eq!(keys.local_key_salt, vec![1; 30]);
    // An answer in another profile, or with a second m-line, does not match; plain RTP
    // to our SRTP offer says so.
    let mut wrong = reply.clone();
    wrong.media[0].proto = "RTP/AVP".into();
    assert!(matches!(
        session.accept_answer(&offer, &wrong, &us).unwrap_err(),
        SdpError::SrtpRefused(_)
    ));
    wrong.media[0].proto = "RTP/SAVPF".into();
    assert_eq!(
        session.accept_answer(&offer, &wrong, &us).unwrap_err(),
        SdpError::AnswerMismatch
    );
    let mut two = reply.clone();
    two.media.push(reply.media[0].clone());
    assert_eq!(
        session.accept_answer(&offer, &two, &us).unwrap_err(),
        SdpError::AnswerMismatch
    );
}

/// Our SDES offer answered without a usable crypto line: no crypto, an unknown suite,
/// another tag, a short key; each is refused, never read as plain RTP.
#[test]
fn sdes_answers_without_a_usable_key_are_refused() {
    let mut session = SdpSession::new(6, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let mut us = local(vec![Codec::Pcmu]);
    us.srtp_key = Some([7; 30]);
    let offer = session.offer(&us);
    let text = offer.to_string_crlf();
    assert!(
        text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{text}"
    );
    let key = |bytes: usize| base64::engine::general_purpose::STANDARD.encode(vec![9u8; bytes]);
    let answer = |crypto: Option<String>| {
        let mut sd = session_answer(&offer);
        sd.media[0].attributes.retain(|a| a.name != "crypto");
        if let Some(c) = crypto {
            sd.media[0]
                .attributes
                .push(Attribute::new("crypto", Some(c)));
        }
        sd
    };
    let good = answer(Some(format!(
        "1 AES_CM_128_HMAC_SHA1_80 inline:{}",
        key(30)
    )));
    let keys = session
        .accept_answer(&offer, &good, &us)
        .unwrap()
        .srtp
        .unwrap();
    assert_eq!(keys.suite, "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(
        (keys.local_key_salt, keys.remote_key_salt),
        (vec![7; 30], vec![9; 30])
    );
    for bad in [
        None,
        Some(format!("1 AEAD_AES_256_GCM inline:{}", key(44))),
        Some(format!("2 AES_CM_128_HMAC_SHA1_80 inline:{}", key(30))),
        Some(format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", key(16))),
    ] {
        let err = session
            .accept_answer(&offer, &answer(bad.clone()), &us)
            .unwrap_err();
        assert!(matches!(err, SdpError::SrtpRefused(_)), "{bad:?}: {err}");
    }
}

/// The far end's answer to `offer`: its own SDES answer, as a phone would send.
fn session_answer(offer: &SessionDescription) -> SessionDescription {
    let mut far = local(vec![Codec::Pcmu]);
    far.srtp_key = Some([9; 30]);
    far.rtcp_mux = false;
    let (answer, _) = SdpSession::new(8, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)))
        .answer(offer, &far)
        .unwrap();
    answer
}

#[test]
fn malformed_sdp_is_an_error() {
    let cases: &[&[u8]] = &[
        b"",
        b"v=1\r\n",
        b"v=0\r\ns=-\r\n",
        b"v=0\r\no=- x 1 IN IP4 a\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio x RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP\r\n",
        b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nX=1\r\n",
        b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\na=\r\n",
        b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 a\r\ns=\xff\r\n",
    ];
    for c in cases {
        assert!(
            SessionDescription::parse(c).is_err(),
            "{}",
            String::from_utf8_lossy(c)
        );
    }
    let mut big = b"v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\n".to_vec();
    for _ in 0..17 {
        big.extend_from_slice(b"m=audio 1 RTP/AVP 0\r\n");
    }
    assert_eq!(
        SessionDescription::parse(&big).unwrap_err(),
        SdpError::TooLarge
    );
}

#[test]
fn only_canonical_payload_type_numbers_count() {
    // Found by fuzzing: "000" read as PT 0 was answered as "0", a format never offered.
    let offer = SessionDescription::parse(
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5004 RTP/AVP 000 +8 08 200\r\n",
    )
    .unwrap();
    assert_eq!(offer.media[0].payload_types().count(), 0);
    let mut session = SdpSession::new(1, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(
        session
            .answer(&offer, &local(vec![Codec::Pcmu, Codec::Pcma]))
            .unwrap_err(),
        SdpError::NoAcceptableAudio
    );
}

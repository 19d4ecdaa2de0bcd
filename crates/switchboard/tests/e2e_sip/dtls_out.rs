//! Calls out with DTLS-SRTP + ICE (`;srtp=dtls` on the dialled URI), hermetic: the real
//! binary, a room member and a far end of our own SIP stack that takes no DTLS. What a
//! user would check:
//!
//! - the INVITE offers `UDP/TLS/RTP/SAVPF` with `a=setup:actpass`, a SHA-256
//!   fingerprint, ICE-lite credentials and one host candidate on the offer's port, and
//!   goes out without `;srtp=`;
//! - a far end that answers plain `RTP/AVP` to it is hung up at once: the call's peer says
//!   `ended` with the reason, the warning is logged, nothing is left;
//! - a far end that answers DTLS-SRTP (`a=setup:active`, an RSA certificate as baresip's)
//!   gets its ICE check answered, completes the handshake as the DTLS client, and the
//!   tones cross both ways in SRTP keyed by it.
//!
//! That far end's ICE, DTLS and SRTP are the media crate's own parts, as the gateway's:
//! the same call against a far end that is not ours, baresip with `dtls_srtp`, is in
//! tests/sip_baresip.rs.

use crate::common::sip::{decode_opus, heard_from, OpusTone};
use crate::lab::tone_of;
use crate::{common, sip_far_end};

use sip_far_end::{
    dial, far_end_hangs_up, gateway, member, peer_of, plain_text, until_refused, FarEnd, FarTone,
};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use switchboard_media::dtls::{demux, Demux, Dtls, DtlsCertificate, DtlsRole, Fingerprint};
use switchboard_sip::sdp::{Codec, Direction, Negotiated, SessionDescription};
use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method, TransactionId};

#[test]
fn a_far_end_answering_plain_rtp_to_a_dtls_offer_is_hung_up() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "dtlsplain");
    let mut far = FarEnd::new(None);
    far.answer_plain = true;
    let to = format!("sip:bob@127.0.0.1:{};srtp=dtls;transport=tcp", far.port());
    let (status, reply) = dial(&server, "dtlsplain", &to);
    assert_eq!(status, 201, "{reply}");
    let reason = until_refused(&mut b, &mut far);
    assert!(far.call.is_some(), "the far end never answered");

    // The offer: DTLS-SRTP with ICE-lite, `;srtp=` not on the wire.
    let invite = far
        .received
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the INVITE");
    assert_eq!(
        invite.lines().next().unwrap_or_default(),
        format!(
            "INVITE sip:bob@127.0.0.1:{};transport=tcp SIP/2.0",
            far.port()
        ),
        "`;srtp=` must not go on the wire"
    );
    let (_, body) = invite.split_once("\r\n\r\n").expect("a body");
    let offer = SessionDescription::parse(body.as_bytes()).expect("the offer parses");
    let [audio] = offer.media.as_slice() else {
        panic!("one m-line: {body}");
    };
    assert_eq!(audio.proto, "UDP/TLS/RTP/SAVPF", "{body}");
    assert!(audio.rtcp_mux(), "{body}");
    let attr = |name: &str| {
        offer
            .media_or_session_attr(audio, name)
            .unwrap_or_else(|| panic!("no a={name} in {body}"))
            .trim()
            .to_string()
    };
    assert_eq!(attr("setup"), "actpass");
    assert!(attr("fingerprint").starts_with("sha-256 "), "{body}");
    assert!(attr("ice-ufrag").len() >= 4 && attr("ice-pwd").len() >= 22);
    assert!(body.contains("a=ice-lite\r\n"), "{body}");
    assert!(
        attr("candidate").ends_with(&format!(" 127.0.0.1 {} typ host", audio.port)),
        "{body}"
    );
    assert!(audio.crypto().expect("parses").is_empty(), "no SDES keys");

    assert!(
        reason.contains("DTLS-SRTP") && reason.contains("RTP/AVP"),
        "the room's reason: {reason}"
    );
    // (The log is read in order: the call out came first.)
    let out = server
        .wait_log("SIP call out", Duration::from_secs(1))
        .expect("the call out was logged");
    let out = plain_text(&out);
    assert!(out.contains(" dtls_srtp=true"), "{out}");
    let warned = server
        .wait_log("DTLS-SRTP required", Duration::from_secs(2))
        .expect("the refusal is logged");
    let warned = plain_text(&warned);
    assert!(
        warned.contains(" WARN ") && warned.contains("RTP/AVP"),
        "{warned}"
    );
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
}

/// What the far end read in the gateway's offer.
#[derive(Clone)]
struct OfferSeen {
    ufrag: String,
    pwd: String,
    fingerprint: Fingerprint,
    candidate: SocketAddr,
}

/// The far end's ICE check (it is the controlling, full agent; the gateway is lite).
fn binding_request(username: &str, pwd: &str, tid: u8) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = MessageWriter::new(
        &mut buf,
        Method::BINDING,
        Class::Request,
        TransactionId([tid; 12]),
    )
    .expect("writer");
    w.attr(attr_type::USERNAME, username.as_bytes())
        .expect("username");
    w.attr(attr_type::USE_CANDIDATE, &[])
        .expect("use-candidate");
    w.message_integrity(pwd.as_bytes()).expect("integrity");
    w.fingerprint().expect("fingerprint");
    let len = w.finish();
    buf[..len].to_vec()
}

#[test]
fn a_call_out_with_dtls_srtp_runs_ice_and_dtls_and_media_crosses_encrypted() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "dtlsout");
    let mut far = FarEnd::new(None);
    let far_cert = DtlsCertificate::new_rsa(2048).expect("RSA certificate");
    let far_fp = far_cert.fingerprint().expect("fingerprint").to_string();
    let media_port = far.media.local_addr().expect("addr").port();
    let seen: Rc<RefCell<Option<OfferSeen>>> = Rc::default();
    let seen_by_answer = seen.clone();
    far.answer_with = Some(Box::new(move |offer: &SessionDescription| {
        let audio = &offer.media[0];
        let attr = |name: &str| {
            offer
                .media_or_session_attr(audio, name)
                .unwrap_or_else(|| panic!("no a={name} in the offer"))
                .trim()
                .to_string()
        };
        let candidate = SocketAddr::from(([127, 0, 0, 1], audio.port));
        *seen_by_answer.borrow_mut() = Some(OfferSeen {
            ufrag: attr("ice-ufrag"),
            pwd: attr("ice-pwd"),
            fingerprint: Fingerprint::parse(&attr("fingerprint")).expect("a fingerprint"),
            candidate,
        });
        let text = format!(
            "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=ice-ufrag:farU\r\na=ice-pwd:farpasswordfarpasswordfar\r\na=setup:active\r\na=fingerprint:{far_fp}\r\nm=audio {media_port} UDP/TLS/RTP/SAVPF 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\na=sendrecv\r\na=candidate:1 1 UDP 2130706431 127.0.0.1 {media_port} typ host\r\n"
        );
        let n = Negotiated {
            codec: Codec::Pcmu,
            pt: 0,
            telephone_event: Some(101),
            remote_rtp: Some(candidate),
            remote_rtcp: None,
            rtcp_mux: true,
            direction: Direction::SendRecv,
            ptime: Some(20),
            srtp: None,
        };
        (
            SessionDescription::parse(text.as_bytes()).expect("our answer parses"),
            n,
        )
    }));
    let to = format!("sip:bob@127.0.0.1:{};srtp=dtls;transport=tcp", far.port());
    let (status, reply) = dial(&server, "dtlsout", &to);
    assert_eq!(status, 201, "{reply}");

    // ICE (the far end's check, USE-CANDIDATE), then DTLS with the far end as client.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut dtls: Option<(OfferSeen, Dtls)> = None;
    let mut checked = false;
    let mut next_check = Instant::now();
    let mut tid = 0u8;
    let mut buf = [0u8; 2048];
    while !dtls.as_ref().is_some_and(|(_, d)| d.is_connected()) {
        assert!(
            Instant::now() < deadline,
            "answered {}, ICE checked {checked}, DTLS {:?}",
            far.call.is_some(),
            dtls.as_ref().map(|(_, d)| d)
        );
        b.pump(Duration::from_millis(1)).expect("pump B");
        far.pump();
        if dtls.is_none() && far.call.is_some() {
            let offer = seen.borrow().clone().expect("the offer was read");
            let client = Dtls::new(
                DtlsRole::Client,
                &far_cert,
                offer.fingerprint.clone(),
                Instant::now(),
            )
            .expect("DTLS client");
            dtls = Some((offer, client));
        }
        let Some((offer, client)) = &mut dtls else {
            continue;
        };
        let now = Instant::now();
        if !checked && now >= next_check {
            tid = tid.wrapping_add(1);
            let check = binding_request(&format!("{}:farU", offer.ufrag), &offer.pwd, tid);
            far.media.send_to(&check, offer.candidate).expect("check");
            next_check = now + Duration::from_millis(100);
        }
        if checked {
            client.handle_timeout(now).expect("DTLS timer");
            while let Some(d) = client.poll_datagram() {
                far.media.send_to(&d, offer.candidate).expect("DTLS out");
            }
        }
        while let Ok((len, from)) = far.media.recv_from(&mut buf) {
            assert_eq!(from, offer.candidate, "media from the offer's candidate");
            match demux(&buf[..len]) {
                Demux::Stun => {
                    let m = Message::parse(&buf[..len]).expect("STUN");
                    assert_eq!(m.class, Class::Success, "the check is answered");
                    assert!(m.verify_integrity(offer.pwd.as_bytes()), "signed");
                    checked = true;
                }
                Demux::Dtls => client
                    .handle_datagram(&buf[..len], Instant::now())
                    .expect("the gateway's certificate matches its fingerprint"),
                _ => {}
            }
        }
    }
    let Some((_, mut client)) = dtls else {
        unreachable!("the loop ends connected");
    };
    let keys = client.take_srtp().expect("SRTP keys");
    server
        .wait_log("DTLS-SRTP to the phone is up", Duration::from_secs(5))
        .expect("the gateway's side of the handshake is logged");

    // Both tones, in SRTP keyed by the handshake: the far end hears the room only by
    // unprotecting, the room hears the far end only because the gateway does.
    let mut tone = FarTone::new(440.0);
    tone.srtp = Some((keys.outbound, keys.inbound));
    let n = far.call.clone().expect("answered").1;
    let mut opus = OpusTone::new(1000.0);
    let mut next_opus = Instant::now();
    let mut peer: Option<String> = None;
    let heard = |b: &switchboard_client::sfu::SfuClient, p: &Option<String>| {
        p.as_deref().map_or(0, |p| heard_from(b, p).len())
    };
    let deadline = Instant::now() + Duration::from_secs(25);
    while heard(&b, &peer) < 150 || tone.heard.len() < 24_000 {
        assert!(
            Instant::now() < deadline,
            "B got {} packets from {peer:?}, the far end {} samples ({} refused)",
            heard(&b, &peer),
            tone.heard.len(),
            tone.refused
        );
        while Instant::now() >= next_opus && b.media.connected {
            b.media.send_audio_packet(&opus.frame());
            next_opus += Duration::from_millis(20);
        }
        b.pump(Duration::from_millis(1)).expect("pump B");
        far.pump();
        tone.step(&far.media, &n);
        peer = peer_of(&b, &far).or(peer.take());
    }
    let peer = peer.expect("the sip peer");
    let (hz, rms) = tone_of(&decode_opus(&heard_from(&b, &peer)[50..]), 48_000);
    eprintln!("the room heard the far end: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 440.0).abs() < 10.0 && rms > 1000.0,
        "{hz} Hz, RMS {rms}"
    );
    let (hz, rms) = tone_of(&tone.heard[8000..], 8000);
    eprintln!("the far end heard the room: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 1000.0).abs() < 10.0 && rms > 1000.0,
        "{hz} Hz, RMS {rms}"
    );
    far_end_hangs_up(&server, &mut b, &mut far, &peer);
}

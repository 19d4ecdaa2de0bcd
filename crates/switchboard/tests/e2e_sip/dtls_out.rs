//! Calls out with DTLS-SRTP + ICE (`;srtp=dtls` on the dialled URI), hermetic: the real
//! binary, a room member and a far end of our own SIP stack that takes no DTLS. What a
//! user would check:
//!
//! - the INVITE offers `UDP/TLS/RTP/SAVPF` with `a=setup:actpass`, a SHA-256
//!   fingerprint, ICE-lite credentials and one host candidate on the offer's port, and
//!   goes out without `;srtp=`;
//! - a far end that answers plain `RTP/AVP` to it is hung up at once: the call's peer says
//!   `ended` with the reason, the warning is logged, nothing is left.
//!
//! The call itself (ICE, the DTLS handshake, SRTP both ways) is shown against a far end
//! that is not ours: baresip with `dtls_srtp` (tests/sip_baresip.rs).

use crate::{common, sip_far_end};

use sip_far_end::{dial, gateway, member, FarEnd};
use std::time::{Duration, Instant};
use switchboard_sip::sdp::SessionDescription;
use switchboard_sip::ua::UaEvent;

/// A log line without its terminal colours.
fn plain_text(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some((before, after)) = rest.split_once('\u{1b}') {
        out.push_str(before);
        rest = after.split_once('m').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out
}

#[test]
fn a_far_end_answering_plain_rtp_to_a_dtls_offer_is_hung_up() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "dtlsplain");
    let mut far = FarEnd::new(None);
    far.answer_plain = true;
    let to = format!("sip:bob@127.0.0.1:{};srtp=dtls;transport=tcp", far.port());
    let (status, reply) = dial(&server, "dtlsplain", &to);
    assert_eq!(status, 201, "{reply}");
    let ended = |b: &switchboard_client::sfu::SfuClient| {
        b.messages
            .iter()
            .find(|m| m["data"]["sip"]["state"] == "ended")
            .map(|m| {
                m["data"]["sip"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bye = false;
    while ended(&b).is_none() || !bye {
        assert!(
            Instant::now() < deadline,
            "answered {}, ended {:?}, BYE {bye}; the far end got {:?}",
            far.call.is_some(),
            ended(&b),
            far.received
                .iter()
                .map(|m| m.lines().next())
                .collect::<Vec<_>>()
        );
        b.pump(Duration::from_millis(5)).expect("pump B");
        far.pump();
        bye = far
            .events
            .iter()
            .any(|e| matches!(e, UaEvent::Ended { reason, .. } if reason.status.is_none()));
    }
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

    let reason = ended(&b).unwrap_or_default();
    assert!(
        reason.contains("DTLS-SRTP") && reason.contains("RTP/AVP"),
        "the room's reason: {reason}"
    );
    assert!(
        far.received.iter().any(|m| m.starts_with("BYE ")),
        "no BYE from the gateway"
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

//! Calls out with SDES-SRTP (`;srtp=sdes` on the dialled URI), hermetic: the real binary,
//! a room member (str0m, a 1,000 Hz Opus tone), and a far end made of our own SIP stack
//! on a TCP listener with SRTP of our media crate. What a user would check:
//!
//! - the INVITE offers `RTP/SAVP` with one `a=crypto` line (AES_CM_128_HMAC_SHA1_80) and
//!   goes out without `;srtp=`; the far end answers with its own key; both tones cross,
//!   each way encrypted: the far end hears the room only by unprotecting with the offer's
//!   key, the room hears the far end only because the gateway unprotects with the answer's;
//!   what the gateway sends is SRTP on the wire (the tag, and a fresh context with the
//!   offer's key opens it), and plain RTP sent to it is refused;
//! - a far end that answers plain `RTP/AVP` to that offer is hung up at once: the call's
//!   peer says `ended` with the reason, the warning is logged, nothing is left.

use crate::{common, sip_far_end};

use sip_far_end::{
    dial, far_end_hangs_up, gateway, member, plain_text, talk, until_refused, FarEnd,
};
use std::time::{Duration, Instant};
use switchboard_media::rtp::{write_rtp_header, RtpHeader};
use switchboard_media::srtp::{SrtpContext, SrtpProfile};
use switchboard_sip::sdp::{Crypto, SessionDescription};

/// The INVITE the far end received, and the SDP offer in it.
fn invite_of(far: &FarEnd) -> (String, SessionDescription) {
    let invite = far
        .received
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the INVITE")
        .clone();
    let (_, body) = invite.split_once("\r\n\r\n").expect("a body");
    let offer = SessionDescription::parse(body.as_bytes()).expect("the offer parses");
    (invite, offer)
}

#[test]
fn a_call_out_with_sdes_carries_encrypted_media_both_ways() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "srtpout");
    let mut far = FarEnd::new(None);
    far.local.srtp_key = Some([0x5a; 30]);
    let to = format!("sip:bob@127.0.0.1:{};srtp=sdes;transport=tcp", far.port());
    let (status, reply) = dial(&server, "srtpout", &to);
    assert_eq!(status, 201, "{reply}");
    // Both tones cross: FarTone protects and unprotects once SDES is negotiated.
    let peer = talk(&mut b, &mut far);

    let (invite, offer) = invite_of(&far);
    let request_line = invite.lines().next().unwrap_or_default();
    assert_eq!(
        request_line,
        format!(
            "INVITE sip:bob@127.0.0.1:{};transport=tcp SIP/2.0",
            far.port()
        ),
        "`;srtp=` must not go on the wire"
    );
    let audio = &offer.media[0];
    assert_eq!(audio.proto, "RTP/SAVP", "{invite}");
    let offered: Vec<Crypto> = audio.crypto().expect("crypto lines parse");
    assert_eq!(offered.len(), 1, "{invite}");
    assert_eq!(
        (
            offered[0].tag,
            offered[0].suite.as_str(),
            offered[0].key_salt.len()
        ),
        (1, "AES_CM_128_HMAC_SHA1_80", 30)
    );
    let (_, n) = far.call.clone().expect("answered");
    let keys = n.srtp.clone().expect("SDES negotiated");
    assert_eq!(keys.remote_key_salt, offered[0].key_salt, "the offer's key");
    assert_eq!(keys.local_key_salt, vec![0x5a; 30]);
    assert_ne!(offered[0].key_salt, vec![0x5a; 30]);

    // On the wire: SRTP (160 bytes of PCMU, the 80-bit tag), which a fresh context with
    // the offer's key opens.
    let mut open =
        SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &offered[0].key_salt).expect("context");
    let mut buf = [0u8; 1500];
    let mut opened = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while opened < 20 {
        assert!(Instant::now() < deadline, "{opened} SRTP packets opened");
        far.pump();
        b.pump(Duration::from_millis(1)).expect("pump B");
        let Ok((len, _)) = far.media.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(len, 12 + 160 + 10, "not SRTP with an 80-bit tag");
        let plain = open.unprotect_rtp(&mut buf[..len]).expect("unprotects");
        let h = RtpHeader::parse(&buf[..plain]).expect("RTP");
        assert_eq!((h.payload_type, plain), (n.pt, 12 + 160));
        opened += 1;
    }

    // Plain RTP to the gateway is refused (counted), not played.
    let refused = server.metric("switchboard_sip_rtp_refused_total");
    let to_gateway = n.remote_rtp.expect("the gateway's RTP address");
    for seq in 0..5u16 {
        let mut packet = [0u8; 172];
        let h = write_rtp_header(&mut packet, false, n.pt, 60_000 + seq, 0, 0xfa7e).expect("hdr");
        far.media
            .send_to(&packet[..h + 160], to_gateway)
            .expect("send");
    }
    assert!(
        server.metric_reaching("switchboard_sip_rtp_refused_total", refused + 5) >= refused + 5,
        "plain RTP was not refused on an SRTP call"
    );
    let out = server
        .wait_log("SIP call out", Duration::from_secs(1))
        .expect("the call out was logged");
    let out = plain_text(&out);
    assert!(out.contains(" srtp=true"), "{out}");
    far_end_hangs_up(&server, &mut b, &mut far, &peer);
}

#[test]
fn a_far_end_answering_plain_rtp_to_an_sdes_offer_is_hung_up() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "srtpplain");
    let mut far = FarEnd::new(None);
    far.answer_plain = true;
    let to = format!("sip:bob@127.0.0.1:{};transport=tcp;srtp=sdes", far.port());
    let (status, reply) = dial(&server, "srtpplain", &to);
    assert_eq!(status, 201, "{reply}");
    let reason = until_refused(&mut b, &mut far);
    assert!(far.call.is_some(), "the far end never answered");
    let (_, offer) = invite_of(&far);
    assert_eq!(offer.media[0].proto, "RTP/SAVP");
    assert!(
        reason.contains("SRTP") && reason.contains("RTP/AVP"),
        "the room's reason: {reason}"
    );
    let warned = server
        .wait_log("SRTP required", Duration::from_secs(2))
        .expect("the refusal is logged");
    let warned = plain_text(&warned);
    assert!(
        warned.contains(" WARN ") && warned.contains("RTP/AVP"),
        "{warned}"
    );
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
}

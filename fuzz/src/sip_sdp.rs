//! SDP bodies from SIP peers (`switchboard_sip::sdp`) and the offer/answer built on them.
//!
//! Checks: no panic or overflow whatever the bytes; a description that parses writes out
//! (`to_string_crlf`) to text that parses to the same origin, session attributes and
//! media sections and writes the same again; every typed read (rtpmap, fmtp, ptime,
//! direction, rtcp, crypto) answers; our answer to it, when there is one, has exactly as
//! many m-lines as the offer (RFC 3264 §6), parses back equal, names only payload types
//! the offer had, and copies none of the offer's attributes; reading it as the peer's
//! answer to our own offer never panics.

use std::net::{IpAddr, Ipv4Addr};

use switchboard_sip::sdp::{Codec, Direction, LocalAudio, SdpSession, SessionDescription};

pub fn run(data: &[u8]) {
    let Ok(sd) = SessionDescription::parse(data) else {
        return;
    };
    let text = sd.to_string_crlf();
    let again = match SessionDescription::parse(text.as_bytes()) {
        Ok(d) => d,
        Err(e) => panic!("written SDP does not parse: {e}: {text:?}"),
    };
    assert_eq!(again.origin, sd.origin);
    assert_eq!(again.attributes, sd.attributes);
    assert_eq!(again.media, sd.media);
    assert_eq!(again.to_string_crlf(), text, "writing is not stable");

    for m in &sd.media {
        let _ = (m.rtpmaps(), m.ptime(), m.rtcp(), m.rtcp_mux(), m.crypto());
        let _ = (sd.direction(m), sd.connection(m).map(|c| c.ip()));
        for pt in m.payload_types() {
            let _ = (m.rtpmap(pt), m.fmtp(pt));
        }
    }

    let local = LocalAudio {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        port: 40000,
        codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
        direction: if data.len().is_multiple_of(2) {
            Direction::SendRecv
        } else {
            Direction::SendOnly
        },
        srtp_key: Some([0x5a; 30]),
        rtcp_mux: true,
        ptime: 20,
    };
    let mut session = SdpSession::new(1, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    if let Ok((answer, negotiated)) = session.answer(&sd, &local) {
        assert_eq!(answer.media.len(), sd.media.len());
        let text = answer.to_string_crlf();
        assert_eq!(
            SessionDescription::parse(text.as_bytes()).as_ref(),
            Ok(&answer),
            "{text}"
        );
        for (a, o) in answer.media.iter().zip(&sd.media) {
            for f in &a.formats {
                assert!(o.formats.contains(f), "answered format {f} not offered");
            }
            for attr in &a.attributes {
                assert!(
                    ["rtpmap", "fmtp", "ptime", "crypto", "rtcp-mux"].contains(&attr.name.as_str())
                        || attr.name.ends_with("only")
                        || attr.name == "sendrecv"
                        || attr.name == "inactive",
                    "copied a={}",
                    attr.name
                );
            }
        }
        assert!(sd
            .media
            .iter()
            .any(|m| m.payload_types().any(|pt| pt == negotiated.pt)));
    }
    let offer = session.offer(&local);
    let _ = session.accept_answer(&offer, &sd, &local);
}

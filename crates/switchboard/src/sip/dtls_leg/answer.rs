//! The offer read and the answer written for a DTLS-SRTP + ICE phone leg (RFC 5763 §5,
//! RFC 8839): which codec, which DTLS role, the peer's fingerprint and ICE ufrag; our
//! answer is ICE-lite with one host candidate on the call's RTP port.

use std::fmt::Write as _;
use std::net::SocketAddr;
use switchboard_media::dtls::{DtlsRole, Fingerprint};
use switchboard_sip::sdp::{Codec as SipCodec, MediaDescription, SessionDescription};

/// What the offer asks of the leg.
#[derive(Debug, Clone)]
pub(super) struct OfferTerms {
    pub(super) codec: SipCodec,
    pub(super) pt: u8,
    /// telephone-event at the codec's clock, if offered: (pt, fmtp).
    pub(super) telephone_event: Option<(u8, String)>,
    pub(super) role: DtlsRole,
    pub(super) remote_fingerprint: Fingerprint,
    pub(super) remote_ufrag: Option<String>,
    pub(super) mid: Option<String>,
}

/// Our side of the answer.
pub(super) struct LocalTerms<'a> {
    pub(super) addr: SocketAddr,
    pub(super) ufrag: &'a str,
    pub(super) pwd: &'a str,
    pub(super) fingerprint: &'a Fingerprint,
    pub(super) session_id: u64,
}

/// The codecs we answer with, in no order of ours: the offer's first we have wins.
const CODECS: [SipCodec; 3] = [SipCodec::Pcmu, SipCodec::Pcma, SipCodec::Opus];

fn codec_of(media: &MediaDescription, pt: u8) -> Option<SipCodec> {
    let map = media.rtpmap(pt)?;
    CODECS.into_iter().find(|c| {
        map.encoding.eq_ignore_ascii_case(c.encoding())
            && map.clock == c.clock()
            && match c {
                SipCodec::Opus => map.channels == Some(2),
                _ => matches!(map.channels, None | Some(1)),
            }
    })
}

/// Reads a DTLS-SRTP offer; an error says why it cannot be served (answered 488).
pub(super) fn read_offer(offer: &str) -> Result<OfferTerms, String> {
    let sdp = SessionDescription::parse(offer.as_bytes())
        .map_err(|e| format!("the DTLS-SRTP offer does not parse: {e}"))?;
    let [media] = sdp.media.as_slice() else {
        return Err("a DTLS-SRTP offer must have exactly one m-line".into());
    };
    if !media.media.eq_ignore_ascii_case("audio") || media.is_rejected() {
        return Err("the DTLS-SRTP offer has no audio".into());
    }
    // One port for RTP, RTCP, STUN and DTLS (RFC 5761); RTCP on port+1 is not served.
    if !media.rtcp_mux() {
        return Err("DTLS-SRTP offers must multiplex RTP and RTCP (a=rtcp-mux)".into());
    }
    let (pt, codec) = media
        .payload_types()
        .find_map(|pt| Some((pt, codec_of(media, pt)?)))
        .ok_or("no codec in common (PCMU, PCMA, Opus)")?;
    let telephone_event = media.payload_types().find_map(|te| {
        let map = media.rtpmap(te)?;
        (map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock == codec.clock())
            .then(|| (te, media.fmtp(te).unwrap_or("0-15").to_owned()))
    });
    let fingerprint = sdp
        .media_or_session_attr(media, "fingerprint")
        .ok_or("the DTLS-SRTP offer has no a=fingerprint")?;
    let remote_fingerprint = Fingerprint::parse(fingerprint)
        .ok_or_else(|| format!("unusable a=fingerprint:{fingerprint}"))?;
    // RFC 5763 §5: actpass / active make us the server (passive); passive makes us active.
    let role = match sdp
        .media_or_session_attr(media, "setup")
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("actpass") | Some("active") => DtlsRole::Server,
        Some("passive") => DtlsRole::Client,
        Some(other) => return Err(format!("a=setup:{other} cannot be answered")),
    };
    Ok(OfferTerms {
        codec,
        pt,
        telephone_event,
        role,
        remote_fingerprint,
        remote_ufrag: sdp
            .media_or_session_attr(media, "ice-ufrag")
            .map(|u| u.trim().to_owned()),
        mid: media.attr("mid").map(|m| m.trim().to_owned()),
    })
}

/// The answer SDP: ICE-lite, one host candidate (also the default address, RFC 8839 §4.2,
/// so that SIP endpoints do not conclude we do no ICE), our fingerprint and role.
pub(super) fn write_answer(offer: &OfferTerms, local: &LocalTerms<'_>) -> String {
    let ip = local.addr.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let port = local.addr.port();
    let setup = match offer.role {
        DtlsRole::Server => "passive",
        DtlsRole::Client => "active",
    };
    let mut s = String::with_capacity(640);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {id} {id} IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\na=ice-lite\r\n",
        id = local.session_id
    );
    let _ = write!(s, "m=audio {port} UDP/TLS/RTP/SAVPF {}", offer.pt);
    if let Some((te, _)) = &offer.telephone_event {
        let _ = write!(s, " {te}");
    }
    s.push_str("\r\n");
    if let Some(mid) = &offer.mid {
        let _ = write!(s, "a=mid:{mid}\r\n");
    }
    let _ = write!(
        s,
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{setup}\r\na=rtcp-mux\r\n",
        local.ufrag, local.pwd, local.fingerprint
    );
    let channels = if offer.codec == SipCodec::Opus {
        "/2"
    } else {
        ""
    };
    let _ = write!(
        s,
        "a=rtpmap:{} {}/{}{channels}\r\n",
        offer.pt,
        offer.codec.encoding(),
        offer.codec.clock()
    );
    if let Some((te, fmtp)) = &offer.telephone_event {
        let _ = write!(
            s,
            "a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} {fmtp}\r\n",
            offer.codec.clock()
        );
    }
    let _ = write!(
        s,
        "a=ptime:20\r\na=candidate:1 1 UDP 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\na=sendrecv\r\n"
    );
    s
}

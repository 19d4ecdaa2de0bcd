//! The SDP of a DTLS-SRTP + ICE phone leg (RFC 5763 §5, RFC 8839), both ways: the far
//! end's offer (calls in) or answer (calls out) read into [`MediaTerms`] (codec, our DTLS
//! role, the peer's fingerprint and ICE ufrag), and ours written by one writer: ICE-lite
//! with one host candidate on the call's RTP port, `a=setup:actpass` in an offer, our
//! settled role in an answer.

use std::fmt::Write as _;
use std::net::SocketAddr;
use switchboard_media::dtls::{DtlsRole, Fingerprint};
use switchboard_sip::sdp::{Codec as SipCodec, MediaDescription, SessionDescription};

/// What the far end's description settles for the leg.
#[derive(Debug, Clone)]
pub struct MediaTerms {
    pub codec: SipCodec,
    pub pt: u8,
    /// telephone-event at the codec's clock, if offered: (pt, fmtp).
    pub telephone_event: Option<(u8, String)>,
    /// Our role in the DTLS handshake.
    pub role: DtlsRole,
    pub remote_fingerprint: Fingerprint,
    pub remote_ufrag: Option<String>,
    pub mid: Option<String>,
    /// `UDP/TLS/RTP/SAVP` or `…/SAVPF`: an answer says what the offer said.
    pub proto: String,
}

/// Our side of the description.
#[derive(Debug, Clone)]
pub struct LocalTerms {
    pub addr: SocketAddr,
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: Fingerprint,
    pub session_id: u64,
}

/// The codecs we take, in no order of ours: the far end's first we have wins.
const CODECS: [SipCodec; 3] = [SipCodec::Pcmu, SipCodec::Pcma, SipCodec::Opus];
/// telephone-event payload types of our offer, by clock (as the plain offer's).
const TE_PT_8000: u8 = 101;
const TE_PT_48000: u8 = 110;

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

/// Which description is read: the roles `a=setup` gives differ (RFC 5763 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Offer,
    Answer,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Offer => "offer",
            Side::Answer => "answer",
        }
    }
}

/// The media description is DTLS-SRTP (`UDP/TLS/RTP/SAVP` or `…/SAVPF`) audio.
fn is_dtls_audio(media: &MediaDescription) -> bool {
    media.media.eq_ignore_ascii_case("audio") && media.proto.contains("UDP/TLS/RTP/SAVP")
}

/// Reads a DTLS-SRTP offer; an error says why it cannot be served (answered 488).
pub fn read_offer(offer: &str) -> Result<MediaTerms, String> {
    read(offer, Side::Offer)
}

/// Reads the far end's answer to our DTLS-SRTP offer; an error says why the call cannot
/// go on (it is hung up).
pub fn read_answer(answer: &str) -> Result<MediaTerms, String> {
    read(answer, Side::Answer)
}

fn read(text: &str, side: Side) -> Result<MediaTerms, String> {
    let what = side.name();
    let sdp = SessionDescription::parse(text.as_bytes())
        .map_err(|e| format!("the DTLS-SRTP {what} does not parse: {e}"))?;
    let [media] = sdp.media.as_slice() else {
        return Err(format!("a DTLS-SRTP {what} must have exactly one m-line"));
    };
    if !media.media.eq_ignore_ascii_case("audio") || media.is_rejected() {
        return Err(format!("the DTLS-SRTP {what} has no audio"));
    }
    if !is_dtls_audio(media) {
        return Err(format!(
            "the {what} is not DTLS-SRTP (its audio is {})",
            media.proto
        ));
    }
    // One port for RTP, RTCP, STUN and DTLS (RFC 5761); RTCP on port+1 is not served.
    if !media.rtcp_mux() {
        return Err(format!(
            "the DTLS-SRTP {what} must multiplex RTP and RTCP (a=rtcp-mux)"
        ));
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
        .ok_or_else(|| format!("the DTLS-SRTP {what} has no a=fingerprint"))?;
    let remote_fingerprint = Fingerprint::parse(fingerprint)
        .ok_or_else(|| format!("unusable a=fingerprint:{fingerprint}"))?;
    let setup = sdp
        .media_or_session_attr(media, "setup")
        .map(|s| s.trim().to_ascii_lowercase());
    // RFC 5763 §5: an offer's actpass / active make us the server (passive), passive
    // makes us active. An answer picks: active (also the RFC 4145 default) makes us the
    // server, passive the client; actpass is for offers only.
    let role = match (side, setup.as_deref()) {
        (Side::Offer, None | Some("actpass")) | (_, Some("active")) => DtlsRole::Server,
        (Side::Answer, None) => DtlsRole::Server,
        (_, Some("passive")) => DtlsRole::Client,
        (_, Some(other)) => return Err(format!("a=setup:{other} in an {what} cannot be served")),
    };
    Ok(MediaTerms {
        codec,
        pt,
        telephone_event,
        role,
        remote_fingerprint,
        remote_ufrag: sdp
            .media_or_session_attr(media, "ice-ufrag")
            .map(|u| u.trim().to_owned()),
        mid: media.attr("mid").map(|m| m.trim().to_owned()),
        proto: media.proto.clone(),
    })
}

/// One payload type of our m-line: its number, `a=rtpmap` value and `a=fmtp`, if any.
type Payload = (u8, String, Option<String>);

fn rtpmap_of(codec: SipCodec) -> String {
    let channels = if codec == SipCodec::Opus { "/2" } else { "" };
    format!("{}/{}{channels}", codec.encoding(), codec.clock())
}

/// Our offer: every codec of the plain offer, telephone-event per clock, `actpass`.
pub fn write_offer(local: &LocalTerms) -> String {
    let mut payloads: Vec<Payload> = CODECS
        .into_iter()
        .map(|c| (c.offer_pt(), rtpmap_of(c), None))
        .collect();
    for (pt, clock) in [(TE_PT_8000, 8000), (TE_PT_48000, 48000)] {
        payloads.push((
            pt,
            format!("telephone-event/{clock}"),
            Some("0-15".to_owned()),
        ));
    }
    // SAVPF, as baresip and WebRTC endpoints offer it themselves (no feedback is sent;
    // the profile allows that).
    write_sdp(local, "UDP/TLS/RTP/SAVPF", &payloads, "actpass", None)
}

/// Our answer to `terms` (an offer, or the far end's answer when a re-offer is answered
/// again): its codec and telephone-event, our settled role.
pub fn write_answer(terms: &MediaTerms, local: &LocalTerms) -> String {
    let mut payloads: Vec<Payload> = vec![(terms.pt, rtpmap_of(terms.codec), None)];
    if let Some((te, fmtp)) = &terms.telephone_event {
        payloads.push((
            *te,
            format!("telephone-event/{}", terms.codec.clock()),
            Some(fmtp.clone()),
        ));
    }
    let setup = match terms.role {
        DtlsRole::Server => "passive",
        DtlsRole::Client => "active",
    };
    write_sdp(local, &terms.proto, &payloads, setup, terms.mid.as_deref())
}

/// The description: ICE-lite, one host candidate (also the default address, RFC 8839
/// §4.2, so that SIP endpoints do not conclude we do no ICE), our fingerprint and setup.
fn write_sdp(
    local: &LocalTerms,
    proto: &str,
    payloads: &[Payload],
    setup: &str,
    mid: Option<&str>,
) -> String {
    let ip = local.addr.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let port = local.addr.port();
    let mut s = String::with_capacity(720);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {id} {id} IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\na=ice-lite\r\n",
        id = local.session_id
    );
    let _ = write!(s, "m=audio {port} {proto}");
    for (pt, _, _) in payloads {
        let _ = write!(s, " {pt}");
    }
    s.push_str("\r\n");
    if let Some(mid) = mid {
        let _ = write!(s, "a=mid:{mid}\r\n");
    }
    let _ = write!(
        s,
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{setup}\r\na=rtcp-mux\r\n",
        local.ufrag, local.pwd, local.fingerprint
    );
    for (pt, rtpmap, fmtp) in payloads {
        let _ = write!(s, "a=rtpmap:{pt} {rtpmap}\r\n");
        if let Some(f) = fmtp {
            let _ = write!(s, "a=fmtp:{pt} {f}\r\n");
        }
    }
    let _ = write!(
        s,
        "a=ptime:20\r\na=candidate:1 1 UDP 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\na=sendrecv\r\n"
    );
    s
}

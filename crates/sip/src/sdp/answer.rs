//! Offer/answer for the SIP leg's audio (RFC 3264): our offer, our answer to a peer's offer,
//! and reading a peer's answer to ours, each giving a [`Negotiated`] stream.
//!
//! Our descriptions are built from scratch from [`LocalAudio`] (never from the other leg's
//! SDP): one codec chosen by our preference (PCMU, PCMA, opus/48000/2), telephone-event at
//! that codec's clock (8000 for G.711, 48000 for Opus: RFC 4733 events run on the clock
//! of the audio they go with), hold by direction (RFC 3264 §8.4: sendonly is answered
//! recvonly), a refused stream keeps its line with port 0 (§6), and the `o=` version
//! moves only when the description changes (§8). Streams we cannot serve (DTLS-SRTP, video,
//! a second audio) are refused, not half-accepted.

use std::net::{IpAddr, SocketAddr};

use super::{
    Attribute, Connection, Crypto, Direction, MediaDescription, Origin, SdpError,
    SessionDescription,
};

/// The audio codecs the SIP leg speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// opus/48000/2.
    Opus,
}

impl Codec {
    pub fn encoding(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate (also telephone-event's for this codec).
    pub fn clock(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48000,
        }
    }

    /// The payload type we offer it with.
    pub fn offer_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::Opus => 111,
        }
    }

    fn matches(self, media: &MediaDescription, pt: u8) -> bool {
        let Some(map) = media.rtpmap(pt) else {
            return false;
        };
        map.encoding.eq_ignore_ascii_case(self.encoding())
            && map.clock == self.clock()
            && match self {
                Codec::Opus => map.channels == Some(2),
                _ => matches!(map.channels, None | Some(1)),
            }
    }
}

/// Telephone-event payload types we offer, by clock.
const TE_PT_8000: u8 = 101;
const TE_PT_48000: u8 = 110;

/// The SRTP crypto suites we accept (RFC 4568 §6.2), best first.
const SUITES: [&str; 2] = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"];

/// Our side of the audio stream.
#[derive(Debug, Clone)]
pub struct LocalAudio {
    pub addr: IpAddr,
    /// RTP port (RTCP on port + 1 unless muxed).
    pub port: u16,
    /// In order of preference.
    pub codecs: Vec<Codec>,
    /// `SendRecv`, or `SendOnly` to put the peer on hold, `Inactive` to pause.
    pub direction: Direction,
    /// SDES master key‖salt (30 bytes): offer RTP/SAVP with it, accept RTP/SAVP offers.
    pub srtp_key: Option<[u8; 30]>,
    /// Offer (and accept) RTP/RTCP multiplexing (RFC 5761).
    pub rtcp_mux: bool,
    pub ptime: u32,
}

/// The SRTP keys of a negotiated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: String,
    /// Protects what we send.
    pub local_key_salt: Vec<u8>,
    /// Unprotects what we receive.
    pub remote_key_salt: Vec<u8>,
}

/// What offer/answer settled for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub pt: u8,
    /// telephone-event at the codec's clock, if both sides have it.
    pub telephone_event: Option<u8>,
    /// Where to send RTP: `None` while the peer holds with `c=0.0.0.0` (RFC 2543 style).
    pub remote_rtp: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    pub rtcp_mux: bool,
    /// Our direction (what we may do).
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub srtp: Option<SrtpKeys>,
}

/// Our `o=` line across one call's offers and answers.
#[derive(Debug, Clone)]
pub struct SdpSession {
    session_id: u64,
    version: u64,
    address: IpAddr,
    /// Our last description without its `o=` line, to see whether a new one changed.
    last_body: Option<String>,
}

impl SdpSession {
    /// `session_id` should be random (NTP-style numbers are customary; anything unique).
    pub fn new(session_id: u64, address: IpAddr) -> Self {
        SdpSession {
            session_id,
            version: session_id,
            address,
            last_body: None,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Stamps `o=` on a description, moving the version when it differs from the last one.
    fn finish(&mut self, mut sd: SessionDescription) -> SessionDescription {
        let body = sd.to_string_crlf();
        let body = body
            .split_once("\r\ns=")
            .map_or(body.clone(), |(_, b)| b.to_owned());
        if self.last_body.as_ref().is_some_and(|last| *last != body) {
            self.version += 1;
        }
        self.last_body = Some(body);
        sd.origin.version = self.version;
        sd
    }

    fn skeleton(&self, local: &LocalAudio) -> SessionDescription {
        SessionDescription {
            origin: Origin {
                username: "switchboard".to_owned(),
                session_id: self.session_id,
                version: self.version,
                addr_type: Connection::new(self.address).addr_type,
                address: self.address.to_string(),
            },
            session_name: "-".to_owned(),
            info: Vec::new(),
            connection: Some(Connection::new(local.addr)),
            timing: vec![('t', "0 0".to_owned())],
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Our offer (initial or re-INVITE): every codec of `local` in order, telephone-event
    /// for each clock used, SDES crypto when `local.srtp_key` is set.
    pub fn offer(&mut self, local: &LocalAudio) -> SessionDescription {
        let mut sd = self.skeleton(local);
        let mut pts: Vec<(u8, String)> = local
            .codecs
            .iter()
            .map(|c| (c.offer_pt(), rtpmap_value(*c)))
            .collect();
        if local.codecs.iter().any(|c| c.clock() == 8000) {
            pts.push((TE_PT_8000, "telephone-event/8000".to_owned()));
        }
        if local.codecs.contains(&Codec::Opus) {
            pts.push((TE_PT_48000, "telephone-event/48000".to_owned()));
        }
        let crypto = local.srtp_key.map(|key| Crypto {
            tag: 1,
            suite: SUITES[0].to_owned(),
            key_salt: key.to_vec(),
            lifetime: None,
            mki: None,
        });
        sd.media.push(audio_section(
            local,
            &pts,
            crypto.as_ref(),
            local.direction,
            local.rtcp_mux,
        ));
        self.finish(sd)
    }

    /// Our answer to a peer's offer. Takes the first audio stream we can serve and refuses
    /// every other m-line with port 0. [`SdpError::NoAcceptableAudio`] means answer 488.
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        local: &LocalAudio,
    ) -> Result<(SessionDescription, Negotiated), SdpError> {
        let mut sd = self.skeleton(local);
        let mut chosen = None;
        for m in &offer.media {
            if chosen.is_none() {
                if let Some((section, negotiated)) = answer_audio(offer, m, local)? {
                    sd.media.push(section);
                    chosen = Some(negotiated);
                    continue;
                }
            }
            sd.media.push(rejected(m));
        }
        let negotiated = chosen.ok_or(SdpError::NoAcceptableAudio)?;
        Ok((self.finish(sd), negotiated))
    }

    /// Reads the peer's answer to `our_offer`.
    pub fn accept_answer(
        &self,
        our_offer: &SessionDescription,
        answer: &SessionDescription,
        local: &LocalAudio,
    ) -> Result<Negotiated, SdpError> {
        if answer.media.len() != our_offer.media.len() {
            return Err(SdpError::AnswerMismatch);
        }
        let (offered, m) = our_offer
            .media
            .iter()
            .zip(&answer.media)
            .find(|(o, a)| o.media == "audio" && !a.is_rejected())
            .ok_or(SdpError::NoAcceptableAudio)?;
        let srtp_offered = offered.proto.contains("SAVP");
        if srtp_offered && !m.proto.contains("SAVP") {
            return Err(SdpError::SrtpRefused("it is plain RTP (RTP/AVP)"));
        }
        if m.proto != offered.proto {
            return Err(SdpError::AnswerMismatch);
        }
        let (codec, pt) = m
            .payload_types()
            .find_map(|pt| {
                let codec = local.codecs.iter().find(|c| c.matches(m, pt))?;
                offered
                    .formats
                    .contains(&pt.to_string())
                    .then_some((*codec, pt))
            })
            .ok_or(SdpError::NoAcceptableAudio)?;
        let srtp = if srtp_offered {
            let ours = offered.crypto()?;
            let theirs = m.crypto()?;
            if theirs.is_empty() {
                return Err(SdpError::SrtpRefused("it has no a=crypto line"));
            }
            let pair = theirs
                .iter()
                .find_map(|t| {
                    Some((
                        ours.iter().find(|o| o.tag == t.tag && o.suite == t.suite)?,
                        t,
                    ))
                })
                .ok_or(SdpError::SrtpRefused(
                    "no a=crypto line has the tag and suite of ours",
                ))?;
            // Both suites we offer take a 128-bit key and a 112-bit salt (RFC 4568 §6.2).
            if pair.1.key_salt.len() != 30 {
                return Err(SdpError::SrtpRefused(
                    "its key is not 30 bytes (key and salt)",
                ));
            }
            Some(SrtpKeys {
                suite: pair.0.suite.clone(),
                local_key_salt: pair.0.key_salt.clone(),
                remote_key_salt: pair.1.key_salt.clone(),
            })
        } else {
            None
        };
        let remote_dir = answer.direction(m);
        Ok(negotiated(
            answer,
            m,
            codec,
            pt,
            local.direction,
            remote_dir,
            local.rtcp_mux && m.rtcp_mux(),
            srtp,
        ))
    }
}

fn rtpmap_value(codec: Codec) -> String {
    match codec {
        Codec::Opus => "opus/48000/2".to_owned(),
        c => format!("{}/{}", c.encoding(), c.clock()),
    }
}

/// A refused copy of an offered m-line (RFC 3264 §6: same media and proto, port 0).
fn rejected(m: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media: m.media.clone(),
        port: 0,
        port_count: None,
        proto: m.proto.clone(),
        formats: m.formats.first().cloned().into_iter().collect(),
        info: Vec::new(),
        connection: None,
        other: Vec::new(),
        attributes: Vec::new(),
    }
}

fn audio_section(
    local: &LocalAudio,
    pts: &[(u8, String)],
    crypto: Option<&Crypto>,
    direction: Direction,
    rtcp_mux: bool,
) -> MediaDescription {
    let mut attrs = Vec::new();
    for (pt, map) in pts {
        attrs.push(Attribute::new("rtpmap", Some(format!("{pt} {map}"))));
        if map.starts_with("telephone-event/") {
            attrs.push(Attribute::new("fmtp", Some(format!("{pt} 0-16"))));
        } else if map.starts_with("opus/") {
            attrs.push(Attribute::new("fmtp", Some(format!("{pt} useinbandfec=1"))));
        }
    }
    attrs.push(Attribute::new("ptime", Some(local.ptime.to_string())));
    if let Some(c) = crypto {
        attrs.push(Attribute::new("crypto", Some(c.to_string())));
    }
    if rtcp_mux {
        attrs.push(Attribute::new("rtcp-mux", None));
    }
    attrs.push(Attribute::new(direction.as_str(), None));
    MediaDescription {
        media: "audio".to_owned(),
        port: local.port,
        port_count: None,
        proto: if crypto.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        }
        .to_owned(),
        formats: pts.iter().map(|(pt, _)| pt.to_string()).collect(),
        info: Vec::new(),
        connection: None,
        other: Vec::new(),
        attributes: attrs,
    }
}

/// Our answer section for one offered stream, or `None` when we cannot serve it.
fn answer_audio(
    offer: &SessionDescription,
    m: &MediaDescription,
    local: &LocalAudio,
) -> Result<Option<(MediaDescription, Negotiated)>, SdpError> {
    let secure = match m.proto.as_str() {
        "RTP/AVP" | "RTP/AVPF" => false,
        "RTP/SAVP" | "RTP/SAVPF" => true,
        // DTLS-SRTP (UDP/TLS/RTP/SAVP[F]) and anything else: not on this leg yet.
        _ => return Ok(None),
    };
    if m.media != "audio" || m.is_rejected() {
        return Ok(None);
    }
    let Some((codec, pt)) = local.codecs.iter().find_map(|c| {
        m.payload_types()
            .find(|pt| c.matches(m, *pt))
            .map(|pt| (*c, pt))
    }) else {
        return Ok(None);
    };
    let (ours, srtp) = if secure {
        let Some(key) = local.srtp_key else {
            return Ok(None);
        };
        // A malformed crypto line refuses the stream rather than the whole offer.
        let offered = m.crypto().unwrap_or_default();
        let Some(theirs) = SUITES.iter().find_map(|suite| {
            offered
                .iter()
                .find(|c| c.suite == *suite && c.key_salt.len() == 30)
        }) else {
            return Ok(None);
        };
        let ours = Crypto {
            tag: theirs.tag,
            suite: theirs.suite.clone(),
            key_salt: key.to_vec(),
            lifetime: None,
            mki: None,
        };
        let keys = SrtpKeys {
            suite: theirs.suite.clone(),
            local_key_salt: key.to_vec(),
            remote_key_salt: theirs.key_salt.clone(),
        };
        (Some(ours), Some(keys))
    } else {
        (None, None)
    };
    let te = m.payload_types().find(|pt| {
        m.rtpmap(*pt).is_some_and(|map| {
            map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock == codec.clock()
        })
    });
    let mut pts = vec![(pt, rtpmap_value(codec))];
    if let Some(te) = te {
        pts.push((te, format!("telephone-event/{}", codec.clock())));
    }
    let remote_dir = remote_direction(offer, m);
    let direction = Direction::from_flags(
        local.direction.sends() && remote_dir.receives(),
        local.direction.receives() && remote_dir.sends(),
    );
    let mux = local.rtcp_mux && m.rtcp_mux();
    let mut section = audio_section(local, &pts, ours.as_ref(), direction, mux);
    section.proto = m.proto.clone();
    let negotiated = negotiated(offer, m, codec, pt, direction, remote_dir, mux, srtp);
    Ok(Some((section, negotiated)))
}

/// The peer's direction, with the old hold form `c=0.0.0.0` read as sendonly.
fn remote_direction(sd: &SessionDescription, m: &MediaDescription) -> Direction {
    let dir = sd.direction(m);
    let held = sd
        .connection(m)
        .and_then(Connection::ip)
        .is_some_and(|ip| ip.is_unspecified());
    if held && dir.sends() {
        Direction::SendOnly
    } else if held {
        Direction::Inactive
    } else {
        dir
    }
}

#[allow(clippy::too_many_arguments)]
fn negotiated(
    sd: &SessionDescription,
    m: &MediaDescription,
    codec: Codec,
    pt: u8,
    ours: Direction,
    theirs: Direction,
    rtcp_mux: bool,
    srtp: Option<SrtpKeys>,
) -> Negotiated {
    let ip = sd
        .connection(m)
        .and_then(Connection::ip)
        .filter(|ip| !ip.is_unspecified());
    let remote_rtp = ip.map(|ip| SocketAddr::new(ip, m.port));
    let remote_rtcp = if rtcp_mux {
        remote_rtp
    } else {
        match m.rtcp() {
            Some((port, addr)) => addr.or(ip).map(|ip| SocketAddr::new(ip, port)),
            None => ip.map(|ip| SocketAddr::new(ip, m.port.saturating_add(1))),
        }
    };
    let te = m.payload_types().find(|p| {
        m.rtpmap(*p).is_some_and(|map| {
            map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock == codec.clock()
        })
    });
    Negotiated {
        codec,
        pt,
        telephone_event: te,
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        direction: Direction::from_flags(
            ours.sends() && theirs.receives(),
            ours.receives() && theirs.sends(),
        ),
        ptime: m.ptime(),
        srtp,
    }
}
